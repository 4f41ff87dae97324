"""The daemon's fleet heartbeat against real HTTP servers on 127.0.0.1: a scripted one (timing, deltas,
429, failures) and the real token backend app (stored, shown by /admin/devices)."""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from pivoice.heartbeat import MAX_REPORT_BYTES, Heartbeat, status_url
from pivoice.procstats import ProcessSampler
from pivoice.tokens.keys import Secret
from pivoice.tokens.transport import UrllibTransport

SECRET = "device-secret-heartbeat-0123456789abcdef"


class Backend:
    """Records each POST (path, auth, body, arrival); answers from `plan` (status, headers) or 200."""

    def __init__(self):
        self.reports: list[dict] = []
        self.plan: list[tuple[int, dict]] = []
        self.arrived = threading.Condition()
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):   # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, headers = backend.plan.pop(0) if backend.plan else (200, {})
                with backend.arrived:
                    backend.reports.append({"path": self.path, "auth": self.headers.get("Authorization"),
                                            "size": len(body), "body": json.loads(body), "status": status,
                                            "at_s": time.monotonic()})
                    backend.arrived.notify_all()
                data = json.dumps({"stored": True} if status == 200 else
                                  {"error": {"code": "rate_limited" if status == 429 else "boom",
                                             "message": "no"}}).encode()
                self.send_response(status)
                for k, v in {"Content-Type": "application/json", "Content-Length": str(len(data)), **headers}.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def wait(self, n: int, timeout_s: float = 5.0) -> list[dict]:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.reports) >= n, timeout_s), self.reports
            return list(self.reports)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def backend():
    b = Backend()
    yield b
    b.close()


class Device:
    """What Runtime.status() would say, changed by the test."""

    def __init__(self):
        self.status = {"state": "idle", "last_end_reason": None, "last_end_code": None,
                       "token": {"state": "ok", "last_error": None},
                       "audio": {"mic": {"overflows": 1}, "speaker": {"underflows": 2}},
                       "usage": {"input_audio_tokens": 0, "output_audio_tokens": 0, "audio_sent_s": 0.0}}

    def __call__(self) -> dict:
        return json.loads(json.dumps(self.status))

    def converse(self, hb: Heartbeat, code: str, tokens_in: int, sent_s: float, reason: str = "ended") -> None:
        self.status["state"] = "active"
        hb.on_status(self())
        usage = self.status["usage"]
        usage["input_audio_tokens"] += tokens_in
        usage["audio_sent_s"] += sent_s
        self.status.update(state="idle", last_end_code=code, last_end_reason=reason)
        hb.on_status(self())


def make(backend, device, interval_s=30.0, min_gap_s=0.3, **kw) -> Heartbeat:
    return Heartbeat(backend.url, "kitchen", Secret(SECRET), device, interval_s=interval_s,
                     transport=UrllibTransport(), timeout_s=2.0, min_gap_s=min_gap_s, version="9.9.9", **kw)


def test_reports_at_start_at_each_interval_and_after_a_conversation(backend):
    device = Device()
    hb = make(backend, device, interval_s=0.6)
    hb.start()
    try:
        first, second = backend.wait(2)[:2]
        assert second["at_s"] - first["at_s"] == pytest.approx(0.6, abs=0.25)
        device.converse(hb, "user", 100, 3.5)
        ended_at = time.monotonic()
        third = backend.wait(3)[2]
        assert third["at_s"] - ended_at < 0.45   # soon after the end (min_gap 0.3 s), not at the interval
    finally:
        hb.stop()
    assert first["path"] == "/v1/devices/status"
    assert first["auth"] == "Basic " + base64.b64encode(f"kitchen:{SECRET}".encode()).decode()
    body = first["body"]
    assert body["version"] == "9.9.9" and body["state"] == "idle" and body["interval_s"] == 0.6
    assert body["xruns"] == 3 and body["token_state"] == "ok" and body["uptime_s"] > 0 and body["rss_mib"] > 5
    assert body["since_last"]["conversations"] == 0
    since = third["body"]["since_last"]
    assert (since["conversations"], since["input_audio_tokens"], since["audio_sent_s"]) == (1, 100, 3.5)


