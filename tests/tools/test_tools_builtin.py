"""Built-ins: the time in the configured or the system's zone, the volume, ending the conversation,
and timers that fire on time on their own thread (an injected clock, so no long sleeps)."""

import threading
import time
import zoneinfo
from datetime import datetime
from pathlib import Path

import pytest

from pivoice.tools import builtin
from pivoice.tools.base import CallContext
from pivoice.tools.schema import validate
from pivoice.tools.timers import TimerService
from support.tools_fakes import FakeClock, MemoryVolume

MONDAY_MIDNIGHT_UTC = 1764547200.0     # 2025-12-01T00:00:00Z
SUMMER_NOON_UTC = 1751371200.0         # 2025-07-01T12:00:00Z


def call(tool, arguments=None) -> dict:
    arguments = arguments or {}
    assert validate(tool.parameters, arguments) == []
    return tool.run(arguments, CallContext()).payload


def by_name(tools) -> dict:
    return {t.name: t for t in tools}


@pytest.mark.parametrize("zone, now, expected", [
    ("Asia/Tokyo", MONDAY_MIDNIGHT_UTC, {"time": "2025-12-01T09:00:00+09:00", "weekday": "Monday",
                                         "timezone": "Asia/Tokyo", "utc_offset": "+09:00"}),
    ("America/New_York", MONDAY_MIDNIGHT_UTC, {"time": "2025-11-30T19:00:00-05:00", "weekday": "Sunday",
                                               "timezone": "America/New_York", "utc_offset": "-05:00"}),
    ("Europe/Berlin", SUMMER_NOON_UTC, {"time": "2025-07-01T14:00:00+02:00", "weekday": "Tuesday",
                                        "timezone": "Europe/Berlin", "utc_offset": "+02:00"}),
    ("Asia/Kolkata", MONDAY_MIDNIGHT_UTC, {"time": "2025-12-01T05:30:00+05:30", "weekday": "Monday",
                                           "timezone": "Asia/Kolkata", "utc_offset": "+05:30"}),
])
def test_time_in_the_configured_zone(zone, now, expected):
    assert call(builtin.time_tool(zone, 5.0, lambda: now)) == {"ok": True, **expected}


def test_time_without_a_zone_uses_the_systems(monkeypatch):
    monkeypatch.delenv("TZ", raising=False)
    out = call(builtin.time_tool(None, 5.0, lambda: MONDAY_MIDNIGHT_UTC))
    expected = datetime.fromtimestamp(MONDAY_MIDNIGHT_UTC, builtin.system_timezone())
    assert out["time"] == expected.isoformat(timespec="seconds")
    link = str(Path("/etc/localtime").resolve())
    if "/zoneinfo/" in link:
        assert out["timezone"] == link.split("/zoneinfo/", 1)[1]


def test_the_system_zone_follows_tz(monkeypatch):
    monkeypatch.setenv("TZ", "Pacific/Auckland")
    assert builtin.system_timezone() == zoneinfo.ZoneInfo("Pacific/Auckland")
    out = call(builtin.time_tool(None, 5.0, lambda: MONDAY_MIDNIGHT_UTC))
    assert out == {"ok": True, "time": "2025-12-01T13:00:00+13:00", "weekday": "Monday",
                   "timezone": "Pacific/Auckland", "utc_offset": "+13:00"}


def test_volume_get_and_set_go_through_the_volume_control():
    volume = MemoryVolume(35)
    tools = by_name(builtin.volume_tools(volume, 5.0))
    assert call(tools["get_volume"]) == {"ok": True, "volume_percent": 35}
    assert call(tools["set_volume"], {"percent": 70}) == {"ok": True, "volume_percent": 70}
    assert volume.calls == [("get", None), ("set", 70)]
    assert validate(tools["set_volume"].parameters, {"percent": 101}) == ["$.percent: must be <= 100"]
    assert validate(tools["set_volume"].parameters, {}) == ["$: missing required property 'percent'"]


def test_end_conversation_asks_the_controller_to_end():
    outcome = builtin.end_conversation_tool(5.0).run({}, CallContext())
    assert outcome.payload == {"ok": True}
    assert outcome.effect == builtin.END_CONVERSATION == "end_conversation"


@pytest.fixture
def timers_rig():
    clock = FakeClock()
    fired = []
    fired_event = threading.Event()

    def on_fired(timer):
        fired.append(timer)
        fired_event.set()
    service = TimerService(on_fired, max_timers=3, clock=clock)
    yield service, clock, fired, fired_event, by_name(builtin.timer_tools(service, 5.0))
    service.close()


