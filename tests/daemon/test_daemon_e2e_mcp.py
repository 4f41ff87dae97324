"""MCP tools end to end: the real daemon, the dev server scripted to run MCP calls (`--script`, its
`mcp_servers` listing), and the token backend, all on loopback.

The session declares one `mcp` tool that always needs approval; the dev server never contacts its
server_url (the listing, outputs and errors come from the script). What the daemon answered is read
from the dev server's event log, every client event validated with the SDK's types.
"""

from __future__ import annotations

import pytest

from support.stack import offline_stack, running
from test_daemon_e2e import assert_clean_client_events, assert_in_order, kinds
from test_daemon_e2e_tools import utterances_wav, write_script

pytestmark = pytest.mark.integration

MCP_TOOL = {"type": "mcp", "server_label": "home", "server_url": "https://mcp.example.invalid/sse",
            "require_approval": "always"}
SERVERS = {"home": [{"name": "turn_on", "description": "Switch a lamp on.",
                     "input_schema": {"type": "object", "properties": {"entity": {"type": "string"}}}},
                    {"name": "open_garage", "description": "Open the garage door."},
                    {"name": "unlock_door", "description": "Unlock the front door."}]}


def mcp_config(stack, tmp_path, question, mcp, **extra):
    config = stack.config(mic=f"wav:{question}", speaker=f"wav:{tmp_path / 'reply.wav'}", mcp=mcp, **extra)
    config["session"]["tools"] = [MCP_TOOL]
    return config


def approval_answers(stack) -> list[dict]:
    """Each mcp_approval_response the daemon sent: the create event's previous_item_id and the item."""
    return [{"previous_item_id": r["event"].get("previous_item_id"), **r["event"]["item"]}
            for r in stack.client_events() if r["event"]["type"] == "conversation.item.create"
            and r["event"]["item"]["type"] == "mcp_approval_response"]


def records_events(records) -> list[dict]:
    """What the daemon sent besides the microphone's audio, in order."""
    return [r["event"] for r in records if r["event"]["type"] != "input_audio_buffer.append"]


def notes(daemon, kind) -> list[str]:
    return [e["text"] for e in daemon.timeline() if e["kind"] == kind]


def test_approve_list_deny_by_default_and_a_failing_call_is_a_warning(tmp_path):
    script = write_script(tmp_path, [
        {"mcp": {"server_label": "home", "name": "turn_on", "arguments": {"entity": "lamp"}, "output": "lamp is on"},
         "then_say": "The lamp is on."},
        {"mcp": {"server_label": "home", "name": "open_garage", "arguments": {}, "output": "opened"},
         "then_say": "Opened.", "then_say_denied": "I may not open the garage."},
        {"mcp": {"server_label": "home", "name": "turn_on", "arguments": {"entity": "porch"},
                 "fail": {"type": "tool_execution_error", "message": "porch lamp unreachable"}}},
    ], mcp_servers=SERVERS)
    question = utterances_wav(tmp_path / "question.wav", ["Turn the lamp on.", "Open the garage.",
                                                         "Turn the porch lamp on."])
    with offline_stack(tmp_path, "--script", script, "--audio-pace", "0", tools=[MCP_TOOL]) as stack:
        config = mcp_config(stack, tmp_path, question, {"approve": ["home:turn_on"]},
                            conversation={"idle_timeout_s": 8})
        with running(stack.daemon(config)) as daemon:
            daemon.ctl("press")
            daemon.wait_for("ended", timeout_s=90)
            stderr = daemon.stderr_text()
        records = assert_clean_client_events(stack, {"session.update", "conversation.item.create",
                                                     "response.create"})
        answers = approval_answers(stack)

    update = next(r["event"] for r in records if r["event"]["type"] == "session.update")
    assert update["session"]["tools"] == [MCP_TOOL]
    # each answer follows its own request, approves or denies with the reason
    assert [(a["approve"], a.get("reason")) for a in answers] == [
        (True, None), (False, "home.open_garage: not allowed on this device"), (True, None)]
    for a in answers:
        assert a["previous_item_id"] == a["approval_request_id"] and a["approval_request_id"].startswith("mcpr_")
    assert len({a["approval_request_id"] for a in answers}) == 3
    assert notes(daemon, "mcp_approved") == ["MCP call approved (home.turn_on is on the approve list)"] * 2
    assert notes(daemon, "mcp_denied") == ["MCP call denied (home.open_garage: not allowed on this device)"]
    assert_in_order(kinds(daemon), ["mcp_approved", "reply_audio", "mcp_denied", "reply_audio", "mcp_approved",
                                    "mcp_failed", "reply_audio", "ended"])

    # the approved call ran in the server's own response; the daemon then asked for the spoken result
    types = [e["type"] for e in records_events(records)]
    first_answer = types.index("conversation.item.create")
    assert types[first_answer + 1] == "response.create"
    creates = [e for e in records_events(records) if e["type"] == "response.create"]
    assert len(creates) == 2   # after the approved call and after the failed one; never after a denial
    assert all(e.get("response", {}).get("conversation") != "none" for e in creates)

    warning = [line for line in stderr.splitlines() if "WARNING" in line and "porch lamp unreachable" in line]
    assert warning and "home.turn_on" in warning[0] and "tool_execution_error" in warning[0], stderr[-3000:]
    # what the model said after each: the call's output, the denial, the failure (script then_say*)
    assert [t for t in notes(daemon, "assistant") if "dev server" not in t] == [
        "assistant: The lamp is on.", "assistant: I may not open the garage.",
        "assistant: The turn_on tool failed: porch lamp unreachable"]