def test_deltas_survive_a_failed_report_and_abnormal_ends_are_counted(backend, caplog):
    device = Device()
    hb = make(backend, device)
    assert hb.report_once()
    device.converse(hb, "stalled", 40, 1.0, reason="reply stalled")
    backend.plan = [(503, {}), (503, {})]
    caplog.set_level(logging.INFO, logger="pivoice.heartbeat")
    assert not hb.report_once() and not hb.report_once()
    device.converse(hb, "user", 60, 2.0)
    assert hb.report_once()
    bodies = [r["body"] for r in backend.wait(4)]
    assert bodies[1]["since_last"]["abnormal_ends"] == 1 and bodies[1]["abnormal_ends"] == {"stalled": 1}
    last = bodies[3]
    assert last["since_last"] == {"conversations": 2, "abnormal_ends": 1, "input_text_tokens": 0,
                                  "input_audio_tokens": 100, "output_text_tokens": 0, "output_audio_tokens": 0,
                                  "audio_sent_s": 3.0, "audio_received_s": 0.0}
    assert last["last_end_code"] == "user"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "HTTP 503" in warnings[0]   # once per outage
    assert any("work again" in r.getMessage() for r in caplog.records)
    assert SECRET not in caplog.text


def test_429_retry_after_holds_the_next_report(backend):
    device = Device()
    hb = make(backend, device, interval_s=0.2, min_gap_s=0.1)
    backend.plan = [(429, {"Retry-After": "1"})]
    hb.start()
    try:
        first, second = backend.wait(2)[:2]
    finally:
        hb.stop()
    assert first["status"] == 429 and second["status"] == 200
    assert second["at_s"] - first["at_s"] >= 0.95


def test_the_runtime_s_end_counts_are_used_when_present(backend):
    device = Device()
    hb = make(backend, device)
    device.status["ends"] = {"user": 3, "idle": 1, "stalled": 2, "token_failed": 1}
    device.status["usage"] = {"input_text_tokens": 5, "input_audio_tokens": 10, "output_text_tokens": 7,
                              "output_audio_tokens": 20, "audio_sent_s": 1.25, "audio_received_s": 2.5}
    device.status["last_conversation"] = {"duration_s": 12.5, "end_code": "user", "press_to_first_append_ms": 140.0,
                                          "rollovers": 0, "unknown_key": {"nested": True}}
    assert hb.report_once()
    body = backend.wait(1)[0]["body"]
    assert body["abnormal_ends"] == {"stalled": 2, "token_failed": 1}
    assert body["since_last"]["conversations"] == 7 and body["since_last"]["abnormal_ends"] == 3
    assert body["since_last"]["output_audio_tokens"] == 20 and body["since_last"]["audio_received_s"] == 2.5
    assert body["last_conversation"] == {"duration_s": 12.5, "end_code": "user", "press_to_first_append_ms": 140.0,
                                         "rollovers": 0}


def test_report_is_capped_at_4_kib(backend):
    device = Device()
    device.status.update(last_end_reason="x" * 5000, ends={f"code_{i:02d}_{'y' * 30}": i for i in range(40)})
    device.status["token"]["last_error"] = "e" * 5000
    hb = make(backend, device)
    body, _ = hb.build_report(device())
    assert len(body) <= MAX_REPORT_BYTES
    assert hb.report_once()
    got = backend.wait(1)[0]
    assert got["size"] <= MAX_REPORT_BYTES and len(got["body"]["abnormal_ends"]) == 20


def test_status_url_follows_the_mint_url_rules():
    assert status_url("https://tokens.example.com/pv/", False) == "https://tokens.example.com/pv/v1/devices/status"
    with pytest.raises(ValueError, match="https is required"):
        status_url("http://tokens.example.com", False)


def test_process_sampler_reads_proc():
    sampler = ProcessSampler()
    # CPU time is counted in 10 ms clock ticks: burn until at least two have been counted (bounded)
    start_cpu_s, deadline = sum(os.times()[:2]), time.monotonic() + 5
    while sum(os.times()[:2]) - start_cpu_s < 0.02 and time.monotonic() < deadline:
        sum(i * i for i in range(20_000))
    time.sleep(0.06)
    got = sampler.sample()
    assert got["cpu_percent"] is not None and got["cpu_percent"] > 0
    assert got["rss_mib"] > 5 and got["uptime_s"] > 0


