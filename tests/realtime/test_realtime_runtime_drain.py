"""The 1001-while-the-reply-plays symptom through the real Runtime, Controller, Downlink and a
paced WAV speaker, with the scripted peer as the server: everything that arrived is heard."""

from __future__ import annotations

import threading
import time
import wave

import numpy as np

from pivoice import messages as m
from pivoice.audio.downlink import Downlink
from pivoice.audio.playback import WavSpeaker
from pivoice.controller import Controller
from pivoice.realtime.scripted import ScriptedConnector, reply_events
from pivoice.runtime import Runtime
from support.controller_rig import SETTINGS
from support.runtime_fakes import InertMic, InertUplink, ReadyTokens

REPLY_S = 1.5
TONE = (np.sin(np.arange(int(24000 * REPLY_S)) * 2 * np.pi * 440 / 24000) * 8000).astype("<i2").tobytes()


def loud_ms(path) -> float:
    with wave.open(str(path), "rb") as w:
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return np.count_nonzero(np.abs(samples.astype(np.int32)) > 100) / 24.0


def test_close_1001_mid_playout_plays_everything_received_then_ends_at_warning(tmp_path):
    notes: list[m.Note] = []
    ended = threading.Event()

    def on_note(note: m.Note) -> None:
        notes.append(note)
        if note.kind == "ended":
            ended.set()
    peer = ScriptedConnector()
    speaker_wav = tmp_path / "speaker.wav"
    runtime = Runtime(Controller(SETTINGS), mic=InertMic(), uplink_factory=lambda rate: InertUplink(),
                      downlink=Downlink(WavSpeaker(str(speaker_wav)), "audio/pcm"), tokens=ReadyTokens(),
                      connector=peer, on_note=on_note)
    runtime.start()
    try:
        runtime.post(m.Press())
        conn = peer.wait_for_connection(1)
        conn.play_all(reply_events("resp_1", "item_1", TONE))   # the whole reply arrives at once
        time.sleep(0.4)                                          # a little of it is heard...
        closed_at = time.monotonic()
        conn.server_close(1001, "going away")                    # ...when the server goes away
        assert ended.wait(REPLY_S + 3), [n.text for n in notes]
        took_s = time.monotonic() - closed_at
    finally:
        runtime.stop()
    end = notes[-1]
    assert end.level == "warning" and end.text.endswith("(1001 going away): going away; reply played out"), end
    assert runtime.status()["last_end_code"] == "server_closed"
    assert "draining" in [n.kind for n in notes]
    heard_ms = loud_ms(speaker_wav)
    assert heard_ms >= REPLY_S * 1000 - 30, f"only {heard_ms:.0f} ms of the {REPLY_S * 1000:.0f} ms reply were played"
    assert took_s >= REPLY_S - 0.6   # it waited for the playout, not just ended
    print(f"drain: {heard_ms:.0f} ms heard of {REPLY_S * 1000:.0f} ms; end {took_s:.2f} s after the close")
