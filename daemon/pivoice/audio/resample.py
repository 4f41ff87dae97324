"""Streaming sample-rate conversion of mono s16le bytes (libsoxr).

One instance per direction and stream: the filter state carries across chunks, so there are no
clicks at chunk boundaries. Not thread-safe; used from the controller thread.
"""

from __future__ import annotations

import numpy as np
import soxr

# "auto" picks per direction. Upsampling (16 kHz mic -> 24 kHz wire, 24 kHz reply -> 48 kHz
# speaker) uses "QQ", cubic interpolation: nothing above the input's Nyquist exists to alias, and
# it returns every chunk's samples at once. soxr's band-limited qualities release output in
# blocks: with "LQ" the first 20 ms chunk yields nothing and later ones arrive in 20-60 ms lumps
# (measured: 16->24 kHz [0, 900, 450, ...] bytes; 16->8 kHz nothing until the 4th chunk), which
# every press and every reply would pay. Downsampling (48 kHz mic -> 24 kHz, anything -> 8 kHz
# G.711) needs a real anti-alias filter, so it uses "LQ", soxr's 16-bit-precision filter: our
# samples are 16-bit, so HQ/VHQ buy nothing audible and hold audio back longer still.
DEFAULT_QUALITY = "auto"


def pick_quality(in_rate_hz: int, out_rate_hz: int, quality: str) -> str:
    if quality != "auto":
        return quality
    return "QQ" if out_rate_hz > in_rate_hz else "LQ"


class StreamResampler:
    """s16le mono bytes at `in_rate_hz` in, s16le mono bytes at `out_rate_hz` out."""

    def __init__(self, in_rate_hz: int, out_rate_hz: int, quality: str = DEFAULT_QUALITY) -> None:
        self.in_rate_hz, self.out_rate_hz = int(in_rate_hz), int(out_rate_hz)
        self.quality = pick_quality(self.in_rate_hz, self.out_rate_hz, quality)
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
