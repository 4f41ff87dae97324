"""The `tools:` config section, read into frozen dataclasses (units in the names).

An absent section turns every tool off; each built-in is off unless switched on. One function's
`command`/`http` spec is read by specs.py.

Main thread, at config load.
"""

from __future__ import annotations

from dataclasses import dataclass

from pivoice.settings import Section
from pivoice.tools.specs import MAX_TIMEOUT_S, CommandSpec, FunctionToolConfig, HttpSpec, read_function

# Every built-in tool name, on or off: a function of the user's may not take one.
BUILTIN_NAMES = ("get_time", "get_volume", "set_volume", "end_conversation", "set_timer", "cancel_timer",
                 "list_timers")

__all__ = ["BuiltinToolsConfig", "CommandSpec", "FunctionToolConfig", "HttpSpec", "ToolsConfig", "read_tools"]


@dataclass(frozen=True)
class BuiltinToolsConfig:
    time: bool = False
    timezone: str | None = None          # IANA name; None = the system's zone
    volume: bool = False
    end_conversation: bool = False
    timers: bool = False
    max_timers: int = 10


@dataclass(frozen=True)
class ToolsConfig:
    timeout_s: float = 5.0               # per call, for built-ins and as the functions' default
    builtin: BuiltinToolsConfig = BuiltinToolsConfig()
    functions: tuple[FunctionToolConfig, ...] = ()

    @property
    def enabled(self) -> bool:
        b = self.builtin
        return bool(self.functions) or b.time or b.volume or b.end_conversation or b.timers

    def names(self) -> tuple[str, ...]:
        """The function names this config declares to the model."""
        b = self.builtin
        groups = ((b.time, ("get_time",)), (b.volume, ("get_volume", "set_volume")),
                  (b.end_conversation, ("end_conversation",)), (b.timers, ("set_timer", "cancel_timer", "list_timers")))
        return tuple(name for on, names in groups if on for name in names) + tuple(f.name for f in self.functions)


def read_tools(sec: Section) -> ToolsConfig:
    """The `tools:` section (`sec` may be an absent section: then every tool is off)."""
    timeout_s = sec.float("timeout_s", 5.0, min=0.1, max=MAX_TIMEOUT_S)
    builtin = _read_builtin(sec.section("builtin"))
    raw = sec.raw("functions", [])
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise sec.error("functions", "must be a list of function tools")
    functions: list[FunctionToolConfig] = []
    for i, item in enumerate(raw):
        fsec = Section(item, sec.file, f"{sec.key_path('functions')}[{i}]")
        tool = read_function(fsec, timeout_s)
        if tool.name in BUILTIN_NAMES:
            raise fsec.error("name", f"{tool.name!r} is a built-in tool's name; choose another")
        if any(f.name == tool.name for f in functions):
            raise fsec.error("name", f"{tool.name!r} is already used by an earlier function")
        functions.append(tool)
    sec.done()
    return ToolsConfig(timeout_s=timeout_s, builtin=builtin, functions=tuple(functions))


def _switch(sec: Section, key: str) -> tuple[Section, bool]:
    """`key: true|false` or `key: {enabled: true|false, ...}` (the mapping is checked even when off)."""
    value = sec.raw(key, False)
    if isinstance(value, bool) or value is None:
        return Section({}, sec.file, sec.key_path(key)), bool(value)
    sub = sec.section(key)
    return sub, sub.bool("enabled", True)


def _read_builtin(sec: Section) -> BuiltinToolsConfig:
    time_sec, time_on = _switch(sec, "time")
    timezone = time_sec.str("timezone", None, nullable=True)
    if timezone is not None:
        import zoneinfo   # here, not at the top: it pulls in sysconfig, which only a named zone needs
        try:
            zoneinfo.ZoneInfo(timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise time_sec.error("timezone", f"unknown time zone {timezone!r} (an IANA name such as "
                                             "Europe/Berlin, or null for the system's)") from None
    timers_sec, timers_on = _switch(sec, "timers")
    max_timers = timers_sec.int("max_timers", 10, min=1, max=100)
    time_sec.done()
    timers_sec.done()
    out = BuiltinToolsConfig(time=time_on, timezone=timezone, volume=sec.bool("volume", False),
                             end_conversation=sec.bool("end_conversation", False),
                             timers=timers_on, max_timers=max_timers)
    sec.done()
    return out
