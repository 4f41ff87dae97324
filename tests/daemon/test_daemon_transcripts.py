"""TranscriptSink against a REAL local HTTP server (http.server on 127.0.0.1 in a thread), and its config."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pivoice.settings import ConfigError, Section
from pivoice.transcripts import TranscriptSink, read_transcripts
from pivoice.webhook import RETRY_DELAYS_S

TOKEN = "hook-TOKEN-must-never-be-logged-7731"
FAST = (0.01, 0.02, 0.04)
T0 = 1_790_000_000.25  # 2026-09-21T14:13:20.250Z


class Hook:
    """A webhook receiver: `statuses` answers requests in turn (the last one repeats);
    `gate`, when set, makes every request wait for it first."""

    def __init__(self, statuses=(200,)) -> None:
        self.statuses = list(statuses)
        self.requests: list[dict] = []
        self.arrived = threading.Event()
        self.gate: threading.Event | None = None
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.requests.append({"path": self.path, "auth": self.headers.get("Authorization"),
                                      "type": self.headers.get("Content-Type"), "body": json.loads(body),
                                      "t": time.monotonic()})
                hook.arrived.set()
                if hook.gate is not None:
                    hook.gate.wait(15)
                status = hook.statuses[min(len(hook.requests), len(hook.statuses)) - 1]
                with contextlib.suppress(OSError):  # the sink may have cut the connection (close())
                    self.send_response(status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/pivoice?src=test"
        self._thread = threading.Thread(target=self.server.serve_forever, name="test-hook", daemon=True)
        self._thread.start()

    def wait_requests(self, n: int, timeout_s: float = 10.0) -> list[dict]:
        deadline = time.monotonic() + timeout_s
        while len(self.requests) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(self.requests) >= n, f"got {len(self.requests)} requests, wanted {n}"
        return self.requests

    def close(self) -> None:
        if self.gate is not None:
            self.gate.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook():
    hooks = []

    def make(statuses=(200,)):
        hooks.append(Hook(statuses))
        return hooks[-1]

    yield make
    for h in hooks:
        h.close()


@pytest.fixture
def make_sink():
    """TranscriptSink(...) that is closed after the test even when an assertion fails."""
    sinks = []

    def make(*args, **kwargs):
        sinks.append(TranscriptSink(*args, **kwargs))
        return sinks[-1]

    yield make
    for sink in sinks:
        sink.close()


@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / "hook-token"
    path.write_text(TOKEN + "\n")
    return path


def thread_names() -> set[str]:
    names = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        with contextlib.suppress(OSError):
            names.add((task / "comm").read_text().strip())
    return names


def wait_stat(sink, key, value, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while sink.stats()[key] != value and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sink.stats()[key] == value, sink.stats()


def test_jsonl_lines_recent_and_log(tmp_path, caplog, make_sink):
    caplog.set_level(logging.INFO, logger="pivoice.transcripts")
    path = tmp_path / "transcripts.jsonl"
    path.write_text('{"kept": true}\n')  # append mode: what was there stays
    clock = iter(T0 + i for i in range(100))
    sink = make_sink(path, None, clock=lambda: next(clock))
    sink.record("dictation", "Buy milk.", conversation=3, item_id="item_1", seconds=1.5)
    sink.record("reply_text", "It is " + "very " * 60 + "late.", conversation=4)
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert lines[0] == {"kept": True}
    assert lines[1] == {"ts": "2026-09-21T14:13:20.250+00:00", "kind": "dictation", "text": "Buy milk.",
                        "conversation": 3, "item_id": "item_1", "seconds": 1.5}
    assert lines[2]["ts"] == "2026-09-21T14:13:21.250+00:00" and lines[2]["kind"] == "reply_text"
    messages = [r.getMessage() for r in caplog.records if r.name == "pivoice.transcripts"]
    assert messages[0] == "dictation (conversation 3): Buy milk."
    assert messages[1].startswith("reply_text (conversation 4): It is very") and messages[1].endswith("...")
    assert len(messages[1]) < 260
    for i in range(25):
        sink.record("user_transcript", f"turn {i}", conversation=5)
    recent = sink.recent()
    assert len(recent) == 20 and recent[0]["text"] == "turn 5" and recent[-1]["text"] == "turn 24"
    recent[0]["text"] = "changed"
    assert sink.recent()[0]["text"] == "turn 5"  # copies
    assert sink.stats()["recorded"] == 27 and sink.stats()["jsonl_written"] == 27
    assert not any(t.name == "pv-webhook" for t in threading.enumerate())  # no webhook, no thread
    sink.close()
    assert len(path.read_text().splitlines()) == 28


def test_jsonl_is_private_and_follows_a_rotation(tmp_path, make_sink):
    path = tmp_path / "t.jsonl"
    sink = make_sink(path, None)
    sink.record("dictation", "one")
    assert path.stat().st_mode & 0o777 == 0o640
    path.rename(tmp_path / "t.jsonl.1")  # what logrotate does
    sink.record("dictation", "two")
    assert [json.loads(line)["text"] for line in path.read_text().splitlines()] == ["two"]
    assert json.loads((tmp_path / "t.jsonl.1").read_text())["text"] == "one"


def test_unwritable_jsonl_is_one_warning_and_never_raises(tmp_path, caplog, make_sink):
    caplog.set_level(logging.INFO, logger="pivoice.transcripts")
    sink = make_sink(tmp_path / "missing-dir" / "t.jsonl", None)
    for i in range(3):
        sink.record("dictation", f"note {i}", conversation=i, odd=object())  # not JSON: stringified
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "missing-dir" in warnings[0].getMessage()
    assert "No such file or directory" in warnings[0].getMessage()
    assert sink.stats()["jsonl_errors"] == 3 and sink.stats()["recorded"] == 3
    assert sink.recent()[-1]["odd"].startswith("<object object")
    (tmp_path / "missing-dir").mkdir()
    sink.record("dictation", "back")
    assert json.loads((tmp_path / "missing-dir" / "t.jsonl").read_text())["text"] == "back"
    sink.close()


def test_webhook_gets_json_with_the_token_read_at_send_time(hook, token_file, caplog, make_sink):
    caplog.set_level(logging.DEBUG)
    h = hook()
    sink = make_sink(None, h.url, webhook_bearer_token_file=token_file, clock=lambda: T0)
    deadline = time.monotonic() + 5
    while "pv-webhook" not in thread_names() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "pv-webhook" in thread_names()  # the kernel-visible name, for top -H
    sink.record("dictation", "first", conversation=1)
    h.wait_requests(1)
    token_file.write_text("rotated-token\n")
    sink.record("reply_text", "second", conversation=2)
    first, second = h.wait_requests(2)
    assert first["path"] == "/hooks/pivoice?src=test" and first["type"] == "application/json"
    assert first["auth"] == f"Bearer {TOKEN}" and second["auth"] == "Bearer rotated-token"
    assert first["body"] == {"ts": "2026-09-21T14:13:20.250+00:00", "kind": "dictation", "text": "first",
                             "conversation": 1}
    wait_stat(sink, "webhook_sent", 2)
    sink.close()
    assert TOKEN not in caplog.text and "rotated-token" not in caplog.text


def test_500_is_retried_with_backoff_then_dropped_naming_the_status(hook, token_file, caplog, make_sink):
    caplog.set_level(logging.DEBUG)
    h = hook(statuses=(500,))
    sink = make_sink(None, h.url, webhook_bearer_token_file=token_file)  # the real 0.5/1/2 s backoff
    sink.record("dictation", "lost", conversation=1)
    wait_stat(sink, "webhook_failed", 1)
    times = [r["t"] for r in h.requests]
    assert len(times) == 1 + len(RETRY_DELAYS_S) == 4
    gaps = [b - a for a, b in zip(times, times[1:])]
    for gap, want in zip(gaps, RETRY_DELAYS_S):
        assert want - 0.05 <= gap <= want + 0.5, gaps
    warning = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING][-1]
    assert "HTTP status 500" in warning and "after 4 attempts" in warning and "dictation" in warning
    assert "src=test" not in warning  # the query is not shown
    assert sink.stats()["webhook_retries"] == 3
    sink.close()
    assert TOKEN not in caplog.text


def test_a_5xx_that_recovers_is_sent_and_a_4xx_is_not_retried(hook, caplog, make_sink):
    h = hook(statuses=(503, 502, 200))
    sink = make_sink(None, h.url, retry_delays_s=FAST)
    sink.record("dictation", "eventually")
    wait_stat(sink, "webhook_sent", 1)
    assert len(h.requests) == 3 and sink.stats()["webhook_failed"] == 0
    sink.close()
    h401 = hook(statuses=(401,))
    sink = make_sink(None, h401.url, retry_delays_s=FAST)
    sink.record("dictation", "refused")
    wait_stat(sink, "webhook_failed", 1)
    time.sleep(0.2)
    assert len(h401.requests) == 1
    assert any("HTTP status 401" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    sink.close()


def test_a_dead_port_is_retried_then_dropped(caplog, make_sink):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    sink = make_sink(None, f"http://127.0.0.1:{port}/hook", retry_delays_s=FAST)
    sink.record("dictation", "nobody home")
    wait_stat(sink, "webhook_failed", 1)
    assert sink.stats()["webhook_retries"] == 3
    warning = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING][-1]
    assert "connection failed (Connection refused)" in warning and f"127.0.0.1:{port}/hook" in warning
    sink.close()


def test_a_full_queue_drops_the_oldest_and_record_never_blocks(hook, make_sink, caplog):
    h = hook()
    h.gate = threading.Event()
    sink = make_sink(None, h.url, max_queue=3, retry_delays_s=FAST)
    sink.record("dictation", "r0")
    assert h.arrived.wait(5)  # r0 is in flight, held by the server
    start = time.monotonic()
    for i in range(1, 6):
        sink.record("dictation", f"r{i}")
    assert time.monotonic() - start < 0.2
    assert sink.stats()["webhook_dropped_queue_full"] == 2 and sink.stats()["webhook_queued"] == 3
    assert caplog.text.count("queue full (3): dropping the oldest") == 1
    h.gate.set()
    wait_stat(sink, "webhook_sent", 4)
    assert [r["body"]["text"] for r in h.requests] == ["r0", "r3", "r4", "r5"]
    sink.close()


def test_close_is_bounded_while_a_post_hangs(hook, caplog, make_sink):
    h = hook()
    h.gate = threading.Event()
    sink = make_sink(None, h.url, webhook_timeout_s=30)
    sink.record("dictation", "stuck")
    sink.record("dictation", "queued behind it")
    assert h.arrived.wait(5)
    start = time.monotonic()
    sink.close()
    elapsed_s = time.monotonic() - start
    assert elapsed_s < 1.0, elapsed_s
    assert not any(t.name == "pv-webhook" for t in threading.enumerate())
    assert sink.stats()["webhook_dropped_on_close"] == 1
    assert "1 queued record(s) not sent at shutdown" in caplog.text
    sink.record("dictation", "after close")  # still never raises
    assert sink.recent()[-1]["text"] == "after close"


def test_unreadable_token_file_drops_with_a_warning(hook, tmp_path, caplog, make_sink):
    h = hook()
    sink = make_sink(None, h.url, webhook_bearer_token_file=tmp_path / "no-token")
    sink.record("dictation", "x")
    wait_stat(sink, "webhook_failed", 1)
    assert h.requests == []
    assert "bearer_token_file" in caplog.text and "no-token: cannot read" in caplog.text
    sink.close()


def test_https_is_required_off_loopback():
    with pytest.raises(ValueError, match="https:// for a non-loopback host"):
        TranscriptSink(None, "http://hooks.example.com/x")
    with pytest.raises(ValueError, match="credentials"):
        TranscriptSink(None, "https://user:pw@hooks.example.com/x")


def test_read_transcripts_defaults_values_and_errors():
    cfg = read_transcripts(Section(None, "p.yaml", "transcripts"))
    assert (cfg.jsonl_path, cfg.webhook_url, cfg.webhook_bearer_token_file, cfg.webhook_timeout_s) == (
        None, None, None, 5.0)
    cfg = read_transcripts(Section({"jsonl_path": "/var/lib/pivoice/transcripts.jsonl",
                                    "webhook": {"url": "https://hooks.example.com/pivoice",
                                                "bearer_token_file": "/etc/pivoice/hook-token", "timeout_s": 2}},
                                   "p.yaml", "transcripts"))
    assert cfg.jsonl_path == Path("/var/lib/pivoice/transcripts.jsonl") and cfg.webhook_timeout_s == 2.0
    assert cfg.webhook_bearer_token_file == Path("/etc/pivoice/hook-token")
    with pytest.raises(AttributeError):
        cfg.webhook_url = "x"  # frozen
    for data, where in [({"webhook": {"url": "http://hooks.example.com/x"}}, "transcripts.webhook.url"),
                        ({"webhook": {"url": "ftp://h/x"}}, "transcripts.webhook.url"),
                        ({"jsonl_path": "transcripts.jsonl"}, "transcripts.jsonl_path"),
                        ({"webhook": {"timeout_s": 0}}, "transcripts.webhook.timeout_s"),
                        ({"webhook": {"bearer_token": "x"}}, "transcripts.webhook.bearer_token"),
                        ({"jsonl": "/x"}, "transcripts.jsonl")]:
        with pytest.raises(ConfigError) as err:
            read_transcripts(Section(data, "p.yaml", "transcripts"))
        assert where in str(err.value) and "p.yaml" in str(err.value)
    assert read_transcripts(Section({"webhook": {"url": "http://127.0.0.1:8123/x"}}, "p.yaml",
                                    "transcripts")).webhook_url == "http://127.0.0.1:8123/x"


def test_the_example_config_section_reads():
    import yaml

    example = Path(__file__).resolve().parents[2] / "config" / "pivoice.example.yaml"
    data = yaml.safe_load(example.read_text())
    cfg = read_transcripts(Section(data["transcripts"], str(example), "transcripts"))
    assert cfg == read_transcripts(Section(None, str(example), "transcripts"))  # the example shows the defaults
