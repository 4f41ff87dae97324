"""What every tool is made of: its declaration, its run function, the outcome it returns, and the
per-call context through which the runner cancels it.

A tool's `run(arguments, ctx)` is called on a tool worker thread with arguments already checked against
its schema; `CallContext.cancel()` may come from any thread (the controller on barge-in, the runner's
watchdog on timeout).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass(frozen=True)
class Outcome:
    """What a tool returns: `payload` is the JSON object the model receives (always with `ok`);
    `effect` asks the controller to act (e.g. "end_conversation")."""

    payload: dict
    effect: str | None = None

    @property
    def ok(self) -> bool:
        return self.payload.get("ok") is True

    @property
    def error_type(self) -> str | None:
        error = self.payload.get("error")
        return error.get("type") if isinstance(error, dict) else None


def success(**fields: Any) -> Outcome:
    return Outcome({"ok": True, **fields})


def failure(kind: str, message: str, **extra: Any) -> Outcome:
    """An error the model can read: `kind` is a stable type (timeout, failed, ...), `message` plain words."""
    return Outcome({"ok": False, "error": {"type": kind, "message": message, **extra}})


class CallContext:
    """One call's cancellation flag and hooks. Hooks must be quick and must not block: they run on the
    thread that cancels (often the controller's)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cancelled = False
        self._hooks: list[Callable[[], None]] = []

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def on_cancel(self, hook: Callable[[], None]) -> None:
        """Call `hook` when the call is cancelled (at once if it already is)."""
        with self._lock:
            if not self._cancelled:
                self._hooks.append(hook)
                return
        hook()

    def cancel(self) -> None:
        with self._lock:
            if self._cancelled:
                return
            self._cancelled = True
            hooks, self._hooks = self._hooks, []
        for hook in hooks:
            hook()


@dataclass(frozen=True)
class Tool:
    """A function the model may call. `parameters` is a checked schema (see schema.py); `timeout_s` is the
    longest a call may take before the runner answers `timeout` for it."""

    name: str
    description: str
    parameters: dict
    timeout_s: float
    run: Callable[[dict, CallContext], Outcome] = field(repr=False)
    kind: str = "builtin"          # builtin | command | http, for logs

    def declaration(self) -> dict:
        """The GA session's function tool entry for `session.update`."""
        return {"type": "function", "name": self.name, "description": self.description,
                "parameters": self.parameters}