def test_a_timer_fires_on_time_with_its_id_label_and_duration(timers_rig):
    service, clock, fired, fired_event, tools = timers_rig
    out = call(tools["set_timer"], {"minutes": 5, "label": "pasta"})
    assert out == {"ok": True, "timer": {"id": "t1", "label": "pasta", "duration_s": 300.0, "remaining_s": 300}}
    clock.advance(299)
    service.poke()
    assert not fired_event.wait(0.2)
    assert call(tools["list_timers"])["timers"] == [{"id": "t1", "label": "pasta", "duration_s": 300.0,
                                                    "remaining_s": 1}]
    clock.advance(1)
    service.poke()
    assert fired_event.wait(2)
    assert [(t.id, t.label, t.duration_s) for t in fired] == [("t1", "pasta", 300.0)]
    assert call(tools["list_timers"]) == {"ok": True, "timers": []}


def test_timers_fire_in_due_order(timers_rig):
    service, clock, fired, fired_event, tools = timers_rig
    call(tools["set_timer"], {"minutes": 10})
    call(tools["set_timer"], {"seconds": 30, "label": "tea"})
    call(tools["set_timer"], {"minutes": 1, "seconds": 30})
    clock.advance(600)
    service.poke()
    deadline = time.monotonic() + 2
    while len(fired) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [(t.id, t.duration_s) for t in fired] == [("t2", 30.0), ("t3", 90.0), ("t1", 600.0)]


def test_cancel_by_label_or_id_and_the_errors(timers_rig):
    service, clock, fired, fired_event, tools = timers_rig
    call(tools["set_timer"], {"minutes": 3, "label": "Eggs"})
    call(tools["set_timer"], {"seconds": 90})
    dup = call(tools["set_timer"], {"minutes": 1, "label": "eggs"})
    assert dup["error"]["type"] == "invalid_arguments" and "already set (t1)" in dup["error"]["message"]
    assert call(tools["cancel_timer"], {"label": "eggs"})["cancelled"]["id"] == "t1"
    missing = call(tools["cancel_timer"], {"id": "t9"})
    assert missing == {"ok": False, "error": {"type": "not_found",
                                              "message": "no pending timer with id 't9' (pending: t2)"}}
    assert call(tools["cancel_timer"], {"id": "t2"})["cancelled"]["duration_s"] == 90.0
    assert call(tools["cancel_timer"], {})["error"]["type"] == "invalid_arguments"
    clock.advance(1000)
    service.poke()
    assert not fired_event.wait(0.2)   # cancelled timers never fire


def test_timer_limits(timers_rig):
    service, clock, fired, fired_event, tools = timers_rig
    assert call(tools["set_timer"], {})["error"]["message"] == "$: give minutes or seconds (or both)"
    assert call(tools["set_timer"], {"seconds": 0.5})["error"]["type"] == "invalid_arguments"
    too_long = call(tools["set_timer"], {"minutes": 1440, "seconds": 1})
    assert too_long["error"] == {"type": "invalid_arguments",
                                 "message": "a timer runs 1 second to 24 hours; got 86401 s"}
    for _ in range(3):
        assert call(tools["set_timer"], {"minutes": 1})["ok"]
    full = call(tools["set_timer"], {"minutes": 1})
    assert full["error"]["type"] == "limit_reached"


def test_the_timer_thread_sleeps_while_it_has_nothing_to_do(timers_rig):
    service, clock, fired, fired_event, tools = timers_rig
    call(tools["set_timer"], {"minutes": 60})
    time.sleep(0.1)
    reads = clock.reads
    time.sleep(0.3)
    assert clock.reads == reads        # one timer far away: one wait, no polling
    call(tools["cancel_timer"], {"id": "t1"})
    time.sleep(0.1)
    reads = clock.reads
    time.sleep(0.3)
    assert clock.reads == reads        # no timer: waits without a timeout
    assert not fired


def test_a_real_one_second_timer_fires_after_one_second_on_pv_timers():
    fired = []
    done = threading.Event()

    def on_fired(timer):
        fired.append((timer, time.monotonic(), Path(f"/proc/self/task/{threading.get_native_id()}/comm")
                      .read_text().strip()))
        done.set()
    service = TimerService(on_fired)
    try:
        started = time.monotonic()
        service.set(1.0, "quick")
        assert done.wait(3)
        timer, at, thread_name = fired[0]
        assert 1.0 <= at - started < 1.2
        assert thread_name == "pv-timers"
    finally:
        service.close()


def test_close_drops_pending_timers():
    fired = []
    clock = FakeClock()
    service = TimerService(fired.append, clock=clock)
    service.set(1.0)
    service.close()
    clock.advance(10)
    service.poke()
    time.sleep(0.1)
    assert fired == [] and service.pending() == []
