"""`http` tools against a real HTTP server on 127.0.0.1: bearer token from a credential, typed JSON body,
URL quoting, non-2xx, redirects not followed, timeout, response cap, cancel, and TLS with a ca_file."""

import json
import logging
import shutil
import socket
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pivoice.settings import ConfigError, Section
from pivoice.tools.config import read_tools
from pivoice.tools.registry import build_registry
from pivoice.tools.runner import ToolRunner
from pivoice.tools.base import CallContext
from pivoice.tools.specs import HttpSpec
from pivoice.tools.http import run_http

TOKEN = "s3cret-ha-token-0123456789"
BIG_BYTES = 1024 * 1024


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):   # keep pytest output clean
        pass

    def _send(self, status, body: bytes, content_type="application/json", headers=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._route(None)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        self._route(json.loads(self.rfile.read(length)) if length else None)

    def _route(self, body):
        self.server.requests.append({"method": self.command, "path": self.path, "body": body,
                                     "headers": dict(self.headers)})
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._send(401, b'{"message": "401: Unauthorized"}')
        if self.path.startswith("/api/services/"):
            return self._send(200, json.dumps([{"entity_id": body["entity_id"], "state": "on"}]).encode())
        if self.path == "/fail":
            return self._send(500, b"Internal Server Error: boom", "text/plain")
        if self.path == "/slow":
            time.sleep(3)
            return self._send(200, b"{}")
        if self.path == "/big":
            return self._send(200, b"[" + b"1," * (BIG_BYTES // 2) + b"1]")
        if self.path == "/redirect":
            return self._send(302, b"", headers=[("Location", "http://127.0.0.1:9/elsewhere")])
        if self.path == "/echo-auth":
            return self._send(200, f"you sent {self.headers['Authorization']}".encode(), "text/plain")
        return self._send(200, json.dumps({"path": self.path}).encode())


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.requests = []
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def creds(tmp_path):
    directory = tmp_path / "credentials"
    directory.mkdir()
    (directory / "ha-token").write_text(TOKEN + "\n")
    return {"CREDENTIALS_DIRECTORY": str(directory)}


def spec(url, method="GET", body=None, timeout_s=5.0, cap=16384, **token) -> HttpSpec:
    token = token or {"bearer_token_credential": "ha-token"}
    return HttpSpec(method=method, url=url, headers=(("X-Device", "kitchen"),), body=body,
                    bearer_token_file=token.get("bearer_token_file"),
                    bearer_token_credential=token.get("bearer_token_credential"), timeout_s=timeout_s,
                    max_response_bytes=cap, ca_file=token.get("ca_file"))


def base(server) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def test_home_assistant_style_post_with_typed_body_and_credential_token(server, creds):
    s = spec(base(server) + "/api/services/light/turn_on", "POST",
             body={"entity_id": "{entity_id}", "brightness_pct": "{level}", "note": "set by {who}"})
    out = run_http(s, {"entity_id": "light.kitchen", "level": 40, "who": "pivoice"}, CallContext(), creds).payload
    assert out == {"ok": True, "status": 200, "body": [{"entity_id": "light.kitchen", "state": "on"}],
                   "truncated": False}
    request = server.requests[-1]
    assert request["body"] == {"entity_id": "light.kitchen", "brightness_pct": 40, "note": "set by pivoice"}
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["headers"]["X-Device"] == "kitchen"


def test_url_placeholders_are_quoted_so_they_stay_in_their_segment(server, creds):
    s = spec(base(server) + "/api/states/{entity}?q={q}")
    out = run_http(s, {"entity": "a b/../x", "q": "1&admin=1"}, CallContext(), creds).payload
    assert out["body"] == {"path": "/api/states/a%20b%2F..%2Fx?q=1%26admin%3D1"}


def test_token_file_under_credentials_directory(server, creds):
    s = spec(base(server) + "/x", bearer_token_file="${CREDENTIALS_DIRECTORY}/ha-token")
    assert run_http(s, {}, CallContext(), creds).payload["ok"] is True


def test_wrong_token_is_an_http_status_error(server, tmp_path):
    (tmp_path / "ha-token").write_text("wrong-token")
    out = run_http(spec(base(server) + "/x"), {}, CallContext(), {"CREDENTIALS_DIRECTORY": str(tmp_path)}).payload
    assert out["ok"] is False
    assert out["error"]["type"] == "http_status" and out["error"]["status"] == 401
    assert "HTTP 401 Unauthorized" in out["error"]["message"]
    assert "wrong-token" not in json.dumps(out)


@pytest.mark.parametrize("environ, words", [
    ({}, "$CREDENTIALS_DIRECTORY is not set"),
    ({"CREDENTIALS_DIRECTORY": "/nonexistent"}, "the bearer token file /nonexistent/ha-token: cannot read"),
])
def test_unusable_token_source_fails_before_any_request(server, environ, words):
    out = run_http(spec(base(server) + "/x"), {}, CallContext(), environ).payload
    assert out["error"]["type"] == "failed" and words in out["error"]["message"]
    assert server.requests == []


def test_server_error_is_reported_with_an_excerpt(server, creds):
    out = run_http(spec(base(server) + "/fail"), {}, CallContext(), creds).payload
    assert out["error"] == {"type": "http_status", "status": 500, "body": "Internal Server Error: boom",
                            "message": f"GET {base(server)}/fail: HTTP 500 Internal Server Error"}


def test_redirects_are_reported_not_followed(server, creds):
    out = run_http(spec(base(server) + "/redirect"), {}, CallContext(), creds).payload
    assert out["error"]["status"] == 302
    assert "redirects are not followed (Location: http://127.0.0.1:9/elsewhere)" in out["error"]["message"]
    assert [r["path"] for r in server.requests] == ["/redirect"]


def test_slow_server_times_out(server, creds):
    started = time.monotonic()
    out = run_http(spec(base(server) + "/slow", timeout_s=0.5), {}, CallContext(), creds).payload
    assert out["error"]["type"] == "timeout"
    assert 0.4 <= time.monotonic() - started < 1.5


def test_a_big_answer_is_cut_at_the_cap(server, creds):
    out = run_http(spec(base(server) + "/big", cap=16384), {}, CallContext(), creds).payload
    assert out["ok"] is True and out["truncated"] is True
    assert isinstance(out["body"], str) and len(out["body"]) == 16384   # cut JSON is given back as text


def test_the_token_is_scrubbed_from_what_the_server_echoes(server, creds):
    out = run_http(spec(base(server) + "/echo-auth"), {}, CallContext(), creds).payload
    assert out["body"] == "you sent Bearer [redacted]"


def test_connection_refused_is_a_failure(creds):
    with socket.socket() as sock:   # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = run_http(spec(f"http://127.0.0.1:{port}/x"), {}, CallContext(), creds).payload
    assert out["error"]["type"] == "failed" and "Connection refused" in out["error"]["message"]


def test_cancel_abandons_a_request_in_flight(server, creds):
    ctx = CallContext()
    result = {}
    worker = threading.Thread(target=lambda: result.update(
        run_http(spec(base(server) + "/slow", timeout_s=10), {}, ctx, creds).payload))
    worker.start()
    while not server.requests:
        time.sleep(0.01)
    started = time.monotonic()
    ctx.cancel()
    worker.join(timeout=3)
    assert not worker.is_alive() and time.monotonic() - started < 0.5
    assert result["error"]["type"] == "cancelled"


def test_plain_http_off_loopback_is_refused_at_config_load():
    data = {"functions": [{"name": "lights", "description": "d", "http": {
        "url": "http://192.168.1.20:8123/api/services/light/turn_on", "method": "POST"}}]}
    with pytest.raises(ConfigError) as err:
        read_tools(Section(data, "pivoice.yaml", "tools"))
    assert err.value.key_path == "tools.functions[0].http.url"
    assert "https:// is required for '192.168.1.20'" in str(err.value)


def test_through_the_runner_nothing_logs_the_token(server, creds, caplog):
    caplog.set_level(logging.DEBUG)
    data = {"functions": [{"name": "lamp", "description": "Switch a lamp on.",
                           "parameters": {"type": "object", "properties": {"entity_id": {"type": "string"}},
                                          "required": ["entity_id"]},
                           "http": {"method": "POST", "url": base(server) + "/api/services/light/turn_on",
                                    "body": {"entity_id": "{entity_id}"}, "bearer_token_credential": "ha-token"}}]}
    registry = build_registry(read_tools(Section(data, "pivoice.yaml", "tools")), environ=creds)
    results = []
    done = threading.Event()
    runner = ToolRunner(registry, lambda r: (results.append(r), done.set()))
    runner.start("call_1", "lamp", json.dumps({"entity_id": "light.hall"}))
    assert done.wait(5)
    runner.close()
    assert results[0].ok and json.loads(results[0].output)["body"] == [{"entity_id": "light.hall", "state": "on"}]
    assert any("tool lamp: ok" in r.getMessage() for r in caplog.records)
    for record in caplog.records:
        assert TOKEN not in record.getMessage() and "light.hall" not in record.getMessage()


@pytest.fixture
def tls_server(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.requests = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    srv.socket = context.wrap_socket(srv.socket, server_side=True)
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv, str(cert)
    srv.shutdown()
    srv.server_close()


def test_https_with_a_ca_file_and_refused_without_it(tls_server, creds):
    srv, cert = tls_server
    url = f"https://127.0.0.1:{srv.server_address[1]}/x"
    ok = run_http(spec(url, bearer_token_credential="ha-token", ca_file=cert), {}, CallContext(), creds).payload
    assert ok == {"ok": True, "status": 200, "body": {"path": "/x"}, "truncated": False}
    bad = run_http(spec(url), {}, CallContext(), creds).payload
    assert bad["error"]["type"] == "failed"
    assert "TLS certificate is not trusted (self-signed certificate); set ca_file" in bad["error"]["message"]
    missing = run_http(spec(url, bearer_token_credential="ha-token", ca_file="/nonexistent/ca.pem"), {},
                       CallContext(), creds).payload
    assert missing["error"]["type"] == "failed" and "cannot load ca_file /nonexistent/ca.pem" in \
        missing["error"]["message"]


def test_cancel_abandons_an_https_request_in_flight(tls_server, creds):
    srv, cert = tls_server
    ctx = CallContext()
    result = {}
    url = f"https://127.0.0.1:{srv.server_address[1]}/slow"
    worker = threading.Thread(target=lambda: result.update(
        run_http(spec(url, timeout_s=10, bearer_token_credential="ha-token", ca_file=cert), {}, ctx, creds).payload))
    worker.start()
    while not srv.requests:
        time.sleep(0.01)
    started = time.monotonic()
    ctx.cancel()
    worker.join(timeout=3)
    assert not worker.is_alive() and time.monotonic() - started < 0.5
    assert result["error"]["type"] == "cancelled"
