"""The in-process daemon the fault matrix drives: the real Runtime, Controller, Downlink and a paced
WAV speaker, with the Realtime connector and the token source injected through constructors.

    with FaultRig(tmp_path, connector=ScriptedConnector()) as rig:
        rig.press()
        end = rig.wait_end()

Notes arrive on the controller thread; everything else here runs on the test's thread.
"""

from __future__ import annotations

import base64
import threading
import time
import wave
from pathlib import Path

import numpy as np

from pivoice import messages as m
from pivoice.audio.downlink import Downlink
from pivoice.audio.playback import WavSpeaker
from pivoice.controller import Controller, Settings
from pivoice.realtime.scripted import reply_events, session_created
from pivoice.runtime import Runtime
from support.runtime_fakes import InertMic, InertUplink, ReadyTokens

SESSION = {"type": "realtime", "model": "gpt-realtime"}
# Short timers keep each row to a second or two; every one still fires for real.
SETTINGS = Settings(session=SESSION, output_format="audio/pcm", manual_turns=False, interrupt_response=True,
                    half_duplex=True, idle_timeout_s=2, max_duration_s=60, connect_timeout_s=2, reply_stall_s=1)
WAIT_S = 10.0


def tone(seconds: float, freq_hz: float = 440.0) -> bytes:
    """24 kHz s16le reply audio, loud enough to count in `loud_ms`."""
    t = np.arange(int(24000 * seconds))
    return (np.sin(t * 2 * np.pi * freq_hz / 24000) * 8000).astype("<i2").tobytes()


def loud_ms(path: Path) -> float:
    if not Path(path).exists():
        return 0.0
    with wave.open(str(path), "rb") as w:
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return np.count_nonzero(np.abs(samples.astype(np.int32)) > 100) / 24.0


class FaultRig:
    def __init__(self, tmp_path: Path, *, connector, tokens=None, settings: Settings = SETTINGS, mic=None,
                 speaker=None, uplink_factory=None):
        self.speaker_wav = Path(tmp_path) / "speaker.wav"
        self.notes: list[m.Note] = []
        self._cond = threading.Condition()
        self.connector = connector
        self.runtime = Runtime(Controller(settings), mic=mic or InertMic(),
                               uplink_factory=uplink_factory or (lambda rate_hz: InertUplink()),
                               downlink=Downlink(speaker or WavSpeaker(str(self.speaker_wav)), "audio/pcm"),
                               tokens=tokens or ReadyTokens(), connector=connector, on_note=self._on_note)

    def __enter__(self) -> "FaultRig":
        self.runtime.start()
        return self

    def __exit__(self, *exc) -> None:
        self.runtime.stop()

    def _on_note(self, note: m.Note) -> None:   # controller thread
        with self._cond:
            self.notes.append(note)
            self._cond.notify_all()

    # ---- driving and reading ----

    def press(self) -> int:
        """Press the button; returns the note index the press starts from."""
        with self._cond:
            mark = len(self.notes)
        self.runtime.post(m.Press())
        return mark

    def wait_note(self, kind: str, after: int = 0, timeout_s: float = WAIT_S) -> m.Note:
        def found():
            return next((n for n in self.notes[after:] if n.kind == kind), None)
        with self._cond:
            note = self._cond.wait_for(found, timeout_s)
        if note is None:
            raise AssertionError(f"no {kind!r} note within {timeout_s} s; notes: "
                                 + "; ".join(f"{n.kind}: {n.text}" for n in self.notes[after:]))
        return note

    def wait_end(self, after: int = 0, timeout_s: float = WAIT_S) -> m.Note:
        return self.wait_note("ended", after, timeout_s)

    def status(self) -> dict:
        return self.runtime.status()

    def heard_ms(self) -> float:
        return loud_ms(self.speaker_wav)


def normal_reply(response_id: str = "resp_ok", seconds: float = 0.3) -> list[dict]:
    return reply_events(response_id, "item_" + response_id, tone(seconds))


def serve_normally(link, reply_s: float = 0.3) -> None:
    """A ws_peer script: a healthy server that answers the session with one short reply."""
    link.accept()
    link.send(session_created())
    link.wait_for("session.update")
    link.send_all(normal_reply("resp_ws", reply_s))
    link.stall()


def delta(response_id: str, audio: bytes) -> dict:
    return {"type": "response.output_audio.delta", "response_id": response_id, "item_id": "item_" + response_id,
            "output_index": 0, "content_index": 0, "delta": base64.b64encode(audio).decode()}


def settle(seconds: float = 0.05) -> None:
    time.sleep(seconds)


# ---- what every row asserts ----------------------------------------------------------------------

def check_end(rig: FaultRig, caplog, after: int, code: str, level: str, *says: str,
              timeout_s: float = WAIT_S) -> m.Note:
    """The conversation started at note `after` ended with `code`, logged at `level`, saying `says`."""
    note = rig.wait_end(after, timeout_s)
    assert note.level == level, f"ended at {note.level}, not {level}: {note.text}"
    for text in says:
        assert text in note.text, f"{text!r} not in {note.text!r}"
    deadline = time.monotonic() + 1.0   # the status is published right after the end's actions run
    while rig.status()["last_end_code"] != code and time.monotonic() < deadline:
        time.sleep(0.01)
    assert rig.status()["last_end_code"] == code, rig.status()
    logged = [r for r in caplog.records if r.getMessage() == note.text]
    assert logged and logged[-1].levelname == level.upper(), [(r.levelname, r.getMessage()) for r in logged]
    return note


def next_press_works(rig: FaultRig, *, scripted=None, ws=None) -> None:
    """After the fault: a normal conversation (press, reply heard, press ends it at INFO)."""
    before_ms = rig.heard_ms()
    if ws is not None:
        ws.queue(serve_normally)
    count = len(scripted.connections) if scripted is not None else 0
    mark = rig.press()
    if scripted is not None:
        conn = scripted.wait_for_connection(count + 1)
        conn.play(session_created())   # harmless twice; a peer made with greet=False needs it
        conn.play_all(normal_reply("resp_next"))
    rig.wait_note("reply_played", mark)
    end_mark = rig.press()
    note = rig.wait_end(end_mark)
    assert (note.level, note.text) == ("info", "conversation ended: ended by a press"), note
    assert rig.status()["last_end_code"] == "user"
    if rig.speaker_wav.exists():   # a WAV speaker: the reply is in the recording
        assert rig.heard_ms() - before_ms >= 300 - 30, "the next conversation's reply was not heard"
