"""The real urllib transport against a real, misbehaving HTTP(S) server on 127.0.0.1."""

import base64
import json
import logging
import socket
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pivoice.tokens import TokenProvider
from support.tokens_fakes import DEVICE_ID, DEVICE_SECRET, SESSION, secret

pytestmark = pytest.mark.integration


class FaultServer:
    """A token backend stand-in whose next answers are set by `mode`; records the ek values it issued."""

    def __init__(self, port=0, tls_context=None):
        self.mode = "ok"
        self.issued: list[str] = []
        self.requests: list[dict] = []
        self.ttl_s = 60
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("content-length", 0))
                server.requests.append({"path": self.path, "auth": self.headers.get("authorization"),
                                        "body": json.loads(self.rfile.read(length))})
                server.answer(self, server.mode)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        if tls_context is not None:
            self.httpd.socket = tls_context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def answer(self, h, mode):
        if mode == "ok":
            value = f"ek_fault{len(self.issued):04d}x{int(time.time() * 1000) % 100000}"
            self.issued.append(value)
            now = time.time()
            return self.send(h, 200, {"value": value, "expires_at": int(now) + self.ttl_s, "server_time": now,
                                      "session": {"type": "realtime"}})
        if mode == "malformed":
            return self.send_raw(h, 200, b'{"value": "ek_trunc')
        if mode == "garbage_status":
            h.wfile.write(b"HTTP/1.1 abc nonsense\r\n\r\n")
            return
        if mode == "close":
            h.close_connection = True
            h.connection.shutdown(socket.SHUT_RDWR)
            return
        if mode == "slow":
            time.sleep(1.5)
            return self.send(h, 503, {"error": {"code": "upstream_unavailable", "message": "late"}})
        status, code, headers = {
            "401": (401, "unauthorized", {}), "403": (403, "forbidden_override", {}),
            "429": (429, "rate_limited", {"Retry-After": "1"}), "500": (500, None, {}),
            "502": (502, "upstream_error", {}), "503": (503, "upstream_unavailable", {"Retry-After": "0"}),
        }[mode]
        if code is None:
            return self.send_raw(h, status, b"<h1>Internal Server Error</h1>")
        return self.send(h, status, {"error": {"code": code, "message": f"fault {mode}", "field": "session.model",
                                               "upstream_status": 500}}, headers)

    def send(self, h, status, doc, headers=None):
        self.send_raw(h, status, json.dumps(doc).encode(), headers)

    def send_raw(self, h, status, body, headers=None):
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def server():
    s = FaultServer()
    try:
        yield s
    finally:
        s.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make(url, **kw):
    lines = []
    kw.setdefault("timeout_s", 0.5)
    p = TokenProvider(url, DEVICE_ID, secret(), SESSION, on_status=lines.append, **kw)
    return p, lines


def wait_for(predicate, timeout_s=5.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_mint_over_real_http(server):
    p, lines = make(f"http://127.0.0.1:{server.port}")
    p.tick()
    key = p.cached()
    assert key is not None and key.value.reveal() == server.issued[0]
    assert 58 <= key.valid_for_s(time.monotonic()) <= 60
    req = server.requests[0]
    assert req["path"] == "/v1/realtime/client_secrets" and req["body"] == {"session": SESSION}
    assert base64.b64decode(req["auth"].split()[1]).decode() == f"{DEVICE_ID}:{DEVICE_SECRET}"


@pytest.mark.parametrize("mode, code, state, snippet", [
    ("401", "unauthorized", "failed", "401 unauthorized (device 'kitchen'"),
    ("403", "forbidden_override", "failed", "session.model may not be overridden"),
    ("429", "rate_limited", "backing_off", "429 rate_limited"),
    ("500", "server_error", "backing_off", "unexpected HTTP 500"),
    ("502", "upstream_error", "backing_off", "upstream answered 500"),
    ("503", "upstream_unavailable", "backing_off", "503 upstream_unavailable"),
    ("malformed", "bad_response", "backing_off", "not JSON"),
    ("garbage_status", "bad_response", "backing_off", "malformed HTTP response"),
    ("close", "backend_unreachable", "backing_off", "closed the connection"),
    ("slow", "backend_timeout", "backing_off", "did not answer within 0.5 s"),
])
def test_each_fault_gives_a_clear_status(server, mode, code, state, snippet):
    server.mode = mode
    p, lines = make(f"http://127.0.0.1:{server.port}")
    started = time.monotonic()
    p.tick()
    assert time.monotonic() - started < 1.4    # the slow server is cut off at timeout_s, not waited for
    st = p.status()
    assert st["state"] == state and st["consecutive_failures"] == 1, st
    assert snippet in st["last_error"] and f"127.0.0.1:{server.port}" in st["last_error"]
    assert lines[-1].startswith("token: backend 127.0.0.1:") and "retrying in" in lines[-1]
    assert p.cached() is None
    if mode == "429":
        assert st["next_refresh_in_s"] >= 0.99


def test_connection_refused_then_backend_comes_back_and_provider_recovers():
    port = free_port()
    p, lines = make(f"http://127.0.0.1:{port}", backoff_initial_s=0.05, backoff_max_s=0.4)
    p.start()
    server = None
    try:
        assert wait_for(lambda: p.status()["consecutive_failures"] >= 3)
        assert "unreachable (connection refused)" in p.status()["last_error"]
        server = FaultServer(port=port)
        server.mode = "503"
        assert wait_for(lambda: "503" in (p.status()["last_error"] or ""))
        server.mode = "ok"
        assert wait_for(lambda: p.cached() is not None, timeout_s=3.0)  # within one max backoff, by itself
        assert p.status()["state"] == "ok" and p.cached().value.reveal() == server.issued[-1]
        # (a refresh may already have begun after the "ok": the last line need not be it)
        refused = [i for i, line in enumerate(lines) if "connection refused" in line]
        recovered = [i for i, line in enumerate(lines) if line.startswith("token: ok")]
        assert refused and recovered and recovered[-1] > refused[-1], lines
    finally:
        p.stop()
        if server:
            server.close()


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(d / "key.pem"),
                    "-out", str(d / "cert.pem"), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True, timeout=60)
    return d / "cert.pem", d / "key.pem"


