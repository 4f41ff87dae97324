"""Sounds the device makes on its own, generated (nothing shipped): the timer chime.

Returned in the session's wire format, so they take the same path to the speaker as reply audio.
Pure functions, cached; safe from any thread.
"""

from __future__ import annotations

import functools

import numpy as np

from pivoice.audio import codec

TIMER_CHIME_S = 1.2
# three rising two-tone dings: clearly a device sound, not speech, and audible across a kitchen
_DINGS = ((0.0, 880.0), (0.4, 1108.7), (0.8, 1318.5))
_DING_S = 0.35
_PEAK = 0.35 * 32767   # well below full scale: the output volume still applies on top


@functools.cache
def timer_chime(fmt: str) -> bytes:
    rate_hz = codec.wire_rate_hz(fmt)
    out = np.zeros(int(TIMER_CHIME_S * rate_hz))
    t = np.arange(int(_DING_S * rate_hz)) / rate_hz
    envelope = np.minimum(1.0, t / 0.005) * np.exp(-t * 9.0)   # 5 ms attack, no click; bell-like decay
    for start_s, freq_hz in _DINGS:
        ding = envelope * (np.sin(2 * np.pi * freq_hz * t) + 0.4 * np.sin(2 * np.pi * 2 * freq_hz * t)) / 1.4
        start = int(start_s * rate_hz)
        out[start:start + len(ding)] += ding
    pcm16 = np.round(out * _PEAK).astype("<i2").tobytes()
    return codec.encode(fmt, pcm16)
