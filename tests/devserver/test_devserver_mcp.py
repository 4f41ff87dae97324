"""MCP in the dev server (reference §7): tool listing, approval requests (approved with or without an `id`,
denied), calls that complete or fail, all from `--script` and with no network, over a real WebSocket against
the real process. Every server event must validate strictly against the SDK types with no unknown fields."""

from __future__ import annotations

import json

import httpx
import pytest
import yaml

from pivoice.devserver.tools import allowed, needs_approval
from support.devserver import RealtimeTestClient, run_dev_server

pytestmark = pytest.mark.integration

HOME_TOOLS = [{"name": "turn_on", "input_schema": {"type": "object", "properties": {"entity": {"type": "string"}}},
               "description": "Switch an entity on"},
              {"name": "get_state", "input_schema": {"type": "object"}, "description": "Read a state",
               "annotations": {"readOnlyHint": True}}]
LAMP = {"server_label": "home", "name": "turn_on", "arguments": {"entity": "lamp"}}
SCRIPT = {"mcp_servers": {"home": HOME_TOOLS}, "turns": [
    {"say_before": "One moment.", "mcp": {**LAMP, "output": "lamp is on"}, "then_say": "The lamp is {output}."},
    {"mcp": {**LAMP, "output": "lamp is on"}},
    {"mcp": {**LAMP, "output": {"state": "on"}}, "then_say": "State {output.state}."},
    {"mcp": {**LAMP, "fail": {"type": "tool_execution_error", "message": "lamp unreachable"}}},
]}
CALL_SEQUENCE = ["response.output_item.added", "conversation.item.added", "response.mcp_call_arguments.delta",
                 "response.mcp_call_arguments.delta", "response.mcp_call_arguments.done",
                 "response.mcp_call.in_progress"]


def mcp_tool(label: str, require_approval, **extra) -> dict:
    return {"type": "mcp", "server_label": label, "server_url": "https://mcp.invalid/" + label,
            "require_approval": require_approval, **extra}


@pytest.fixture(scope="module")
def mcp_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mcp")
    path = tmp / "script.yaml"
    path.write_text(yaml.safe_dump(SCRIPT))
    with run_dev_server(tmp, "--script", str(path), "--script-scope", "session", "--mode", "tone",
                        "--audio-pace", "0") as dev:
        yield dev


def open_client(dev, tools: list[dict]) -> RealtimeTestClient:
    client = RealtimeTestClient(dev.ws_url, dev.api_key)
    client.wait_for("session.created")
    client.send({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"],
                                                        "tools": tools}})
    client.wait_for("session.updated")
    return client


def text_of(done: dict) -> str:
    return next(i for i in done["response"]["output"] if i["type"] == "message")["content"][0]["text"]


def test_listing_follows_the_session_tools(mcp_server):
    with open_client(mcp_server, [mcp_tool("home", "never", allowed_tools=["turn_on"]),
                                  mcp_tool("garage", "never")]) as client:
        mark = len(client.received)
        client.wait_for("conversation.item.done")
        client.wait_for("conversation.item.done")
        listing = [(e["type"], e.get("item", {}).get("server_label")) for e in client.since(mark)]
        assert listing == [("conversation.item.added", "home"), ("mcp_list_tools.in_progress", None),
                           ("mcp_list_tools.completed", None), ("conversation.item.done", "home"),
                           ("conversation.item.added", "garage"), ("mcp_list_tools.in_progress", None),
                           ("mcp_list_tools.failed", None), ("conversation.item.done", "garage")]
        events = client.since(mark)
        for added, status, done in ((events[0], events[2], events[3]), (events[4], events[6], events[7])):
            assert added["item"]["tools"] == [] and status["item_id"] == added["item"]["id"] == done["item"]["id"]
            assert "object" not in done["item"] and "status" not in done["item"]
            client.send({"type": "conversation.item.retrieve", "item_id": added["item"]["id"]})  # as agents-js does
            assert client.wait_for("conversation.item.retrieved")["item"] == done["item"]
        assert [t["name"] for t in events[3]["item"]["tools"]] == ["turn_on"]  # allowed_tools applied
        assert events[7]["item"]["tools"] == []
        # the same tools again list nothing; a changed allowed_tools lists that label again
        mark = len(client.received)
        client.send({"type": "session.update", "session": {"type": "realtime", "tools": [
            mcp_tool("home", "never", allowed_tools={"read_only": True}), mcp_tool("garage", "never")]}})
        client.wait_for("session.updated")
        done = client.wait_for("conversation.item.done")["item"]
        assert [t["name"] for t in done["tools"]] == ["get_state"]
        assert [e["type"] for e in client.since(mark)].count("mcp_list_tools.in_progress") == 1
        assert client.invalid == []


def test_a_client_secret_with_an_mcp_tool_lists_after_session_created(mcp_server):
    ek = httpx.post(mcp_server.url + "/v1/realtime/client_secrets",
                    headers={"Authorization": f"Bearer {mcp_server.api_key}"},
                    json={"session": {"type": "realtime", "tools": [mcp_tool("home", "always")]}}).json()["value"]
    with RealtimeTestClient(mcp_server.ws_url, ek) as client:
        assert client.recv()["type"] == "session.created"
        assert client.recv()["item"]["type"] == "mcp_list_tools"
        assert [t["name"] for t in client.wait_for("conversation.item.done")["item"]["tools"]] == \
            ["turn_on", "get_state"]
        assert client.invalid == []


