"""The two audio edges of the daemon as protocols, so the controller can be driven by a real
PortAudio device, a WAV file, or a test fake without knowing which.

Threads: `Mic.open/close` and all `Speaker` methods except the callbacks are called from the
controller thread. `on_frame` and `on_drained` are called from an audio thread (PortAudio's or a
file-pacing thread) and must only enqueue.
"""

from __future__ import annotations

from typing import Callable, Protocol


class AudioDeviceError(Exception):
    """An audio device or file cannot be used; the message names it and what exists instead."""


class Mic(Protocol):
    sample_rate_hz: int  # valid after open()
    frame_ms: int

    def open(self, on_frame: Callable[[bytes], None]) -> None:
        """Start delivering mono s16le frames of exactly `frame_ms` each from the audio thread."""

    def close(self) -> None:
        """Idempotent; no `on_frame` call happens after it returns."""


class Speaker(Protocol):
    sample_rate_hz: int  # valid after open()

    def open(self, on_drained: Callable[[], None]) -> None:
        """`on_drained` fires (audio thread) when everything written so far has been played out."""

    def write(self, pcm16: bytes) -> None:
        """Queue mono s16le at `sample_rate_hz`; never blocks."""

    def stop(self) -> None:
        """Drop everything queued (barge-in); the stream stays open."""

    def played_samples(self) -> int:
        """Samples that left the device since open, minus what still sits in its buffer."""

    def pending_samples(self) -> int:
        """Samples written but not yet played (queued plus the device buffer); 0 when idle."""

    def audible_since_s(self) -> float | None:
        """Monotonic time the audio thread began handing the current stretch to the device."""

    def close(self) -> None:
        """Idempotent."""
