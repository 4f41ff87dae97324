"""Streaming sample-rate conversion of mono s16le bytes (libsoxr).

One instance per direction and stream: the filter state carries across chunks, so there are no
clicks at chunk boundaries. Not thread-safe; used from the controller thread.
"""

from __future__ import annotations

import numpy as np
import soxr

# "LQ" is soxr's 16-bit-precision filter: our samples are 16-bit, so the stricter HQ (20-bit) and
# VHQ filters buy nothing audible, and LQ is the cheapest band-limited filter (CPU on x86 is ~6 us
# per 20 ms chunk for every quality, so on a Pi the difference is in the filter length). It also
# holds back the least audio at the rates we use most: ~1 ms at 24<->48 kHz and 6 ms at 16->24 kHz
# (MQ: 15-26 ms, HQ: up to 30 ms), latency every reply would pay. Rates touching 8 kHz (G.711)
# cost 35-60 ms with LQ; "QQ" (cubic, no anti-aliasing) would avoid that but aliases when
# downsampling speech, so callers that care can pass quality="QQ" for 8 kHz upsampling only.
DEFAULT_QUALITY = "LQ"


class StreamResampler:
    """s16le mono bytes at `in_rate_hz` in, s16le mono bytes at `out_rate_hz` out."""

    def __init__(self, in_rate_hz: int, out_rate_hz: int, quality: str = DEFAULT_QUALITY) -> None:
        self.in_rate_hz, self.out_rate_hz, self.quality = int(in_rate_hz), int(out_rate_hz), quality
        self.passthrough = self.in_rate_hz == self.out_rate_hz
        self._stream = None if self.passthrough else self._new_stream()

    def _new_stream(self) -> soxr.ResampleStream:
        return soxr.ResampleStream(self.in_rate_hz, self.out_rate_hz, 1, dtype="int16", quality=self.quality)

    def process(self, pcm16: bytes) -> bytes:
        if len(pcm16) % 2:
            raise ValueError(f"s16le chunk has an odd length ({len(pcm16)} bytes)")
        if self.passthrough:
            return pcm16
        samples = np.frombuffer(pcm16, dtype="<i2")
        return self._stream.resample_chunk(samples, last=False).astype("<i2", copy=False).tobytes()

    def flush(self) -> bytes:
        """Emit what the filter still holds (end of a continuous stretch) and start afresh."""
        if self.passthrough:
            return b""
        out = self._stream.resample_chunk(np.zeros(0, dtype=np.int16), last=True).astype("<i2", copy=False)
        self._stream = self._new_stream()  # soxr cannot continue after `last=True`
        return out.tobytes()

    def reset(self) -> None:
        """Forget the filter state (discontinuity such as barge-in), dropping what it held."""
        if not self.passthrough:
            self._stream = self._new_stream()
