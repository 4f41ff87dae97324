"""The two audio edges of the daemon as protocols, so the controller can be driven by a real
PortAudio device, a WAV file, or a test fake without knowing which.

The audio-thread contract
-------------------------
Threads: `open`, `close`, `check_stream`, `stats` and the `Speaker` queue methods are called from the
controller thread. Each open device has one audio thread of its own (our PortAudio reader or
writer thread, or a file-pacing thread), the only thread that touches the stream until `close`.
The callbacks a caller hands to `open` (`on_frames`, `on_drained`, `on_error`) are called from that
audio thread and must only enqueue: no locks held for long, no I/O, no logging, nothing that can
block, since a late audio thread means lost or gapped audio.

The PortAudio edges use blocking reads and writes on threads we own, not PortAudio's callback
mode: every PortAudio callback costs a Python thread state built and torn down, and the daemon's
CPU is set by wakeups, not by the work (audio/capture.py has the figures). The audio threads
do three things only: move samples (into frames, out of the playout queue), count xruns, and call
the caller's callback. They never let an exception escape: one is caught, reported once through
`on_error` and the thread ends, because the controller would otherwise wait for frames or
`on_drained` forever.

A stream can also stop without an error: a USB device unplugged, the sound server gone, a driver
that stops clocking. The read or write then just waits, so nothing arrives to notice it by.
`check_stream()` is the watchdog for that. The runtime calls it from its existing tick (only while
a conversation is in progress, so an idle daemon still never wakes); it reports through `on_error`
when the audio thread ended or has waited on the device for `stall_s`. `on_error(reason)` is called at most once per `open()`, never after `close()` has
returned; `reason` says what stopped and why, without the device kind (the runtime prefixes
"speaker stopped: " / "mic stopped: "). After it the device is dead until closed and reopened:
the controller ends the conversation (code `audio_failed`) instead of waiting for audio that will
never come, and the next press opens the device again.

`stats()` returns counters for `ctl status`: xruns (`overflows` for a mic, measured from lost time;
`underflows` for a speaker; logged rate-limited from `check_stream`, never from the audio thread),
`stream_errors` (on_error calls so far) and `last_error`. The WAV stand-ins (wavfile.py) keep the
same contract with their pacing thread. The mechanism (one report per open, the watchdog, the
xrun log) is in health.py.
"""

from __future__ import annotations

from typing import Callable, Protocol

OnError = Callable[[str], None]
OnFrames = Callable[[list[bytes]], None]   # consecutive frames of exactly frame_ms each


class AudioDeviceError(Exception):
    """An audio device or file cannot be used; the message names it and what exists instead."""


class WavDeviceError(AudioDeviceError):
    """A `wav:` device from the config cannot be used: names the config key, the path and why,
    e.g. `audio.input.device wav:/x.wav: no such file`. `permission`: only this user is refused
    (another user, such as the daemon's, may well be allowed)."""

    def __init__(self, key: str, path: str, problem: str, *, permission: bool = False) -> None:
        self.key, self.path, self.problem, self.permission = key, path, problem, permission
        super().__init__(f"{key} wav:{path}: {problem}")


class Mic(Protocol):
    sample_rate_hz: int  # valid after open()
    frame_ms: int
    block_ms: int

    def open(self, on_frames: OnFrames, on_error: OnError | None = None) -> None:
        """Start delivering mono s16le frames of exactly `frame_ms` each from the audio thread: the
        first call carries one frame (press -> first append waits for it), later ones `block_ms`."""

    def check_stream(self) -> None:
        """Controller thread, periodically while open: report a stopped or stalled stream via on_error."""

    def stats(self) -> dict:
        """Counters for `ctl status`: overflows, stream_errors, last_error (any thread)."""

    def close(self) -> None:
        """Idempotent; no `on_frames` or `on_error` call happens after it returns."""


class Speaker(Protocol):
    sample_rate_hz: int  # valid after open()

    def open(self, on_drained: Callable[[], None], on_error: OnError | None = None) -> None:
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

    def check_stream(self) -> None:
        """Controller thread, periodically while open: report a stopped or stalled stream via on_error."""

    def stats(self) -> dict:
        """Counters for `ctl status`: underflows, stream_errors, last_error (any thread)."""

    def close(self) -> None:
        """Idempotent; no `on_drained` or `on_error` call happens after it returns."""
