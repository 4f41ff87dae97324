"""The real daemon process as systemd runs it: READY/WATCHDOG/STOPPING on a notify socket the test
binds, the debug-freeze hook, and SIGHUP reloads (good, bad, during a conversation), against the real
dev server and token backend on loopback, with WAV devices."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from support.fixtures_audio import make_speech_wav, read_wav
from support.stack import daemon_config, offline_stack, running, start_daemon

pytestmark = pytest.mark.integration

QUESTION = "Which bus goes to the station?"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with offline_stack(tmp_path_factory.mktemp("sysd")) as stack:
        yield stack


@pytest.fixture(scope="module")
def question_wav(tmp_path_factory):
    return make_speech_wav(tmp_path_factory.mktemp("speech") / "q.wav", QUESTION, rate_hz=16000,
                           lead_silence_s=0.1, tail_silence_s=2.0)


class NotifySocket:
    """What systemd's side of $NOTIFY_SOCKET would receive: one datagram per notify() call."""

    def __init__(self, path: Path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))

    def collect(self, duration_s: float) -> list[tuple[float, str]]:
        """Every line received in the next duration_s, with its arrival time."""
        out = []
        deadline = time.monotonic() + duration_s
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                break
            out += [(time.monotonic(), line) for line in data.decode().split("\n")]
        return out

    def close(self):
        self.sock.close()


@pytest.fixture
def notify(tmp_path):
    sock = NotifySocket(tmp_path / "notify")
    yield sock
    sock.close()


def daemon_dir(stack, tmp_path: Path, name: str) -> Path:
    work = tmp_path / name
    work.mkdir()
    shutil.copy(stack.work / "device-secret", work / "device-secret")
    os.chmod(work / "device-secret", 0o600)
    return work


def config_for(stack, work: Path, question_wav: Path, speaker: Path, **kwargs) -> dict:
    return daemon_config(work, backend_url=stack.tokens.url, realtime_url=stack.dev.ws_url,
                         mic=f"wav:{question_wav}", speaker=f"wav:{speaker}", **kwargs)


def rewrite(daemon, config: dict) -> None:
    daemon.config_path.write_text(yaml.safe_dump(config, sort_keys=False))


def wait_log(daemon, pattern: str, timeout_s: float = 10.0) -> re.Match:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        match = re.search(pattern, daemon.stderr_text())
        if match:
            return match
        assert daemon.process.poll() is None, f"daemon exited with {daemon.process.returncode}:\n" \
                                              + daemon.stderr_text()[-3000:]
        time.sleep(0.02)
    raise AssertionError(f"no /{pattern}/ in the daemon's log after {timeout_s} s:\n{daemon.stderr_text()[-3000:]}")


def assert_audible(path: Path) -> None:
    samples, rate_hz, _ = read_wav(path)
    assert rate_hz == 24000 and len(samples) / rate_hz > 1.0
    assert np.abs(samples.astype(np.int32)).max() > 1000, f"{path} is silent"


def converse(daemon) -> None:
    """One press and the whole exchange, up to the end of the conversation."""
    after = len(daemon.timeline())
    assert daemon.ctl("press") == {"ok": True}
    daemon.wait_for("reply_played", timeout_s=40, after=after)
    daemon.wait_for("ended", timeout_s=20, after=after)


def test_ready_then_watchdog_pings_that_stop_when_the_controller_freezes(stack, tmp_path, question_wav, notify):
    work = daemon_dir(stack, tmp_path, "wd")
    config = config_for(stack, work, question_wav, work / "reply.wav")
    env = {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "300000", "PIVOICE_TEST_HOOKS": "1"}
    with running(start_daemon(work, config, env)) as daemon:
        received = notify.collect(1.2)
        lines = [line for _, line in received]
        assert "READY=1" in lines, lines
        pings = [t for t, line in received[lines.index("READY=1"):] if line == "WATCHDOG=1"]
        assert len(pings) >= 5, lines   # 100 ms apart (WATCHDOG_USEC / 3)
        assert max(b - a for a, b in zip(pings, pings[1:])) < 0.35
        assert "PIVOICE_TEST_HOOKS=1: test hooks are on" in daemon.stderr_text()

        assert daemon.ctl("debug-freeze") == {"ok": True}
        notify.collect(0.3)   # a ping may already be on its way
        frozen = [line for _, line in notify.collect(1.5)]
        assert "WATCHDOG=1" not in frozen, frozen
        assert daemon.ctl("status")["ok"]   # other threads still answer: only systemd can tell

        stop_at = time.monotonic()
        daemon.process.send_signal(signal.SIGTERM)
        assert daemon.process.wait(5) == 0
        stop_s = time.monotonic() - stop_at
    assert "STOPPING=1" in [line for _, line in notify.collect(0.2)]
    assert not daemon.socket_path.exists()
    print(f"frozen daemon stopped by SIGTERM in {stop_s * 1000:.0f} ms")


