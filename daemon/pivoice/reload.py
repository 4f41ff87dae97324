"""After start-up, on the main thread: signals, config reload, and the hand-over between daemons.

SIGTERM/SIGINT stop the daemon. SIGHUP re-reads the config file and the device secret:
- a new config that does not load or build is refused, the error logged, the old one kept;
- a good one applies at once when idle, else when the conversation in progress ends.
Applying retires the old runtime (only if it is idle when the request reaches its
controller thread), starts the new daemon, and moves the edges (control socket, button)
across. Events the edges post meanwhile wait in the `Switchboard` and go to the new
runtime, so a press during a reload is answered, not dropped.

Signals are blocked in every thread and taken synchronously with sigtimedwait(2), so no
handler runs in the middle of the main thread's own work (a handler that set an Event
could deadlock on the lock the main thread holds).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Callable

from pivoice.sdnotify import Notifier, reloading_state

log = logging.getLogger(__name__)
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
POLL_S = 0.1          # how soon an ended conversation lets a waiting reload apply
RETIRE_TIMEOUT_S = 2.0


def block_signals() -> None:
    """Call first thing in main(): threads started later inherit the mask, so only sigtimedwait sees these."""
    signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)


def wait_signal(timeout_s: float | None) -> int | None:
    if timeout_s is None:
        return signal.sigwaitinfo(SIGNALS).si_signo
    info = signal.sigtimedwait(SIGNALS, timeout_s)
    return info.si_signo if info is not None else None


class RetireRequest:
    """Asks a controller thread to stop if, and only if, no conversation is in progress.

    Answered once: by the controller thread (retired or not), or by the asker giving up
    waiting; the later answer is ignored, so a timed-out request can never stop the
    runtime behind the asker's back. Thread: answer() from either side.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.done = threading.Event()
        self.retired: bool | None = None

    def answer(self, retired: bool) -> bool:
        with self._lock:
            if self.retired is not None:
                return False
            self.retired = retired
            self.done.set()
            return True


class Switchboard:
    """Delivers the edges' events to the runtime in service; holds them while runtimes change.

    Thread: post() and status() from any thread (button, control clients); hold() and
    connect() from the main thread.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runtime = None
        self._held: list | None = []

    def post(self, event: object) -> None:
        # under the lock: a post that raced hold() must not land in a runtime being retired
        with self._lock:
            if self._held is not None:
                self._held.append(event)
            else:
                self._runtime.post(event)

    def hold(self) -> None:
        with self._lock:
            if self._held is None:
                self._held = []

    def connect(self, runtime) -> None:
        with self._lock:
            self._runtime = runtime
            held, self._held = self._held or [], None
            for event in held:
                runtime.post(event)

    def status(self) -> dict:
        runtime = self._runtime
        return runtime.status() if runtime is not None else {}


class Service:
    """Runs a started daemon until SIGTERM/SIGINT and reloads it on SIGHUP. Main thread only,
    except status(), which control-socket clients call.

    `load()` re-reads the config file and builds a new, unstarted daemon (raising ValueError
    naming file, key path and reason); `rebuild(cfg)` builds one from a config already loaded.
    A daemon offers start_core(), start_edges(post, get_status), stop_edges(), stop_core(),
    stop(), discard(), and .runtime and .cfg.
    """

    def __init__(self, daemon, *, load: Callable[[], object], rebuild: Callable[[object], object],
                 notifier: Notifier, wait: Callable[[float | None], int | None] = wait_signal,
                 clock: Callable[[], float] = time.monotonic):
        self.daemon = daemon
        self._load = load
        self._rebuild = rebuild
        self._notifier = notifier
        self._wait = wait
        self._clock = clock
        self.board = Switchboard()
        self.reloads = 0
        self._pending = None

    def status(self) -> dict:
        return {**self.board.status(),
                "config": {"file": self.daemon.cfg.file, "reloads": self.reloads,
                           "reload_pending": self._pending is not None}}

    def start(self) -> None:
        self._start(self.daemon)

    def run(self) -> int:
        """Until SIGTERM/SIGINT; 0 after a clean stop, 1 if a failed reload left nothing running."""
        try:
            while True:
                sig = self._wait(None if self._pending is None else POLL_S)
                if sig in (signal.SIGTERM, signal.SIGINT):
                    log.info("%s: stopping", signal.Signals(sig).name)
                    return 0
                if sig == signal.SIGHUP:
                    self._reread()
                if self._pending is not None and self.daemon.runtime.idle:
                    self._apply()
        except _NothingRunning:
            return 1
        finally:
            self._notifier.notify("STOPPING=1")
            if self._pending is not None:
                self._pending.discard()
            self.daemon.stop()

    # ---- main thread ---------------------------------------------------------------

    def _start(self, daemon) -> None:
        daemon.start_core()
        self.board.connect(daemon.runtime)
        daemon.start_edges(self.board.post, self.status)

    def _reread(self) -> None:
        file = self.daemon.cfg.file
        try:
            new = self._load()
        except ValueError as exc:   # ConfigError, the secret file, the URL rules, the pin factory
            log.error("reload refused: %s", exc)
            return
        except Exception as exc:   # never let a reload take the running daemon down
            log.exception("reload refused: %s: %s: %s", file, type(exc).__name__, exc)
            return
        if self._pending is not None:
            self._pending.discard()   # superseded by this newer file
        self._pending = new
        if not self.daemon.runtime.idle:
            log.info("reload: waiting for the conversation to end before applying %s", file)
            self._notifier.notify("STATUS=reload waiting for the conversation to end")

    def _apply(self) -> None:
        started_at = self._clock()
        old, new = self.daemon, self._pending
        self.board.hold()
        if not old.runtime.retire(RETIRE_TIMEOUT_S):
            self.board.connect(old.runtime)   # a press got there first: try again when it has ended
            return
        self._pending = None
        self._notifier.notify(reloading_state())
        old.stop_core()
        try:
            new.start_core()
            self.board.connect(new.runtime)
            old.stop_edges()
            new.start_edges(self.board.post, self.status)
        except Exception as exc:   # e.g. the new socket path cannot be bound, the pin is taken
            log.error("reload failed: %s: %s; going back to the config that was running", new.cfg.file, exc)
            new.stop()
            old.stop_edges()
            new = self._restore(old)
        else:
            self.reloads += 1
            log.info("reload: applied %s (%.0f ms)", new.cfg.file, (self._clock() - started_at) * 1000)
        self.daemon = new
        self._notifier.notify("READY=1\nSTATUS=running")

    def _restore(self, old):
        again = None
        self.board.hold()
        try:
            again = self._rebuild(old.cfg)
            self._start(again)
            return again
        except Exception as exc:
            if again is not None:
                again.stop()
            log.error("cannot restart on the previous config either: %s; exiting for the service manager "
                      "to restart the daemon", exc)
            raise _NothingRunning() from None


class _NothingRunning(Exception):
    pass
