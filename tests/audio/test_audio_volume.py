"""Output volume (audio/volume.py) applied in the downlink: a square-law gain that never clips."""

import numpy as np
import pytest

from pivoice.audio.downlink import Downlink
from pivoice.audio.volume import Volume


class Speaker:
    sample_rate_hz = 24000

    def __init__(self):
        self.written = []

    def open(self, on_drained, on_error=None):
        pass

    def write(self, pcm16):
        self.written.append(pcm16)

    def played_samples(self):
        return 0

    def pending_samples(self):
        return 0


FULL_SCALE = np.array([32767, -32768, 1000, -1000, 0], dtype="<i2").tobytes()


@pytest.mark.parametrize("percent,gain", [(100, 1.0), (50, 0.25), (10, 0.01), (0, 0.0)])
def test_volume_is_a_square_law_gain_without_clipping(percent, gain):
    out = np.frombuffer(Volume(percent).apply(FULL_SCALE), dtype="<i2")
    expected = np.round(np.array([32767, -32768, 1000, -1000, 0]) * gain)
    assert np.array_equal(out, expected)


@pytest.mark.parametrize("bad", [-1, 101, 50.5, "50", True, None])
def test_volume_outside_0_to_100_is_refused_and_the_old_value_kept(bad):
    volume = Volume(70)
    with pytest.raises(ValueError, match="volume must be an integer 0..100"):
        volume.set_volume_percent(bad)
    assert volume.volume_percent() == 70


def test_the_downlink_applies_the_volume_from_the_next_chunk_on():
    speaker, volume = Speaker(), Volume(100)
    downlink = Downlink(speaker, "audio/pcm", volume=volume)
    downlink.open(lambda: None)
    chunk = (np.full(2400, 8000, dtype="<i2")).tobytes()
    downlink.play(chunk)
    volume.set_volume_percent(50)   # e.g. from the volume tool's worker thread, mid-reply
    downlink.play(chunk)
    first, second = (np.frombuffer(w, dtype="<i2") for w in speaker.written)
    assert first.max() == 8000 and second.max() == 2000