def test_sighup_while_idle_applies_the_new_config(stack, tmp_path, question_wav, notify):
    work = daemon_dir(stack, tmp_path, "idle")
    first, second = work / "first.wav", work / "second.wav"
    env = {"NOTIFY_SOCKET": str(notify.path)}
    with running(start_daemon(work, config_for(stack, work, question_wav, first), env)) as daemon:
        assert daemon.status()["config"]["reloads"] == 0
        notify.collect(0.2)
        rewrite(daemon, config_for(stack, work, question_wav, second, conversation={"idle_timeout_s": 3}))
        sent_at = time.monotonic()
        daemon.process.send_signal(signal.SIGHUP)
        applied = wait_log(daemon, r"reload: applied \S+ \((\d+) ms\)")
        seen_s = time.monotonic() - sent_at
        assert [line for _, line in notify.collect(0.5) if not line.startswith(("MONOTONIC", "STATUS"))][:2] \
            == ["RELOADING=1", "READY=1"]
        status = daemon.status()   # the control socket was re-created
        assert status["config"] == {"file": str(daemon.config_path), "reloads": 1, "reload_pending": False}
        assert status["token"]["state"] in ("ok", "fetching")
        converse(daemon)
        assert daemon.process.poll() is None
    assert_audible(second)
    assert not first.exists(), "the reply went to the speaker of the old config"
    print(f"idle reload: {applied.group(1)} ms inside the daemon, {seen_s * 1000:.0f} ms from SIGHUP to the log line")


@pytest.mark.parametrize("breakage,expected", [
    (lambda c: c["conversation"].update(idle_timeout_s=-1), r"conversation\.idle_timeout_s: must be >= "),
    (lambda c: c["tokens"].update(secret_file="/nonexistent/device-secret"),
     r"tokens\.secret_file: secret file /nonexistent/device-secret: does not exist"),
    (lambda c: c["tokens"].update(backend_url="http://192.0.2.1:8443"),   # refused before any connection
     r"tokens: token backend URL 'http://192\.0\.2\.1:8443': https is required"),
], ids=["bad-value", "missing-secret", "plain-http-off-loopback"])
def test_sighup_with_a_bad_config_is_refused_and_the_old_one_keeps_working(stack, tmp_path, question_wav,
                                                                           breakage, expected):
    work = daemon_dir(stack, tmp_path, "bad")
    reply = work / "reply.wav"
    config = config_for(stack, work, question_wav, reply)
    with running(start_daemon(work, config)) as daemon:
        broken = yaml.safe_load(yaml.safe_dump(config))
        breakage(broken)
        rewrite(daemon, broken)
        daemon.process.send_signal(signal.SIGHUP)
        wait_log(daemon, rf"ERROR pivoice\.reload: reload refused: {re.escape(str(daemon.config_path))}: {expected}")
        assert daemon.status()["config"]["reloads"] == 0
        refused = daemon.ctl("debug-freeze")   # no test hooks in this daemon
        assert refused["ok"] is False and "unknown cmd 'debug-freeze'" in refused["error"]
        converse(daemon)   # still running on the old config
        assert daemon.process.poll() is None
    assert_audible(reply)


def test_sighup_during_a_conversation_applies_when_it_ends(stack, tmp_path, question_wav):
    work = daemon_dir(stack, tmp_path, "busy")
    first, second = work / "first.wav", work / "second.wav"
    with running(start_daemon(work, config_for(stack, work, question_wav, first))) as daemon:
        assert daemon.ctl("press") == {"ok": True}
        daemon.wait_for("reply_audio", timeout_s=40)
        rewrite(daemon, config_for(stack, work, question_wav, second))
        daemon.process.send_signal(signal.SIGHUP)
        wait_log(daemon, r"reload: waiting for the conversation to end")
        status = daemon.status()
        assert status["state"] != "idle" and status["config"]["reload_pending"] is True
        assert status["config"]["reloads"] == 0
        daemon.wait_for("reply_played", timeout_s=40)   # the reply in progress plays out, on the old speaker
        daemon.wait_for("ended", timeout_s=20)
        wait_log(daemon, r"reload: applied")
        assert daemon.status()["config"] == {"file": str(daemon.config_path), "reloads": 1, "reload_pending": False}
        assert_audible(first)
        assert not second.exists()
        converse(daemon)
    assert_audible(second)
