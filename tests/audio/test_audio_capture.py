import logging
import threading

import numpy as np
import pyaudio
import pytest

from pivoice.audio.devices import PortAudioHost
from pivoice.audio.capture import PyAudioMic, WavMic
from pivoice.audio.ports import AudioDeviceError
from support.fixtures_audio import FakePyAudio, tone, write_wav


class FakeClock:
    """Monotonic clock whose sleep advances time by the request plus a fixed overshoot."""

    def __init__(self, overshoot_s=0.003):
        self.now_s, self.overshoot_s = 100.0, overshoot_s

    def __call__(self):
        return self.now_s

    def sleep(self, seconds):
        self.now_s += seconds + self.overshoot_s


def collect(mic, n_frames):
    got, done = [], threading.Event()

    def on_frame(frame):
        got.append((mic_clock(), frame))
        if len(got) == n_frames:
            done.set()

    mic_clock = mic._clock
    mic.open(on_frame)
    assert done.wait(5)
    mic.close()
    return got


def test_wav_mic_paces_against_the_clock_without_drift(tmp_path):
    path = write_wav(tmp_path / "t.wav", tone(440, 0.5, 16000), 16000)
    clock = FakeClock(overshoot_s=0.003)
    got = collect(WavMic(path, 20, clock=clock, sleep=clock.sleep), 60)[:60]  # fake time runs on until close
    times = np.array([t for t, _ in got]) - 100.0
    due = np.arange(60) * 0.020
    late = times - due
    # every frame is on time or a single sleep overshoot late; lateness does not grow with n
    assert np.all(late >= -1e-9) and np.all(late <= 0.003 + 1e-9)
    assert all(len(f) == 640 for _, f in got)
    pcm = b"".join(f for _, f in got)
    assert pcm[:16000] == tone(440, 0.5, 16000).tobytes()[:16000]
    assert pcm[16000:] == bytes(len(pcm) - 16000)  # silence after the end of the file


