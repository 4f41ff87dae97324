"""The built-in tools: the time, the speaker volume, ending the conversation, kitchen timers.

Each factory returns `Tool`s whose `run` is called on a tool worker thread; the volume control and the
timer service they are given must be safe to call from there.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, tzinfo
from typing import Callable, Protocol

from pivoice.tools.base import CallContext, Outcome, Tool, failure, success
from pivoice.tools.config import BUILTIN_NAMES  # noqa: F401  (re-exported: the names live with the switches)
from pivoice.tools.timers import Timer, TimerError, TimerService

END_CONVERSATION = "end_conversation"    # the effect the controller acts on
_NO_ARGUMENTS = {"type": "object", "properties": {}, "additionalProperties": False}


class VolumeControl(Protocol):
    """The speaker's volume (the lead's real one drives the mixer; tests use an in-memory one)."""

    def volume_percent(self) -> int: ...

    def set_volume_percent(self, percent: int) -> int: ...


def system_timezone() -> tzinfo:
    """The system's zone: $TZ, else the zone /etc/localtime links to, else the C library's fixed offset."""
    import zoneinfo   # on first use: it and the sysconfig it pulls in cost ~0.7 MiB of RSS
    candidates = [os.environ.get("TZ", "").lstrip(":")]
    localtime = os.path.realpath("/etc/localtime")
    if "/zoneinfo/" in localtime:
        candidates.append(localtime.split("/zoneinfo/", 1)[1])
    for name in candidates:
        if name:
            try:
                return zoneinfo.ZoneInfo(name)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                continue
    return datetime.now().astimezone().tzinfo


def time_tool(timezone: str | None, timeout_s: float, wall_clock: Callable[[], float] = time.time) -> Tool:
    def run(arguments: dict, ctx: CallContext) -> Outcome:
        import zoneinfo
        zone = zoneinfo.ZoneInfo(timezone) if timezone else system_timezone()
        now = datetime.fromtimestamp(wall_clock(), zone)
        return success(time=now.isoformat(timespec="seconds"), weekday=now.strftime("%A"),
                       timezone=str(getattr(zone, "key", None) or now.tzname()),
                       utc_offset=now.strftime("%z")[:3] + ":" + now.strftime("%z")[3:])
    return Tool("get_time", "The current local date, time, weekday and time zone.", _NO_ARGUMENTS,
                timeout_s, run)


def volume_tools(volume: VolumeControl, timeout_s: float) -> list[Tool]:
    def get(arguments: dict, ctx: CallContext) -> Outcome:
        return success(volume_percent=volume.volume_percent())

    def set_(arguments: dict, ctx: CallContext) -> Outcome:
        return success(volume_percent=volume.set_volume_percent(int(arguments["percent"])))

    percent = {"type": "object", "additionalProperties": False, "required": ["percent"],
               "properties": {"percent": {"type": "integer", "minimum": 0, "maximum": 100,
                                          "description": "The new volume, 0 (silent) to 100 (loudest)."}}}
    return [Tool("get_volume", "The speaker's current volume in percent.", _NO_ARGUMENTS, timeout_s, get),
            Tool("set_volume", "Set the speaker's volume in percent. Say the new level.", percent, timeout_s, set_)]


def end_conversation_tool(timeout_s: float) -> Tool:
    def run(arguments: dict, ctx: CallContext) -> Outcome:
        return Outcome({"ok": True}, effect=END_CONVERSATION)
    return Tool("end_conversation", "End the conversation when the user says goodbye or has nothing more "
                "to ask. Say goodbye first.", _NO_ARGUMENTS, timeout_s, run)


def _timer_json(timers: TimerService, timer: Timer) -> dict:
    return {"id": timer.id, "label": timer.label, "duration_s": timer.duration_s,
            "remaining_s": round(timers.remaining_s(timer))}


def timer_tools(timers: TimerService, timeout_s: float) -> list[Tool]:
    def set_timer(arguments: dict, ctx: CallContext) -> Outcome:
        if "minutes" not in arguments and "seconds" not in arguments:
            return failure("invalid_arguments", "$: give minutes or seconds (or both)")
        duration_s = arguments.get("minutes", 0) * 60 + arguments.get("seconds", 0)
        try:
            timer = timers.set(duration_s, arguments.get("label"))
        except TimerError as exc:
            return failure(exc.kind, str(exc))
        return success(timer=_timer_json(timers, timer))

    def cancel_timer(arguments: dict, ctx: CallContext) -> Outcome:
        if not arguments.get("id") and not arguments.get("label"):
            return failure("invalid_arguments", "$: give the timer's id or label")
        try:
            timer = timers.cancel(timer_id=arguments.get("id"), label=arguments.get("label"))
        except TimerError as exc:
            return failure(exc.kind, str(exc))
        return success(cancelled=_timer_json(timers, timer))

    def list_timers(arguments: dict, ctx: CallContext) -> Outcome:
        return success(timers=[_timer_json(timers, t) for t in timers.pending()])

    set_params = {"type": "object", "additionalProperties": False, "properties": {
        "minutes": {"type": "number", "minimum": 0, "maximum": 1440, "description": "Minutes to count down."},
        "seconds": {"type": "number", "minimum": 0, "maximum": 86400,
                    "description": "Seconds to count down (added to minutes)."},
        "label": {"type": "string", "maxLength": 40, "description": "A short name, e.g. pasta."}}}
    cancel_params = {"type": "object", "additionalProperties": False, "properties": {
        "id": {"type": "string", "maxLength": 20, "description": "The timer's id from set_timer or list_timers."},
        "label": {"type": "string", "maxLength": 40, "description": "The timer's label."}}}
    return [Tool("set_timer", "Start a countdown timer (1 second to 24 hours). When it ends the speaker rings "
                 "and says so.", set_params, timeout_s, set_timer),
            Tool("cancel_timer", "Cancel a pending timer by id or label.", cancel_params, timeout_s, cancel_timer),
            Tool("list_timers", "The pending timers and the seconds each has left.", _NO_ARGUMENTS, timeout_s,
                 list_timers)]
