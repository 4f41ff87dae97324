"""The controller's helpers beyond the conversation itself: local tools and the transcript sink.

The controller asks for them with actions (`RunTool`, `CancelTools`, `RecordText`); the runtime
hands those here. A tool runs on the runner's worker threads and comes back as a `ToolDone` event;
a record goes to the sink, which never blocks (transcripts.py). With no tools configured every call
is refused to the model as an unknown function, so a model that calls one anyway (a tool pinned
by the token backend, say) gets an answer instead of a conversation that waits forever.

Thread: `execute` and `status` from the controller thread; `bind` once, before the runtime starts.
"""

from __future__ import annotations

import json
import logging
from typing import Callable

from pivoice import messages as m

log = logging.getLogger(__name__)


def unknown_function(name: str) -> str:
    return json.dumps({"ok": False, "error": {"type": "unknown_function",
                                              "message": f"no function named {name!r} on this device"}})


class Assistant:
    """`runner` (tools/runner.py) posts its results to the controller's queue itself (the composition
    root wires that); `timers` (tools/timers.py) is only held here to be closed with the rest."""

    def __init__(self, runner=None, sink=None, timers=None) -> None:
        self._runner, self._sink, self._timers = runner, sink, timers
        self._post: Callable[[object], None] | None = None

    def bind(self, post: Callable[[object], None]) -> None:
        """Where a refused call's answer goes: the controller's queue."""
        self._post = post

    def execute(self, action: object) -> bool:
        """Carry out one of this edge's actions; False if `action` is not one of them."""
        if isinstance(action, m.RunTool):
            if self._runner is None:
                log.info("tool %s refused: no tools are configured", action.name)
                self._post(m.ToolDone(action.call_id, action.name, unknown_function(action.name), ok=False))
            else:
                self._runner.start(action.call_id, action.name, action.arguments)
        elif isinstance(action, m.CancelTools):
            if self._runner is not None:
                for call_id in action.call_ids:
                    self._runner.cancel(call_id)
        elif isinstance(action, m.RecordText):
            if self._sink is not None:
                self._sink.record(action.kind, action.text)
            else:
                log.info("%s: %s", action.kind, action.text[:200])
        else:
            return False
        return True

    def status(self) -> dict:
        return {"recent_texts": self._sink.recent() if self._sink is not None else []}

    def close(self) -> None:
        """Stop running tools (their processes are killed), pending timers and the webhook worker."""
        for part in (self._runner, self._timers, self._sink):
            if part is not None:
                try:
                    part.close()
                except Exception:   # one failing part must not keep the others running
                    log.exception("error while closing %s", type(part).__name__)
