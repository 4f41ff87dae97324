"""The PlayoutBuffer between the controller and a speaker's audio thread (priming, drain, played
position), and the WAV-file speaker that uses it."""

import threading
import time
import wave

import numpy as np

from pivoice.audio.playback import WavSpeaker
from pivoice.audio.playout import PlayoutBuffer
from support.audio_fakes import StepClock, ramp
from support.fixtures_audio import read_wav


def test_priming_waits_for_prime_samples_or_prime_time():
    buf = PlayoutBuffer(1000, prime_samples=60, clock=StepClock())
    buf.write(ramp(50))
    assert buf.pull(20) == (bytes(40), False)   # 50 < 60 queued: still priming
    assert buf.pull(20) == (bytes(40), False)
    assert buf.pull(20) == (bytes(40), False)   # waited 60 samples' worth: next pull releases
    data, drained = buf.pull(20)
    assert data == ramp(20) and not drained
    buf.write(ramp(100, 21))                     # primed already: no new wait mid-reply
    assert buf.pull(20)[0] == ramp(20, 21)


def test_drained_fires_once_after_the_device_latency_and_not_after_stop():
    buf = PlayoutBuffer(1000, prime_samples=0, latency_samples=30, clock=StepClock())
    buf.write(ramp(30))
    data, drained = buf.pull(20)
    assert data == ramp(20) and not drained
    data, drained = buf.pull(20)                 # 10 audio + 10 silence: last sample still in the device
    assert data == ramp(10, 21) + bytes(20) and not drained
    assert buf.pull(20) == (bytes(40), True)     # 30 silence samples after the last audio: played out
    assert buf.pull(20) == (bytes(40), False)    # only once
    buf.write(ramp(40))
    buf.pull(20)
    buf.clear()                                   # barge-in
    assert [buf.pull(20)[1] for _ in range(5)] == [False] * 5


def test_played_samples_excludes_the_device_buffer_and_interpolates():
    clock = StepClock()
    buf = PlayoutBuffer(1000, prime_samples=0, latency_samples=40, clock=clock)
    buf.write(ramp(100))
    for _ in range(3):
        buf.pull(20)                              # 60 handed out, 40 of them still in the device
    assert buf.played_samples() == 20 and buf.pending_samples() == 80
    clock.now_s += 0.010                          # 10 ms later the device played 10 more
    assert buf.played_samples() == 30
    clock.now_s += 1.0                            # never more than was handed out
    assert buf.played_samples() == 60


def test_wav_speaker_real_time(tmp_path):
    path = tmp_path / "spk.wav"
    drained = threading.Event()
    spk = WavSpeaker(path, 16000, realtime=True, flush_s=0.1)
    spk.open(drained.set)
    try:
        t0 = time.monotonic()
        spk.write(ramp(6400))  # 0.4 s, no zero samples
        time.sleep(0.2)
        mid = spk.played_samples()
        assert 0.2 * 16000 - 800 <= mid <= (time.monotonic() - t0) * 16000 + 400
        assert drained.wait(2)
        assert 0.4 <= time.monotonic() - t0 <= 0.6     # drained when played out, not when queued
        assert spk.played_samples() == 6400 and spk.pending_samples() == 0
        time.sleep(0.15)
        with wave.open(str(path), "rb") as w:          # readable mid-run: header patched and flushed
            assert w.getframerate() == 16000 and w.getnframes() >= 6400
    finally:
        spk.close()
    x, _, _ = read_wav(path)
    played = x[np.flatnonzero(x)[0]:][:6400]
    assert played.tobytes() == ramp(6400) and np.count_nonzero(x) == 6400  # the timeline holds the audio once


def test_wav_speaker_reopened_appends(tmp_path):
    path = tmp_path / "spk.wav"
    spk = WavSpeaker(path, 8000, realtime=False)
    for start in (1, 1001):
        drained = threading.Event()
        spk.open(drained.set)
        spk.write(ramp(800, start))
        assert drained.wait(2)
        spk.close()
    x, rate_hz, _ = read_wav(path)
    assert rate_hz == 8000 and x.tobytes() == ramp(800, 1) + ramp(800, 1001)


def test_wav_speaker_write_failure_is_reported_once_through_on_error():
    # /dev/full accepts open() and fails every flushed write with ENOSPC: a disk that filled up
    errors, reported = [], threading.Event()

    def on_error(reason):
        errors.append(reason)
        reported.set()
    spk = WavSpeaker("/dev/full", 24000, realtime=True, flush_s=0.05)
    spk.open(lambda: None, on_error)
    try:
        spk.write(ramp(24000))
        assert reported.wait(3)
        time.sleep(0.1)
        spk.check_stream()           # the thread ended, but it has said so already
    finally:
        spk.close()                  # closing a file that cannot be flushed must not raise either
    assert errors == ["wav:/dev/full: writing failed (OSError: No space left on device)"]
    assert spk.stats()["stream_errors"] == 1
