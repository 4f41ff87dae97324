"""Latency and volume figures for `ctl status`, the bench and the fleet view.

A device runs for months: per-conversation lists would grow `ctl status` forever, so each
latency keeps a bounded window of recent values plus running summary figures.

The controller thread writes; `as_dict()` may be called from any thread (it copies first).
"""

from __future__ import annotations

import statistics
from collections import deque

WINDOW = 100        # median and p95 are over the last WINDOW values
RECENT_SHOWN = 10   # the newest values listed as they are


class Latency:
    """One latency measured once per conversation (or per reply)."""

    def __init__(self, window: int = WINDOW) -> None:
        self._recent: deque[float] = deque(maxlen=window)
        self.count = 0
        self.max_ms: float | None = None

    def add(self, value_ms: float) -> None:
        self._recent.append(value_ms)
        self.count += 1
        self.max_ms = value_ms if self.max_ms is None else max(self.max_ms, value_ms)

    def as_dict(self) -> dict:
        recent = list(self._recent)
        if not recent:
            return {"count": 0, "recent_ms": [], "median_ms": None, "p95_ms": None, "max_ms": None}
        ordered = sorted(recent)
        p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
        return {"count": self.count, "recent_ms": [round(v, 1) for v in recent[-RECENT_SHOWN:]],
                "median_ms": round(statistics.median(recent), 1), "p95_ms": round(p95, 1),
                "max_ms": round(self.max_ms, 1)}


class Metrics:
    def __init__(self) -> None:
        self.press_at_s: float | None = None
        self.press_to_first_append = Latency()
        self.delta_to_speaker = Latency()   # first reply delta -> its first sample written to the speaker
        self.delta_to_device = Latency()    # ... -> released by the speaker's audio thread to the device
        self.raw_capture_bytes = 0
        self.wire_audio_bytes = 0
        self.conversations = 0

    def as_dict(self) -> dict:
        return {"press_to_first_append_ms": self.press_to_first_append.as_dict(),
                "delta_to_speaker_ms": self.delta_to_speaker.as_dict(),
                "delta_to_device_ms": self.delta_to_device.as_dict(),
                "raw_capture_bytes": self.raw_capture_bytes, "wire_audio_bytes": self.wire_audio_bytes,
                "conversations": self.conversations}
