"""Real PortAudio streams that die under us (the PulseAudio rig's virtual devices): the failure path
of the audio-thread contract in pivoice.audio.ports.

The fault is made by PulseAudio itself: its command-line interface (module-cli-protocol-unix, loaded
for these tests) kills our stream's sink input / source output, which is what a USB device
unplugged mid-reply looks like to the client (pactl 16 has no kill command), or suspends the sink,
which stalls the stream without ending it.
"""

import re
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from pivoice.audio.capture import PyAudioMic
from pivoice.audio.playback import PyAudioSpeaker
from support.audio_fakes import DEAD_STREAM
from support.fixtures_audio import tone

pytestmark = pytest.mark.pulse
TICK_S = 0.1          # the runtime calls check_stream() on its tick
DETECT_WITHIN_S = 3.0


class Watched:
    """Stands in for the runtime: on_error only enqueues; a tick calls check_stream()."""

    def __init__(self):
        self.errors: list[tuple[float, str]] = []
        self.reported = threading.Event()

    def on_error(self, reason: str) -> None:
        self.errors.append((time.monotonic(), reason))
        self.reported.set()

    def tick_until_reported(self, device, timeout_s: float = DETECT_WITHIN_S) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.reported.is_set() and time.monotonic() < deadline:
            device.check_stream()
            time.sleep(TICK_S)


def test_speaker_stream_killed_mid_reply_reports_once_and_never_drains(pulse_rig, pulse_cli):
    drained = threading.Event()
    watched = Watched()
    spk = PyAudioSpeaker("default", 48000)
    spk.open(drained.set, watched.on_error)
    try:
        spk.write(tone(440, 3.0, 48000).tobytes())   # a 3 s reply
        time.sleep(0.5)
        assert not watched.reported.is_set()
        for _ in range(5):
            spk.check_stream()                       # healthy: nothing to report
        killed_at = time.monotonic()
        pulse_cli.kill_our_stream("sink-input")
        watched.tick_until_reported(spk)
        for _ in range(5):
            spk.check_stream()
            time.sleep(TICK_S)
    finally:
        spk.close()
    assert len(watched.errors) == 1, watched.errors
    at, reason = watched.errors[0]
    assert re.fullmatch(f"output 'default': writing failed: {DEAD_STREAM}", reason), reason
    assert at - killed_at < 1.0, f"reported {at - killed_at:.2f} s after the stream died"
    assert not drained.is_set()   # without on_error the controller would wait for this forever
    assert spk.stats()["stream_errors"] == 1 and spk.stats()["last_error"] == reason
    # the device works again for the next conversation
    again = threading.Event()
    spk.open(again.set, watched.on_error)
    try:
        spk.write(tone(440, 0.2, 48000).tobytes())
        assert again.wait(3)
        spk.check_stream()
    finally:
        spk.close()
    assert len(watched.errors) == 1


def test_speaker_on_a_suspended_sink_is_reported_as_stalled(pulse_rig):
    watched = Watched()
    spk = PyAudioSpeaker("default", 48000, stall_s=1.0)
    spk.open(lambda: None, watched.on_error)
    try:
        spk.write(tone(440, 3.0, 48000).tobytes())
        time.sleep(0.3)
        pulse_rig.pactl("suspend-sink", pulse_rig.SPEAKER_SINK, "1")
        try:
            watched.tick_until_reported(spk)
        finally:
            pulse_rig.pactl("suspend-sink", pulse_rig.SPEAKER_SINK, "0")
    finally:
        spk.close()
    assert len(watched.errors) == 1, watched.errors
    assert watched.errors[0][1].startswith("output 'default': no audio from the device for 1.")
    assert watched.errors[0][1].endswith(" s (device stalled)")


def test_mic_stream_killed_mid_conversation_reports_once(pulse_rig, pulse_cli):
    frames = []
    watched = Watched()
    mic = PyAudioMic("default", 16000, 20)
    mic.open(frames.extend, watched.on_error)
    try:
        time.sleep(0.4)
        mic.check_stream()
        assert frames and not watched.reported.is_set()
        killed_at = time.monotonic()
        pulse_cli.kill_our_stream("source-output")
        watched.tick_until_reported(mic)
        n_frames = len(frames)
        for _ in range(5):
            mic.check_stream()
            time.sleep(TICK_S)
        assert len(frames) == n_frames   # the stream is dead: no more audio will come
    finally:
        mic.close()
    assert len(watched.errors) == 1, watched.errors
    assert re.fullmatch(f"input 'default': reading failed: {DEAD_STREAM}", watched.errors[0][1]), watched.errors
    assert watched.errors[0][0] - killed_at < 1.0
    assert mic.stats()["stream_errors"] == 1


# Run in a child process: before the fix this crashed the interpreter (SIGSEGV), which would have
# taken the whole test session with it.
MISSING_SPEAKER_UNDER_A_READING_MIC = textwrap.dedent("""
    import time
    from pivoice.audio.capture import PyAudioMic
    from pivoice.audio.host import PortAudioHost
    from pivoice.audio.playback import PyAudioSpeaker
    from pivoice.audio.ports import AudioDeviceError

    host = PortAudioHost()
    mic = PyAudioMic("default", 16000, 20, portaudio=host)
    speaker = PyAudioSpeaker("UACDemo USB speaker", 48000, portaudio=host)
    for press in range(3):
        frames = []
        mic.open(frames.append)
        time.sleep(0.25)                      # the reader is inside a blocking read now
        try:
            speaker.open(lambda: None)
        except AudioDeviceError as exc:
            print("speaker:", str(exc).splitlines()[0])
        before = len(frames)
        time.sleep(0.25)
        print("press", press, "mic still reading:", len(frames) > before, "open streams:", host.open_streams)
        mic.close()
    print("closed, open streams:", host.open_streams)
""")


def test_a_missing_speaker_looked_up_while_the_mic_reads_leaves_the_mic_alone(pulse_rig):
    """Each press: the mic opens and reads, then the speaker is looked up and is not there. Reading
    PortAudio's device list again at that point (Pa_Terminate) frees the mic's stream under its
    reader: SIGSEGV on the first press (reproduced on this rig before the fix)."""
    run = subprocess.run([sys.executable, "-X", "faulthandler", "-c", MISSING_SPEAKER_UNDER_A_READING_MIC],
                         env=pulse_rig.env(), capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, f"exit {run.returncode}:\n{run.stdout}\n{run.stderr[-3000:]}"
    lines = run.stdout.splitlines()
    assert lines == [line for press in range(3) for line in (
        "speaker: no audio output device matches 'UACDemo USB speaker'; outputs available:",
        f"press {press} mic still reading: True open streams: 1")] + ["closed, open streams: 0"], run.stdout
