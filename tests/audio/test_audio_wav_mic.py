"""The WAV-file microphone: pacing against the clock, the first frame alone then `block_ms` groups,
the file checks that name the config key, and a failing pacing thread reported once."""

import time
import wave

import numpy as np
import pytest

from pivoice.audio.capture import WavMic, read_wav_input
from pivoice.audio.ports import WavDeviceError
from support.audio_fakes import Groups, Reports
from support.fixtures_audio import tone, write_wav


class FakeClock:
    """Monotonic clock whose sleep advances time by the request plus a fixed overshoot."""

    def __init__(self, overshoot_s=0.003):
        self.now_s, self.overshoot_s = 100.0, overshoot_s

    def __call__(self):
        return self.now_s

    def sleep(self, seconds):
        self.now_s += seconds + self.overshoot_s


def collect(mic, n_frames, clock=time.monotonic):
    """(delivery time, frame) for the first n_frames of a WavMic, each frame stamped with its group's
    time by `clock` (the mic's own), and the groups."""
    groups = Groups(clock)
    mic.open(groups)
    groups.wait_frames(n_frames, 5)
    mic.close()
    return [(t, f) for t, group in zip(groups.times_s, groups.groups) for f in group][:n_frames], groups


def test_wav_mic_paces_against_the_clock_without_drift(tmp_path):
    path = write_wav(tmp_path / "t.wav", tone(440, 0.5, 16000), 16000)
    clock = FakeClock(overshoot_s=0.003)
    got, groups = collect(WavMic(path, 20, clock=clock, sleep=clock.sleep), 60, clock)  # fake time runs on until close
    assert {len(g) for g in groups.groups} == {1}   # block_ms defaults to frame_ms: one frame per call
    times = np.array([t for t, _ in got]) - 100.0
    due = np.arange(60) * 0.020
    late = times - due
    # every frame is on time or a single sleep overshoot late; lateness does not grow with n
    assert np.all(late >= -1e-9) and np.all(late <= 0.003 + 1e-9)
    assert all(len(f) == 640 for _, f in got)
    pcm = b"".join(f for _, f in got)
    assert pcm[:16000] == tone(440, 0.5, 16000).tobytes()[:16000]
    assert pcm[16000:] == bytes(len(pcm) - 16000)  # silence after the end of the file


def test_wav_mic_delivers_the_first_frame_alone_then_block_ms_groups_on_the_same_pacing(tmp_path):
    audio = tone(440, 0.5, 16000)
    path = write_wav(tmp_path / "t.wav", audio, 16000)
    clock = FakeClock(overshoot_s=0.003)
    got, groups = collect(WavMic(path, 20, block_ms=100, clock=clock, sleep=clock.sleep), 61, clock)
    sizes = [len(g) for g in groups.groups]
    assert sizes[0] == 1 and set(sizes[1:12]) == {5}   # a press waits for one frame, not for a block
    # a group goes out when its last frame is due (group k ends with frame 5k), never before it
    group_times = np.array(groups.times_s[:13]) - 100.0
    group_due = np.arange(13) * 5 * 0.020
    assert np.all(group_times - group_due >= -1e-9) and np.all(group_times - group_due <= 0.003 + 1e-9)
    # and each frame is delivered no earlier than it is due: the pacing of the frames has not changed
    frame_late = np.array([t for t, _ in got]) - 100.0 - np.arange(61) * 0.020
    assert np.all(frame_late >= -1e-9)
    pcm = b"".join(f for _, f in got)
    assert all(len(f) == 640 for _, f in got)
    assert pcm[:16000] == audio.tobytes() and pcm[16000:] == bytes(len(pcm) - 16000)
    with pytest.raises(ValueError, match="block_ms 30 is not a multiple of frame_ms 20"):
        WavMic(path, 20, block_ms=30)


def test_wav_mic_stereo_any_rate_and_unpaced(tmp_path):
    left = tone(300, 0.2, 22050)
    path = write_wav(tmp_path / "st.wav", np.stack([left, left // 2], axis=1), 22050)
    mic = WavMic(path, 20, block_ms=60, realtime=False)
    assert mic.sample_rate_hz == 22050
    got, groups = collect(mic, 13)
    assert [len(g) for g in groups.groups[:5]] == [1, 3, 3, 3, 3]
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


def test_wav_mic_pacing_thread_failure_is_reported_once(tmp_path):
    path = write_wav(tmp_path / "t.wav", np.full(1600, 5, dtype="<i2"), 16000)
    errors = Reports()

    def on_frames(frames):
        raise ValueError("controller queue closed")
    mic = WavMic(path, 20, realtime=False)
    mic.open(on_frames, errors)
    try:
        errors.wait()
        mic.check_stream()
    finally:
        mic.close()
    assert errors.reasons == [f"wav:{path}: pacing thread failed (ValueError: controller queue closed)"]
