"""The set of tools the model may call, built from the `tools:` config.

Built once on the main thread (composition root); read from any thread afterwards (immutable).
"""

from __future__ import annotations

import os
import time
from typing import Callable, Iterable, Iterator, Mapping

from pivoice.tools import builtin
from pivoice.tools.base import CallContext, Outcome, Tool
from pivoice.tools.command import run_command
from pivoice.tools.config import ToolsConfig
from pivoice.tools.specs import FunctionToolConfig
from pivoice.tools.http import run_http
from pivoice.tools.timers import TimerService


class ToolRegistry:
    def __init__(self, tools: Iterable[Tool]):
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            if tool.name in self._tools:
                raise ValueError(f"two tools are named {tool.name!r}")
            self._tools[tool.name] = tool

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def names(self) -> tuple[str, ...]:
        return tuple(self._tools)

    def declarations(self) -> list[dict]:
        """The GA `session.tools` entries, in config order (built-ins first)."""
        return [tool.declaration() for tool in self._tools.values()]

    def __iter__(self) -> Iterator[Tool]:
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)


def function_tool(cfg: FunctionToolConfig, environ: Mapping[str, str] = os.environ) -> Tool:
    """A configured `command` or `http` function as a Tool."""
    if cfg.command is not None:
        spec = cfg.command

        def run(arguments: dict, ctx: CallContext) -> Outcome:
            return run_command(spec, arguments, ctx)
        return Tool(cfg.name, cfg.description, cfg.parameters, spec.timeout_s, run, kind="command")
    http_spec = cfg.http

    def run_request(arguments: dict, ctx: CallContext) -> Outcome:
        return run_http(http_spec, arguments, ctx, environ)
    return Tool(cfg.name, cfg.description, cfg.parameters, http_spec.timeout_s, run_request, kind="http")


def build_registry(cfg: ToolsConfig, *, volume: builtin.VolumeControl | None = None,
                   timers: TimerService | None = None, environ: Mapping[str, str] = os.environ,
                   wall_clock: Callable[[], float] = time.time) -> ToolRegistry:
    """Every enabled tool. `volume` is needed when the volume built-ins are on, `timers` when timers are."""
    b, timeout_s = cfg.builtin, cfg.timeout_s
    tools: list[Tool] = []
    if b.time:
        tools.append(builtin.time_tool(b.timezone, timeout_s, wall_clock))
    if b.volume:
        if volume is None:
            raise ValueError("tools.builtin.volume is on but no volume control was given")
        tools += builtin.volume_tools(volume, timeout_s)
    if b.end_conversation:
        tools.append(builtin.end_conversation_tool(timeout_s))
    if b.timers:
        if timers is None:
            raise ValueError("tools.builtin.timers is on but no timer service was given")
        tools += builtin.timer_tools(timers, timeout_s)
    tools += [function_tool(f, environ) for f in cfg.functions]
    return ToolRegistry(tools)
