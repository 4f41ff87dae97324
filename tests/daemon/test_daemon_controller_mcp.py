"""MCP approvals and failures in the controller (controller_mcp.py), as tables, and the policy."""

from dataclasses import replace

import pytest

from pivoice import messages as m
from pivoice.mcp_policy import McpPolicy, read_mcp
from pivoice.settings import ConfigError, Section
from test_daemon_controller import BASE, PCM_100MS, active, kinds, speaking

POLICY = McpPolicy(approve=("home:turn_on",), ask=("unlock_door",), ask_timeout_s=10.0)


def request(name, label="home", rid="mcpr_1"):
    return m.ServerEvent({"type": "conversation.item.done", "item": {
        "type": "mcp_approval_request", "id": rid, "server_label": label, "name": name, "arguments": "{}"}})


def approvals(actions):
    return [(a.event["previous_item_id"], a.event["item"]["approve"], a.event["item"].get("reason"))
            for a in actions if isinstance(a, m.Send) and a.event["type"] == "conversation.item.create"
            and a.event["item"]["type"] == "mcp_approval_response"]


def on(policy=POLICY):
    return active(replace(BASE, mcp=policy))


@pytest.mark.parametrize("entry,label,name,decision", [
    ("turn_on", "home", "turn_on", "approve"), ("turn_on", "office", "turn_on", "approve"),
    ("home:turn_on", "office", "turn_on", "deny"), ("home:*", "home", "anything", "approve"),
    ("home:turn_on", "home", "turn_off", "deny"),
])
def test_policy_entries_name_a_tool_on_any_server_or_one_server(entry, label, name, decision):
    assert McpPolicy(approve=(entry,)).decide(label, name) == decision


def test_policy_config_errors_name_the_key():
    with pytest.raises(ConfigError, match=r"mcp\.approve: 'rm -rf' is not a tool name"):
        read_mcp(Section({"approve": ["rm -rf"]}, "f.yaml", "mcp"))
    with pytest.raises(ConfigError, match=r"mcp\.ask: x also on the approve list"):
        read_mcp(Section({"approve": ["x"], "ask": ["x"]}, "f.yaml", "mcp"))
    assert read_mcp(Section({"ask": ["home:*"], "ask_timeout_s": 5}, "f.yaml", "mcp")) == McpPolicy((), ("home:*",), 5.0)


def test_a_listed_call_is_approved_at_once_and_others_denied_with_the_reason():
    ctrl = on()
    assert approvals(ctrl.handle(request("turn_on"), 1.0)) == [("mcpr_1", True, None)]
    assert approvals(ctrl.handle(request("open_garage", rid="mcpr_2"), 1.1)) == [
        ("mcpr_2", False, "home.open_garage: not allowed on this device")]
    # no policy configured: everything is denied
    assert approvals(active().handle(request("turn_on"), 1.0))[0][1] is False


def test_ask_says_shall_i_out_of_band_and_a_press_after_it_approves():
    ctrl = on()
    actions = ctrl.handle(request("unlock_door"), 1.0)
    [create] = [a for a in actions if isinstance(a, m.Send)]
    assert create.event["type"] == "response.create" and create.event["response"]["conversation"] == "none"
    assert "unlock_door" in create.event["response"]["instructions"] and approvals(actions) == []
    speaking(ctrl, 1.2, "resp_q")          # the question is being said
    actions = ctrl.handle(m.Press(), 1.5)  # the user presses while it is still speaking
    assert approvals(actions) == [("mcpr_1", True, None)] and ("StopPlayback",) in kinds(actions)
    assert ctrl.phase == "active" and ctrl.asking is None


def test_ask_denies_when_nobody_presses_within_the_timeout_after_the_question():
    ctrl = on()
    ctrl.handle(request("unlock_door"), 1.0)
    speaking(ctrl, 1.2, "resp_q")
    ctrl.handle(m.ServerEvent({"type": "response.done", "response": {"id": "resp_q"}}), 2.0)
    ctrl.handle(m.PlaybackDrained(), 3.0)   # heard at 3.0: the user has until 13.0
    assert approvals(ctrl.handle(m.Tick(), 12.5)) == []
    assert approvals(ctrl.handle(m.Tick(), 13.1)) == [
        ("mcpr_1", False, "home.unlock_door: the user did not confirm")]
    assert ctrl.handle(m.Press(), 14.0) and ctrl.asking is None   # a later press is an ordinary press


def test_a_response_that_ran_mcp_calls_is_followed_by_response_create_and_failures_are_warnings():
    ctrl = on()
    ctrl.handle(m.ServerEvent({"type": "response.created", "response": {"id": "resp_2"}}), 1.0)
    actions = ctrl.handle(m.ServerEvent({"type": "conversation.item.done", "item": {
        "type": "mcp_call", "id": "mcp_1", "server_label": "home", "name": "turn_on", "arguments": "{}",
        "error": {"type": "tool_execution_error", "message": "lamp unreachable"}}}), 1.1)
    [note] = actions
    assert note.level == "warning" and note.text == \
        "MCP tool home.turn_on failed (tool_execution_error): lamp unreachable"
    actions = ctrl.handle(m.ServerEvent({"type": "response.done", "response": {"id": "resp_2", "mcp_calls": 1}}), 1.2)
    assert [a.event["type"] for a in actions if isinstance(a, m.Send)] == ["response.create"]
    [note] = ctrl.handle(m.ServerEvent({"type": "mcp_list_tools.failed"}), 1.3)
    assert note.level == "warning" and "could not be listed" in note.text



def test_the_ask_timeout_starts_when_the_question_was_heard_not_when_the_request_response_ends():
    # the server's order: the request arrives inside a response whose response.done follows; only then
    # does the out-of-band question start (found end to end: denied while the question still played)
    ctrl = on(replace(POLICY, ask_timeout_s=2.0))
    denied = [("mcpr_1", False, "home.unlock_door: the user did not confirm")]
    steps = [(1.0, m.ServerEvent({"type": "response.created", "response": {"id": "resp_1"}}), []),
             (1.1, request("unlock_door"), []),
             (1.1, m.ServerEvent({"type": "response.done", "response": {"id": "resp_1"}}), []),
             (1.2, m.ServerEvent({"type": "response.created", "response": {"id": "resp_q"}}), []),
             (1.2, m.AudioDelta("resp_q", "item_q", 0, PCM_100MS), []),
             (1.3, m.ServerEvent({"type": "response.done", "response": {"id": "resp_q"}}), []),
             (3.4, m.Tick(), []),                 # the question still plays: no answer yet
             (10.0, m.PlaybackDrained(), []),     # heard at 10.0: the user has until 12.0
             (11.9, m.Tick(), []),
             (12.1, m.Tick(), denied)]
    assert [approvals(ctrl.handle(event, t)) for t, event, _ in steps] == [want for _, _, want in steps]
