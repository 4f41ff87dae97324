"""Fakes for the audio edges' unit tests: a PortAudio stream in blocking mode whose device the test
plays (`FakeStream`, what fixtures_audio.FakePyAudio opens), and recorders for the callbacks a mic
or speaker calls from its audio thread (`Groups` for on_frames, `Reports` for on_error)."""

from __future__ import annotations

import re
import threading
import time
from typing import Callable

import numpy as np
import pyaudio


class StepClock:
    """A monotonic clock the test moves by hand (`now_s`)."""

    def __init__(self, now_s: float = 0.0):
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


def ramp(n: int, start: int = 1) -> bytes:
    """n s16le samples counting up from `start`, never zero: easy to find and to compare."""
    return (np.arange(start, start + n) % 30000 + 1).astype("<i2").tobytes()


class Groups:
    """An `on_frames` that keeps each call's list of frames and lets the test wait for them."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.groups: list[list[bytes]] = []
        self.times_s: list[float] = []
        self._clock = clock
        self._cond = threading.Condition()

    def __call__(self, frames: list[bytes]) -> None:
        with self._cond:
            self.groups.append(list(frames))
            self.times_s.append(self._clock())
            self._cond.notify_all()

    def wait_frames(self, n_frames: int, timeout_s: float = 2.0) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: sum(map(len, self.groups)) >= n_frames, timeout_s), self.groups

    def frames(self) -> list[bytes]:
        with self._cond:
            return [f for group in self.groups for f in group]


DEVICE_GONE = "(device unplugged, sound server gone or driver error)"   # how health.py explains an OSError
# A real PortAudio error before it: its own words vary ("Unanticipated host error", "Stream closed", ...)
DEAD_STREAM = rf"\[Errno -\d+\] [^()]+ {re.escape(DEVICE_GONE)}"


class Reports:
    """An `on_error` that records the reasons (audio thread) and lets the test wait for them."""

    def __init__(self) -> None:
        self.reasons: list[str] = []
        self._cond = threading.Condition()

    def __call__(self, reason: str) -> None:
        with self._cond:
            self.reasons.append(reason)
            self._cond.notify_all()

    def wait(self, count: int = 1, timeout_s: float = 2.0) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.reasons) >= count, timeout_s), self.reasons


class ThreadKiller(BaseException):
    """Not an Exception: escapes an audio thread's handler, so the thread ends without a report and
    only the `check_stream` watchdog can notice (the safety net behind the handler). Tests raising it
    ignore pytest's PytestUnhandledThreadExceptionWarning."""


def close_mic(mic, stream: "FakeStream") -> None:
    """Close a mic whose reader may be blocked in a read: the device keeps clocking until closed."""
    stream.run_free()
    mic.close()


