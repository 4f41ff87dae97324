"""Runs the model's function calls off the controller thread and posts one result per call.

`start`, `cancel`, `cancel_all` are called from the controller thread and return at once. Each call runs
on its own worker thread (`pv-tool-N`), at most `max_workers` at a time (the rest wait their turn). A
watchdog thread (`pv-tool-watch`, asleep while no call is pending) answers `timeout` for any call still
running `GRACE_S` after its tool's timeout, so a stuck tool, even a built-in, never hangs the model.

Exactly one `ToolResult` is posted per started call: from its worker, from the watchdog (timeout), or
from the thread calling `cancel` (cancelled). A worker that finishes after that has its result dropped;
a call that ended this way frees its worker slot at once. A call id started again (the call seen in
`response.function_call_arguments.done` and again in `response.done`) is ignored: the last 256 are kept.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

from pivoice.osthread import name_this_thread
from pivoice.tools.base import CallContext, Outcome, Tool, failure
from pivoice.tools.registry import ToolRegistry
from pivoice.tools.schema import validate

log = logging.getLogger(__name__)

GRACE_S = 1.0            # beyond a tool's timeout: room for a command tool to kill its process group
_LOGGED_NAMES = 10
_REMEMBERED_CALLS = 256  # call ids kept after their answer, so a call seen twice is answered once


@dataclass(frozen=True)
class ToolResult:
    call_id: str
    name: str
    output: str              # JSON text for function_call_output.output
    ok: bool
    duration_s: float
    effect: str | None = None    # e.g. "end_conversation": the controller acts on it
    error_type: str | None = None    # when not ok: "cancelled", "timeout", ... (as in the output's error.type)


class _Call:
    def __init__(self, call_id: str, name: str, arguments_json: str, tool: Tool | None, started_s: float):
        self.call_id, self.name, self.arguments_json, self.tool = call_id, name, arguments_json, tool
        self.started_s = started_s
        self.deadline_s = started_s + (tool.timeout_s if tool else 0.0) + GRACE_S
        self.ctx = CallContext()
        self.argument_names: list[str] = []
        self.running = False
        self.finished = False


class ToolRunner:
    def __init__(self, registry: ToolRegistry, post: Callable[[ToolResult], None], *, max_workers: int = 4,
                 clock: Callable[[], float] = time.monotonic):
        self._registry = registry
        self._post = post
        self._max_workers = max_workers
        self._clock = clock
        self._cond = threading.Condition()
        self._calls: dict[str, _Call] = {}
        self._seen: dict[str, None] = {}      # insertion-ordered: the oldest is forgotten first
        self._queue: deque[_Call] = deque()
        self._active = 0
        self._numbers = itertools.count(1)
        self._watchdog: threading.Thread | None = None
        self._workers: set[threading.Thread] = set()
        self._closed = False

    def declarations(self) -> list[dict]:
        return self._registry.declarations()

    def pending(self) -> int:
        """Calls started and not yet answered."""
        with self._cond:
            return len(self._calls)

    def start(self, call_id: str, name: str, arguments_json: str) -> None:
        call = _Call(call_id, name, arguments_json, self._registry.get(name), self._clock())
        with self._cond:
            if call_id in self._seen:
                log.warning("tool call %s (%s) was already started; the repeat is ignored", call_id, name)
                return
            self._seen[call_id] = None
            if len(self._seen) > _REMEMBERED_CALLS:
                del self._seen[next(iter(self._seen))]
            if self._closed:
                call.finished = True
            else:
                self._calls[call_id] = call
                self._queue.append(call)
                if self._watchdog is None:
                    self._watchdog = threading.Thread(target=self._watch, name="pv-tool-watch", daemon=True)
                    self._watchdog.start()
                self._cond.notify_all()
        if call.finished:
            self._report(call, failure("cancelled", "the tool runner is shut down"))
            return
        self._launch()

    def cancel(self, call_id: str) -> bool:
        """Stop one call (its process is killed, its request abandoned); False if it is not pending."""
        with self._cond:
            call = self._calls.get(call_id)
        if call is None:
            return False
        if self._finish(call, failure("cancelled", f"{call.name} was cancelled")):
            call.ctx.cancel()
            return True
        return False

    def cancel_all(self) -> int:
        with self._cond:
            call_ids = list(self._calls)
        return sum(self.cancel(call_id) for call_id in call_ids)

    def close(self, timeout_s: float = 2.0) -> None:
        """Cancel every call, give the workers up to timeout_s to kill their processes (so none outlives
        the daemon), stop the watchdog; later `start`s are answered `cancelled`."""
        self.cancel_all()
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            threads = [t for t in (self._watchdog,) if t is not None] + list(self._workers)
        deadline = time.monotonic() + timeout_s
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))

    # ---- internals ----------------------------------------------------------------------------

    def _launch(self) -> None:
        to_start = []
        with self._cond:
            while self._queue and self._active < self._max_workers:
                call = self._queue.popleft()
                call.running = True
                self._active += 1
                to_start.append((call, next(self._numbers)))
        for call, number in to_start:
            thread = threading.Thread(target=self._work, args=(call, number), name=f"pv-tool-{number}", daemon=True)
            with self._cond:
                self._workers.add(thread)
            thread.start()

    def _work(self, call: _Call, number: int) -> None:
        name_this_thread(f"tool-{number}")
        try:
            try:
                outcome = self._execute(call)
            except Exception as exc:   # e.g. arguments nested too deep to parse: still an answer, at once
                log.warning("tool %s: %s before it ran", call.name, type(exc).__name__, exc_info=True)
                outcome = failure("failed", f"{call.name} could not be run ({type(exc).__name__})")
            if not self._finish(call, outcome):
                log.debug("tool %s (call %s): finished after its call ended; result dropped", call.name,
                          call.call_id)
        finally:
            with self._cond:
                self._workers.discard(threading.current_thread())

    def _execute(self, call: _Call) -> Outcome:
        tool = call.tool
        if tool is None:
            names = ", ".join(self._registry.names()) or "none"
            return failure("unknown_function", f"there is no function named {call.name!r}; available: {names}")
        if not isinstance(call.arguments_json, str):
            return failure("invalid_arguments", "arguments must be JSON text")
        try:
            arguments = json.loads(call.arguments_json) if call.arguments_json.strip() else {}
        except ValueError as exc:
            return failure("invalid_arguments", f"arguments are not valid JSON: {exc}")
        if not isinstance(arguments, dict):
            return failure("invalid_arguments", "$: must be a JSON object of named arguments")
        call.argument_names = [str(n)[:40] for n in list(arguments)[:_LOGGED_NAMES]]
        problems = validate(tool.parameters, arguments)
        if problems:
            return failure("invalid_arguments", "; ".join(problems[:5]))
        if call.ctx.cancelled:
            return failure("cancelled", f"{call.name} was cancelled")
        try:
            outcome = tool.run(arguments, call.ctx)
        except Exception as exc:   # a tool's bug becomes an error object, never a traceback to the model
            log.warning("tool %s raised %s", call.name, type(exc).__name__, exc_info=True)
            return failure("failed", f"{call.name} failed ({type(exc).__name__})")
        if not isinstance(outcome, Outcome):
            return failure("failed", f"{call.name} returned no result")
        return outcome

    def _finish(self, call: _Call, outcome: Outcome) -> bool:
        """Post `outcome` unless the call already has a result; True if this one was posted."""
        with self._cond:
            if call.finished:
                return False
            call.finished = True
            self._calls.pop(call.call_id, None)
            if call.running:
                self._active -= 1
            else:
                self._queue.remove(call)
            self._cond.notify_all()
        self._report(call, outcome)
        self._launch()
        return True

    def _report(self, call: _Call, outcome: Outcome) -> None:
        duration_s = self._clock() - call.started_s
        text = "ok" if outcome.ok else f"error {outcome.error_type or 'failed'}"
        status = outcome.payload.get("error", {}).get("status") if not outcome.ok else None
        if status is not None:
            text += f" {status}"
        log.info("tool %s: %s in %.2f s (call %s; arguments: %s)", call.name, text, duration_s, call.call_id,
                 ", ".join(call.argument_names) or "none")
        result = ToolResult(call.call_id, call.name, json.dumps(outcome.payload, ensure_ascii=False), outcome.ok,
                            duration_s, outcome.effect, None if outcome.ok else outcome.error_type or "failed")
        try:
            self._post(result)
        except Exception:
            log.exception("tool %s: posting the result failed", call.name)

    def _watch(self) -> None:
        name_this_thread("tool-watch")
        while True:
            with self._cond:
                expired = self._wait_for_expiry()
            if expired is None:
                return
            if self._finish(expired, failure("timeout", f"{expired.name} gave no answer within "
                                                         f"{expired.tool.timeout_s if expired.tool else 0:g} s")):
                expired.ctx.cancel()

    def _wait_for_expiry(self) -> _Call | None:
        """Under the lock: block until a pending call passes its deadline; None once closed."""
        while not self._closed:
            if not self._calls:
                self._cond.wait()
                continue
            soonest = min(self._calls.values(), key=lambda c: c.deadline_s)
            left_s = soonest.deadline_s - self._clock()
            if left_s <= 0:
                return soonest
            self._cond.wait(left_s)
        return None
