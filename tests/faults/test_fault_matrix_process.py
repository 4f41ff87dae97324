"""The fault matrix, process rows: the real daemon process (`pivoice run`) with WAV devices against
the dev server and token backend on loopback, signalled and pressed from outside as systemd and a
kiosk would. The end is read from the daemon's stderr (level) and its timeline, the code from
`ctl status` while the daemon runs."""

from __future__ import annotations

import re
import signal
import time

import pytest

from support.fixtures_audio import make_speech_wav, read_wav
from support.stack import offline_stack, running, start_daemon

pytestmark = [pytest.mark.integration, pytest.mark.postgres]
EXIT_TIMEOUT_S = 5.0


@pytest.fixture(scope="module")
def question_wav(tmp_path_factory):
    return make_speech_wav(tmp_path_factory.mktemp("speech") / "question.wav", "What time is it?",
                           rate_hz=16000, lead_silence_s=0.05, tail_silence_s=1.0)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with offline_stack(tmp_path_factory.mktemp("stack")) as stack:
        yield stack


def start(stack, tmp_path, question_wav):
    config = stack.config(mic=f"wav:{question_wav}", speaker=f"wav:{tmp_path / 'reply.wav'}",
                          conversation={"idle_timeout_s": 2})
    config["control"]["socket_path"] = str(tmp_path / "control.sock")
    return start_daemon(tmp_path, config)   # its config, timeline and stderr in this row's directory


def logged_end(daemon, text: str, level: str) -> None:
    line = f"{level.upper()} pivoice.runtime: conversation ended: {text}"
    assert line in daemon.stderr_text(), f"no {line!r} in:\n{daemon.stderr_text()[-3000:]}"


def clean_log(daemon) -> None:
    text = daemon.stderr_text()
    assert "Traceback" not in text, text[-3000:]
    bad = [line for line in text.splitlines() if line.startswith(("WARNING", "ERROR"))
           and "PIVOICE_TEST_HOOKS" not in line]
    assert not bad, bad


def next_press_works(daemon) -> None:
    after = len(daemon.timeline())
    assert daemon.ctl("press") == {"ok": True}
    daemon.wait_for("reply_played", timeout_s=40, after=after)
    end_after = len(daemon.timeline())
    daemon.ctl("press")
    end = daemon.wait_for("ended", timeout_s=20, after=end_after)
    assert end["text"] == "conversation ended: ended by a press"
    assert daemon.status()["last_end_code"] == "user"
    logged_end(daemon, "ended by a press", "info")


def test_process_sigterm_mid_reply(stack, tmp_path, question_wav):
    with running(start(stack, tmp_path, question_wav)) as daemon:
        daemon.ctl("press")
        daemon.wait_for("reply_audio", timeout_s=40)
        time.sleep(0.3)
        sent_at = time.monotonic()
        daemon.process.send_signal(signal.SIGTERM)
        rc = daemon.process.wait(EXIT_TIMEOUT_S)
        took_s = time.monotonic() - sent_at
    assert rc == 0, daemon.stderr_text()[-3000:]
    assert daemon.timeline()[-1]["text"] == "conversation ended: daemon stopping"   # code "shutdown"
    logged_end(daemon, "daemon stopping", "info")
    clean_log(daemon)
    samples, rate_hz, _ = read_wav(tmp_path / "reply.wav")   # what was played is a valid recording
    assert len(samples) / rate_hz >= 0.25 and abs(samples.astype(int)).max() > 1000
    print(f"SIGTERM mid-reply: exit 0 after {took_s:.2f} s")
    with running(start(stack, tmp_path, question_wav)) as daemon:
        next_press_works(daemon)


def test_process_sighup_mid_conversation(stack, tmp_path, question_wav):
    """The reload waits for the conversation; its reply plays out on the old daemon, then the new
    one answers the next press."""
    with running(start(stack, tmp_path, question_wav)) as daemon:
        daemon.ctl("press")
        daemon.wait_for("reply_audio", timeout_s=40)
        daemon.process.send_signal(signal.SIGHUP)
        daemon.wait_for("reply_played", timeout_s=40)
        after = len(daemon.timeline())
        daemon.ctl("press")
        daemon.wait_for("ended", timeout_s=20, after=after)
        logged_end(daemon, "ended by a press", "info")
        deadline = time.monotonic() + 10
        while "reload: applied" not in daemon.stderr_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert re.search(r"reload: waiting for the conversation to end.*\n(.*\n)*.*reload: applied",
                         daemon.stderr_text()), daemon.stderr_text()[-3000:]
        assert daemon.status()["config"]["reloads"] == 1
        next_press_works(daemon)
        clean_log(daemon)


def test_process_30_presses_in_3_s(stack, tmp_path, question_wav):
    with running(start(stack, tmp_path, question_wav)) as daemon:
        for _ in range(30):
            assert daemon.ctl("press") == {"ok": True}
            time.sleep(0.1)
        deadline = time.monotonic() + 30
        while daemon.status()["state"] != "idle" and time.monotonic() < deadline:
            time.sleep(0.1)   # the last press's conversation ends by itself (idle timeout)
        assert daemon.status()["state"] == "idle"
        timeline = daemon.timeline()
        starts = [e for e in timeline if e["kind"] == "pressed"]
        ends = [e for e in timeline if e["kind"] == "ended"]
        assert len(starts) == len(ends) >= 10, (len(starts), len(ends))
        user_ends = [e for e in ends if e["text"] in ("conversation ended: cancelled by a press while connecting",
                                                      "conversation ended: ended by a press")]
        assert len(user_ends) >= len(ends) - 1, [e["text"] for e in ends]
        assert daemon.process.poll() is None
        next_press_works(daemon)
        clean_log(daemon)
        print(f"30 presses: {len(starts)} conversations started, {len(ends)} ended")
