"""The mechanism behind the audio-callback contract in ports.py: one `on_error` report per open
(`StreamWatch`), the `check_stream` watchdog of the PortAudio devices (`watch_stream`) and the
rate-limited xrun warnings (`XrunLog`). Which thread calls what is said on each.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

from pivoice.audio.ports import OnError

log = logging.getLogger(__name__)

# A device that has not called back for this long is stuck (the callbacks come every 10-30 ms).
STREAM_STALL_S = 2.0
XRUN_LOG_INTERVAL_S = 10.0


class StreamWatch:
    """Turns "the stream stopped" into at most one `on_error` call per open, and keeps the counters.

    Thread: `arm`/`disarm`/`stalled_s` from the controller thread, `beat` from the audio thread (a
    float store), `fail` from either. `on_error` runs under the lock, so once `disarm()` has
    returned no report can still be on its way (it only enqueues, so holding the lock is cheap).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._on_error: OnError | None = None
        self.failed = False
        self.errors = 0
        self.last_error: str | None = None
        self.last_beat_s = clock()

    def arm(self, on_error: OnError | None) -> None:
        with self._lock:
            self._on_error, self.failed = on_error, False
            self.last_beat_s = self._clock()

    def disarm(self) -> None:
        with self._lock:
            self._on_error = None

    def beat(self) -> None:
        self.last_beat_s = self._clock()

    def stalled_s(self) -> float:
        return self._clock() - self.last_beat_s

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


def watch_stream(stream: Any, watch: StreamWatch, label: str, stall_s: float) -> None:
    """The `check_stream` of both PortAudio edges (controller thread): report through `watch` a
    stream PortAudio no longer runs (its callback thread ended: device gone, sound server gone, a
    callback that aborted) or one that stopped calling back without saying so."""
    if stream is None or watch.failed:
        return
    try:
        active = stream.is_active()
    except (OSError, ValueError) as exc:   # PyAudio raises once the stream is unusable
        watch.fail(f"{label}: stream unusable ({exc})")
        return
    if not active:
        watch.fail(f"{label}: stream no longer running (device unplugged, sound server gone or driver error)")
    elif watch.stalled_s() >= stall_s:
        watch.fail(f"{label}: no audio callback for {watch.stalled_s():.1f} s (device stalled)")
