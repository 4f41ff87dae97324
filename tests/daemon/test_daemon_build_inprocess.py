"""`app.build` in-process: the composition root wires the real edges from a config, and a press on the
GPIO pin (gpiozero's MockFactory) gives a spoken reply from the real dev server via the real token backend."""

from __future__ import annotations

import threading
import time

import pytest
import yaml

from pivoice import app, config
from pivoice import messages as m
from support.fixtures_audio import make_speech_wav, read_wav
from support.stack import offline_stack

pytestmark = pytest.mark.integration


class Notes:
    """on_note sink (called on the controller thread)."""

    def __init__(self):
        self.items: list[m.Note] = []
        self.changed = threading.Condition()

    def __call__(self, note: m.Note) -> None:
        with self.changed:
            self.items.append(note)
            self.changed.notify_all()

    def wait_for(self, kind: str, timeout_s: float) -> m.Note:
        deadline = time.monotonic() + timeout_s
        with self.changed:
            while True:
                found = [n for n in self.items if n.kind == kind]
                if found:
                    return found[0]
                left = deadline - time.monotonic()
                assert left > 0, f"no {kind!r} note within {timeout_s} s: {[n.kind for n in self.items]}"
                self.changed.wait(left)


def test_a_button_press_through_the_built_daemon_plays_a_reply(tmp_path):
    question = make_speech_wav(tmp_path / "question.wav", "What is the weather like today?", rate_hz=16000,
                               lead_silence_s=0.1, tail_silence_s=2.0)
    with offline_stack(tmp_path / "stack") as stack:
        reply = tmp_path / "reply.wav"
        path = tmp_path / "pivoice.yaml"
        path.write_text(yaml.safe_dump(stack.config(mic=f"wav:{question}", speaker=f"wav:{reply}")))
        notes = Notes()
        daemon = app.build(config.load(path), on_note=notes)
        daemon.start_core()
        daemon.start_edges(daemon.runtime.post, daemon.runtime.status)
        try:
            pin = daemon.button.pin       # a gpiozero MockPin: pull-up, so pressed is low
            pin.drive_low()
            pin.drive_high()
            played = notes.wait_for("reply_played", 30)
            ended = notes.wait_for("ended", 30)
            status = daemon.runtime.status()
        finally:
            daemon.stop()
    assert "reply played" in played.text and "no speech" in ended.text and ended.level == "info"
    assert status["state"] == "idle" and status["last_end_code"] == "idle"
    assert status["token"]["state"] == "ok"
    assert status["metrics"]["press_to_first_append_ms"]["count"] == 1
    samples, rate_hz, _ = read_wav(reply)
    assert len(samples) / rate_hz > 1.0 and abs(samples.astype(int)).max() > 1000
    assert not (tmp_path / "stack" / "control.sock").exists()   # stop() removed the socket
