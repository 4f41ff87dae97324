"""Server events of the model's tools, checked field by field: function calls (reference §6) and the
MCP items the daemon acts on (approval requests, failed calls; §7). Pure functions, any thread."""

from __future__ import annotations

from pivoice.realtime.fields import BadField, arguments, check_id, check_name, obj, opt_id, opt_text


def function_call(prefix: str, item: dict, response_id: str | None) -> dict:
    return {"call_id": check_id(prefix + "call_id", item.get("call_id")),
            "name": check_name(prefix + "name", item.get("name")),
            "arguments": arguments(prefix + "arguments", item.get("arguments")),
            "response_id": response_id}


def function_calls(r: dict, response_id: str | None) -> list[dict]:
    """The function_call items of a finished response (the calls a client must answer)."""
    output = r.get("output")
    if output is None:
        return []
    if not isinstance(output, list):
        raise BadField("response.output", "must be a list of items")
    return [function_call(f"response.output[{i}].", item, response_id) for i, item in enumerate(output)
            if isinstance(item, dict) and item.get("type") == "function_call"]


def arguments_done(d: dict) -> dict:
    return function_call("", d, opt_id("response_id", d.get("response_id")))


def item_done(d: dict) -> dict:
    """conversation.item.done: only MCP items carry anything the daemon acts on (approvals, failures)."""
    item = obj("item", d.get("item"))
    kind = item.get("type")
    if kind not in ("mcp_approval_request", "mcp_call", "mcp_list_tools"):
        return {"item": {"type": opt_text("item.type", kind)}}
    out = {"type": kind, "server_label": check_name("item.server_label", item.get("server_label"))}
    if kind != "mcp_list_tools":
        out.update(id=check_id("item.id", item.get("id")), name=check_name("item.name", item.get("name")),
                   arguments=arguments("item.arguments", item.get("arguments")))
    if kind == "mcp_call" and item.get("error") is not None:
        error = obj("item.error", item.get("error"))
        out["error"] = {"type": opt_text("item.error.type", error.get("type")),
                        "message": opt_text("item.error.message", error.get("message"))}
    return {"item": out}
