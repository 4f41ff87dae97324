"""`PyAudioMic` picks its device and rate: by name or substring, the first supported rate, the shared
PortAudio host that re-enumerates for a hot-plugged device, and errors that list what exists."""

import logging

import pyaudio
import pytest

from pivoice.audio.capture import PyAudioMic
from pivoice.audio.playback import PyAudioSpeaker
from pivoice.audio.host import PortAudioHost
from pivoice.audio.ports import AudioDeviceError
from support.audio_fakes import Groups, close_mic
from support.fixtures_audio import FakePyAudio

USB_MIC = {"name": "USB PnP Sound Device: Audio (hw:1,0)", "inputs": {44100: (1,), 48000: (1,)}}
STEREO_MIC = {"name": "Webcam C270: USB Audio (hw:2,0)", "inputs": {16000: (2,), 48000: (2,)}}
SPEAKER_ONLY = {"name": "bcm2835 Headphones (hw:0,0)", "outputs": {48000: (2,)}}


def test_mic_picks_device_by_substring_and_first_supported_rate():
    pa = FakePyAudio([SPEAKER_ONLY, USB_MIC, STEREO_MIC])
    mic = PyAudioMic("usb pnp", pyaudio_factory=pa)
    mic.open(lambda frames: None)
    stream = pa.streams[0]
    kwargs = stream.kwargs
    assert kwargs["input_device_index"] == 1 and kwargs["rate"] == 48000 and kwargs["channels"] == 1
    assert kwargs["input"] is True and kwargs["format"] == pyaudio.paInt16
    assert "stream_callback" not in kwargs   # blocking mode: our own thread reads
    # a period of one 100 ms block: PortAudio's read wakes once per period (the first frame does not
    # wait for one: the reader asks how much is there, see test_audio_capture.py)
    assert kwargs["frames_per_buffer"] == 4800 and mic.sample_rate_hz == 48000
    with pytest.raises(RuntimeError, match="already open"):
        mic.open(lambda frames: None)
    close_mic(mic, stream)
    # audio.input.period_ms, for a device (or a test rig) that wants another period; reads stay one block
    short = PyAudioMic("usb pnp", pyaudio_factory=pa, period_ms=40)
    short.open(lambda frames: None)
    assert pa.streams[-1].kwargs["frames_per_buffer"] == 1920 and short.block_ms == 100
    close_mic(short, pa.streams[-1])
    mic.close()  # idempotent
    # PortAudio stays initialised between conversations: re-enumerating costs ~80 ms per press
    assert stream.closed and stream.stops == 1 and not pa.terminated


def test_portaudio_host_is_shared_and_re_enumerates_for_a_hot_plugged_device():
    before = FakePyAudio([SPEAKER_ONLY])
    after = FakePyAudio([SPEAKER_ONLY, USB_MIC])
    made = []

    def factory():
        made.append(before if not made else after)
        return made[-1]
    host = PortAudioHost(factory)
    speaker_pa = host.get()
    assert host.get() is speaker_pa and len(made) == 1
    mic = PyAudioMic("usb pnp", portaudio=host)
    mic.open(lambda frames: None)   # not in the first snapshot: the host re-enumerates once and finds it
    assert len(made) == 2 and before.terminated and after.streams
    close_mic(mic, after.streams[0])
    with pytest.raises(AudioDeviceError, match="respeaker"):
        PyAudioMic("respeaker", portaudio=host).open(lambda frames: None)


USB_SPEAKER = {"name": "UACDemoV1.0: USB Audio (hw:3,0)", "outputs": {48000: (2,)}}


def snapshots(*device_lists):
    """A pyaudio factory whose every initialisation sees the next device list (the last one repeats)."""
    made: list[FakePyAudio] = []

    def factory():
        made.append(FakePyAudio(device_lists[min(len(made), len(device_lists) - 1)]))
        return made[-1]
    return factory, made


def test_a_missing_speaker_is_never_looked_for_again_under_the_open_mic():
    # Re-enumerating means Pa_Terminate, which frees the open mic stream under its reader: the real
    # daemon crashed (SIGSEGV) at every press with a working mic and an unplugged USB speaker
    factory, made = snapshots([USB_MIC])
    host = PortAudioHost(factory)
    mic, speaker = PyAudioMic("usb pnp", portaudio=host), PyAudioSpeaker("uacdemo", portaudio=host)
    groups = Groups()
    mic.open(groups)                # nothing open yet: the served speaker is missing, so the list is read again
    assert len(made) == 2 and made[0].terminated and made[0].closed_by_terminate == []
    with pytest.raises(AudioDeviceError, match="no audio output device matches 'uacdemo'; outputs available"):
        speaker.open(lambda: None)
    assert len(made) == 2 and not made[1].terminated and host.open_streams == 1   # the mic's stream untouched
    mic_stream = made[1].streams[0]
    mic_stream.feed(bytes(1920 + 5 * 1920))   # the first 20 ms frame, then a 100 ms block at 48 kHz
    groups.wait_frames(6)           # and its reader still reads
    close_mic(mic, mic_stream)
    assert host.open_streams == 0 and made[1].closed_by_terminate == []


