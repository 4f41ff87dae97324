"""A real `pivoice token-server` (several uvicorn workers) in front of the real `pivoice dev-server`."""

import concurrent.futures
import subprocess
import re
import ssl
import time

import httpx
import pytest
from openai.types.realtime import ClientSecretCreateResponse

from support.devserver import run_dev_server
from support.tokenserver import free_port, run_token_server

pytestmark = pytest.mark.integration
API_KEY = "sk-integration-KEY-must-not-leak-4242"
MINT = "/v1/realtime/client_secrets"
DAEMON_SESSION = {"type": "realtime", "model": "gpt-realtime", "instructions": "Be brief.",
                  "output_modalities": ["audio"],
                  "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000},
                                      "turn_detection": {"type": "server_vad", "silence_duration_ms": 500}},
                            "output": {"voice": "cedar", "speed": 1.1}}}


@pytest.fixture(scope="module")
def dev(tmp_path_factory):
    with run_dev_server(tmp_path_factory.mktemp("dev"), "--api-key", API_KEY) as server:
        yield server


def set_faults(dev, spec):
    r = httpx.post(dev.url + "/_dev/faults", json={"client_secrets": spec},
                   headers={"Authorization": f"Bearer {API_KEY}"})
    assert r.status_code == 200, r.text


def mint(ts, device, secret=None, body=None, timeout_s=30.0):
    secret = ts.device_secrets[device] if secret is None else secret
    # a fresh connection per call, so the kernel may hand it to any worker
    with httpx.Client(timeout=timeout_s) as client:
        return client.post(ts.url + MINT, auth=(device, secret), json=body if body is not None else {})


def parallel(n, fn):
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda _: fn(), range(n)))


def workers_in(lines, pattern):
    return {m.group(1) for line in lines if re.search(pattern, line)
            for m in [re.search(r"worker=(\d+)", line)] if m}


def test_mint_through_dev_server_validates_and_leaks_nothing(dev, tmp_path):
    with run_token_server(tmp_path, dev.url, API_KEY, devices=["kitchen"], workers=2,
                          instructions="Be brief.", allowed_overrides=["audio", "output_modalities"]) as ts:
        before = time.time()
        r = mint(ts, "kitchen", body={"session": DAEMON_SESSION, "expires_after": {"anchor": "created_at",
                                                                                  "seconds": 45}})
        assert r.status_code == 200, r.text
        assert r.headers["cache-control"] == "no-store"
        doc = r.json()
        assert before - 1 <= doc["server_time"] <= time.time() + 1
        assert doc["expires_at"] - doc["server_time"] == pytest.approx(45, abs=2)
        secret = ClientSecretCreateResponse.model_validate({k: doc[k] for k in ("value", "expires_at", "session")})
        assert secret.value.startswith("ek_")
        assert secret.session.audio.output.voice == "cedar" and secret.session.instructions == "Be brief."
        r2 = mint(ts, "kitchen", body={"session": {**DAEMON_SESSION, "instructions": "Obey the user."}})
        assert r2.status_code == 403 and r2.json()["error"]["field"] == "session.instructions"
        assert mint(ts, "kitchen", secret="wrong").status_code == 401
        log = ts.log_text()
        assert len(ts.audit_lines()) == 3
        assert "outcome=minted status=200 upstream_status=200" in ts.audit_lines()[0]
        for needle in (API_KEY, ts.device_secrets["kitchen"], doc["value"], "ek_"):
            assert needle not in log


def test_revocation_is_seen_by_every_worker_at_once(dev, tmp_path):
    with run_token_server(tmp_path, dev.url, API_KEY, devices=["kitchen", "attic"], workers=3,
                          mint_rate_per_min=1000) as ts:
        assert all(r.status_code == 200 for r in parallel(12, lambda: mint(ts, "kitchen")))
        ts.cli("devices", "revoke", "kitchen")
        refused = parallel(24, lambda: mint(ts, "kitchen"))
        assert [r.status_code for r in refused] == [401] * 24
        assert all(r.headers["www-authenticate"] == 'Basic realm="pivoice"' for r in refused)
        assert mint(ts, "attic").status_code == 200
        assert len(workers_in(ts.audit_lines(), r"device=kitchen outcome=unauthorized")) >= 2
        # rotation re-enables with a new secret; the old one stays dead
        new_secret = ts.cli("devices", "rotate", "kitchen").stdout.strip()
        assert mint(ts, "kitchen", secret=new_secret).status_code == 200
        assert mint(ts, "kitchen").status_code == 401


def test_rate_limit_holds_across_workers(dev, tmp_path):
    with run_token_server(tmp_path, dev.url, API_KEY, devices=["kitchen"], workers=3,
                          mint_rate_per_min=5) as ts:
        results = parallel(15, lambda: mint(ts, "kitchen"))
        codes = sorted(r.status_code for r in results)
        assert codes == [200] * 5 + [429] * 10
        limited = [r for r in results if r.status_code == 429]
        assert all(r.json()["error"]["code"] == "rate_limited" for r in limited)
        assert all(1 <= int(r.headers["retry-after"]) <= 12 for r in limited)
        assert len(workers_in(ts.audit_lines(), r"device=kitchen")) >= 2


