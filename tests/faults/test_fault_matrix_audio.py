"""The fault matrix, audio rows: real PortAudio streams on the PulseAudio rig's virtual devices, in
the in-process runtime with the scripted Realtime peer. The faults are made by PulseAudio: no sound
server to open a device on (the mic is missing), and our stream killed under us (a USB device
unplugged mid-stream)."""

from __future__ import annotations

import logging
import os
import time

import pytest

from pivoice.audio.capture import PyAudioMic
from pivoice.audio.host import PortAudioHost
from pivoice.audio.playback import PyAudioSpeaker
from pivoice.realtime.scripted import ScriptedConnector, reply_events
from support.audio_fakes import DEVICE_GONE
from support.fault_rig import FaultRig, check_end, next_press_works, tone

pytestmark = pytest.mark.pulse


@pytest.fixture(autouse=True)
def _log_info(caplog):
    caplog.set_level(logging.INFO)


def test_audio_mic_missing_at_the_press(tmp_path, caplog, pulse_rig):
    """No input device when the button is pressed: one clear ERROR naming it, no connection left
    open; once the device is back, the next press works (the device list is looked at again)."""
    peer = ScriptedConnector()
    mic = PyAudioMic("default", 16000, 20, portaudio=PortAudioHost())
    server = os.environ["PULSE_SERVER"]
    with FaultRig(tmp_path, connector=peer, mic=mic) as rig:
        os.environ["PULSE_SERVER"] = f"unix:{tmp_path}/no-sound-server"   # read when a stream opens
        try:
            mark = rig.press()
            # PortAudio either lists no input at all or one it cannot open: both name the device
            check_end(rig, caplog, mark, "audio_failed", "error", "conversation ended: audio device error: ",
                      "input device", "'default'")
        finally:
            os.environ["PULSE_SERVER"] = server
        time.sleep(0.2)
        for conn in peer.connections:   # a socket opened in parallel with the audio was closed again
            assert conn.closed_by_daemon.is_set()
        next_press_works(rig, scripted=peer)


def test_audio_mic_vanishes_mid_conversation(tmp_path, caplog, pulse_rig, stream_killer):
    peer = ScriptedConnector()
    mic = PyAudioMic("default", 16000, 20, portaudio=PortAudioHost())
    with FaultRig(tmp_path, connector=peer, mic=mic) as rig:
        mark = rig.press()
        peer.wait_for_connection(1)
        rig.wait_note("connected", mark)
        time.sleep(0.3)
        killed_at = time.monotonic()
        stream_killer.kill("source-output")
        check_end(rig, caplog, mark, "audio_failed", "warning", "mic stopped: input 'default': reading failed: [Errno", DEVICE_GONE,
                  timeout_s=5)
        took_s = time.monotonic() - killed_at
        assert took_s < 1.5, f"the dead mic was noticed after {took_s:.2f} s"
        assert rig.status()["audio"]["mic"]["stream_errors"] == 1
        next_press_works(rig, scripted=peer)


def test_audio_speaker_dies_mid_reply(tmp_path, caplog, pulse_rig, stream_killer):
    """The speaker never drains once its stream is gone: without on_error the daemon would stay
    "playing"; it ends at WARNING instead, and the next press opens a new stream."""
    peer = ScriptedConnector()
    speaker = PyAudioSpeaker("default", 48000, portaudio=PortAudioHost())
    with FaultRig(tmp_path, connector=peer, speaker=speaker) as rig:
        mark = rig.press()
        conn = peer.wait_for_connection(1)
        conn.play_all(reply_events("resp_1", "item_1", tone(2.0)))
        rig.wait_note("reply_audio", mark)
        time.sleep(0.4)
        killed_at = time.monotonic()
        stream_killer.kill("sink-input")
        check_end(rig, caplog, mark, "audio_failed", "warning", "speaker stopped: output 'default': writing failed: [Errno", DEVICE_GONE,
                  timeout_s=5)
        took_s = time.monotonic() - killed_at
        assert took_s < 1.5, f"the dead speaker was noticed after {took_s:.2f} s"
        assert rig.status()["playing"] is False
        assert rig.status()["audio"]["speaker"]["stream_errors"] == 1
        next_press_works(rig, scripted=peer)


def test_audio_mic_vanishes_while_a_received_reply_plays(tmp_path, caplog, pulse_rig, stream_killer):
    peer = ScriptedConnector()
    mic = PyAudioMic("default", 16000, 20, portaudio=PortAudioHost())
    with FaultRig(tmp_path, connector=peer, mic=mic) as rig:
        mark = rig.press()
        conn = peer.wait_for_connection(1)
        conn.play_all(reply_events("resp_1", "item_1", tone(2.0)))   # the whole reply has arrived
        rig.wait_note("reply_audio", mark)
        time.sleep(0.3)
        stream_killer.kill("source-output")
        note = check_end(rig, caplog, mark, "audio_failed", "warning", "mic stopped: input 'default': reading failed: [Errno", DEVICE_GONE,
                         timeout_s=5)
        heard_ms = rig.heard_ms()
        assert heard_ms >= 2000 - 30 or "cut" in note.text, (
            f"{heard_ms:.0f} ms of a 2000 ms reply heard; the end says: {note.text}")
        next_press_works(rig, scripted=peer)
