"""Text output end to end (`session.output_modalities: [text]`): the real daemon, the dev server and
the token backend on loopback. The reply is written, not spoken: it goes to the daemon's log, the
transcripts JSONL file and `ctl status` (`recent_texts`), and the speaker stays silent.
"""

from __future__ import annotations

import json

import pytest

from support.fixtures_audio import make_speech_wav
from support.stack import offline_stack, running
from test_daemon_e2e import assert_clean_client_events, assert_in_order, kinds
from test_daemon_e2e_tools import write_script

pytestmark = pytest.mark.integration
REPLY = "The kitchen is twenty one degrees and the window is closed."


def test_a_text_reply_is_logged_written_to_jsonl_and_shown_in_status_and_nothing_is_played(tmp_path):
    script = write_script(tmp_path, [{"say": REPLY}])
    question = make_speech_wav(tmp_path / "question.wav", "How warm is the kitchen?", rate_hz=16000,
                               lead_silence_s=0.1, tail_silence_s=3.0)
    speaker = tmp_path / "reply.wav"
    jsonl = tmp_path / "texts.jsonl"
    with offline_stack(tmp_path, "--script", script, "--audio-pace", "0") as stack:
        config = stack.config(mic=f"wav:{question}", speaker=f"wav:{speaker}", transcripts={"jsonl_path": str(jsonl)},
                              conversation={"idle_timeout_s": 2})
        config["session"]["output_modalities"] = ["text"]
        with running(stack.daemon(config)) as daemon:
            daemon.ctl("press")
            daemon.wait_for("ended", timeout_s=40)
            status = daemon.status()
            stderr = daemon.stderr_text()
        records = assert_clean_client_events(stack, {"session.update", "input_audio_buffer.append"})

    update = next(r["event"] for r in records if r["event"]["type"] == "session.update")
    assert update["session"]["output_modalities"] == ["text"]
    # the log: one INFO line with the whole reply
    assert any(line.startswith("INFO") and "reply_text" in line and REPLY in line for line in stderr.splitlines()), \
        stderr[-3000:]
    # the JSONL file: the reply as kind reply_text, with a timestamp
    entries = [json.loads(line) for line in jsonl.read_text().splitlines()]
    replies = [e for e in entries if e["kind"] == "reply_text"]
    assert [e["text"] for e in replies] == [REPLY] and replies[0]["ts"].endswith("+00:00")
    # ctl status, for a display
    assert [e["text"] for e in status["recent_texts"] if e["kind"] == "reply_text"] == [REPLY]
    # nothing spoken, and the speaker never opened: a display-only kiosk needs no speaker at all
    timeline_kinds = kinds(daemon)
    assert "reply_audio" not in timeline_kinds and "reply_played" not in timeline_kinds
    assert not speaker.exists(), "the speaker was opened in a text-only session"
    # the conversation ended normally (idle after the answer), not on an error
    assert_in_order(timeline_kinds, ["pressed", "session", "committed", "response", "response_done", "ended"])
    assert status["last_end_code"] == "idle", status
