"""The mechanism behind the audio contract in ports.py: one `on_error` report per open
(`StreamWatch`), the `check_stream` watchdog of the PortAudio devices (`watch_blocking`) and the
rate-limited xrun warnings (`XrunLog`). Which thread calls what is said on each.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from pivoice.audio.ports import OnError

log = logging.getLogger(__name__)

# A read or write that has waited this long for the device is stuck (they wait 20-100 ms).
STREAM_STALL_S = 2.0
XRUN_LOG_INTERVAL_S = 10.0
DEVICE_GONE = "device unplugged, sound server gone or driver error"


def failure(label: str, doing: str, exc: Exception) -> str:
    """The `on_error` reason for an exception on an audio thread: PortAudio's OSError means the device
    went away under us; anything else is our own bug, named by its type."""
    if isinstance(exc, OSError):
        return f"{label}: {doing} failed: {exc} ({DEVICE_GONE})"
    return f"{label}: audio thread failed ({type(exc).__name__}: {exc})"


class StreamWatch:
    """Turns "the stream stopped" into at most one `on_error` call per open, and keeps the counters.

    Thread: `arm`/`disarm`/`stalled_s` from the controller thread, `busy`/`idle` from the audio thread
    (a float store each), `fail` from either. `on_error` runs under the lock, so once `disarm()` has
    returned no report can still be on its way (it only enqueues, so holding the lock is cheap).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._on_error: OnError | None = None
        self.failed = False
        self.errors = 0
        self.last_error: str | None = None
        self.busy_since_s: float | None = None   # the audio thread has been waiting on the device since

    def arm(self, on_error: OnError | None) -> None:
        with self._lock:
            self._on_error, self.failed = on_error, False
            self.busy_since_s = None

    def disarm(self) -> None:
        with self._lock:
            self._on_error = None

    def busy(self) -> None:
        """The audio thread starts waiting on the device (a repeated call keeps the first time)."""
        if self.busy_since_s is None:
            self.busy_since_s = self._clock()

    def idle(self) -> None:
        """The device answered (a read returned, a write went in) or there is nothing to wait for."""
        self.busy_since_s = None

    def stalled_s(self) -> float:
        since = self.busy_since_s
        return 0.0 if since is None else self._clock() - since

    def fail(self, reason: str) -> None:
        with self._lock:
            if self.failed:
                return
            self.failed = True
            self.errors += 1
            self.last_error = reason
            if self._on_error is not None:
                self._on_error(reason)

    def counters(self) -> dict:
        return {"stream_errors": self.errors, "last_error": self.last_error}


class XrunLog:
    """A rate-limited WARNING for the xruns an audio callback counted. Logged from the controller
    thread (`check_stream`), never from the callback: a starved CPU gets no log flood on top."""

    def __init__(self, what: str, consequence: str, clock: Callable[[], float],
                 interval_s: float = XRUN_LOG_INTERVAL_S) -> None:
        self._what, self._consequence, self._clock, self._interval_s = what, consequence, clock, interval_s
        self._logged = 0
        self._last_log_s = float("-inf")

    def update(self, label: str, total: int) -> None:
        now_s = self._clock()
        if total == self._logged or now_s - self._last_log_s < self._interval_s:
            return
        log.warning("%s: %s (%d since start, %d since the last report); %s", label, self._what, total,
                    total - self._logged, self._consequence)
        self._logged, self._last_log_s = total, now_s


def watch_blocking(thread: threading.Thread | None, closing: threading.Event, watch: StreamWatch, label: str,
                   stall_s: float) -> None:
    """The `check_stream` of both PortAudio edges (controller thread): report through `watch` an audio
    thread that ended without being closed, or one that has waited on the device for `stall_s` (a USB
    device that vanished without an error, a driver that stopped clocking)."""
    if thread is None or watch.failed:
        return
    if not thread.is_alive() and not closing.is_set():
        watch.fail(f"{label}: audio thread ended ({DEVICE_GONE})")
    elif watch.stalled_s() >= stall_s:
        watch.fail(f"{label}: no audio from the device for {watch.stalled_s():.1f} s (device stalled)")
