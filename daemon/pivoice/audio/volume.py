"""Output volume as software gain in the downlink: 0-100, 100 = the reply as the server sent it.

The gain never exceeds 1.0, so it can never clip: turning a quiet reply up is the amplifier's job.
Percent maps to gain on a square law (40 dB per decade of the knob, the usual audio taper), so
50 sounds about half as loud rather than barely quieter.

Thread: `set_volume_percent` from any thread (the volume tool's worker, the control socket);
`apply` from whichever thread writes reply audio to the speaker. A change takes effect from the
next chunk written; one float assignment, no lock needed.
"""

from __future__ import annotations

import numpy as np


class Volume:
    def __init__(self, percent: int = 100) -> None:
        self._percent = 100
        self._gain = 1.0
        self.set_volume_percent(percent)

    def volume_percent(self) -> int:
        return self._percent

    def set_volume_percent(self, percent: int) -> int:
        if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
            raise ValueError(f"volume must be an integer 0..100, got {percent!r}")
        self._percent = percent
        self._gain = (percent / 100) ** 2
        return percent

    def apply(self, pcm16: bytes) -> bytes:
        gain = self._gain
        if gain == 1.0 or not pcm16:
            return pcm16
        samples = np.frombuffer(pcm16, dtype="<i2").astype(np.float32)
        return np.round(samples * gain).astype("<i2").tobytes()