def test_upstream_faults_map_to_502_503_504(dev, tmp_path):
    with run_token_server(tmp_path, dev.url, API_KEY, devices=["kitchen"], workers=2, mint_rate_per_min=100,
                          upstream={"retries": 2, "backoff_s": 0.05, "timeout_s": 1.0}) as ts:
        set_faults(dev, {"status": 503, "count": 1})  # one failure, then the retry succeeds
        assert mint(ts, "kitchen").status_code == 200
        assert "attempts=2" in ts.audit_lines()[-1]

        set_faults(dev, {"status": 503, "count": 3})
        r = mint(ts, "kitchen")
        assert r.status_code == 503
        error = r.json()["error"]
        assert (error["code"], error["upstream_status"]) == ("upstream_unavailable", 503)
        assert "upstream_code" not in error  # the dev server's 503 carries no code

        set_faults(dev, {"status": 500, "count": 3})
        r = mint(ts, "kitchen")
        assert r.status_code == 502 and r.json()["error"]["upstream_status"] == 500

        set_faults(dev, {"status": 429, "count": 3})
        r = mint(ts, "kitchen")
        assert r.status_code == 502 and r.json()["error"]["upstream_code"] == "rate_limit_exceeded"

        set_faults(dev, {"status": None, "count": 1, "delay_s": 3})
        started = time.monotonic()
        r = mint(ts, "kitchen")
        assert r.status_code == 504 and r.json()["error"]["code"] == "upstream_timeout"
        assert time.monotonic() - started < 2.5  # read timeouts are not retried
        set_faults(dev, None)
        assert mint(ts, "kitchen").status_code == 200
        assert "Traceback" not in ts.log_text() and API_KEY not in ts.log_text()


def test_upstream_down_and_wrong_key(dev, tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    with run_token_server(tmp_path, dead, API_KEY, devices=["kitchen"], workers=2, name="dead") as ts:
        r = mint(ts, "kitchen")
        assert r.status_code == 503 and r.json()["error"]["upstream_status"] is None
        assert r.json()["error"]["code"] == "upstream_unavailable"
    wrong_key = "sk-wrong-KEY-0000000000000000"
    with run_token_server(tmp_path, dev.url, wrong_key, devices=["kitchen"], workers=2, name="wrongkey") as ts:
        r = mint(ts, "kitchen")
        assert r.status_code == 502
        assert r.json()["error"]["upstream_status"] == 401 and r.json()["error"]["upstream_code"] == "invalid_api_key"
        assert wrong_key not in r.text and wrong_key not in ts.log_text()
        assert "rejected our API key (HTTP 401)" in ts.log_text()


def test_healthz_and_json_404(dev, tmp_path):
    with run_token_server(tmp_path, dev.url, API_KEY, workers=2) as ts:
        r = httpx.get(ts.url + "/healthz")
        assert r.status_code == 200 and r.json() == {"status": "ok"}
        r = httpx.get(ts.url + "/v1/nothing")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_tls_served_by_uvicorn(dev, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    with run_token_server(tmp_path, dev.url, API_KEY, devices=["kitchen"], workers=2,
                          tls={"cert_file": str(cert), "key_file": str(key)}) as ts:
        assert ts.url.startswith("https://")
        with httpx.Client(verify=ssl.create_default_context(cafile=str(cert)), timeout=10) as client:
            r = client.post(ts.url + MINT, auth=("kitchen", ts.device_secrets["kitchen"]), json={})
        assert r.status_code == 200 and r.json()["value"].startswith("ek_")
        with pytest.raises(httpx.HTTPError):
            httpx.post(f"http://127.0.0.1:{ts.port}{MINT}", auth=("kitchen", "x"), timeout=5)


def _raw_post(port, headers: dict, first: bytes):
    import socket
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    sock.sendall(f"POST {MINT} HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}\r\n".encode() + first)
    return sock


def test_a_huge_streamed_body_is_cut_off_early_and_a_vanished_client_is_one_quiet_line(dev, tmp_path):
    import base64
    with run_token_server(tmp_path, dev.url, API_KEY, devices=["kitchen"], workers=1) as ts:
        auth = "Basic " + base64.b64encode(f"kitchen:{ts.device_secrets['kitchen']}".encode()).decode()
        # chunked, so no Content-Length gives the size away: the server must count as it reads
        sock = _raw_post(ts.port, {"Authorization": auth, "Transfer-Encoding": "chunked"}, b"")
        chunk = b"%x\r\n" % 65536 + b" " * 65536 + b"\r\n"
        sent = 0
        reply = b""
        sock.settimeout(0.05)
        try:
            while sent < 300 * 2**20 and not reply:   # stop at 300 MiB: the server must answer far earlier
                try:
                    sock.sendall(chunk)
                    sent += len(chunk)
                except OSError:
                    break
                try:
                    reply = sock.recv(4096)
                except TimeoutError:
                    pass
            sock.settimeout(5)
            reply = reply or sock.recv(4096)
        finally:
            sock.close()
        assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
        assert sent < 8 * 2**20, f"the server let {sent} bytes in before refusing"

        # a client that goes away mid-body
        sock = _raw_post(ts.port, {"Authorization": auth, "Content-Length": "1000"}, b'{"session": ')
        time.sleep(0.3)
        sock.close()
        deadline = time.monotonic() + 5
        while "outcome=client_disconnected" not in ts.log_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        log = ts.log_text()
        assert "outcome=client_disconnected status=499" in log
        assert "Traceback" not in log and "ClientDisconnect" not in log and " ERROR " not in log
        assert mint(ts, "kitchen").status_code == 200   # the worker is fine
