"""Dictation end to end: a `transcription` session minted by the token backend under its policy, the
dev server transcribing each turn (a fixed text: it has no ASR), the daemon recording every transcript
in its log, the JSONL file and `ctl status`, and never asking for a reply."""

from __future__ import annotations

import json

import pytest

from support.stack import offline_stack, running
from test_daemon_e2e import assert_clean_client_events
from test_daemon_e2e_tools import utterances_wav

pytestmark = pytest.mark.integration

SESSION = {"type": "transcription", "audio": {"input": {
    "transcription": {"model": "gpt-4o-mini-transcribe", "language": "en"},
    "turn_detection": {"type": "server_vad", "silence_duration_ms": 500}}}}


def test_each_turn_is_transcribed_recorded_and_never_answered(tmp_path):
    question = utterances_wav(tmp_path / "dictation.wav", ["Buy milk and eggs.", "Call the plumber on Monday."],
                              gap_s=2.5)
    jsonl = tmp_path / "transcripts.jsonl"
    with offline_stack(tmp_path, "--transcript", "Dictated {seconds} seconds.",
                       transcription={"model": "gpt-4o-mini-transcribe", "language": "en"}) as stack:
        config = stack.config(mic=f"wav:{question}", speaker=f"wav:{tmp_path / 'reply.wav'}",
                              transcripts={"jsonl_path": str(jsonl)}, conversation={"idle_timeout_s": 3})
        config["session"] = SESSION
        with running(stack.daemon(config)) as daemon:
            daemon.ctl("press")
            first = daemon.wait_for("user", timeout_s=30)
            daemon.wait_for("user", timeout_s=30, after=daemon.timeline().index(first) + 1)
            status = daemon.status()
            daemon.wait_for("ended", timeout_s=30)
            stderr = daemon.stderr_text()
        records = assert_clean_client_events(stack, {"session.update", "input_audio_buffer.append"})
    sent = [r["event"]["type"] for r in records]
    assert "response.create" not in sent                      # dictation never asks for a reply
    update = next(r["event"] for r in records if r["event"]["type"] == "session.update")
    assert update["session"]["type"] == "transcription"
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [line["kind"] for line in lines] == ["dictation", "dictation"]
    assert all(line["text"].startswith("Dictated ") for line in lines)
    assert [r["kind"] for r in status["recent_texts"]][-2:] == ["dictation", "dictation"]
    assert "dictation" in stderr and "Dictated " in stderr    # the log line of each transcript
