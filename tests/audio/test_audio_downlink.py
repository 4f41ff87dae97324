import threading
import time

import numpy as np
import pytest

from pivoice.audio import codec
from pivoice.audio.downlink import Downlink
from pivoice.audio.playback import WavSpeaker
from support.fixtures_audio import read_wav, tone


class LedgerSpeaker:
    """Speaker whose playback position the test sets explicitly."""

    def __init__(self, sample_rate_hz=48000):
        self.sample_rate_hz = sample_rate_hz
        self.written = 0
        self.played = 0
        self.stopped = 0

    def open(self, on_drained, on_error=None):
        self.on_drained, self.on_error = on_drained, on_error

    def write(self, pcm16):
        self.written += len(pcm16) // 2

    def stop(self):
        self.stopped += 1
        self.written = self.played

    def played_samples(self):
        return self.played

    def pending_samples(self):
        return self.written - self.played

    def close(self):
        pass


def pcm_ms(ms, fmt=codec.PCM):
    x = tone(440, ms / 1000, codec.wire_rate_hz(fmt))
    return codec.encode(fmt, x.tobytes())


@pytest.mark.parametrize("fmt", [codec.PCM, codec.PCMU, codec.PCMA])
def test_truncation_is_min_of_played_and_received_floored(fmt):
    spk = LedgerSpeaker()
    down = Downlink(spk, fmt, clock=lambda: 12.5)
    down.open(lambda: None)
    down.begin_reply()
    down.play(pcm_ms(1000, fmt))
    assert down.received_ms == pytest.approx(1000)
    assert down.first_sample_at == 12.5
    down.finish_reply()  # flushes what the resampler filter held back
    assert spk.written == pytest.approx(48000, abs=10)  # resampled to the speaker rate
    spk.played = 48000 * 437.9 / 1000  # 437.9 ms reached the speaker
    assert down.stop() == 437 and spk.stopped == 1
    # played beyond what was received cannot be reported (server rejects audio_end_ms past the end)
    down.begin_reply()
    down.play(pcm_ms(100, fmt))
    spk.played += 48000  # a whole second "played": e.g. a device clock running ahead
    assert down.stop() == 100


def test_reply_starts_after_audio_still_queued_from_the_previous_one():
    spk = LedgerSpeaker(24000)
    down = Downlink(spk, codec.PCM)
    down.open(lambda: None)
    down.play(pcm_ms(500))            # reply 1, not stopped, still queued
    spk.played = 2400                 # 100 ms of it played so far
    down.begin_reply()                # reply 2 will play after the remaining 400 ms
    down.play(pcm_ms(300))
    assert down.played_ms() == 0 and down.first_sample_at is not None
    spk.played = 12000 + 2400         # reply 1 done, 100 ms of reply 2
    assert down.played_ms() == pytest.approx(100)
    assert down.stop() == 100


def test_barge_in_on_a_real_time_wav_speaker(tmp_path):
    drained = threading.Event()
    spk = WavSpeaker(tmp_path / "out.wav", sample_rate_hz=24000, realtime=True)
    down = Downlink(spk, codec.PCMU)
    down.open(drained.set)
    try:
        down.begin_reply()
        for _ in range(10):
            down.play(pcm_ms(100, codec.PCMU))  # 1 s arrives at once, faster than real time
        t0 = time.monotonic()
        time.sleep(0.3)
        heard_ms = down.stop()
        elapsed_ms = (time.monotonic() - t0) * 1000
        assert 300 - 60 <= heard_ms <= elapsed_ms + 5
        assert spk.pending_samples() <= 24000 * 0.02 + 1  # at most one tick still "in the device"
        time.sleep(0.1)
        assert not drained.is_set()  # stopped audio is not reported as drained
        down.begin_reply()
        down.play(pcm_ms(200, codec.PCMU))
        down.finish_reply()
        assert drained.wait(2.0)
        assert down.played_ms() == pytest.approx(200, abs=5)
    finally:
        down.close()
    x, rate_hz, _ = read_wav(tmp_path / "out.wav")
    loud_s = np.count_nonzero(np.abs(x) > 1000) / rate_hz
    assert rate_hz == 24000 and 0.3 <= loud_s <= 0.62  # ~0.3 s of reply 1 + 0.2 s of reply 2