def test_a_speaker_plugged_in_after_start_up_is_found_at_the_next_press_although_the_mic_opens_first():
    factory, made = snapshots([USB_MIC], [USB_MIC], [USB_MIC, USB_SPEAKER])
    host = PortAudioHost(factory)
    mic, speaker = PyAudioMic("usb pnp", portaudio=host), PyAudioSpeaker("uacdemo", portaudio=host)
    mic.open(lambda frames: None)
    with pytest.raises(AudioDeviceError):
        speaker.open(lambda: None)
    close_mic(mic, made[-1].streams[0])
    # the speaker is plugged in; at the next press the mic's lookup notices the served speaker is
    # missing from the snapshot and reads the list again while nothing is open
    mic.open(lambda frames: None)
    speaker.open(lambda: None)
    assert len(made) == 3 and speaker.device_name == USB_SPEAKER["name"] and host.open_streams == 2
    assert all(pa.closed_by_terminate == [] for pa in made)
    close_mic(mic, made[2].streams[0])
    speaker.close()
    assert host.open_streams == 0 and made[2].streams[1].closed


def test_portaudio_host_with_every_served_device_present_never_re_enumerates_nor_tests_formats_again():
    factory, made = snapshots([USB_MIC, USB_SPEAKER])
    host = PortAudioHost(factory)
    mic, speaker = PyAudioMic("usb pnp", portaudio=host), PyAudioSpeaker("uacdemo", portaudio=host)

    def conversation():
        mic.open(lambda frames: None)
        speaker.open(lambda: None)
        close_mic(mic, made[0].streams[-2])
        speaker.close()
    conversation()
    checks = made[0].format_checks
    assert checks >= 2
    for _ in range(2):              # one initialisation (~80 ms on a Pi) and one format test per device in all
        conversation()
    assert len(made) == 1 and not made[0].terminated and host.open_streams == 0
    assert made[0].format_checks == checks
    assert [s.kwargs["rate"] for s in made[0].streams] == [48000, 48000] * 3

    # an open that fails (another device now under that name?) has the formats worked out again
    made[0].open_error = OSError(pyaudio.paDeviceUnavailable, "Device unavailable")
    with pytest.raises(AudioDeviceError, match="busy or unplugged"):
        mic.open(lambda frames: None)
    conversation()
    assert made[0].format_checks > checks


def test_mic_errors_list_inputs_and_rates():
    pa = FakePyAudio([SPEAKER_ONLY, USB_MIC, STEREO_MIC])
    with pytest.raises(AudioDeviceError) as err:
        PyAudioMic("respeaker", pyaudio_factory=pa).open(lambda frames: None)
    msg = str(err.value)
    assert "'respeaker'" in msg and "[1] 'USB PnP Sound Device: Audio (hw:1,0)'" in msg and "44100, 48000" in msg
    assert "[2] 'Webcam C270" in msg and "16000, 48000" in msg and "bcm2835" not in msg
    odd = FakePyAudio([{"name": "Odd codec", "inputs": {11025: (1,), 96000: (1,)}}])
    with pytest.raises(AudioDeviceError) as err:
        PyAudioMic("odd", 24000, pyaudio_factory=odd).open(lambda frames: None)
    assert "'Odd codec' supports none of 24000, 16000, 48000" in str(err.value)
    assert "supports: none of" in str(err.value)  # neither 11025 nor 96000 is a rate we can use


def test_mic_falls_back_from_an_unsupported_configured_rate(caplog):
    pa = FakePyAudio([USB_MIC])
    mic = PyAudioMic("USB PnP", 16000, pyaudio_factory=pa)
    with caplog.at_level(logging.WARNING):
        mic.open(lambda frames: None)
    assert mic.sample_rate_hz == 48000 and "does not support 16000 Hz; using 48000 Hz" in caplog.text
    close_mic(mic, pa.streams[0])


def test_mic_prefers_exact_name_and_falls_back_when_no_default():
    pa = FakePyAudio([{"name": "pulse", "inputs": {16000: (1,)}}, {"name": "pulse monitor", "inputs": {8000: (1,)}},
                      {"name": "Pulse", "inputs": {8000: (1,)}}], default_input=None)
    mic = PyAudioMic("pulse", pyaudio_factory=pa)
    mic.open(lambda frames: None)
    assert pa.streams[0].kwargs["input_device_index"] == 0 and mic.sample_rate_hz == 16000
    close_mic(mic, pa.streams[0])
    with pytest.raises(AudioDeviceError, match="no audio input device matches 'default'"):
        PyAudioMic("default", pyaudio_factory=pa).open(lambda frames: None)
