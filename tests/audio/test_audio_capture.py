import logging
import threading
import wave

import numpy as np
import pyaudio
import pytest

from pivoice.audio.devices import PortAudioHost
from pivoice.audio.capture import PyAudioMic, WavMic, read_wav_input
from pivoice.audio.ports import AudioDeviceError, WavDeviceError
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


def _wav_with(path, width=2, channels=1):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels), w.setsampwidth(width), w.setframerate(8000)
        w.writeframes(b"\x01" * 80 * width * channels)
    return path


@pytest.mark.parametrize("make,problem", [
    (lambda d: d / "missing.wav", "no such file"),
    (lambda d: d, "is a directory, not a WAV file"),
    (lambda d: (d / "text.wav").write_bytes(b"not a wav") and d / "text.wav",
     "not a 16-bit PCM WAV file (file does not start with RIFF id)"),
    (lambda d: _wav_with(d / "8bit.wav", width=1), "8-bit samples; need 16-bit signed PCM"),
    (lambda d: _wav_with(d / "24bit.wav", width=3), "24-bit samples; need 16-bit signed PCM"),
    (lambda d: _wav_with(d / "quad.wav", channels=4), "4 channels; need mono or stereo"),
])
def test_wav_mic_errors_name_the_config_key_the_path_and_the_problem(tmp_path, make, problem):
    path = make(tmp_path)
    with pytest.raises(WavDeviceError) as err:
        WavMic(path)
    assert str(err.value) == f"audio.input.device wav:{path}: {problem}"
    assert (err.value.key, err.value.path, err.value.problem) == ("audio.input.device", str(path), problem)
    with pytest.raises(WavDeviceError) as again:
        read_wav_input(str(path), header_only=True)   # the start-up check says the same
    assert str(again.value) == str(err.value)


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


class StepClock:
    def __init__(self):
        self.now_s = 50.0

    def __call__(self):
        return self.now_s


def running(stream):
    """Give a FakeStream PortAudio's is_active(); the test flips `stream.active`."""
    stream.active = True
    stream.is_active = lambda: stream.active
    return stream


def test_mic_downmixes_stereo_reframes_and_counts_overflows(caplog):
    clock = StepClock()
    pa = FakePyAudio([STEREO_MIC])
    frames = []
    mic = PyAudioMic("webcam", pyaudio_factory=pa, monotonic=clock)
    mic.open(frames.append)
    stream = running(pa.streams[0])
    assert stream.kwargs["channels"] == 2 and mic.sample_rate_hz == 16000
    stereo = np.stack([np.full(480, 100), np.full(480, 300)], axis=1).astype("<i2")  # 30 ms chunk
    with caplog.at_level(logging.WARNING):
        for _ in range(2):
            assert stream.callback(stereo.tobytes(), 480, {}, pyaudio.paInputOverflow) == (None, pyaudio.paContinue)
        assert not caplog.records   # the audio thread never logs (ports.py)
        mic.check_stream()          # the controller thread's tick reports them, rate-limited
        mic.check_stream()
        stream.callback(stereo.tobytes(), 480, {}, pyaudio.paInputOverflow)
        for _ in range(2):          # 5 s later: still inside the 10 s window; 10 s: reported
            clock.now_s += 5.0
            stream.callback(stereo.tobytes(), 480, {}, 0)
            mic.check_stream()
    assert len(frames) == 7 and all(f == np.full(320, 200, dtype="<i2").tobytes() for f in frames)
    assert [r.getMessage() for r in caplog.records] == [
        "mic 'Webcam C270: USB Audio (hw:2,0)': input overflow (2 since start, 2 since the last report); "
        "audio was lost",
        "mic 'Webcam C270: USB Audio (hw:2,0)': input overflow (3 since start, 1 since the last report); "
        "audio was lost"]
    assert mic.stats() == {"device": "Webcam C270: USB Audio (hw:2,0)", "overflows": 3, "stream_errors": 0,
                           "last_error": None}
    mic.close()


def test_mic_callback_that_raises_reports_once_and_aborts_the_stream():
    pa = FakePyAudio([USB_MIC])
    errors = []

    def on_frame(frame):
        raise RuntimeError("queue is broken")
    mic = PyAudioMic("usb pnp", pyaudio_factory=pa)
    mic.open(on_frame, errors.append)
    stream = running(pa.streams[0])
    frame = bytes(960 * 2)
    assert stream.callback(frame, 960, {}, 0) == (None, pyaudio.paAbort)
    assert stream.callback(frame, 960, {}, 0) == (None, pyaudio.paAbort)   # PortAudio would not call again
    stream.active = False    # what paAbort does to a real stream
    mic.check_stream()
    assert errors == ["input 'USB PnP Sound Device: Audio (hw:1,0)': audio callback failed "
                      "(RuntimeError: queue is broken)"]
    assert mic.stats()["stream_errors"] == 1 and mic.stats()["last_error"] == errors[0]
    mic.close()
    mic.open(lambda f: None, errors.append)   # the next conversation starts clean
    assert running(pa.streams[1]).callback(frame, 960, {}, 0) == (None, pyaudio.paContinue)
    mic.check_stream()
    assert len(errors) == 1
    mic.close()


def test_mic_watchdog_reports_a_stream_that_stopped_or_stalled_once_and_never_after_close():
    clock = StepClock()
    pa = FakePyAudio([USB_MIC])
    errors = []
    mic = PyAudioMic("usb pnp", pyaudio_factory=pa, monotonic=clock, stall_s=2.0)
    mic.open(lambda f: None, errors.append)
    stream = running(pa.streams[0])
    for _ in range(5):              # callbacks keep coming: healthy however long it runs
        clock.now_s += 1.5
        stream.callback(bytes(1920), 960, {}, 0)
        mic.check_stream()
    assert errors == []
    clock.now_s += 1.9
    mic.check_stream()
    assert errors == []
    clock.now_s += 0.2              # 2.1 s without a callback while PortAudio still says active
    mic.check_stream()
    mic.check_stream()
    assert errors == ["input 'USB PnP Sound Device: Audio (hw:1,0)': no audio callback for 2.1 s (device stalled)"]
    mic.close()

    mic.open(lambda f: None, errors.append)
    stream = running(pa.streams[1])
    stream.active = False           # PortAudio's callback thread ended (device unplugged)
    mic.check_stream()
    mic.check_stream()
    assert errors[1:] == ["input 'USB PnP Sound Device: Audio (hw:1,0)': stream no longer running "
                          "(device unplugged, sound server gone or driver error)"]
    mic.close()
    mic.open(lambda f: None, errors.append)
    running(pa.streams[2])
    mic.close()
    clock.now_s += 60
    mic.check_stream()              # closed: nothing to watch, nothing reported
    assert len(errors) == 2 and mic.stats()["stream_errors"] == 2


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
