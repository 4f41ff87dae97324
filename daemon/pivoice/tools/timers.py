"""Kitchen timers: pending timers and the one thread that fires them.

One thread (`pv-timers`, started with the first timer) sleeps until the earliest timer is due and never
wakes while no timer is pending. `set`/`cancel`/`pending` are called from tool worker threads,
`close` from the main thread; `on_fired(timer)` is called on the timer thread and must only enqueue.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

from pivoice.osthread import name_this_thread

log = logging.getLogger(__name__)

MIN_DURATION_S = 1.0
MAX_DURATION_S = 24 * 3600.0


@dataclass(frozen=True)
class Timer:
    id: str                  # "t1", "t2", ... in the order they were set
    label: str | None
    duration_s: float
    due_s: float             # on the service's clock


class TimerError(ValueError):
    """A timer request that cannot be met; `kind` is the error type the model sees."""

    def __init__(self, kind: str, message: str):
        self.kind = kind
        super().__init__(message)


class TimerService:
    def __init__(self, on_fired: Callable[[Timer], None], *, max_timers: int = 10,
                 clock: Callable[[], float] = time.monotonic):
        self._on_fired = on_fired
        self._max_timers = max_timers
        self._clock = clock
        self._cond = threading.Condition()
        self._timers: dict[str, Timer] = {}
        self._ids = itertools.count(1)
        self._thread: threading.Thread | None = None
        self._closed = False

    def set(self, duration_s: float, label: str | None = None) -> Timer:
        if not MIN_DURATION_S <= duration_s <= MAX_DURATION_S:
            raise TimerError("invalid_arguments", f"a timer runs 1 second to 24 hours; got {duration_s:g} s")
        label = (label or "").strip() or None
        with self._cond:
            if self._closed:
                raise TimerError("failed", "timers are shut down")
            if len(self._timers) >= self._max_timers:
                raise TimerError("limit_reached", f"{len(self._timers)} timers are already set (the most "
                                                  "allowed); cancel one first")
            clash = self._by_label(label) if label else None
            if clash is not None:
                raise TimerError("invalid_arguments", f"a timer labelled {label!r} is already set ({clash.id}); "
                                                      "cancel it or choose another label")
            timer = Timer(f"t{next(self._ids)}", label, float(duration_s), self._clock() + duration_s)
            self._timers[timer.id] = timer
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="pv-timers", daemon=True)
                self._thread.start()
            self._cond.notify_all()
        log.info("timer %s set for %g s", timer.id, timer.duration_s)
        return timer

    def cancel(self, *, timer_id: str | None = None, label: str | None = None) -> Timer:
        """Cancel by id or by label (case-insensitive)."""
        with self._cond:
            timer = self._timers.get(timer_id) if timer_id else self._by_label(label) if label else None
            if timer is None:
                wanted = f"id {timer_id!r}" if timer_id else f"label {label!r}"
                pending = ", ".join(_describe(t) for t in self._sorted()) or "none"
                raise TimerError("not_found", f"no pending timer with {wanted} (pending: {pending})")
            del self._timers[timer.id]
            self._cond.notify_all()
        log.info("timer %s cancelled", timer.id)
        return timer

    def pending(self) -> list[Timer]:
        """Pending timers, soonest first."""
        with self._cond:
            return self._sorted()

    def remaining_s(self, timer: Timer) -> float:
        return max(0.0, timer.due_s - self._clock())

    def poke(self) -> None:
        """Look at the clock again now. Only needed when the clock jumps (an injected test clock)."""
        with self._cond:
            self._cond.notify_all()

    def close(self) -> None:
        """Drop every timer and end the thread (none fires afterwards)."""
        with self._cond:
            self._closed = True
            self._timers.clear()
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2.0)

    def _by_label(self, label: str) -> Timer | None:
        wanted = label.strip().casefold()
        return next((t for t in self._sorted() if t.label and t.label.casefold() == wanted), None)

    def _sorted(self) -> list[Timer]:
        return sorted(self._timers.values(), key=lambda t: t.due_s)

    def _run(self) -> None:
        name_this_thread("timers")
        while True:
            with self._cond:
                timer = self._wait_for_due()
            if timer is None:
                return
            log.info("timer %s fired (%g s)", timer.id, timer.duration_s)
            try:
                self._on_fired(timer)
            except Exception:   # a broken callback must not stop later timers
                log.exception("timer %s: on_fired failed", timer.id)

    def _wait_for_due(self) -> Timer | None:
        """Under the lock: block until a timer is due and remove it; None once closed."""
        while not self._closed:
            if not self._timers:
                self._cond.wait()
                continue
            soonest = min(self._timers.values(), key=lambda t: t.due_s)
            delay_s = soonest.due_s - self._clock()
            if delay_s <= 0:
                return self._timers.pop(soonest.id)
            self._cond.wait(delay_s)
        return None


def _describe(timer: Timer) -> str:
    return f"{timer.id} ({timer.label})" if timer.label else timer.id