def test_approval_approved_without_id_then_denied_with_id(mcp_server):
    with open_client(mcp_server, [mcp_tool("home", "always")]) as client:
        client.wait_for("mcp_list_tools.completed")
        # turn 0: the response says its message, asks for approval, and ends there
        client.send({"type": "response.create"})
        done = client.wait_for("response.done")["response"]
        message, request = done["output"]
        assert message["content"][0]["text"] == "One moment."
        assert (request["type"], request["server_label"], request["name"], json.loads(request["arguments"])) == \
            ("mcp_approval_request", "home", "turn_on", {"entity": "lamp"})
        assert request["id"].startswith("mcpr_") and not any(e["type"].startswith("response.mcp_call")
                                                             for e in client.received)
        # approved, the way agents-js sends it (no `id`, inserted after the request): the server runs the call
        mark = len(client.received)
        client.send({"type": "conversation.item.create", "previous_item_id": request["id"], "item": {
            "type": "mcp_approval_response", "approval_request_id": request["id"], "approve": True}})
        answer = client.wait_for("conversation.item.done")
        assert answer["previous_item_id"] == request["id"] and answer["item"]["id"]
        assert "object" not in answer["item"] and "status" not in answer["item"]
        call = client.wait_for("response.done")["response"]["output"]
        types = [e["type"] for e in client.since(mark)]
        start = types.index("response.output_item.added")
        assert types[start:start + 6] == CALL_SEQUENCE
        assert types[start + 6:] == ["response.mcp_call.completed", "response.output_item.done",
                                     "conversation.item.done", "response.done"]
        (item,) = call
        assert (item["type"], item["approval_request_id"], item["output"], item["error"]) == \
            ("mcp_call", request["id"], "lamp is on", None)
        assert json.loads(item["arguments"]) == {"entity": "lamp"}
        client.send({"type": "response.create"})  # what agents-js sends on the mcp_call's item.done
        assert text_of(client.wait_for("response.done")) == "The lamp is lamp is on."

        # turn 1: denied (with an id this time): no call is made, the model says so in the server's response
        client.send({"type": "response.create"})
        (request,) = client.wait_for("response.done")["response"]["output"]
        mark = len(client.received)
        client.send({"type": "conversation.item.create", "item": {
            "id": "mcpar_client1", "type": "mcp_approval_response", "approval_request_id": request["id"],
            "approve": False, "reason": "user said no"}})
        assert client.wait_for("conversation.item.added")["item"]["id"] == "mcpar_client1"
        assert text_of(client.wait_for("response.done")) == "I won't do that then."
        assert not any(e["type"].startswith("response.mcp_call") for e in client.since(mark))

        # an approval for a request that does not exist is refused
        client.send({"type": "conversation.item.create", "event_id": "evt_appr", "item": {
            "type": "mcp_approval_response", "approval_request_id": "mcpr_nope", "approve": True}})
        err = client.wait_for("error")["error"]
        assert (err["param"], err["event_id"]) == ("item.approval_request_id", "evt_appr")
        assert client.invalid == [], json.dumps(client.invalid[:3])[:2000]


def test_calls_without_approval_complete_or_fail(mcp_server):
    never_for_turn_on = {"never": {"tool_names": ["turn_on"]}, "always": {"tool_names": ["get_state"]}}
    with open_client(mcp_server, [mcp_tool("home", never_for_turn_on)]) as client:
        client.wait_for("mcp_list_tools.completed")
        for expected in ("The lamp is lamp is on.", None, "State on."):  # turns 0-2: say_before + call, call, call
            client.send({"type": "response.create"})
            output = client.wait_for("response.done")["response"]["output"]
            call = output[-1]
            assert (call["type"], call["approval_request_id"], call["error"]) == ("mcp_call", None, None)
            client.send({"type": "response.create"})
            follow = client.wait_for("response.done")
            if expected is not None:
                assert text_of(follow) == expected
            else:  # no then_say: the normal reply
                assert text_of(follow).startswith("Hello! This is the pivoice dev server.")
        # turn 3: the call fails; the item carries the error and the follow-up names it
        mark = len(client.received)
        client.send({"type": "response.create"})
        (call,) = client.wait_for("response.done")["response"]["output"]
        assert call["output"] is None and call["error"] == {"type": "tool_execution_error",
                                                             "message": "lamp unreachable"}
        types = [e["type"] for e in client.since(mark)]
        assert "response.mcp_call.failed" in types and "response.mcp_call.completed" not in types
        client.send({"type": "response.create"})
        assert text_of(client.wait_for("response.done")) == "The turn_on tool failed: lamp unreachable"
        assert client.invalid == [], json.dumps(client.invalid[:3])[:2000]


@pytest.mark.parametrize("rule, name, expected", [
    (None, "turn_on", True), ("always", "turn_on", True), ("never", "turn_on", False),
    ({"never": {"tool_names": ["turn_on"]}}, "turn_on", False),
    ({"never": {"tool_names": ["turn_on"]}}, "get_state", True),
    ({"always": {"tool_names": ["turn_on"]}, "never": {"read_only": True}}, "get_state", False),
    ({"always": {"tool_names": ["turn_on"]}, "never": {"read_only": True}}, "turn_on", True),
])
def test_require_approval_rules(rule, name, expected):
    tool = next(t for t in HOME_TOOLS if t["name"] == name)
    assert needs_approval({"type": "mcp", "server_label": "home", "require_approval": rule}, tool) is expected


def test_allowed_tools_filters():
    names = lambda rule: [t["name"] for t in allowed({"allowed_tools": rule}, HOME_TOOLS)]  # noqa: E731
    assert names(None) == ["turn_on", "get_state"]
    assert names(["get_state", "other"]) == ["get_state"]
    assert names({"tool_names": ["turn_on"]}) == ["turn_on"]
    assert names({"read_only": False}) == ["turn_on"]
    assert names({}) == []
