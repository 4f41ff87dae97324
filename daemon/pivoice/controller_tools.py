"""The tool half of the controller: the model's function calls, answered in order (reference §6).

A call is started (`RunTool`) as soon as its arguments are complete
(`response.function_call_arguments.done`, or the `function_call` item in `response.done` if that
came first) and runs off this thread (tools/runner.py). The outputs go back once every call of the
response has finished AND the response is done, in the order the model made the calls, as
`conversation.item.create` items followed by one `response.create`: the API does not answer a
function output on its own, and refuses a `response.create` while another response is active, so
when the server has started one meanwhile (the user spoke) the `response.create` waits for its end.

A barge-in, a press or the end of the conversation cancels what is still running (`CancelTools`);
the model is told each cancelled call's outcome, without being asked to answer. A mixin of
`controller.Controller`; called from the controller thread only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from pivoice import ends
from pivoice import messages as m
from pivoice.ends import End

CANCELLED_OUTPUT = json.dumps({"ok": False, "error": {"type": "cancelled",
                                                      "message": "the user interrupted before the tool finished"}})


@dataclass
class _Call:
    name: str
    response_id: str | None
    seq: int
    output: str | None = None


class ToolRules:
    def _reset_tools(self) -> None:
        self.tool_calls: dict[str, _Call] = {}
        self.tool_seq = 0
        self.responses_done: set[str | None] = set()   # finished responses that made calls still open
        self.response_create_owed = False   # outputs went out while another response was active
        # the model called end_conversation: "called" (its output not sent yet), "sent" (with the
        # response.create), "replying" (that response started): the end comes once it is heard
        self.end_stage: str | None = None

    @property
    def tools_busy(self) -> bool:
        return bool(self.tool_calls) or self.response_create_owed

    def _start_call(self, call: dict) -> list:
        call_id = call["call_id"]
        if call_id in self.tool_calls or call["response_id"] in self.cancelled:
            return []   # announced twice (arguments.done, then the item in response.done), or interrupted
        self.tool_seq += 1
        self.tool_calls[call_id] = _Call(call["name"], call["response_id"], self.tool_seq)
        return [m.RunTool(call_id, call["name"], call["arguments"]),
                m.Note("tool_call", f"the model called {call['name']}")]

    def _calls_done(self, response: dict) -> list:
        """response.done: start any call only listed there, then answer if everything is in."""
        actions: list = []
        for call in response.get("function_calls") or ():
            actions += self._start_call(call)
        if any(c.response_id == response.get("id") for c in self.tool_calls.values()):
            self.responses_done.add(response.get("id"))
        if self.response_create_owed and self.response_id is None:
            self.response_create_owed = False
            actions.append(self._event("response.create"))
        return actions + self._answer_ready()

    def _on_ToolDone(self, ev: m.ToolDone) -> list:
        call = self.tool_calls.get(ev.call_id)
        if call is None or self.phase != "active":
            return []   # cancelled, or the conversation is over: nobody to tell
        call.output = ev.output
        if ev.effect == "end_conversation" and ev.ok:
            self.end_stage = "called"
        return self._answer_ready()

    def _answer_ready(self) -> list:
        """Send the outputs of every finished response whose calls have all finished."""
        actions: list = []
        for response_id in list(self.responses_done):
            calls = sorted(((cid, c) for cid, c in self.tool_calls.items() if c.response_id == response_id),
                           key=lambda pair: pair[1].seq)
            if any(c.output is None for _, c in calls):
                continue
            self.responses_done.discard(response_id)
            for call_id, call in calls:
                del self.tool_calls[call_id]
                actions.append(self._event("conversation.item.create", item={
                    "type": "function_call_output", "call_id": call_id, "output": call.output}))
            names = ", ".join(c.name for _, c in calls)
            actions.append(m.Note("tool_results", f"tool results sent to the model ({names})"))
            if self.response_id is None:
                actions.append(self._event("response.create"))
            else:
                self.response_create_owed = True
            if self.end_stage == "called":
                self.end_stage = "sent"
        return actions

    def _response_started(self) -> None:
        if self.end_stage == "sent" and not self.response_create_owed:
            self.end_stage = "replying"

    def _cancel_tools(self, tell_model: bool = True) -> list:
        """Barge-in or the end: stop what runs; an open session hears that each call was cancelled."""
        self.response_create_owed = False
        self.end_stage = None
        if not self.tool_calls:
            return []
        pending = tuple(self.tool_calls)
        actions: list = [m.CancelTools(pending)]
        if tell_model:
            actions += [self._event("conversation.item.create", item={
                "type": "function_call_output", "call_id": call_id, "output": CANCELLED_OUTPUT})
                for call_id, call in sorted(self.tool_calls.items(), key=lambda pair: pair[1].seq)]
        actions.append(m.Note("tools_cancelled", f"cancelled {len(pending)} running tool call(s)"))
        self.tool_calls.clear()
        self.responses_done.clear()
        return actions

    def _end_if_asked(self) -> list:
        """The reply after an end_conversation call has been heard: end as the user would have."""
        if self.end_stage != "replying" or self.tools_busy or self.response_id is not None or self.playing:
            return []
        return self._end(End(ends.USER, "ended by the assistant (end_conversation tool)"))
