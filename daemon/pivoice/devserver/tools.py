"""Function-call and MCP event sequences of the dev server (reference §6, §7), checked against the SDK types.

No model and no network: the calls, their arguments and every MCP tool list, output and error come
from the `--script` file; the server never contacts an MCP `server_url`. The sequences:

* function call (in a response): `response.output_item.added` (function_call, in_progress,
  arguments "") -> `conversation.item.added` -> `response.function_call_arguments.delta` x2+ ->
  `.done` -> `response.output_item.done` -> `conversation.item.done`.
* MCP approval request: the `mcp_approval_request` item, added and done at once.
* MCP call: item added (arguments "") -> `response.mcp_call_arguments.delta` x2+ -> `.done` ->
  `response.mcp_call.in_progress` -> `.completed` | `.failed` -> item done with `output` | `error`.
* tool listing (outside responses): `conversation.item.added` (mcp_list_tools, no tools yet) ->
  `mcp_list_tools.in_progress` -> `.completed` | `.failed` -> `conversation.item.done`. The item
  exists before `in_progress` because agents-js retrieves it on that event.

MCP items carry no `object`/`status` keys: the SDK models have no such fields. Functions here run
on the ASGI event loop (inside a response task or a session handler).
"""

from __future__ import annotations

import json
import logging
from typing import Callable

from . import events
from .script import Call, McpCall

log = logging.getLogger(__name__)


def argument_pieces(arguments: str) -> list[str]:
    """Split the arguments into 2+ deltas like a streaming model (a single character stays one)."""
    if len(arguments) < 2:
        return [arguments]
    cut = max(1, len(arguments) // 2)
    return [arguments[:cut], arguments[cut:]]


def _tokens(arguments: str) -> int:
    return max(1, len(arguments) // 4)


def emit_function_calls(run, calls: tuple[Call, ...]) -> list[str]:
    """All calls of one response, in order; returns their call_ids."""
    call_ids = []
    for call in calls:
        item = {"id": events.new_id("item_"), "object": "realtime.item", "type": "function_call",
                "status": "in_progress", "call_id": events.new_id("call_", 16), "name": call.name, "arguments": ""}
        index = run.open_tool_item(item)
        ids = {"response_id": run.id, "item_id": item["id"], "output_index": index, "call_id": item["call_id"]}
        for piece in argument_pieces(call.arguments):
            run.emit_event("response.function_call_arguments.delta", **ids, delta=piece)
        run.emit_event("response.function_call_arguments.done", **ids, name=call.name, arguments=call.arguments)
        item.update(arguments=call.arguments, status="completed")
        run.tool_tokens += _tokens(call.arguments)
        run.close_tool_item(item, index)
        call_ids.append(item["call_id"])
    return call_ids


def emit_approval_request(run, mcp: McpCall) -> str:
    item = {"id": events.new_id("mcpr_"), "type": "mcp_approval_request", "server_label": mcp.server_label,
            "name": mcp.name, "arguments": mcp.arguments}
    index = run.open_tool_item(item)
    run.tool_tokens += _tokens(mcp.arguments)
    run.close_tool_item(item, index)
    return item["id"]


def emit_mcp_call(run, mcp: McpCall, approval_request_id: str | None) -> dict:
    item = {"id": events.new_id("mcp_"), "type": "mcp_call", "server_label": mcp.server_label, "name": mcp.name,
            "arguments": "", "approval_request_id": approval_request_id, "output": None, "error": None}
    index = run.open_tool_item(item)
    ids = {"response_id": run.id, "item_id": item["id"], "output_index": index}
    for piece in argument_pieces(mcp.arguments):
        run.emit_event("response.mcp_call_arguments.delta", **ids, delta=piece)
    run.emit_event("response.mcp_call_arguments.done", **ids, arguments=mcp.arguments)
    item["arguments"] = mcp.arguments
    run.emit_event("response.mcp_call.in_progress", item_id=item["id"], output_index=index)
    if mcp.error is None:
        item["output"] = mcp.output
        run.emit_event("response.mcp_call.completed", item_id=item["id"], output_index=index)
    else:
        item["error"] = dict(mcp.error)
        run.emit_event("response.mcp_call.failed", item_id=item["id"], output_index=index)
    run.tool_tokens += _tokens(mcp.arguments)
    run.close_tool_item(item, index)
    log.info("mcp call %s.%s: %s (scripted, no network)", mcp.server_label, mcp.name,
             "failed" if mcp.error else "completed")
    return item


def list_tools(emit: Callable[[dict], None], conversation, label: str, tools: list[dict] | None) -> dict:
    """One listing for `label`; `tools` None means the script has no entry for it (listing fails)."""
    item = {"id": events.new_id("mcpl_"), "type": "mcp_list_tools", "server_label": label, "tools": []}
    previous = conversation.add(item)
    emit(events.event("conversation.item.added", previous_item_id=previous, item=json.loads(json.dumps(item))))
    emit(events.event("mcp_list_tools.in_progress", item_id=item["id"]))
    if tools is None:
        log.info("mcp_list_tools for %r failed: the script has no mcp_servers entry for it", label)
        emit(events.event("mcp_list_tools.failed", item_id=item["id"]))
    else:
        item["tools"] = [dict(tool) for tool in tools]
        emit(events.event("mcp_list_tools.completed", item_id=item["id"]))
    emit(events.event("conversation.item.done", previous_item_id=previous, item=json.loads(json.dumps(item))))
    return item


def allowed(tool_config: dict, tools: list[dict]) -> list[dict]:
    """The tools `allowed_tools` lets through (a list of names or {tool_names, read_only})."""
    rule = tool_config.get("allowed_tools")
    if rule is None:
        return tools
    if isinstance(rule, list):
        return [t for t in tools if t["name"] in rule]
    return [t for t in tools if _matches(rule, t)]


def _matches(rule: dict | None, tool: dict) -> bool:
    if not rule:
        return False
    names = rule.get("tool_names")
    if names is not None and tool["name"] not in names:
        return False
    read_only = rule.get("read_only")
    if read_only is not None and bool((tool.get("annotations") or {}).get("readOnlyHint")) != read_only:
        return False
    return names is not None or read_only is not None


def needs_approval(tool_config: dict | None, tool: dict) -> bool:
    """`require_approval`: "always" / "never" / {always: filter, never: filter}; unset or unmatched
    means approval, the documented default for remote MCP servers."""
    rule = (tool_config or {}).get("require_approval")
    if rule == "never":
        return False
    if rule is None or rule == "always":
        return True
    if _matches(rule.get("always"), tool):
        return True
    return not _matches(rule.get("never"), tool)
