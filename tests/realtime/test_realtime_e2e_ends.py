"""The real daemon process against the real dev server: a server that goes away (1001 at its
maximum session length) ends the conversation with a WARNING an operator filtering
`journalctl -p warning` sees, its code in `ctl status`, and the next press works."""

from __future__ import annotations

import re

import pytest

from support.fixtures_audio import make_speech_wav
from support.stack import offline_stack, running

pytestmark = pytest.mark.integration


def test_server_going_away_is_a_warning_with_its_code_and_the_next_press_works(tmp_path):
    question = make_speech_wav(tmp_path / "q.wav", "Is the kitchen open tomorrow?", rate_hz=16000,
                               lead_silence_s=0.1, tail_silence_s=1.0)
    with offline_stack(tmp_path, "--max-session-s", "1.5") as stack:
        # (with rollover on, the default, a new session would carry on: test_daemon_e2e_rollover.py)
        config = stack.config(mic=f"wav:{question}", speaker=f"wav:{tmp_path / 'reply.wav'}",
                              conversation={"rollover": False})
        with running(stack.daemon(config)) as daemon:
            daemon.ctl("press")
            ended = daemon.wait_for("ended", timeout_s=30)
            status = daemon.status()
            mark = len(daemon.timeline())
            daemon.ctl("press")                      # the next conversation connects again
            daemon.wait_for("connected", timeout_s=20, after=mark)
            second_end = daemon.wait_for("ended", timeout_s=30, after=mark)
            stderr = daemon.stderr_text()
    assert "server closed the session (1001 going away)" in ended["text"], ended
    assert status["state"] == "idle" and status["last_end_code"] == "server_closed", status
    assert "1001 going away" in second_end["text"]
    ends = [line for line in stderr.splitlines() if "conversation ended:" in line]
    assert len(ends) == 2 and all(re.match(r"WARNING \S+: conversation ended: ", line) for line in ends), ends
    assert "Traceback" not in stderr
