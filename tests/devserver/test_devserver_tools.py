"""`pivoice dev-server --script`: scripted replies and function calls over a real WebSocket against the real
process (reference §6), plus the script loader's errors. Every server event must validate strictly against
the SDK's `RealtimeServerEvent` union with no unknown fields."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import pytest
import yaml

from pivoice.devserver.script import ScriptError, fill, parse
from support.devserver import PIVOICE, RealtimeTestClient, run_dev_server

pytestmark = pytest.mark.integration

FUNCTION_TOOLS = [{"type": "function", "name": name, "description": f"{name} tool",
                   "parameters": {"type": "object", "properties": {}}}
                  for name in ("get_time", "set_timer")]
SCRIPT = {"turns": [
    {"say": "Hi, I am scripted."},
    {"calls": [{"name": "get_time", "arguments": {}}], "then_say": "It is {output.time}."},
    {"say_before": "Let me check.",
     "calls": [{"name": "set_timer", "arguments": {"minutes": 5}}, {"name": "get_time", "arguments": {}}],
     "then_say": "Done: {outputs}"},
    {"calls": [{"name": "not_declared", "arguments": "{\"broken\": "}], "then_say": "Result: {output}."},
]}
FUNCTION_CALL_SEQUENCE = ["response.output_item.added", "conversation.item.added",
                          "response.function_call_arguments.delta", "response.function_call_arguments.delta",
                          "response.function_call_arguments.done", "response.output_item.done",
                          "conversation.item.done"]


def write_script(tmp_path, script: dict, name: str = "script.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(script) if name.endswith(".yaml") else json.dumps(script))
    return path


def transcript(done: dict) -> str:
    message = next(i for i in done["response"]["output"] if i["type"] == "message")
    return message["content"][0]["transcript"]


def response_events(client: RealtimeTestClient, mark: int) -> list[dict]:
    turn = client.since(mark)
    start = next(i for i, e in enumerate(turn) if e["type"] == "response.created")
    return turn[start:]


def test_scripted_say_function_calls_and_fallback(tmp_path, speech_pcm24):
    path = write_script(tmp_path, SCRIPT)
    # paced at twice real time, not as fast as possible: a response must still be in progress when
    # the second response.create arrives (at pace 0 it could finish first; a flake in CI)
    with run_dev_server(tmp_path, "--script", str(path), "--mode", "tone", "--audio-pace", "2") as dev:
        with RealtimeTestClient(dev.ws_url, dev.api_key) as client:
            client.wait_for("session.created")
            client.send({"type": "session.update", "session": {"type": "realtime", "tools": FUNCTION_TOOLS}})
            client.wait_for("session.updated")

            # turn 0 on a server-VAD user turn: the scripted text instead of the normal reply
            audio = bytes(48 * 500) + speech_pcm24 + bytes(48 * 1200)
            for i in range(0, len(audio), 4800):
                chunk = base64.b64encode(audio[i:i + 4800]).decode()
                client.send({"type": "input_audio_buffer.append", "audio": chunk})
            assert transcript(client.wait_for("response.done")) == "Hi, I am scripted."

            # turn 1: one call; the response is the call only, then the server waits
            mark = len(client.received)
            client.send({"type": "response.create"})
            done = client.wait_for("response.done")
            seq = response_events(client, mark)
            assert [e["type"] for e in seq] == ["response.created", "rate_limits.updated",
                                                *FUNCTION_CALL_SEQUENCE, "response.done"]
            added = seq[2]["item"]
            assert (added["type"], added["status"], added["name"], added["arguments"]) == \
                ("function_call", "in_progress", "get_time", "")
            deltas = [e for e in seq if e["type"] == "response.function_call_arguments.delta"]
            args_done = next(e for e in seq if e["type"] == "response.function_call_arguments.done")
            assert "".join(d["delta"] for d in deltas) == args_done["arguments"] == "{}"
            assert {d["call_id"] for d in deltas} == {args_done["call_id"], added["call_id"]}
            assert args_done["name"] == "get_time" and args_done["output_index"] == 0
            (call,) = done["response"]["output"]
            assert (call["status"], call["call_id"], call["arguments"]) == ("completed", added["call_id"], "{}")
            assert done["response"]["status"] == "completed" and done["response"]["usage"]["output_tokens"] > 0

            # an output for a call that does not exist is refused like the live API does
            client.send({"type": "conversation.item.create", "event_id": "evt_bad_call", "item": {
                "type": "function_call_output", "call_id": "call_unknown", "output": "{}"}})
            err = client.wait_for("error")["error"]
            assert (err["code"], err["param"], err["event_id"]) == ("invalid_tool_call_id", None, "evt_bad_call")
            assert err["message"] == "Tool call ID 'call_unknown' not found in conversation."
            client.send({"type": "conversation.item.create", "item": {
                "type": "function_call_output", "call_id": call["call_id"], "output": json.dumps({"time": "10:42"})}})
            out_item = client.wait_for("conversation.item.done")
            assert out_item["item"]["type"] == "function_call_output" and out_item["previous_item_id"] == call["id"]
            client.send({"type": "response.create"})
            client.wait_for("response.created")
            client.send({"type": "response.create", "event_id": "evt_busy"})
            err = client.wait_for("error")["error"]
            assert err["code"] == "conversation_already_has_active_response" and err["event_id"] == "evt_busy"
            assert err["message"].startswith("Conversation already has an active response in progress: resp_")
            assert transcript(client.wait_for("response.done")) == "It is 10:42."

            # turn 2: a spoken message first, then two calls in one response; the follow-up joins both outputs
            mark = len(client.received)
            client.send({"type": "response.create"})
            done = client.wait_for("response.done")["response"]
            message, timer, clock = done["output"]
            assert message["type"] == "message" and message["content"][0]["transcript"] == "Let me check."
            assert (timer["name"], json.loads(timer["arguments"]), clock["name"]) == ("set_timer", {"minutes": 5},
                                                                                      "get_time")
            indexes = [e["output_index"] for e in response_events(client, mark)
                       if e["type"] == "response.function_call_arguments.done"]
            assert indexes == [1, 2]
            types = [e["type"] for e in response_events(client, mark)]
            assert types.index("response.output_audio.done") < types.index("response.function_call_arguments.delta")
            for item, output in ((clock, "11:00"), (timer, "timer set")):  # answered out of order
                client.send({"type": "conversation.item.create", "item": {
                    "type": "function_call_output", "call_id": item["call_id"], "output": output}})
                client.wait_for("conversation.item.done")
            client.send({"type": "response.create"})
            assert transcript(client.wait_for("response.done")) == "Done: timer set; 11:00"

            # turn 3: an undeclared name with broken JSON is still called; no output sent -> nothing invented
            client.send({"type": "response.create"})
            (call,) = client.wait_for("response.done")["response"]["output"]
            assert (call["name"], call["arguments"]) == ("not_declared", "{\"broken\": ")
            client.send({"type": "response.create"})
            assert transcript(client.wait_for("response.done")) == "Result: [no output]."

            # the script is exhausted: the normal reply again
            client.send({"type": "response.create"})
            assert transcript(client.wait_for("response.done")).startswith("Hello! This is the pivoice dev server.")
            assert client.invalid == [], json.dumps(client.invalid[:3])[:2000]
        stderr = next(tmp_path.glob("dev-server-*.stderr")).read_text()
        assert "script turn 3 calls 'not_declared', which the session did not declare" in stderr
        assert "Traceback" not in stderr


def test_a_user_turn_abandons_pending_outputs_and_scope_decides_the_cursor(tmp_path):
    script = {"turns": [{"calls": [{"name": "get_time"}], "then_say": "It is {output}."}, {"say": "second turn"}]}
    path = write_script(tmp_path, script, "script.json")
    for scope, second_session_first in (("server", None), ("session", "function_call")):
        with run_dev_server(tmp_path, "--script", str(path), "--script-scope", scope, "--mode", "tone",
                            "--audio-pace", "0") as dev:
            with RealtimeTestClient(dev.ws_url, dev.api_key) as client:
                client.wait_for("session.created")
                client.send({"type": "response.create"})
                assert client.wait_for("response.done")["response"]["output"][0]["type"] == "function_call"
            with RealtimeTestClient(dev.ws_url, dev.api_key) as client:
                client.wait_for("session.created")
                client.send({"type": "response.create"})
                output = client.wait_for("response.done")["response"]["output"]
                if second_session_first is None:  # server scope: the next turn, the other session's wait is gone
                    assert transcript({"response": {"output": output}}) == "second turn"
                else:
                    assert output[0]["type"] == second_session_first
                    # a user turn (here the idle timeout) while outputs are pending moves on to the next turn
                    client.send({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {
                        "turn_detection": {"type": "server_vad", "idle_timeout_ms": 200}}}}})
                    client.send({"type": "input_audio_buffer.append", "audio": base64.b64encode(bytes(4800)).decode()})
                    client.wait_for("input_audio_buffer.timeout_triggered", timeout_s=5)
                    assert transcript(client.wait_for("response.done")) == "second turn"
                assert client.invalid == []


@pytest.mark.parametrize("data, message", [
    ({"turns": [{"say": "hi"}, {"calls": [{"name": "x", "arguments": 5}]}]},
     "turns[1].calls[0].arguments: must be an object or a JSON string, got int"),
    ({"turns": [{"say": "hi", "then_say": "x"}]}, "turns[0].then_say: only allowed with 'calls' or 'mcp'"),
    ({"turns": [{"calls": []}]}, "turns[0].calls: must be a non-empty list"),
    ({"turns": [{"call": [{"name": "x"}]}]}, "turns[0]: unknown key 'call'"),
    ({"turns": [{"say": "a", "mcp": {}}]}, "turns[0]: needs exactly one of 'say', 'calls' or 'mcp'"),
    ({"turns": [{"mcp": {"server_label": "h", "name": "n"}}]}, "turns[0].mcp: needs exactly one of 'output' or 'fail'"),
    ({"turns": [{"mcp": {"server_label": "h", "name": "n", "fail": {"type": "http_error", "message": "m"}}}]},
     "turns[0].mcp.fail.code: an integer is required for http_error"),
    ({"turns": [{"mcp": {"name": "n", "output": "o"}}]}, "turns[0].mcp: missing key 'server_label'"),
    ({"turns": [], "mcp_servers": {"home": [{"description": "d"}]}}, "mcp_servers.home[0]: missing key 'name'"),
    ({"turn": []}, "unknown key 'turn'"),
])
def test_script_errors_name_the_turn_and_key(data, message):
    with pytest.raises(ScriptError, match="^script: ") as info:
        parse(data)
    assert message in str(info.value)


def test_fill_uses_only_what_the_client_sent():
    assert fill("It is {output.time}.", ['{"time": "9:00"}']) == "It is 9:00."
    assert fill("{output.a.b} {output.a}", ['{"a": {"b": 2}}']) == '2 {"b": 2}'
    assert fill("{output} / {outputs}", ["x", "y"]) == "x / x; y"
    assert fill("{output.time}", ["not json"]) == "[no output.time]"
    assert fill("{output} {outputs} {output.k}", []) == "[no output] [no output] [no output]"
    assert fill("{name} failed: {error} {other}", [], "boom", "turn_on") == "turn_on failed: boom {other}"


def test_cli_refuses_a_bad_script_and_documents_the_flag(tmp_path):
    cmd = [str(PIVOICE)] if PIVOICE.exists() else [sys.executable, "-m", "pivoice"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("turns:\n  - say: hi\n  - calls: [{name: get_time, argumentz: {}}]\n")
    result = subprocess.run([*cmd, "dev-server", "--port", "0", "--script", str(bad)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert f"--script {bad}: turns[1].calls[0]: unknown key 'argumentz'" in result.stderr
    missing = subprocess.run([*cmd, "dev-server", "--script", str(tmp_path / "nope.json")],
                             capture_output=True, text=True, timeout=30)
    assert missing.returncode == 2 and "cannot read the script" in missing.stderr
    help_text = subprocess.run([*cmd, "dev-server", "--help"], capture_output=True, text=True, timeout=30).stdout
    assert "--script FILE" in help_text and "never contacts an MCP server_url" in help_text


def test_official_sdk_client_runs_a_function_call_round_trip(tmp_path):
    from openai import OpenAI

    path = write_script(tmp_path, {"turns": [{"calls": [{"name": "get_time", "arguments": {"tz": "UTC"}}],
                                              "then_say": "It is {output.time} in {output.tz}."}]})
    with run_dev_server(tmp_path, "--script", str(path), "--mode", "tone", "--audio-pace", "0") as dev:
        sdk = OpenAI(api_key=dev.api_key, websocket_base_url=f"ws://127.0.0.1:{dev.port}/v1")
        with sdk.realtime.connect(model="gpt-realtime") as conn:
            conn.session.update(session={"type": "realtime", "output_modalities": ["text"], "tools": FUNCTION_TOOLS})
            conn.response.create()
            call = None
            for event in conn:
                if event.type == "response.function_call_arguments.done":
                    call = (event.call_id, event.name, json.loads(event.arguments))
                if event.type == "response.done":
                    break
            assert call is not None and call[1:] == ("get_time", {"tz": "UTC"})
            conn.conversation.item.create(item={"type": "function_call_output", "call_id": call[0],
                                                "output": json.dumps({"time": "10:42", "tz": "UTC"})})
            conn.response.create()
            for event in conn:
                if event.type == "error":
                    pytest.fail(f"error from the dev server: {event.error}")
                if event.type == "response.done":
                    assert event.response.output[0].content[0].text == "It is 10:42 in UTC."
                    break
    lines = [json.loads(line) for line in dev.event_log_path.read_text().splitlines()]
    assert [line["event"]["type"] for line in lines] == ["session.update", "response.create",
                                                         "conversation.item.create", "response.create"]
    assert all(line["valid"] for line in lines)