def test_wav_mic_stereo_any_rate_and_unpaced(tmp_path):
    left = tone(300, 0.2, 22050)
    path = write_wav(tmp_path / "st.wav", np.stack([left, left // 2], axis=1), 22050)
    mic = WavMic(path, 20, realtime=False)
    assert mic.sample_rate_hz == 22050
    got = collect(mic, 12)
    mono = np.frombuffer(b"".join(f for _, f in got), dtype="<i2")
    assert len(got[0][1]) == 441 * 2
    expect = np.round((left.astype(float) + (left // 2)) / 2)
    assert np.abs(mono[:len(left)] - expect).max() <= 1


@pytest.mark.parametrize("content,problem", [(b"not a wav", "cannot read"), (None, "8-bit")])
def test_wav_mic_bad_file_names_path_and_problem(tmp_path, content, problem):
    path = tmp_path / "bad.wav"
    if content is None:
        import wave
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1), w.setsampwidth(1), w.setframerate(8000), w.writeframes(b"\x80" * 80)
    else:
        path.write_bytes(content)
    with pytest.raises(AudioDeviceError, match=problem) as err:
        WavMic(path)
    assert str(path) in str(err.value)
    with pytest.raises(AudioDeviceError, match="missing.wav"):
        WavMic(tmp_path / "missing.wav")


USB_MIC = {"name": "USB PnP Sound Device: Audio (hw:1,0)", "inputs": {44100: (1,), 48000: (1,)}}
STEREO_MIC = {"name": "Webcam C270: USB Audio (hw:2,0)", "inputs": {16000: (2,), 48000: (2,)}}
SPEAKER_ONLY = {"name": "bcm2835 Headphones (hw:0,0)", "outputs": {48000: (2,)}}


def test_mic_picks_device_by_substring_and_first_supported_rate():
    pa = FakePyAudio([SPEAKER_ONLY, USB_MIC, STEREO_MIC])
    mic = PyAudioMic("usb pnp", pyaudio_factory=pa)
    mic.open(lambda f: None)
    kwargs = pa.streams[0].kwargs
    assert kwargs["input_device_index"] == 1 and kwargs["rate"] == 48000 and kwargs["channels"] == 1
    assert kwargs["frames_per_buffer"] == 960 and mic.sample_rate_hz == 48000
    mic.close()
    mic.close()  # idempotent
    # PortAudio stays initialised between conversations: re-enumerating costs ~80 ms per press
    assert pa.streams[0].closed and not pa.terminated


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
    mic.open(lambda f: None)   # not in the first snapshot: the host re-enumerates once and finds it
    assert len(made) == 2 and before.terminated and after.streams
    mic.close()
    with pytest.raises(AudioDeviceError, match="respeaker"):
        PyAudioMic("respeaker", portaudio=host).open(lambda f: None)


def test_mic_downmixes_stereo_reframes_and_counts_overflows(caplog):
    pa = FakePyAudio([STEREO_MIC])
    frames = []
    mic = PyAudioMic("webcam", pyaudio_factory=pa)
    mic.open(frames.append)
    assert pa.streams[0].kwargs["channels"] == 2 and mic.sample_rate_hz == 16000
    stereo = np.stack([np.full(480, 100), np.full(480, 300)], axis=1).astype("<i2")  # 30 ms chunk
    cb = pa.streams[0].callback
    with caplog.at_level(logging.WARNING):
        for _ in range(2):
            assert cb(stereo.tobytes(), 480, {}, pyaudio.paInputOverflow) == (None, pyaudio.paContinue)
    assert len(frames) == 3 and all(f == np.full(320, 200, dtype="<i2").tobytes() for f in frames)
    assert mic.overflows == 2
    assert sum("overflow" in r.message for r in caplog.records) == 1  # rate-limited
    mic.close()


def test_mic_errors_list_inputs_and_rates():
    pa = FakePyAudio([SPEAKER_ONLY, USB_MIC, STEREO_MIC])
    with pytest.raises(AudioDeviceError) as err:
        PyAudioMic("respeaker", pyaudio_factory=pa).open(lambda f: None)
    msg = str(err.value)
    assert "'respeaker'" in msg and "[1] 'USB PnP Sound Device: Audio (hw:1,0)'" in msg and "44100, 48000" in msg
    assert "[2] 'Webcam C270" in msg and "16000, 48000" in msg and "bcm2835" not in msg
    odd = FakePyAudio([{"name": "Odd codec", "inputs": {11025: (1,), 96000: (1,)}}])
    with pytest.raises(AudioDeviceError) as err:
        PyAudioMic("odd", 24000, pyaudio_factory=odd).open(lambda f: None)
    assert "'Odd codec' supports none of 24000, 16000, 48000" in str(err.value)
    assert "supports: none of" in str(err.value)  # neither 11025 nor 96000 is a rate we can use


def test_mic_falls_back_from_an_unsupported_configured_rate(caplog):
    pa = FakePyAudio([USB_MIC])
    mic = PyAudioMic("USB PnP", 16000, pyaudio_factory=pa)
    with caplog.at_level(logging.WARNING):
        mic.open(lambda f: None)
    assert mic.sample_rate_hz == 48000 and "does not support 16000 Hz; using 48000 Hz" in caplog.text
    mic.close()


def test_mic_prefers_exact_name_and_falls_back_when_no_default():
    pa = FakePyAudio([{"name": "pulse", "inputs": {16000: (1,)}}, {"name": "pulse monitor", "inputs": {8000: (1,)}},
                      {"name": "Pulse", "inputs": {8000: (1,)}}], default_input=None)
    mic = PyAudioMic("pulse", pyaudio_factory=pa)
    mic.open(lambda f: None)
    assert pa.streams[0].kwargs["input_device_index"] == 0 and mic.sample_rate_hz == 16000
    mic.close()
    with pytest.raises(AudioDeviceError, match="no audio input device matches 'default'"):
        PyAudioMic("default", pyaudio_factory=pa).open(lambda f: None)
