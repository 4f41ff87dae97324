"""Wire audio formats of the Realtime API: `audio/pcm` (24 kHz s16le) and G.711 at 8 kHz, and
the down-mix every capture source needs (`to_mono`).

G.711 is done with 64 K-entry lookup tables (encode) and 256-entry tables
(decode) built once, on first use, with numpy, because `audioop` is gone from
Python 3.13 and a table lookup per sample is far cheaper than per-sample
arithmetic in Python on a Pi. Pure functions, safe from any thread.
"""

from __future__ import annotations

import functools

import numpy as np

PCM = "audio/pcm"
PCMU = "audio/pcmu"
PCMA = "audio/pcma"
FORMATS = (PCM, PCMU, PCMA)

_RATE_HZ = {PCM: 24000, PCMU: 8000, PCMA: 8000}
_BYTES_PER_SAMPLE = {PCM: 2, PCMU: 1, PCMA: 1}


def to_mono(pcm16: bytes, channels: int) -> bytes:
    """Interleaved s16le of `channels` channels -> mono, the mean of the channels, rounded."""
    if channels == 1:
        return pcm16
    samples = np.frombuffer(pcm16, dtype="<i2").reshape(-1, channels)
    return samples.mean(axis=1).round().astype("<i2").tobytes()


def wire_rate_hz(fmt: str) -> int:
    """Sample rate the API uses for a format: PCM is 24 kHz only, G.711 is 8 kHz."""
    return _RATE_HZ[fmt]


def bytes_per_ms(fmt: str) -> float:
    return _RATE_HZ[fmt] * _BYTES_PER_SAMPLE[fmt] / 1000.0


def _ulaw_decode_table() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = u & 0x80
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(sign != 0, -magnitude, magnitude).astype(np.int16)


def _alaw_decode_table() -> np.ndarray:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    sign = a & 0x80
    exponent = (a >> 4) & 0x07
    mantissa = a & 0x0F
    magnitude = np.where(exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << (exponent - 1))
    return np.where(sign != 0, magnitude, -magnitude).astype(np.int16)


def _ulaw_encode_table() -> np.ndarray:
    # G.711 works on 14-bit magnitudes; shifting first keeps rounding identical to the reference coder
    pcm = np.arange(-32768, 32768, dtype=np.int32) >> 2
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(pcm), 8159) + 0x21
    segment_ends = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
    segment = np.searchsorted(segment_ends, magnitude)
    # past the last segment the code word saturates at the loudest value
    value = np.where(segment > 7, 0x7F, (segment << 4) | ((magnitude >> (segment + 1)) & 0x0F))
    return ((value ^ mask) & 0xFF).astype(np.uint8)


def _alaw_encode_table() -> np.ndarray:
    pcm = np.arange(-32768, 32768, dtype=np.int32)
    sign = np.where(pcm >= 0, 0x80, 0)
    magnitude = np.minimum(np.where(pcm >= 0, pcm, -pcm - 1), 32767) >> 3
    # 13-bit magnitude: segment 0 is linear, the other seven are logarithmic
    exponent = np.where(magnitude < 32, 0, np.floor(np.log2(np.maximum(magnitude, 1))).astype(np.int32) - 4)
    exponent = np.clip(exponent, 0, 7)
    mantissa = np.where(exponent == 0, magnitude >> 1, magnitude >> exponent) & 0x0F
    return ((sign | (exponent << 4) | mantissa) ^ 0x55).astype(np.uint8)


# Built on first use, not at import: PCM (the default) needs none, and building the 64 K-entry
# encode tables leaves ~3.3 MiB of freed temporaries in the malloc heap that the process never
# gives back (measured: import of this module 3.5 MiB of RSS with the tables, 0.1 MiB without).
_TABLES = {(PCMU, "dec"): _ulaw_decode_table, (PCMA, "dec"): _alaw_decode_table,
           (PCMU, "enc"): _ulaw_encode_table, (PCMA, "enc"): _alaw_encode_table}


@functools.cache
def _table(fmt: str, direction: str) -> np.ndarray:
    return _TABLES[fmt, direction]()


def encode(fmt: str, pcm16: bytes) -> bytes:
    """s16le mono samples (already at `wire_rate_hz(fmt)`) -> wire bytes."""
    if fmt == PCM:
        return pcm16
    table = _table(fmt, "enc")
    samples = np.frombuffer(pcm16, dtype="<i2").astype(np.int32) + 32768
    return table[samples].tobytes()


def decode(fmt: str, payload: bytes) -> bytes:
    """Wire bytes -> s16le mono samples at `wire_rate_hz(fmt)`."""
    if fmt == PCM:
        if len(payload) % 2:
            raise ValueError(f"{PCM} payload has an odd length ({len(payload)} bytes)")
        return payload
    table = _table(fmt, "dec")
    return table[np.frombuffer(payload, dtype=np.uint8)].astype("<i2").tobytes()
