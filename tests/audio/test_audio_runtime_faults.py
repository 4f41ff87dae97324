"""A device that dies under a conversation ends it, clearly, through the real runtime and controller:
`on_error` -> event -> `conversation ended: speaker stopped: ...` at WARNING, code audio_failed; the
tick's `check_stream` is the watchdog; `ctl status` shows the xrun and error counters.

Real PortAudio devices on the PulseAudio rig (killed with the PulseAudio CLI, see conftest.py) and
the scripted Realtime peer; then fakes for the runtime's bookkeeping (a late report is ignored)."""

from __future__ import annotations

import re
import threading
import time

import numpy as np
import pytest

from pivoice import messages as m
from pivoice.audio.capture import PyAudioMic
from pivoice.audio.downlink import Downlink
from pivoice.audio.playback import PyAudioSpeaker
from pivoice.controller import Controller
from pivoice.realtime.scripted import ScriptedConnector, reply_events
from pivoice.runtime import Runtime
from support.audio_fakes import DEAD_STREAM
from support.controller_rig import SETTINGS
from support.runtime_fakes import InertUplink, ReadyTokens


def tone_pcm(seconds: float) -> bytes:
    t = np.arange(int(24000 * seconds)) / 24000
    return (np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2").tobytes()


class Notes:
    def __init__(self):
        self.all: list[m.Note] = []
        self._cond = threading.Condition()

    def __call__(self, note: m.Note) -> None:
        with self._cond:
            self.all.append(note)
            self._cond.notify_all()

    def wait(self, kind: str, count: int = 1, timeout_s: float = 5.0) -> m.Note:
        with self._cond:
            ok = self._cond.wait_for(lambda: len([n for n in self.all if n.kind == kind]) >= count, timeout_s)
            assert ok, [f"{n.kind}: {n.text}" for n in self.all]
            return [n for n in self.all if n.kind == kind][count - 1]


def wait_until(predicate, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def pulse_runtime(pulse_rig):
    notes, peer = Notes(), ScriptedConnector()
    runtime = Runtime(Controller(SETTINGS), mic=PyAudioMic("default", 16000, 20),
                      uplink_factory=lambda rate: InertUplink(),
                      downlink=Downlink(PyAudioSpeaker("default", 48000), "audio/pcm"), tokens=ReadyTokens(),
                      connector=peer, on_note=notes)
    runtime.start()
    yield runtime, peer, notes
    runtime.stop()


def assert_next_press_works(runtime, peer, notes, number: int) -> None:
    runtime.post(m.Press())
    conn = peer.wait_for_connection(number)
    conn.play_all(reply_events(f"resp_{number}", f"item_{number}", tone_pcm(0.3)))
    notes.wait("reply_played", 1)
    runtime.post(m.Press())
    assert notes.wait("ended", number).text == "conversation ended: ended by a press"


@pytest.mark.pulse
def test_speaker_unplugged_mid_reply_ends_the_conversation_at_warning(pulse_runtime, pulse_cli):
    runtime, peer, notes = pulse_runtime
    runtime.post(m.Press())
    conn = peer.wait_for_connection(1)
    conn.play_all(reply_events("resp_1", "item_1", tone_pcm(4.0)))   # a 4 s reply, all received
    wait_until(lambda: runtime.status()["playing"])
    time.sleep(0.5)
    killed_at = time.monotonic()
    pulse_cli.kill_our_stream("sink-input")
    end = notes.wait("ended")
    took_s = time.monotonic() - killed_at
    assert end.level == "warning"
    assert re.fullmatch(f"conversation ended: speaker stopped: output 'default': writing failed: {DEAD_STREAM}", end.text)
    status = runtime.status()
    assert (status["state"], status["playing"], status["last_end_code"]) == ("idle", False, "audio_failed")
    assert status["audio"]["speaker"]["stream_errors"] == 1
    assert status["audio"]["speaker"]["last_error"].startswith("output 'default': writing failed: ")
    assert took_s < 1.0, f"ended {took_s:.2f} s after the stream died"   # the 4 s reply would still be playing
    print(f"speaker killed -> conversation ended in {took_s * 1000:.0f} ms")
    assert_next_press_works(runtime, peer, notes, 2)


@pytest.mark.pulse
def test_mic_unplugged_mid_conversation_ends_it_at_warning(pulse_runtime, pulse_cli):
    runtime, peer, notes = pulse_runtime
    runtime.post(m.Press())
    peer.wait_for_connection(1)
    wait_until(lambda: runtime.status()["state"] == "active")
    time.sleep(0.3)
    killed_at = time.monotonic()
    pulse_cli.kill_our_stream("source-output")
    end = notes.wait("ended")
    took_s = time.monotonic() - killed_at
    assert end.level == "warning"
    assert re.fullmatch(f"conversation ended: mic stopped: input 'default': reading failed: {DEAD_STREAM}", end.text)
    assert runtime.status()["last_end_code"] == "audio_failed" and took_s < 1.0
    assert runtime.status()["audio"]["mic"] == {
        "device": "default", "overflows": runtime.status()["audio"]["mic"]["overflows"], "stream_errors": 1,
        "last_error": end.text.removeprefix("conversation ended: mic stopped: ")}
    print(f"mic killed -> conversation ended in {took_s * 1000:.0f} ms")
    assert_next_press_works(runtime, peer, notes, 2)


# ---- the runtime's bookkeeping, with fakes ------------------------------------------------------

class FakeMic:
    """Keeps every on_error it was given; `dead` makes check_stream report, as a real device would."""

    sample_rate_hz = 16000

    def __init__(self):
        self.on_errors: list = []
        self.dead = False
        self.checks = 0

    def open(self, on_frames, on_error=None):
        self.on_errors.append(on_error)

    def check_stream(self):
        self.checks += 1
        if self.dead:
            self.dead = False
            self.on_errors[-1]("input 'fake': stream no longer running")

    def stats(self):
        return {"device": "fake", "overflows": 7, "stream_errors": 0, "last_error": None}

    def close(self): pass


class FakeDownlink:
    first_sample_at = None

    def open(self, on_drained, on_error=None): pass

    def check_stream(self): pass

    def stats(self): return {"device": "fake-out", "underflows": 3, "stream_errors": 0, "last_error": None}

    def device_first_sample_at(self): return None

    def close(self): pass


def test_the_tick_runs_the_watchdog_only_in_a_conversation_and_a_late_report_is_ignored():
    notes, peer, mic = Notes(), ScriptedConnector(), FakeMic()
    runtime = Runtime(Controller(SETTINGS), mic=mic, uplink_factory=lambda rate: InertUplink(),
                      downlink=FakeDownlink(), tokens=ReadyTokens(), connector=peer, on_note=notes)
    runtime.start()
    try:
        assert runtime.status()["audio"] == {
            "mic": {"device": "fake", "overflows": 7, "stream_errors": 0, "last_error": None},
            "speaker": {"device": "fake-out", "underflows": 3, "stream_errors": 0, "last_error": None}}
        time.sleep(0.3)
        assert mic.checks == 0                      # idle: no tick, no check
        runtime.post(m.Press())
        peer.wait_for_connection(1)
        wait_until(lambda: mic.checks >= 3)         # on every tick while the conversation lasts
        mic.dead = True
        end = notes.wait("ended")
        assert (end.level, end.text) == ("warning", "conversation ended: mic stopped: input 'fake': stream "
                                                    "no longer running")
        checks_after_end = mic.checks
        time.sleep(0.3)
        assert mic.checks == checks_after_end       # idle again: the watchdog sleeps with the tick

        runtime.post(m.Press())                     # the next conversation...
        peer.wait_for_connection(2)
        mic.on_errors[0]("input 'fake': a report from the first conversation, arriving late")
        time.sleep(0.3)
        assert runtime.status()["state"] == "active"   # ...is not ended by the old device's report
        mic.on_errors[1]("input 'fake': this one counts")
        assert notes.wait("ended", 2).text == "conversation ended: mic stopped: input 'fake': this one counts"
    finally:
        runtime.stop()