@pytest.fixture
def tls_server(self_signed):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*map(str, self_signed))
    s = FaultServer(tls_context=ctx)
    try:
        yield s
    finally:
        s.close()


def test_tls_self_signed_rejected_without_ca_bundle(tls_server):
    p, lines = make(f"https://127.0.0.1:{tls_server.port}")
    p.tick()
    st = p.status()
    assert st["state"] == "failed" and "TLS certificate rejected" in st["last_error"]
    assert "self-signed" in st["last_error"] or "self signed" in st["last_error"]
    assert not tls_server.requests     # credentials never reached the unverified server


def test_tls_self_signed_accepted_with_ca_bundle(tls_server, self_signed):
    p, _ = make(f"https://127.0.0.1:{tls_server.port}", ca_bundle=str(self_signed[0]))
    p.tick()
    assert p.status()["state"] == "ok" and p.cached().value.reveal() == tls_server.issued[0]


def test_tls_host_name_is_verified(tls_server, self_signed):
    # The certificate names 127.0.0.1 only; "localhost" must be refused even with the right CA.
    p, _ = make(f"https://localhost:{tls_server.port}", ca_bundle=str(self_signed[0]))
    p.tick()
    assert "TLS" in p.status()["last_error"] and p.cached() is None


def test_redirects_are_not_followed(server):
    class Redirect(FaultServer):
        def answer(self, h, mode):
            h.send_response(307)
            h.send_header("Location", f"http://127.0.0.1:{server.port}/v1/realtime/client_secrets")
            h.send_header("Content-Length", "0")
            h.end_headers()
    r = Redirect()
    try:
        p, _ = make(f"http://127.0.0.1:{r.port}")
        p.tick()
        assert "unexpected HTTP 307" in p.status()["last_error"] and not server.requests
    finally:
        r.close()


def test_no_secret_or_ek_in_any_log_line(server, caplog):
    caplog.set_level(logging.DEBUG)
    # min_valid_s above the TTL: the cache never satisfies a press, so every press reaches the server.
    p, lines = make(f"http://127.0.0.1:{server.port}", backoff_initial_s=0.05, backoff_max_s=0.2, min_valid_s=61)
    for mode in ["ok", "401", "403", "429", "500", "502", "503", "malformed", "garbage_status", "close", "ok"]:
        server.mode = mode
        p.request(lambda k: None, lambda e: None)
        p.tick()
        if mode == "429":
            time.sleep(1.05)   # let the Retry-After pass so the next press reaches the server
    assert p.status()["state"] == "ok" and len(server.requests) == 11, lines
    server.mode = "503"
    p.start()
    p.request(lambda k: None, lambda e: None)
    assert wait_for(lambda: p.status()["consecutive_failures"] >= 2)
    server.mode = "ok"
    assert wait_for(lambda: p.status()["state"] == "ok")
    p.stop()
    assert len(server.issued) >= 3 and len(caplog.records) > 20
    basic = base64.b64encode(f"{DEVICE_ID}:{DEVICE_SECRET}".encode()).decode()
    everything = caplog.text + "\n".join(lines) + "\n".join(str(r.args) for r in caplog.records)
    everything += repr(p.status()) + repr(p.cached())
    for forbidden in [DEVICE_SECRET, basic, *server.issued]:
        assert forbidden not in everything
