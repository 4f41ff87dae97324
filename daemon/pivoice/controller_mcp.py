"""MCP approvals and failures (reference §7): the device's side of tools that run at the API.

When the server asks to run an MCP tool (`mcp_approval_request`, seen on `conversation.item.done`)
the config's policy (mcp_policy.py) approves, denies, or asks the user: an out-of-band response
(`conversation: "none"`, so the question stays out of the conversation and the request stays
open) says "Shall I ...?", and a press within `ask_timeout_s` after it has been heard approves;
silence denies. The answer goes back as an `mcp_approval_response` item right after the request;
the server then continues on its own. A finished response that ran MCP calls is followed by a
`response.create` so the model speaks the result (as OpenAI's agents-js does). A failed call or
tool listing is narrated at WARNING with the server, tool and error.

A mixin of `controller.Controller`; called from the controller thread only.
"""

from __future__ import annotations

from pivoice import messages as m
from pivoice.mcp_policy import APPROVE, ASK, McpPolicy

QUESTION_WAIT_S = 30.0   # the question itself may take this long to be asked and heard


class McpRules:
    def _reset_mcp(self) -> None:
        self.asking: dict | None = None   # the approval request put to the user, and its deadline

    @property
    def mcp_policy(self) -> McpPolicy:
        return self.s.mcp or McpPolicy()

    def _on_item_done(self, item: dict) -> list:
        kind = item.get("type")
        if kind == "mcp_approval_request":
            return self._approval_requested(item)
        if kind == "mcp_call" and item.get("error"):
            error = item["error"]
            return [m.Note("mcp_failed", f"MCP tool {item['server_label']}.{item['name']} failed "
                                         f"({error.get('type') or 'error'}): {error.get('message') or 'no message'}",
                           "warning")]
        return []

    def _approval_requested(self, item: dict) -> list:
        label, name = item["server_label"], item["name"]
        decision = self.mcp_policy.decide(label, name)
        if decision == APPROVE:
            return self._answer_approval(item["id"], True, f"{label}.{name} is on the approve list")
        if decision == ASK and self.asking is None:
            self.asking = {"id": item["id"], "what": f"{label}.{name}", "deadline_s": self.now_s + QUESTION_WAIT_S,
                           "started": False}
            question = (f"Ask the user, in one short question and nothing else, whether you should use "
                        f"{name} on {label} now, and say they can press the button to confirm.")
            return [m.Note("mcp_ask", f"asking the user to approve {label}.{name}"),
                    self._event("response.create", response={"conversation": "none", "instructions": question})]
        why = "another approval is being asked" if decision == ASK else "not allowed on this device"
        return self._answer_approval(item["id"], False, f"{label}.{name}: {why}")

    def _answer_approval(self, request_id: str, approve: bool, why: str) -> list:
        item = {"type": "mcp_approval_response", "approval_request_id": request_id, "approve": approve}
        if not approve:
            item["reason"] = why
        return [self._event("conversation.item.create", previous_item_id=request_id, item=item),
                m.Note("mcp_approved" if approve else "mcp_denied",
                       f"MCP call {'approved' if approve else 'denied'} ({why})")]

    def _question_started(self) -> None:
        """The first response created after the request is the question (ours, out of band)."""
        if self.asking is not None:
            self.asking["started"] = True

    def _question_heard(self) -> None:
        """The question has been asked: the user has `ask_timeout_s` from now to press. Not before
        its response started: the request's own response.done comes first and is no question."""
        if self.asking is not None and self.asking["started"] and self.response_id is None and not self.playing:
            self.asking["deadline_s"] = min(self.asking["deadline_s"], self.now_s + self.mcp_policy.ask_timeout_s)

    def _press_approves(self) -> list:
        asking, self.asking = self.asking, None
        actions = self._interrupt("button") if (self.playing or self.response_id is not None) else []
        return actions + self._answer_approval(asking["id"], True, f"{asking['what']} approved by a press")

    def _ask_expired(self) -> list:
        if self.asking is None or self.now_s < self.asking["deadline_s"]:
            return []
        asking, self.asking = self.asking, None
        return self._answer_approval(asking["id"], False, f"{asking['what']}: the user did not confirm")

    def _mcp_followup(self, response: dict) -> list:
        """A response that ran MCP calls is done: ask the model to speak the result."""
        if not response.get("mcp_calls") or self.response_id is not None or self.tools_busy:
            return []
        return [self._event("response.create")]
