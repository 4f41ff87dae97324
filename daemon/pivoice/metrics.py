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
    """The runtime reports what happened (controller thread); the latencies are worked out here."""

    def __init__(self) -> None:
        self.press_at_s: float | None = None
        self.delta_at_s: float | None = None          # when the delta being handled arrived off the socket
        self._reply_delta_at_s: float | None = None   # ... the one that started the reply, until it is written
        self._device_delta_at_s: float | None = None  # ... until the audio thread released its first sample
        self.press_to_first_append = Latency()
        self.delta_to_speaker = Latency()   # first reply delta -> its first sample written to the speaker
        self.delta_to_device = Latency()    # ... -> released by the speaker's audio thread to the device
        self.raw_capture_bytes = 0
        self.wire_audio_bytes = 0
        self.conversations = 0

    def appended(self, payload_bytes: int, clock) -> None:
        if self.press_at_s is not None:
            self.press_to_first_append.add((clock() - self.press_at_s) * 1000)
            self.press_at_s = None
        self.wire_audio_bytes += payload_bytes

    def reply_began(self) -> None:
        self._reply_delta_at_s = self._device_delta_at_s = self.delta_at_s

    def written_to_speaker(self, first_sample_at_s: float | None) -> None:
        if self._reply_delta_at_s is not None and first_sample_at_s is not None:
            self.delta_to_speaker.add((first_sample_at_s - self._reply_delta_at_s) * 1000)
            self._reply_delta_at_s = None

    def reached_device(self, device_first_sample_at) -> None:
        """The audio thread stamps the first sample some ms after it was written: picked up once it has."""
        if self._device_delta_at_s is None:
            return
        device_at_s = device_first_sample_at()
        if device_at_s is not None:
            self.delta_to_device.add((device_at_s - self._device_delta_at_s) * 1000)
            self._device_delta_at_s = None

    def as_dict(self) -> dict:
        return {"press_to_first_append_ms": self.press_to_first_append.as_dict(),
                "delta_to_speaker_ms": self.delta_to_speaker.as_dict(),
                "delta_to_device_ms": self.delta_to_device.as_dict(),
                "raw_capture_bytes": self.raw_capture_bytes, "wire_audio_bytes": self.wire_audio_bytes,
                "conversations": self.conversations}
