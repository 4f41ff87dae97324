"""An idle daemon does not wake: per-thread context switches of the real `pivoice run` process.

The daemon runs as the end-to-end tests run it (WAV devices, gpiozero's MockFactory, the dev server
and token backend on loopback). Once it has settled, every thread's voluntary + involuntary context
switches (/proc/PID/task/TID/status) are read twice, WINDOW_S apart: a thread that slept through the
window has the same count both times. The token backend hands out keys for KEY_LIFETIME_S, so no
refresh falls due during the test (the refresh thread sleeps until one does); under systemd's
watchdog the controller thread, and only it, wakes once per ping (WATCHDOG_USEC / 3).
"""

from __future__ import annotations

import os
import socket
import time
import wave
from pathlib import Path

import pytest

from support.fixtures_audio import make_speech_wav
from support.stack import offline_stack, running

pytestmark = pytest.mark.integration

KEY_LIFETIME_S = 300        # the backend's default_expires_after_s: the first refresh is ~280 s away
SETTLE_S = 2.0              # after the ready status call: its control-client thread has ended
WINDOW_S = 3.0
WATCHDOG_USEC = 3_000_000   # a ping every 1.0 s


def task_switches(pid: int) -> dict[int, int]:
    """Context switches so far, per thread of `pid`."""
    counts = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
        except FileNotFoundError:   # a thread that ended between listdir and read
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if "ctxt_switches" in line)
        counts[int(tid)] = int(fields["voluntary_ctxt_switches"]) + int(fields["nonvoluntary_ctxt_switches"])
    return counts


def where_blocked(pid: int, tid: int) -> str:
    """The syscall number and kernel wait channel a thread sleeps in, to tell threads apart in a failure
    (Python 3.11 names no native thread: every one is "python"). x86_64: 202 futex, 288 accept4,
    128 rt_sigtimedwait."""
    try:
        syscall = Path(f"/proc/{pid}/task/{tid}/syscall").read_text().split()[0]
        wchan = Path(f"/proc/{pid}/task/{tid}/wchan").read_text()
    except (FileNotFoundError, IndexError):
        return "ended"
    return f"syscall {syscall} in {wchan}"


def wakeups_over(pid: int, window_s: float) -> tuple[dict[int, int], dict[int, str]]:
    """Threads that switched during the window (new threads count from 0), and where each thread sleeps."""
    before = task_switches(pid)
    time.sleep(window_s)
    after = task_switches(pid)
    woke = {tid: n - before.get(tid, 0) for tid, n in after.items() if n != before.get(tid)}
    return woke, {tid: where_blocked(pid, tid) for tid in after}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    # The backend's heartbeat window is short, so the fleet report after a conversation goes out as it
    # ends (not up to 10 s later, inside a window); the next one is an interval (300 s) away.
    with offline_stack(tmp_path_factory.mktemp("idle"), default_expires_after_s=KEY_LIFETIME_S,
                       fleet={"status_min_interval_s": 0.5}) as stack:
        yield stack


def idle_config(stack, work: Path, mic_wav: Path | None = None) -> dict:
    if mic_wav is None:
        mic_wav = work / "silence.wav"
        with wave.open(str(mic_wav), "wb") as w:   # never read: nobody presses the button
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(16000)
            w.writeframes(b"\0\0" * 1600)
    config = stack.config(mic=f"wav:{mic_wav}", speaker=f"wav:{work / 'reply.wav'}")
    config["control"]["socket_path"] = str(work / "control.sock")
    assert config["button"]["pin_factory"] == "mock"
    return config


def assert_no_refresh_due(daemon) -> None:
    token = daemon.status()["token"]
    assert token["state"] == "ok", token
    assert token["next_refresh_in_s"] > SETTLE_S + WINDOW_S + 30, token


def test_an_idle_daemon_has_no_thread_that_wakes(stack, tmp_path):
    with running(stack.daemon(idle_config(stack, tmp_path))) as daemon:
        pid = daemon.process.pid
        assert_no_refresh_due(daemon)
        time.sleep(SETTLE_S)
        woke, blocked = wakeups_over(pid, WINDOW_S)
        assert woke == {}, f"threads that woke in {WINDOW_S} s idle: {woke}; all threads: {blocked}"
        # main (signals), token refresh, controller, control socket; numpy's OpenBLAS adds nproc-1 workers
        assert len(blocked) >= 4 and blocked[pid].startswith("syscall 128 "), blocked
        assert daemon.status()["state"] == "idle"


def test_after_a_conversation_the_daemon_is_back_to_no_wakeups(stack, tmp_path):
    # The conversation's threads (mic, speaker, WebSocket reader) must end with it, not idle on.
    question = make_speech_wav(tmp_path / "question.wav", "When does the library open?", rate_hz=16000,
                               lead_silence_s=0.1, tail_silence_s=2.0)
    with running(stack.daemon(idle_config(stack, tmp_path, question))) as daemon:
        pid = daemon.process.pid
        time.sleep(SETTLE_S)   # start-up's own short-lived threads (the first key fetch) are gone by now
        threads_at_start = set(task_switches(pid))
        assert daemon.ctl("press") == {"ok": True}
        daemon.wait_for("reply_played", timeout_s=40)
        daemon.wait_for("ended", timeout_s=20)
        assert_no_refresh_due(daemon)
        time.sleep(SETTLE_S)
        woke, blocked = wakeups_over(pid, WINDOW_S)
        assert woke == {}, f"threads that woke in {WINDOW_S} s after the conversation: {woke}; all: {blocked}"
        assert set(blocked) == threads_at_start, blocked   # only the long-lived threads are left


class NotifySocket:
    """systemd's end of $NOTIFY_SOCKET: the test reads what the daemon sends."""

    def __init__(self, path: Path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)

    def drain(self) -> list[str]:
        lines = []
        while True:
            try:
                lines += self.sock.recv(4096).decode().split("\n")
            except BlockingIOError:
                return lines

    def close(self) -> None:
        self.sock.close()


def test_under_the_watchdog_only_the_controller_wakes_once_per_ping(stack, tmp_path):
    notify = NotifySocket(tmp_path / "notify.sock")
    env = {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": str(WATCHDOG_USEC)}
    try:
        with running(stack.daemon(idle_config(stack, tmp_path), env)) as daemon:
            pid = daemon.process.pid
            assert_no_refresh_due(daemon)
            time.sleep(SETTLE_S)
            assert "WATCHDOG=1" in notify.drain()
            woke, blocked = wakeups_over(pid, WINDOW_S)
            pings = notify.drain().count("WATCHDOG=1")
            interval_s = WATCHDOG_USEC / 1e6 / 3
            assert round(WINDOW_S / interval_s) - 1 <= pings <= round(WINDOW_S / interval_s) + 1, pings
            assert len(woke) == 1, f"only the controller thread may wake: {woke}; all threads: {blocked}"
            (tid, switches), = woke.items()
            assert tid != pid and blocked[tid].startswith("syscall 202 ")   # back asleep on its queue
            assert pings <= switches <= 2 * pings + 1, (switches, pings)
    finally:
        notify.close()
