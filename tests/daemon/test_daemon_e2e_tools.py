"""Function tools end to end: the real daemon, the dev server scripted to call them (`--script`), the
token backend, and a real HTTP server for the http tool, all on loopback.

The question WAV holds several utterances; the server's VAD makes each one a user turn, and each
turn plays the next scripted turn. What the daemon sent is read from the dev server's event log
(every client event validated with the SDK's types, no unknown fields).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import yaml

from support.fixtures_audio import make_speech_wav, read_wav, write_wav
from support.stack import offline_stack, running
from test_daemon_e2e import assert_clean_client_events, assert_in_order, kinds

pytestmark = pytest.mark.integration
RATE_HZ = 16000


def utterances_wav(path, texts, gap_s=6.0):
    """Several spoken sentences with silence between them: one server-VAD turn each. The gap lets each
    answer play out first: in half duplex the mic is not heard while a reply plays."""
    parts = []
    for i, text in enumerate(texts):
        samples, rate_hz, _ = read_wav(make_speech_wav(path.with_name(f"part{i}.wav"), text, rate_hz=RATE_HZ,
                                                       lead_silence_s=0.1, tail_silence_s=gap_s))
        assert rate_hz == RATE_HZ
        parts.append(samples)
    return write_wav(path, np.concatenate(parts), RATE_HZ)


class LightApi(BaseHTTPRequestHandler):
    """A Home Assistant-like service endpoint: checks the bearer token, echoes the entity."""
    seen: list = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        LightApi.seen.append((self.path, self.headers.get("Authorization"), body))
        ok = self.headers.get("Authorization") == "Bearer ha-secret-token"
        payload = json.dumps([{"entity_id": body.get("entity_id"), "state": "on"}] if ok else
                             {"message": "unauthorized"}).encode()
        self.send_response(200 if ok else 401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def light_api():
    server = ThreadingHTTPServer(("127.0.0.1", 0), LightApi)
    LightApi.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def outputs(stack) -> list[dict]:
    """function_call_output items the daemon sent, in order, with their parsed output."""
    items = [r["event"]["item"] for r in stack.client_events() if r["event"]["type"] == "conversation.item.create"]
    return [{**item, "parsed": json.loads(item["output"])} for item in items if item["type"] == "function_call_output"]


def sent_types(stack) -> list[str]:
    return [r["event"]["type"] for r in stack.client_events()]


def write_script(tmp_path, turns, **extra):
    path = tmp_path / "script.yaml"
    path.write_text(yaml.safe_dump({"turns": turns, **extra}))
    return str(path)


def tools_section(light_url, token_file):
    return {"timeout_s": 3, "builtin": {"time": {"enabled": True, "timezone": "Europe/Berlin"}, "volume": True,
                                         "timers": {"enabled": True}},
            "functions": [
                {"name": "kitchen_light", "description": "Switch the kitchen light on.",
                 "parameters": {"type": "object", "required": ["entity_id"],
                                "properties": {"entity_id": {"type": "string", "enum": ["light.kitchen"]}}},
                 "http": {"method": "POST", "url": f"{light_url}/api/services/light/turn_on",
                          "body": {"entity_id": "{entity_id}"}, "bearer_token_file": str(token_file)}},
                {"name": "say_back", "description": "Echo a word.",
                 "parameters": {"type": "object", "required": ["word"],
                                "properties": {"word": {"type": "string", "maxLength": 20}}},
                 "command": {"argv": ["/bin/echo", "heard:{word}"]}},
                {"name": "slow_job", "description": "Takes long.",
                 "parameters": {"type": "object", "required": ["seconds"],
                                "properties": {"seconds": {"type": "integer", "minimum": 1, "maximum": 60}}},
                 "command": {"argv": ["/bin/sleep", "{seconds}"], "timeout_s": 1}},
            ]}


def test_each_kind_of_tool_runs_and_the_model_gets_every_answer_in_order(tmp_path, light_api):
    token_file = tmp_path / "ha-token"
    token_file.write_text("ha-secret-token\n")
    script = write_script(tmp_path, [
        {"calls": [{"name": "get_time", "arguments": {}}], "then_say": "It is {output.time}."},
        {"calls": [{"name": "set_volume", "arguments": {"percent": 40}},
                   {"name": "kitchen_light", "arguments": {"entity_id": "light.kitchen"}}],
         "then_say": "Done."},
        {"calls": [{"name": "say_back", "arguments": {"word": "pancakes"}},
                   {"name": "slow_job", "arguments": {"seconds": 10}},
                   {"name": "set_timer", "arguments": {"minutes": 10, "label": "pasta"}},
                   {"name": "get_volume", "arguments": {}}], "then_say": "Hm."},
        {"calls": [{"name": "set_timer", "arguments": {"minutes": 0}},
                   {"name": "not_declared", "arguments": {}},
                   {"name": "say_back", "arguments": "{not json"},
                   {"name": "list_timers", "arguments": {}},
                   {"name": "cancel_timer", "arguments": {"label": "pasta"}}], "then_say": "Oops."},
    ])
    question = utterances_wav(tmp_path / "question.wav", ["What time is it?", "Lights on, quieter please.",
                                                         "Say pancakes and do the slow job.", "Set a timer."])
    with offline_stack(tmp_path, "--script", script, "--audio-pace", "0") as stack:
        config = stack.config(mic=f"wav:{question}", speaker=f"wav:{tmp_path / 'reply.wav'}",
                              tools=tools_section(light_api, token_file), conversation={"idle_timeout_s": 8})
        with running(stack.daemon(config)) as daemon:
            daemon.ctl("press")
            daemon.wait_for("ended", timeout_s=90)
            stderr = daemon.stderr_text()
        assert_clean_client_events(stack, {"conversation.item.create", "response.create"})
        got = outputs(stack)

    by_call = [(o["parsed"]["ok"], o["parsed"].get("error", {}).get("type")) for o in got]
    assert by_call == [(True, None),                                    # get_time
                       (True, None), (True, None),                      # set_volume, kitchen_light
                       (True, None), (False, "timeout"),                # say_back, slow_job (1 s timeout)
                       (True, None), (True, None),                      # set_timer pasta, get_volume
                       (False, "invalid_arguments"), (False, "unknown_function"), (False, "invalid_arguments"),
                       (True, None), (True, None)]                      # list_timers, cancel_timer pasta
    assert got[6]["parsed"]["volume_percent"] == 40                     # what set_volume set a turn before
    assert "pasta" in json.dumps(got[11]["parsed"])
    assert got[0]["parsed"]["timezone"] == "Europe/Berlin"
    assert got[1]["parsed"]["volume_percent"] == 40
    assert got[2]["parsed"]["status"] == 200 and got[2]["parsed"]["body"][0]["state"] == "on"
    assert LightApi.seen == [("/api/services/light/turn_on", "Bearer ha-secret-token", {"entity_id": "light.kitchen"})]
    assert got[3]["parsed"]["output"] == "heard:pancakes\n"
    # every answer is followed by exactly one response.create, never two in a row before the outputs
    types = sent_types(stack)
    assert types.count("response.create") == 4
    assert_in_order(kinds(daemon), ["tool_call", "tool_results", "reply_audio", "tool_call", "tool_results"])
    for secret in ("ha-secret-token", "pancakes"):
        assert secret not in stderr   # argument values and tokens never reach the log
    assert "tool kitchen_light" in stderr or "kitchen_light" in stderr


def test_a_press_while_a_tool_runs_cancels_it_and_the_model_hears_cancelled(tmp_path, light_api):
    script = write_script(tmp_path, [{"calls": [{"name": "slow_job", "arguments": {"seconds": 20}}],
                                      "then_say": "Finished."}])
    question = utterances_wav(tmp_path / "question.wav", ["Do the slow job."])
    tools = tools_section(light_api, tmp_path / "none")
    tools["functions"][2]["command"]["timeout_s"] = 30
    with offline_stack(tmp_path, "--script", script, "--audio-pace", "0") as stack:
        config = stack.config(mic=f"wav:{question}", speaker=f"wav:{tmp_path / 'reply.wav'}", tools=tools)
        with running(stack.daemon(config)) as daemon:
            daemon.ctl("press")
            call = daemon.wait_for("tool_call", timeout_s=30)
            index = daemon.timeline().index(call)
            daemon.ctl("press")                       # barge-in while /bin/sleep 20 runs
            daemon.wait_for("tools_cancelled", timeout_s=5, after=index)
            daemon.wait_for("ended", timeout_s=30, after=index)
        got = outputs(stack)
    assert [o["parsed"]["error"]["type"] for o in got] == ["cancelled"]
    assert "response.create" not in sent_types(stack)[sent_types(stack).index("conversation.item.create"):]


def test_end_conversation_ends_after_the_goodbye(tmp_path, light_api):
    script = write_script(tmp_path, [{"calls": [{"name": "end_conversation", "arguments": {}}],
                                      "then_say": "Goodbye."}])
    question = utterances_wav(tmp_path / "question.wav", ["That is all, thank you."])
    tools = {"builtin": {"end_conversation": True}}
    with offline_stack(tmp_path, "--script", script, "--audio-pace", "0") as stack:
        config = stack.config(mic=f"wav:{question}", speaker=f"wav:{tmp_path / 'reply.wav'}", tools=tools,
                              conversation={"idle_timeout_s": 30})
        with running(stack.daemon(config)) as daemon:
            daemon.ctl("press")
            daemon.wait_for("ended", timeout_s=40)
            status = daemon.status()
    assert status["last_end_code"] == "user" and "end_conversation" in status["last_end_reason"]
    assert_in_order(kinds(daemon), ["tool_call", "tool_results", "reply_audio", "reply_played", "ended"])


def test_a_timer_that_runs_out_while_idle_is_announced_by_a_session_of_its_own(tmp_path, light_api):
    script = write_script(tmp_path, [{"calls": [{"name": "set_timer", "arguments": {"seconds": 6, "label": "tea"}}],
                                      "then_say": "Timer set."}])
    question = utterances_wav(tmp_path / "question.wav", ["Set a tea timer."])
    tools = {"builtin": {"timers": {"enabled": True}}}
    with offline_stack(tmp_path, "--script", script, "--audio-pace", "0") as stack:
        config = stack.config(mic=f"wav:{question}", speaker=f"wav:{tmp_path / 'reply.wav'}", tools=tools,
                              conversation={"idle_timeout_s": 2})
        with running(stack.daemon(config)) as daemon:
            daemon.ctl("press")
            first_end = daemon.wait_for("ended", timeout_s=40)
            index = daemon.timeline().index(first_end)
            daemon.wait_for("timer", timeout_s=20, after=index)
            daemon.wait_for("ended", timeout_s=30, after=index + 1)
            status = daemon.status()
    assert status["last_end_code"] == "timer"
    assert "Your 6-second timer for tea is done." in status["last_end_reason"]
    creates = [r["event"] for r in stack.client_events() if r["event"]["type"] == "response.create"]
    assert "Your 6-second timer for tea is done." in creates[-1]["response"]["instructions"]
