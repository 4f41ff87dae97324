"""Session rollover and the per-conversation figures, end to end: the real daemon process against the
dev server and the token backend on loopback. A conversation that outlives `max_duration_s` opens a new
session that gets the earlier turns as items (the dev server's event log shows them, valid, in the
second session) and answers the question asked after it; `ctl status` shows the usage, the audio
seconds, the latencies, the rollover and the end."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from support.fixtures_audio import make_speech_wav, read_wav, write_wav
from support.stack import offline_stack, running

pytestmark = pytest.mark.integration

MAX_DURATION_S = 10.0    # the config's minimum: the first session rolls over at its first quiet moment after
SECOND_QUESTION_AT_S = 11.5


@pytest.fixture(scope="module")
def two_questions_wav(tmp_path_factory):
    """A question at once, and another one after the session's maximum length has passed."""
    work = tmp_path_factory.mktemp("speech")
    first, rate_hz, _ = read_wav(make_speech_wav(work / "q1.wav", "Is the swimming pool open today?",
                                                 lead_silence_s=0.1, tail_silence_s=0.0))
    second, _, _ = read_wav(make_speech_wav(work / "q2.wav", "And how late is it open?",
                                            lead_silence_s=0.0, tail_silence_s=1.5))
    gap = np.zeros(int(SECOND_QUESTION_AT_S * rate_hz) - len(first), dtype=np.int16)
    return write_wav(work / "two.wav", np.concatenate([first, gap, second]), rate_hz)


@pytest.mark.parametrize("cap", ["ours", "server"])
def test_a_conversation_past_max_duration_rolls_over_carrying_the_turns_and_shows_its_figures(
        tmp_path, two_questions_wav, cap):
    # ours: max_duration_s passes at a quiet moment; server: the dev server closes the socket at its cap
    # (1001 "... maximum duration ...") first, our max_duration_s being far off
    server_cap_s, max_duration_s = ("30", MAX_DURATION_S) if cap == "ours" else ("9", 3300)
    with offline_stack(tmp_path, "--max-session-s", server_cap_s) as stack:
        config = stack.config(mic=f"wav:{two_questions_wav}", speaker=f"wav:{tmp_path / 'reply.wav'}",
                              conversation={"idle_timeout_s": 9, "max_duration_s": max_duration_s})
        with running(stack.daemon(config)) as daemon:
            daemon.ctl("press")
            first_reply = daemon.wait_for("assistant", timeout_s=20)
            rolling = daemon.wait_for("rolling_over", timeout_s=20)
            at = daemon.timeline().index(rolling)
            rolled = daemon.wait_for("rollover", timeout_s=10, after=at)
            ready = daemon.wait_for("session", timeout_s=10, after=at)   # session.created of the new one
            second_reply = daemon.wait_for("reply_played", timeout_s=20, after=at)
            live = daemon.status()
            daemon.ctl("press")   # listening: the press ends the conversation
            daemon.wait_for("ended", timeout_s=10, after=at)
            status = daemon.status()
            printed = subprocess.run([sys.executable, "-m", "pivoice", "ctl", "--socket", str(daemon.socket_path),
                                      "status"], capture_output=True, text=True, timeout=20)
            stderr = daemon.stderr_text()
        records = stack.client_events()

    assert ("server closed the session at its cap" in rolling["text"]) == (cap == "server"), rolling
    kinds_after = [e["kind"] for e in daemon.timeline()[at:]]
    assert "ended" not in kinds_after[:kinds_after.index("reply_played")], kinds_after   # one conversation
    assert "1 turn(s) carried" in rolled["text"], rolled
    # the dev server saw two sessions: the second got the first answer as an assistant item, valid,
    # after its session.update and before any audio
    sessions = list(dict.fromkeys(r["session_id"] for r in records))
    # (at the server's 9 s cap the second session may reach its own cap, too, before the press ends it)
    assert len(sessions) == 2 or (cap == "server" and len(sessions) == 3), sessions
    second = [r for r in records if r["session_id"] == sessions[1]]
    assert all(r["valid"] and not r["unknown_fields"] for r in records), [r for r in records if not r["valid"]][:2]
    types = [r["event"]["type"] for r in second]
    assert types[:2] == ["session.update", "conversation.item.create"] and "input_audio_buffer.append" in types
    item = second[1]["event"]["item"]
    answer = first_reply["text"].split(": ", 1)[1]
    assert (item["role"], item["content"][0]["type"]) == ("assistant", "output_text")
    assert item["content"][0]["text"] == answer
    assert "input_audio_buffer.append" in [r["event"]["type"] for r in records if r["session_id"] == sessions[0]]
    assert second_reply["t"] > ready["t"]
    assert "Traceback" not in stderr, stderr[stderr.index("Traceback") - 300:][:3000]

    pause_s = ready["t"] - rolling["t"]
    print(f"rollover pause ({cap} cap): {(rolled['t'] - rolling['t']) * 1000:.0f} ms to the new socket, "
          f"{pause_s * 1000:.0f} ms to session.created")
    assert pause_s < 3.0

    # the figures: while it ran, and once it ended
    assert live["last_conversation"]["rollovers"] >= 1 and live["last_conversation"]["end_code"] is None
    last, usage = status["last_conversation"], status["usage"]
    print("last_conversation:", json.dumps(last, sort_keys=True))
    assert last["rollovers"] == len(sessions) - 1 and last["end_code"] == "user" and last["responses"] == 2
    assert last["duration_s"] > 9 and last["started_at"] > 1.7e9
    assert last["output_audio_tokens"] > 0 and last["input_audio_tokens"] > 0 and last["total_tokens"] > 0
    assert last["audio_sent_s"] > 3.0 and last["audio_received_s"] > 1.0
    assert last["press_to_first_append_ms"] is not None and last["delta_to_speaker_ms"] is not None
    assert usage["responses"] == 2 and usage["total_tokens"] == last["total_tokens"]
    assert status["ends"] == {"user": 1}
    shown = json.loads(printed.stdout)   # what `pivoice ctl status` prints
    assert shown["last_conversation"] == last and shown["usage"]["responses"] == 2, printed.stderr
