"""Which scripted turn a response plays, and the waits between a tool call and its follow-up.

One `ScriptFlow` per session; the turns come from a `ScriptCursor` that is shared by every session
of the server (`--script-scope server`, the default: a daemon opens a session per conversation) or
owned by one session (`--script-scope session`). A response on a user turn (server VAD, idle
timeout) or a client `response.create` with nothing pending plays the next turn:

* `say`: that text instead of the normal reply.
* `calls`: [say_before message] + function_call items; the session then waits for the client's
  `function_call_output`s and its `response.create`, which speaks `then_say` filled from them.
* `mcp`: [say_before] + an `mcp_approval_request` (when the session's `require_approval` says so)
  or the `mcp_call` itself. An approval answered with `conversation.item.create` starts the
  server's own response (agents-js, OpenAI's client, sends no `response.create` after an approval):
  approved -> a response with the `mcp_call` that ends there, as every MCP call does, and the
  client's next `response.create` speaks `then_say` (agents-js sends it on the mcp_call's
  `conversation.item.done`); denied -> a response speaking `then_say_denied`.

A new user turn abandons whatever was pending (the model moves on). Runs on the ASGI event loop.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

from . import tools
from .script import Script, Turn, fill
from .voice import VoiceSource

log = logging.getLogger(__name__)


class ScriptCursor:
    def __init__(self, script: Script) -> None:
        self.script = script
        self.position = 0

    def next(self) -> Turn | None:
        if self.position >= len(self.script.turns):
            return None
        turn = self.script.turns[self.position]
        self.position += 1
        return turn


@dataclass
class Plan:
    """How to run one response: `text` None means no message; `step` emits the tool items."""

    text: str | None
    step: Callable | None = None


class ScriptFlow:
    def __init__(self, cursor: ScriptCursor | None, session_tools: Callable[[], list]) -> None:
        self._cursor = cursor
        self._session_tools = session_tools
        self._calls: tuple[Turn, list[str], dict[str, str]] | None = None  # turn, call_ids, outputs
        self._approval: tuple[Turn, str] | None = None  # turn, approval request item id
        self._mcp_done: tuple[Turn, dict] | None = None  # turn, the mcp_call item
        self._listed: dict[str, str] = {}  # server_label -> the config it was listed with
        self._voices: dict[str, VoiceSource] = {}

    @property
    def active(self) -> bool:
        return self._cursor is not None

    # ---- responses
    def plan(self, trigger: str) -> Plan | None:
        """`trigger` is "turn" (a user turn) or "create" (a client response.create); None = normal reply."""
        if not self.active:
            return None
        if trigger == "create":
            follow = self._follow_up()
            if follow is not False:
                return follow
        self._abandon()
        turn = self._cursor.next()
        if turn is None:
            return None
        log.info("script turn %d: %s", turn.index, turn.describe())
        if turn.say is not None:
            return Plan(turn.say)
        if turn.calls:
            return Plan(turn.say_before, lambda run: self._run_calls(run, turn))
        return Plan(turn.say_before, lambda run: self._run_mcp(run, turn))

    def _follow_up(self) -> Plan | None | bool:
        if self._calls is not None:
            turn, call_ids, outputs = self._calls
            self._calls = None
            missing = [c for c in call_ids if c not in outputs]
            if missing:
                log.info("script turn %d: follow-up without output for %s", turn.index, ", ".join(missing))
            got = [outputs[c] for c in call_ids if c in outputs]
            return None if turn.then_say is None else Plan(fill(turn.then_say, got))
        if self._mcp_done is not None:
            turn, item = self._mcp_done
            self._mcp_done = None
            if item["error"] is not None:
                return Plan(fill(turn.then_say_failed, [], item["error"]["message"], item["name"]))
            return None if turn.then_say is None else Plan(fill(turn.then_say, [item["output"] or ""]))
        return False

    def _abandon(self) -> None:
        for name, pending in (("function outputs", self._calls), ("an approval", self._approval)):
            if pending is not None:
                log.info("script turn %d: still waiting for %s; moving on", pending[0].index, name)
        self._calls = self._approval = self._mcp_done = None

    def _run_calls(self, run, turn: Turn) -> None:
        declared = {t.get("name") for t in self._session_tools() if t.get("type") == "function"}
        for call in turn.calls:
            if call.name not in declared:
                log.info("script turn %d calls %r, which the session did not declare", turn.index, call.name)
        call_ids = tools.emit_function_calls(run, turn.calls)
        self._calls = (turn, call_ids, {})

    def _run_mcp(self, run, turn: Turn) -> None:
        mcp = turn.mcp
        config = self._mcp_config(mcp.server_label)
        if config is None:
            log.info("script turn %d uses MCP server %r, which the session did not declare", turn.index,
                     mcp.server_label)
        if tools.needs_approval(config, self._tool(mcp.server_label, mcp.name)):
            self._approval = (turn, tools.emit_approval_request(run, mcp))
        else:
            self._mcp_done = (turn, tools.emit_mcp_call(run, mcp, None))

    # ---- client items
    def item_created(self, item: dict) -> Plan | None:
        """A client item was added; returns a Plan when the server itself starts a response."""
        if item.get("type") == "function_call_output" and self._calls is not None:
            turn, call_ids, outputs = self._calls
            if item["call_id"] in call_ids:
                outputs[item["call_id"]] = item["output"]
            return None
        if item.get("type") != "mcp_approval_response" or self._approval is None:
            return None
        turn, request_id = self._approval
        if item["approval_request_id"] != request_id:
            return None
        self._approval = None
        log.info("script turn %d: approval %s", turn.index, "granted" if item["approve"] else "denied")
        if not item["approve"]:
            return Plan(turn.then_say_denied)
        return Plan(None, lambda run: self._run_approved(run, turn, request_id))

    def _run_approved(self, run, turn: Turn, request_id: str) -> None:
        self._mcp_done = (turn, tools.emit_mcp_call(run, turn.mcp, request_id))

    # ---- MCP tool listing
    def list_new_servers(self, emit, conversation) -> None:
        """List each `mcp` tool of the session whose label (or allowed_tools) is new."""
        if not self.active:
            return
        for config in self._session_tools():
            if config.get("type") != "mcp":
                continue
            label = config["server_label"]
            key = repr(config.get("allowed_tools"))
            if self._listed.get(label) == key:
                continue
            self._listed[label] = key
            known = self._cursor.script.mcp_servers.get(label)
            tools.list_tools(emit, conversation, label, None if known is None else tools.allowed(config, known))

    def _mcp_config(self, label: str) -> dict | None:
        return next((t for t in self._session_tools() if t.get("type") == "mcp" and t.get("server_label") == label),
                    None)

    def _tool(self, label: str, name: str) -> dict:
        known = self._cursor.script.mcp_servers.get(label) or []
        return next((t for t in known if t["name"] == name), {"name": name})

    # ---- voice
    def voice(self, plan: Plan | None, base: VoiceSource) -> VoiceSource:
        """The normal voice source, saying the plan's text (parrot mode speaks it: nothing to echo)."""
        if plan is None or plan.text is None:
            return base
        text = plan.text
        if text not in self._voices:
            mode = "speak" if base.mode == "parrot" else base.mode
            escaped = text.replace("{", "{{").replace("}", "}}")
            self._voices[text] = VoiceSource(mode, escaped, base.espeak_path)
        return self._voices[text]
