"""Session behaviour on the real process: invalid events, event log, parrot mode, idle timeout,
disconnects mid-response, and the official SDK client as an independent client."""

from __future__ import annotations

import base64
import json
import time

import httpx
import pytest
from openai import OpenAI

from support.devserver import RealtimeTestClient, run_dev_server

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("raw, code, param", [
    ('{"type": "session.update", "event_id": "evt_1", "session": {"type": "realtime", "voice": "ash"}}',
     "unknown_parameter", "session.voice"),
    ('{"type": "conversation.item.truncate", "event_id": "evt_1", "item_id": "x", "content_index": 0, '
     '"audio_end_ms": "1500"}', "invalid_event", "audio_end_ms"),
    ('{"type": "response.audio.delta", "event_id": "evt_1"}', "invalid_event", "type"),
    ('{"event_id": "evt_1"}', "invalid_event", "type"),
    ('{"type": "input_audio_buffer.append", "event_id": "evt_1"}', "invalid_event", "audio"),
    ('{"type": "session.update", "event_id": "evt_1", "session": {"type": "realtime", '
     '"audio": {"input": {"noise_reduction": {"type": "studio"}}}}}',
     "invalid_event", "session.audio.input.noise_reduction.type"),
])
def test_invalid_events_get_an_error_and_the_session_stays_open(dev_server, raw, code, param):
    with RealtimeTestClient(dev_server.ws_url, dev_server.api_key) as client:
        client.wait_for("session.created")
        client.ws.send(raw)
        error = client.wait_for("error")["error"]
        assert (error["code"], error["param"], error["event_id"]) == (code, param, "evt_1")
        assert error["type"] == "invalid_request_error" and param in error["message"]
        client.send({"type": "input_audio_buffer.clear"})
        client.wait_for("input_audio_buffer.cleared")
        assert client.invalid == []


def test_bad_json_is_an_invalid_event(dev_server):
    with RealtimeTestClient(dev_server.ws_url, dev_server.api_key) as client:
        client.wait_for("session.created")
        client.ws.send("{not json")
        assert client.wait_for("error")["error"]["code"] == "invalid_event"


def test_event_log_records_validity(tmp_path):
    log_path = tmp_path / "events.jsonl"
    with run_dev_server(tmp_path, "--event-log", str(log_path)) as dev:
        with RealtimeTestClient(dev.ws_url, dev.api_key) as client:
            client.wait_for("session.created")
            client.send({"type": "input_audio_buffer.clear", "event_id": "good"})
            client.send({"type": "session.update", "event_id": "typo", "session": {"type": "realtime",
                                                                                     "instructons": "x"}})
            client.wait_for("error")
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert [(l["event"]["event_id"], l["valid"]) for l in lines] == [("good", True), ("typo", False)]
    assert lines[1]["unknown_fields"] == ["session.instructons"]
    assert lines[0]["session_id"].startswith("sess_") and lines[0]["t"] > 0


def test_parrot_mode_returns_the_appended_samples_bit_exact(tmp_path, speech_pcm24):
    with run_dev_server(tmp_path, "--mode", "parrot", "--audio-pace", "0") as dev:
        with RealtimeTestClient(dev.ws_url, dev.api_key) as client:
            client.wait_for("session.created")
            client.send({"type": "session.update", "session": {"type": "realtime",
                                                                "audio": {"input": {"turn_detection": None}}}})
            assert client.wait_for("session.updated")["session"]["audio"]["input"]["turn_detection"] is None
            for i in range(0, len(speech_pcm24), 4800):
                client.send({"type": "input_audio_buffer.append",
                             "audio": base64.b64encode(speech_pcm24[i:i + 4800]).decode()})
            client.send({"type": "input_audio_buffer.commit"})
            client.wait_for("input_audio_buffer.committed")
            client.send({"type": "response.create"})
            client.wait_for("response.done")
            echoed = b"".join(base64.b64decode(e["delta"]) for e in client.received
                              if e["type"] == "response.output_audio.delta")
            assert not any(e["type"] == "input_audio_buffer.speech_started" for e in client.received)
            assert client.invalid == []
    assert echoed == speech_pcm24


def test_idle_timeout_triggers_a_response(dev_server):
    with RealtimeTestClient(dev_server.ws_url, dev_server.api_key) as client:
        client.wait_for("session.created")
        client.send({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"],
                     "audio": {"input": {"turn_detection": {"type": "server_vad", "idle_timeout_ms": 300}}}}})
        client.wait_for("session.updated")
        client.send({"type": "input_audio_buffer.append", "audio": base64.b64encode(bytes(4800)).decode()})
        timeout = client.wait_for("input_audio_buffer.timeout_triggered", timeout_s=5)
        assert (timeout["audio_start_ms"], timeout["audio_end_ms"]) == (0, 100)
        assert client.wait_for("input_audio_buffer.committed")["item_id"] == timeout["item_id"]
        assert client.wait_for("response.done")["response"]["status"] == "completed"
        assert client.invalid == []


def test_disconnect_mid_response_leaves_the_server_healthy(tmp_path):
    with run_dev_server(tmp_path, "--audio-pace", "1") as dev:
        for _ in range(3):
            client = RealtimeTestClient(dev.ws_url, dev.api_key)
            client.wait_for("session.created")
            client.send({"type": "response.create"})
            client.wait_for("response.output_audio.delta")
            client.ws.sock.close()  # abrupt: no close frame
        time.sleep(0.3)
        with RealtimeTestClient(dev.ws_url, dev.api_key) as client:
            assert client.wait_for("session.created")["type"] == "session.created"
        assert dev.process.poll() is None
        stderr = next(tmp_path.glob("dev-server-*.stderr")).read_text()
        assert "Traceback" not in stderr and "ERROR" not in stderr


def test_official_sdk_client_with_an_ephemeral_key(dev_server):
    ek = httpx.post(dev_server.url + "/v1/realtime/client_secrets",
                    headers={"Authorization": f"Bearer {dev_server.api_key}"},
                    json={"session": {"type": "realtime", "model": "gpt-realtime"}}).json()["value"]
    sdk = OpenAI(api_key=ek, websocket_base_url=f"ws://127.0.0.1:{dev_server.port}/v1")
    seen = []
    with sdk.realtime.connect(model="gpt-realtime") as conn:
        conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
        conn.response.create()
        for event in conn:
            seen.append(event.type)
            if event.type == "response.done":
                assert event.response.status == "completed"
                assert event.response.output[0].content[0].text.startswith("Hello!")
                break
    assert seen[:2] == ["session.created", "session.updated"]
    assert "response.output_text.delta" in seen