def test_heartbeats_reach_the_real_token_backend(tmp_path):
    from pivoice.tokenserver.app import create_app
    from pivoice.tokenserver.auth import hash_secret
    from pivoice.tokenserver.config import parse_config
    from pivoice.tokenserver.registry import Registry
    from support.asgi_server import serve_app

    admin_file = tmp_path / "admin"
    admin_file.write_text("admin-token-for-the-heartbeat-test")
    config = parse_config({"database_url": f"sqlite:///{tmp_path / 'd.db'}", "admin_token_file": str(admin_file)},
                          "t.yaml")
    registry = Registry(config.database_url)
    registry.init_schema()
    registry.add_device("kitchen", hash_secret(SECRET), time.time())
    device = Device()
    with serve_app(create_app(config, api_key="sk-unused", registry=registry)) as url:
        hb = Heartbeat(url, "kitchen", Secret(SECRET), device, interval_s=60, transport=UrllibTransport(),
                       min_gap_s=0.1)
        assert hb.report_once()
        device.converse(hb, "user", 250, 4.0)
        assert hb.report_once()
        doc = httpx.get(url + "/admin/devices", headers={"Authorization": "Bearer admin-token-for-the-heartbeat-test"}
                        ).json()
    registry.close()
    (row,) = doc["devices"]
    assert row["health"] == "ok" and row["report"]["version"] and row["report"]["xruns"] == 3
    assert row["today"]["conversations"] == 1 and row["today"]["input_audio_tokens"] == 250
    assert row["today"]["audio_sent_s"] == 4.0


@pytest.mark.integration
def test_the_running_daemon_reports_at_start_and_after_a_conversation(tmp_path):
    from support.fixtures_audio import make_speech_wav
    from support.stack import offline_stack, running

    question = make_speech_wav(tmp_path / "q.wav", "What time is it?", rate_hz=16000, lead_silence_s=0.1,
                               tail_silence_s=2.0)
    with offline_stack(tmp_path, "--audio-pace", "0", fleet={"status_min_interval_s": 1}) as stack:
        config = stack.config(mic=f"wav:{question}", speaker=f"wav:{tmp_path / 'reply.wav'}",
                              conversation={"idle_timeout_s": 1.5})
        config["tokens"]["status_interval_s"] = 600   # only the start and the conversation end report here

        def fleet() -> dict:
            return json.loads(stack.tokens.cli("devices", "list", "--json").stdout)["devices"][0]

        with running(stack.daemon(config)) as daemon:
            deadline = time.monotonic() + 10
            while fleet()["last_seen"] is None:
                assert time.monotonic() < deadline, "no report at start"
                time.sleep(0.2)
            daemon.ctl("press")
            daemon.wait_for("ended", timeout_s=30)
            deadline = time.monotonic() + 10   # the report after the end waits out the backend's 1 s window
            while (row := fleet())["today"]["conversations"] < 1:
                assert time.monotonic() < deadline, row
                time.sleep(0.3)
            stderr = daemon.stderr_text()
    report = row["report"]
    assert row["health"] == "ok" and report["state"] == "idle" and report["token_state"] == "ok"
    assert report["last_end_code"] == row["report"]["last_conversation"]["end_code"]
    assert row["today"]["audio_sent_s"] > 0.5 and row["today"]["total_tokens"] > 0
    assert "heartbeat" not in stderr, stderr[-2000:]   # no failure was logged


def test_status_interval_config_default_off_and_range(tmp_path):
    from pivoice import config
    from pivoice.app import build_heartbeat
    from pivoice.settings import ConfigError

    base = {"backend_url": "http://127.0.0.1:9", "device_id": "kitchen", "secret_file": str(tmp_path / "s")}
    (tmp_path / "s").write_text(SECRET)
    assert config.parse({"tokens": base}, "c.yaml").tokens.status_interval_s == 300
    off = config.parse({"tokens": {**base, "status_interval_s": None}}, "c.yaml")
    assert off.tokens.status_interval_s is None and build_heartbeat(off, dict) is None
    with pytest.raises(ConfigError, match="tokens.status_interval_s"):
        config.parse({"tokens": {**base, "status_interval_s": 5}}, "c.yaml")
    on = config.parse({"tokens": {**base, "status_interval_s": 60}}, "c.yaml")
    assert isinstance(build_heartbeat(on, dict), Heartbeat)
