"""`PyAudioMic` picks its device and rate: by name or substring, the first supported rate, the shared
PortAudio host that re-enumerates for a hot-plugged device, and errors that list what exists."""

import logging

import pyaudio
import pytest

from pivoice.audio.capture import PyAudioMic
from pivoice.audio.devices import PortAudioHost
from pivoice.audio.ports import AudioDeviceError
from support.audio_fakes import close_mic
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
    # a period of two frames, so the first one-frame read returns after about one frame
    assert kwargs["frames_per_buffer"] == 1920 and mic.sample_rate_hz == 48000
    with pytest.raises(RuntimeError, match="already open"):
        mic.open(lambda frames: None)
    close_mic(mic, stream)
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
