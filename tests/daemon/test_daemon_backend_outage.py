"""The token backend goes away and comes back: the daemon stays up, says why, and recovers by itself."""

from __future__ import annotations

import subprocess
import time

import pytest
import yaml

from support.fixtures_audio import make_speech_wav
from support.stack import offline_stack, running
from support.tokenserver import pivoice_cmd, stop_process

pytestmark = pytest.mark.integration


def wait_until(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def restart_on_same_port(tokens, work):
    config = yaml.safe_load(tokens.config_path.read_text())
    config["port"] = tokens.port
    path = work / "token-server-again.yaml"
    path.write_text(yaml.safe_dump(config))
    with open(work / "token-server-again.log", "wb") as log:
        return subprocess.Popen(pivoice_cmd("token-server", "serve", "--config", str(path)), env=tokens.env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def test_backend_outage_is_reported_and_the_daemon_recovers(tmp_path):
    question = make_speech_wav(tmp_path / "question.wav", "Are you still there?", lead_silence_s=0.1)
    # keys live 10 s (the API's minimum) so the cached one runs out during the outage
    with offline_stack(tmp_path, default_expires_after_s=10) as stack:
        config = stack.config(mic=f"wav:{question}", speaker=f"wav:{tmp_path / 'reply.wav'}")
        config["realtime"]["connect_timeout_s"] = 3
        with running(stack.daemon(config)) as daemon:
            stop_process(stack.tokens.process)
            token = wait_until(lambda: (lambda t: t if t["key_valid_for_s"] is None or t["key_valid_for_s"] < 5
                                        else None)(daemon.status()["token"]), 15, "the cached key to run out")
            status = wait_until(lambda: (lambda t: t if t["last_error"] else None)(daemon.status()["token"]),
                                10, "a token error in ctl status")
            assert status["state"] == "backing_off"
            assert "unreachable" in status["last_error"] and "refused" in status["last_error"], status

            mark = len(daemon.timeline())
            daemon.ctl("press")
            ended = daemon.wait_for("ended", timeout_s=10, after=mark)
            assert "no ephemeral key" in ended["text"] and "backend_unreachable" in ended["text"]
            assert daemon.process.poll() is None, "the daemon died with the backend"

            again = restart_on_same_port(stack.tokens, tmp_path)
            try:
                # no restart of the daemon: a press fetches a key at once (no backoff wait) and goes ahead
                mark = len(daemon.timeline())
                wait_until(lambda: _press_connects(daemon), 30, "a press to reach the Realtime session again")
                daemon.wait_for("reply_played", timeout_s=30, after=mark)
                assert daemon.status()["token"]["state"] == "ok"
            finally:
                stop_process(again)
        assert stack.secret not in daemon.stderr_text()


def _press_connects(daemon) -> bool:
    """Press once while idle; True if that conversation reached the Realtime session."""
    if daemon.status()["state"] != "idle":
        return False
    mark = len(daemon.timeline())
    daemon.ctl("press")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        kinds = [e["kind"] for e in daemon.timeline()[mark:]]
        if "connected" in kinds:
            return True
        if "ended" in kinds:
            return False
        time.sleep(0.05)
    return False