class FakeStream:
    """What `FakePyAudio.open` returns: a PortAudio stream in blocking mode whose device the test plays.

    Input: `read(n)` blocks until the test has `feed()`-ed n frames x channels of s16le (any chunking)
    or makes it `fail(exc)`; `get_read_available()` is what was fed and not read; `run_free()` turns the device into one that keeps delivering silence, so a
    reader blocked in `read` can be closed. Output: `write` puts the block into a device buffer of
    `buffer_frames` (default three periods, what ALSA keeps); `get_write_available()` is the room left
    and `advance(frames)` plays frames out of it (while started), making room; `stop_stream()` drops
    what it holds, as PortAudio's ALSA host does. Reading or writing a stopped stream raises as
    PyAudio does (paStreamIsStopped). Every change notifies `wait_for`, so tests synchronise with the
    audio thread without sleeping.
    Thread: the audio thread under test calls read/write/get_write_available/start/stop; the test
    thread calls feed/fail/advance/wait_for and the accessors.
    """

    def __init__(self, *, output_latency_s: float = 0.0, buffer_frames: int | None = None, **kwargs) -> None:
        self.kwargs = kwargs
        self.callback = kwargs.get("stream_callback")
        self.channels = kwargs.get("channels", 1)
        self.started = kwargs.get("start", True)
        self.closed = False
        self.output_latency_s = output_latency_s
        self.buffer_frames = buffer_frames or 3 * kwargs.get("frames_per_buffer", 1024)
        self.starts = self.stops = 0
        self._cond = threading.Condition()
        # input side
        self.reads: list[int] = []                  # frames asked for, per read() call
        self.read_polls = 0                         # get_read_available() calls
        self.overflow_flags: list[bool] = []       # exception_on_overflow, per read() call
        self._fed = bytearray()
        self._read_error: BaseException | None = None
        self._free_running = False
        # output side
        self.written: list[bytes] = []              # every block write() was given, in order
        self.underflow_flags: list[bool] = []      # exception_on_underflow, per write() call
        self.played = bytearray()                   # what the device played (advance)
        self.dropped: list[bytes] = []              # what each stop_stream() dropped from the device buffer
        self.polls = 0                              # get_write_available() calls
        self.overfilled = 0                         # writes larger than the room (a real one would block)
        self._device = bytearray()
        self._write_errors: list[BaseException] = []

    # -- the test's side ------------------------------------------------------------------------
    def wait_for(self, predicate, timeout_s: float = 2.0) -> bool:
        """Wait until predicate(stream) holds; re-checked on every change to the stream."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self), timeout_s)

    def feed(self, data: bytes) -> None:
        with self._cond:
            self._fed += data
            self._cond.notify_all()

    def fail(self, exc: BaseException) -> None:
        """The pending read, and every later one, raises `exc` (a device that went away)."""
        with self._cond:
            self._read_error = exc
            self._cond.notify_all()

    def run_free(self) -> None:
        """From now on a read gets what was fed and silence for the rest, after about a millisecond."""
        with self._cond:
            self._free_running = True
            self._cond.notify_all()

    def fail_writes(self, *excs: BaseException) -> None:
        """The next writes raise these, one each, after the block went into the device buffer
        (what PortAudio does for paOutputUnderflowed)."""
        with self._cond:
            self._write_errors.extend(excs)

    def advance(self, frames: int) -> int:
        """The device plays up to `frames` from its buffer (only while started); returns how many."""
        with self._cond:
            if not self.started:
                return 0
            n_bytes = min(len(self._device), 2 * self.channels * frames)
            self.played += self._device[:n_bytes]
            del self._device[:n_bytes]
            self._cond.notify_all()
            return n_bytes // (2 * self.channels)

    def write_available(self) -> int:
        """Room in the device buffer, in frames, without counting as a poll of the writer."""
        with self._cond:
            return self.buffer_frames - len(self._device) // (2 * self.channels)

    def device_bytes(self) -> bytes:
        with self._cond:
            return bytes(self._device)

    # -- PyAudio's Stream API --------------------------------------------------------------------
    def _check_running(self) -> None:
        if self.closed:
            raise OSError(pyaudio.paBadStreamPtr, "Stream closed")
        if not self.started:
            raise OSError(pyaudio.paStreamIsStopped, "Stream is stopped")

    def read(self, num_frames: int, exception_on_overflow: bool = True) -> bytes:
        n_bytes = 2 * self.channels * num_frames
        with self._cond:
            self.reads.append(num_frames)
            self.overflow_flags.append(exception_on_overflow)
            self._cond.notify_all()
            while True:
                self._check_running()
                if self._read_error is not None:
                    raise self._read_error
                if len(self._fed) >= n_bytes:
                    break
                if self._free_running:
                    self._cond.wait(0.001)   # a device that keeps clocking, without spinning the CPU
                    self._fed += bytes(max(0, n_bytes - len(self._fed)))
                    break
                self._cond.wait()
            data = bytes(self._fed[:n_bytes])
            del self._fed[:n_bytes]
            return data

    def get_read_available(self) -> int:
        with self._cond:
            self._check_running()
            if self._read_error is not None:
                raise self._read_error
            self.read_polls += 1
            self._cond.notify_all()
            return (1 << 30) if self._free_running else len(self._fed) // (2 * self.channels)

    def write(self, frames: bytes, num_frames: int | None = None, exception_on_underflow: bool = False) -> None:
        with self._cond:
            self._check_running()
            if len(frames) // (2 * self.channels) > self.buffer_frames - len(self._device) // (2 * self.channels):
                self.overfilled += 1
            self.written.append(bytes(frames))
            self.underflow_flags.append(exception_on_underflow)
            self._device += frames
            self._cond.notify_all()
            if self._write_errors:
                raise self._write_errors.pop(0)

    def get_write_available(self) -> int:
        with self._cond:
            self.polls += 1
            self._cond.notify_all()
            return self.buffer_frames - len(self._device) // (2 * self.channels)

    def start_stream(self) -> None:
        with self._cond:
            if not self.started:   # PyAudio ignores a start of a running stream (and a stop of a stopped one)
                self.started = True
                self.starts += 1
                self._cond.notify_all()

    def stop_stream(self) -> None:
        with self._cond:
            if self.started:
                self.started = False
                self.stops += 1
                self.dropped.append(bytes(self._device))
                self._device.clear()
                self._cond.notify_all()

    def is_active(self) -> bool:
        return self.started and not self.closed

    def close(self) -> None:
        with self._cond:
            self.closed, self.started = True, False
            self._cond.notify_all()   # a read still blocked in the "driver" fails with "Stream closed"

    def get_output_latency(self) -> float:
        return self.output_latency_s