def test_ask_approves_on_a_press_after_the_question_and_denies_when_nobody_presses(tmp_path):
    script = write_script(tmp_path, [
        {"mcp": {"server_label": "home", "name": "unlock_door", "arguments": {}, "output": "unlocked"},
         "then_say": "The door is unlocked."},
        {"mcp": {"server_label": "home", "name": "unlock_door", "arguments": {}, "output": "unlocked"},
         "then_say": "Unlocked again.", "then_say_denied": "I left the door locked."},
    ], mcp_servers=SERVERS)
    question = utterances_wav(tmp_path / "question.wav", ["Unlock the door.", "Unlock it again."], gap_s=12.0)
    with offline_stack(tmp_path, "--script", script, "--audio-pace", "0", tools=[MCP_TOOL]) as stack:
        config = mcp_config(stack, tmp_path, question, {"ask": ["home:unlock_door"], "ask_timeout_s": 2},
                            conversation={"idle_timeout_s": 10})
        with running(stack.daemon(config)) as daemon:
            daemon.ctl("press")
            asked = daemon.wait_for("mcp_ask", timeout_s=30)
            index = daemon.timeline().index(asked)
            daemon.wait_for("reply_played", timeout_s=20, after=index)   # the question has been heard
            daemon.ctl("press")                                          # yes
            approved = daemon.wait_for("mcp_approved", timeout_s=5, after=index)
            index = daemon.timeline().index(approved)
            asked_again = daemon.wait_for("mcp_ask", timeout_s=40, after=index)
            index = daemon.timeline().index(asked_again)
            heard = daemon.wait_for("reply_played", timeout_s=20, after=index)
            denied = daemon.wait_for("mcp_denied", timeout_s=10, after=index)
            daemon.wait_for("ended", timeout_s=40, after=index)
        records = assert_clean_client_events(stack, {"session.update", "conversation.item.create",
                                                     "response.create"})
        answers = approval_answers(stack)

    assert approved["text"] == "MCP call approved (home.unlock_door approved by a press)"
    assert denied["text"] == "MCP call denied (home.unlock_door: the user did not confirm)"
    # denied about ask_timeout_s after the question was heard, not at once and not much later
    waited_s = denied["t"] - heard["t"]
    assert 1.8 <= waited_s <= 3.5, waited_s
    assert [(a["approve"], a.get("reason")) for a in answers] == [
        (True, None), (False, "home.unlock_door: the user did not confirm")]
    events = records_events(records)
    questions = [e for e in events if e["type"] == "response.create"
                 and e.get("response", {}).get("conversation") == "none"]
    assert len(questions) == 2 and all("unlock_door" in q["response"]["instructions"] for q in questions)
    # the approval is sent after the out-of-band question, and the approved call is followed by response.create
    types = [e["type"] for e in events]
    first_answer = types.index("conversation.item.create")
    assert events.index(questions[0]) < first_answer and types[first_answer + 1] == "response.create"
    assert [t for t in notes(daemon, "assistant") if "dev server" not in t] == [
        "assistant: The door is unlocked.", "assistant: I left the door locked."]
    assert_in_order(kinds(daemon), ["mcp_ask", "reply_played", "mcp_approved", "reply_audio", "mcp_ask",
                                    "reply_played", "mcp_denied", "reply_audio", "ended"])
