"""Which MCP tool calls the device lets the server make: the `mcp:` config section.

An MCP tool runs on the API's side, not here (reference §7); what the device decides is whether
to approve a call when the server asks (`mcp_approval_request`). Entries name a tool as
`name` (on any server), `server_label:name`, or `server_label:*`. A call on the `approve` list is
approved at once; on the `ask` list the device asks the user ("Shall I ...?") and a button press
within `ask_timeout_s` approves it; everything else is denied. Denying is the default because an
unattended kiosk should not do what nobody decided it may.

Pure data; read once at config load (main thread), consulted from the controller thread.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pivoice.settings import Section

APPROVE, ASK, DENY = "approve", "ask", "deny"
_ENTRY = re.compile(r"^(?:[a-zA-Z0-9_-]{1,64}:)?(?:[a-zA-Z0-9_.-]{1,64}|\*)$")


@dataclass(frozen=True)
class McpPolicy:
    approve: tuple[str, ...] = ()
    ask: tuple[str, ...] = ()
    ask_timeout_s: float = 10.0

    def decide(self, server_label: str, name: str) -> str:
        for decision, entries in ((APPROVE, self.approve), (ASK, self.ask)):
            if any(_matches(entry, server_label, name) for entry in entries):
                return decision
        return DENY


def _matches(entry: str, server_label: str, name: str) -> bool:
    label, _, tool = entry.rpartition(":")
    return (not label or label == server_label) and tool in ("*", name)


def read_mcp(sec: Section) -> McpPolicy:
    lists = {}
    for key in ("approve", "ask"):
        entries = sec.str_list(key, [])
        for entry in entries:
            if not _ENTRY.match(entry):
                raise sec.error(key, f"{entry!r} is not a tool name, server_label:name or server_label:*")
        lists[key] = tuple(entries)
    both = set(lists["approve"]) & set(lists["ask"])
    if both:
        raise sec.error("ask", f"{', '.join(sorted(both))} also on the approve list: put each tool on one list")
    policy = McpPolicy(lists["approve"], lists["ask"], sec.float("ask_timeout_s", 10.0, min=2, max=120))
    sec.done()
    return policy
