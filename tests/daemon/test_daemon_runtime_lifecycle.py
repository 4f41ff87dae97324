"""The controller thread's lifecycle: watchdog pings from its loop, no wakeups idle without a watchdog,
the debug freeze, and retiring only when idle. A real Runtime and Controller with inert edges."""

from __future__ import annotations

import threading
import time

import pytest

from pivoice import messages as m
from pivoice.controller import Controller, Settings
from pivoice.reload import RetireRequest
from pivoice.runtime import Runtime
from support.runtime_fakes import InertMic, InertUplink, InertDownlink

SETTINGS = Settings(session={"type": "realtime"}, output_format="audio/pcm", manual_turns=False,
                    interrupt_response=True, half_duplex=True, idle_timeout_s=10, max_duration_s=600,
                    connect_timeout_s=0.6)


class Pings:
    """A notifier that records what the controller thread sends, with when."""

    def __init__(self):
        self.lock = threading.Lock()
        self.sent: list[tuple[float, str]] = []

    def notify(self, state: str) -> None:
        with self.lock:
            self.sent.append((time.monotonic(), state))

    def count(self, state="WATCHDOG=1") -> int:
        with self.lock:
            return sum(1 for _, s in self.sent if s == state)


class CountingClock:
    def __init__(self):
        self.calls = 0

    def __call__(self) -> float:
        self.calls += 1
        return time.monotonic()


class SilentTokens:
    """Never answers, so a press stays `connecting` until connect_timeout_s."""

    def request(self, on_ready, on_failed): pass

    def status(self): return {"state": "ok"}


def make_runtime(**kwargs) -> Runtime:
    return Runtime(Controller(SETTINGS), mic=InertMic(), uplink_factory=lambda rate: InertUplink(),
                   downlink=InertDownlink(), tokens=SilentTokens(), connector=None, **kwargs)


def controller_threads() -> set:
    return {t for t in threading.enumerate() if t.name == "controller"}


@pytest.fixture
def started():
    runtimes = []

    def start(**kwargs) -> Runtime:
        runtime = make_runtime(**kwargs)
        runtime.start()
        runtimes.append(runtime)
        return runtime
    yield start
    for runtime in runtimes:
        runtime.stop(timeout_s=2)


def wait_until(predicate, timeout_s=3.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_idle_without_a_watchdog_the_controller_never_wakes(started):
    clock = CountingClock()
    runtime = started(clock=clock)
    assert wait_until(lambda: clock.calls > 0)
    time.sleep(0.1)
    before = clock.calls
    time.sleep(0.5)
    assert clock.calls == before, "the idle controller thread woke up without an event"
    runtime.post(m.Release())   # an event still wakes it
    assert wait_until(lambda: clock.calls > before)


def test_the_controller_thread_pings_the_watchdog_while_idle_and_busy(started):
    pings = Pings()
    runtime = started(notifier=pings, watchdog_interval_s=0.05)
    assert wait_until(lambda: pings.count() >= 6)
    runtime.post(m.Press())   # busy: ticking every 100 ms, the pings keep their own pace
    assert wait_until(lambda: not runtime.idle, 2)
    start = pings.count()
    time.sleep(0.4)
    assert pings.count() - start >= 5
    times = [t for t, s in pings.sent if s == "WATCHDOG=1"]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert max(gaps) < 0.2, gaps


def test_a_frozen_controller_stops_pinging_and_stop_still_ends_it(started):
    pings = Pings()
    runtime = started(notifier=pings, watchdog_interval_s=0.05)
    assert wait_until(lambda: pings.count() >= 3)
    runtime.debug_freeze()
    time.sleep(0.15)   # a ping may be on its way as the freeze is taken
    frozen_at = pings.count()
    time.sleep(0.5)
    assert pings.count() == frozen_at, "pings went on while the controller thread was frozen"
    started_stop = time.monotonic()
    runtime.stop(timeout_s=2)
    assert time.monotonic() - started_stop < 1.0
    assert controller_threads() == set(), "stop() did not end the frozen controller thread"


def test_an_interval_without_a_notifier_does_not_wake_the_idle_controller(started):
    clock = CountingClock()
    started(clock=clock, watchdog_interval_s=0.05)   # nothing to ping: no reason to wake
    assert wait_until(lambda: clock.calls > 0)
    time.sleep(0.1)
    before = clock.calls
    time.sleep(0.3)
    assert clock.calls == before


def test_retire_stops_an_idle_runtime():
    runtime = make_runtime()
    runtime.start()
    assert controller_threads()
    assert runtime.retire(timeout_s=2) is True
    assert controller_threads() == set()


def test_retire_is_refused_while_a_conversation_runs_and_granted_after_it_ends(started):
    runtime = started()
    runtime.post(m.Press())
    assert wait_until(lambda: not runtime.idle, 2)
    assert runtime.retire(timeout_s=2) is False
    assert wait_until(lambda: runtime.status()["state"] == "idle", 3)   # connect_timeout_s ends it
    assert runtime.retire(timeout_s=2) is True


def test_a_press_queued_before_the_retire_request_wins(started):
    runtime = started()
    runtime.post(m.Press())   # handled first: by the time the request is read, a conversation runs
    assert runtime.retire(timeout_s=2) is False
    assert runtime.status()["state"] != "idle"


def test_a_retire_request_answered_late_does_not_count():
    request = RetireRequest()
    assert request.answer(False)         # the asker gave up
    assert not request.answer(True)      # the controller thread's late yes is ignored
    assert request.retired is False
