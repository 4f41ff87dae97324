"""Transcription sessions (`session.type: transcription`) on the real dev-server process.

Every server event is checked against the SDK's server-event union by RealtimeTestClient
(`client.invalid` must stay empty); client_secrets answers against ClientSecretCreateResponse.
"""

from __future__ import annotations

import base64
import struct

import httpx
import pytest
import websocket
from openai import OpenAI

from pivoice.devserver.transcription import RESPONSE_CREATE_MESSAGE
from pivoice.devserver.validation import check_client_secret_response
from support.devserver import RealtimeTestClient, run_dev_server

pytestmark = pytest.mark.integration
TEMPLATE = "Dictation of {seconds:.1f} seconds."
SILENCE_MS = 1200
TRANSCRIPTION_EVENTS = ("conversation.item.input_audio_transcription.delta",
                        "conversation.item.input_audio_transcription.completed",
                        "conversation.item.input_audio_transcription.failed")


@pytest.fixture(scope="module")
def dev(tmp_path_factory):
    with run_dev_server(tmp_path_factory.mktemp("devtx"), "--audio-pace", "0", "--transcript", TEMPLATE) as server:
        yield server


def mint(dev, session, seconds=60):
    return httpx.post(dev.url + "/v1/realtime/client_secrets", timeout=10,
                      headers={"Authorization": f"Bearer {dev.api_key}"},
                      json={"expires_after": {"anchor": "created_at", "seconds": seconds}, "session": session})


def append(client: RealtimeTestClient, pcm24: bytes, chunk_bytes: int = 4800) -> None:
    for i in range(0, len(pcm24), chunk_bytes):
        client.send({"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm24[i:i + chunk_bytes]).decode()})


def manual_session(client: RealtimeTestClient, **session) -> dict:
    client.wait_for("session.created")
    client.send({"type": "session.update", "session": {"type": "transcription",
                                                       "audio": {"input": {"turn_detection": None}}, **session}})
    return client.wait_for("session.updated")["session"]


def types_of(events: list[dict]) -> list[str]:
    return [e["type"] for e in events]


def test_client_secret_for_a_transcription_session_validates_and_opens_one(dev):
    session = {"type": "transcription", "include": ["item.input_audio_transcription.logprobs"],
               "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000},
                                   "noise_reduction": {"type": "far_field"},
                                   "transcription": {"model": "gpt-4o-transcribe", "language": "de"},
                                   "turn_detection": {"type": "server_vad", "silence_duration_ms": 400}}}}
    resp = mint(dev, session)
    assert resp.status_code == 200, resp.text
    data = resp.json()
    check = check_client_secret_response(data)
    assert check.ok, check.messages()
    got = data["session"]
    assert (got["type"], got["object"]) == ("transcription", "realtime.transcription_session")
    assert got["audio"]["input"]["transcription"] == {"model": "gpt-4o-transcribe", "language": "de"}
    assert got["audio"]["input"]["turn_detection"] == {"type": "server_vad", "threshold": 0.5,
                                                       "prefix_padding_ms": 300, "silence_duration_ms": 400}
    assert "model" not in got and "instructions" not in got
    with RealtimeTestClient(dev.ws_url, data["value"]) as client:
        created = client.wait_for("session.created")["session"]
        assert (created["type"], created["object"]) == ("transcription", "realtime.transcription_session")
        assert created["audio"]["input"]["transcription"]["language"] == "de"
        assert created["audio"]["input"]["noise_reduction"] == {"type": "far_field"}
        assert created["include"] == ["item.input_audio_transcription.logprobs"]
        assert client.invalid == []


@pytest.mark.parametrize("session, param, code", [
    ({"type": "transcription", "instructions": "x"}, "session.instructions", "unknown_parameter"),
    ({"type": "transcription", "model": "gpt-realtime"}, "session.model", "unknown_parameter"),
    ({"type": "transcription", "audio": {"output": {"voice": "ash"}}}, "session.audio.output", "unknown_parameter"),
    ({"type": "transcription", "audio": {"input": {"turn_detection": {"type": "loud"}}}},
     "session.audio.input.turn_detection.type", "invalid_value"),
])
def test_client_secret_transcription_session_is_validated(dev, session, param, code):
    resp = mint(dev, session)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert (error["param"], error["code"]) == (param, code)


def test_vad_turn_is_transcribed_and_never_answered(dev, speech_pcm24):
    data = mint(dev, {"type": "transcription"}).json()
    with RealtimeTestClient(dev.ws_url, data["value"]) as client:
        assert client.wait_for("session.created")["session"]["audio"]["input"]["turn_detection"]["type"] == "server_vad"
        append(client, speech_pcm24 + bytes(SILENCE_MS * 48))
        started = client.wait_for("input_audio_buffer.speech_started")
        stopped = client.wait_for("input_audio_buffer.speech_stopped")
        committed = client.wait_for("input_audio_buffer.committed")
        completed = client.wait_for("conversation.item.input_audio_transcription.completed")
        # nothing else is coming for this turn: a response would follow the commit at once
        client.send({"type": "input_audio_buffer.clear"})
        client.wait_for("input_audio_buffer.cleared")
        types = types_of(client.received)
        assert not any(t.startswith("response.") for t in types)
        item_id = committed["item_id"]
        assert started["item_id"] == stopped["item_id"] == item_id == completed["item_id"]
        deltas = [e for e in client.received if e["type"] == TRANSCRIPTION_EVENTS[0]]
        assert len(deltas) >= 2 and all(d["item_id"] == item_id and d["content_index"] == 0 for d in deltas)
        assert "".join(d["delta"] for d in deltas) == completed["transcript"]
        heard_s = (stopped["audio_end_ms"] - started["audio_start_ms"]) / 1000
        assert completed["transcript"] == TEMPLATE.format(seconds=heard_s)
        usage = completed["usage"]
        assert usage["type"] == "tokens" and usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
        assert types.index("conversation.item.done") < types.index(TRANSCRIPTION_EVENTS[0])
        client.send({"type": "conversation.item.retrieve", "item_id": item_id})
        item = client.wait_for("conversation.item.retrieved")["item"]
        assert item["content"][0]["transcript"] == completed["transcript"]
        assert client.invalid == []


def test_manual_turns_are_told_apart_by_length_and_silence_fails(dev, speech_pcm24):
    with RealtimeTestClient(dev.ws_url, dev.api_key) as client:
        assert manual_session(client)["type"] == "transcription"  # first update switches the type
        transcripts = []
        for ms in (1000, 1500):
            append(client, speech_pcm24[:ms * 48])
            client.send({"type": "input_audio_buffer.commit"})
            transcripts.append(client.wait_for(TRANSCRIPTION_EVENTS[1])["transcript"])
        assert transcripts == ["Dictation of 1.0 seconds.", "Dictation of 1.5 seconds."]
        append(client, bytes(600 * 48))
        client.send({"type": "input_audio_buffer.commit"})
        failed = client.wait_for(TRANSCRIPTION_EVENTS[2])
        assert failed["error"]["code"] == "audio_unintelligible" and failed["content_index"] == 0
        assert failed["item_id"] == [e for e in client.received if e["type"] == "input_audio_buffer.committed"][-1][
            "item_id"]
        assert client.invalid == []


def test_response_create_is_refused_and_the_session_stays_open(dev, speech_pcm24):
    with RealtimeTestClient(dev.ws_url, dev.api_key) as client:
        manual_session(client)
        client.send({"type": "response.create", "event_id": "evt_rc"})
        error = client.wait_for("error")["error"]
        assert (error["type"], error["code"], error["event_id"]) == ("invalid_request_error", "invalid_value", "evt_rc")
        assert error["message"] == RESPONSE_CREATE_MESSAGE
        append(client, speech_pcm24[:24000])
        client.send({"type": "input_audio_buffer.commit"})
        assert client.wait_for(TRANSCRIPTION_EVENTS[1])["transcript"] == "Dictation of 0.5 seconds."
        assert not any(t.startswith("response.") for t in types_of(client.received))
        assert client.invalid == []


def test_whisper_sends_one_delta_duration_usage_and_logprobs(dev, speech_pcm24):
    with RealtimeTestClient(dev.ws_url, dev.api_key) as client:
        manual_session(client, include=["item.input_audio_transcription.logprobs"],
                       audio={"input": {"turn_detection": None, "transcription": {"model": "whisper-1"}}})
        append(client, speech_pcm24[:48000])
        client.send({"type": "input_audio_buffer.commit"})
        completed = client.wait_for(TRANSCRIPTION_EVENTS[1])
        deltas = [e for e in client.received if e["type"] == TRANSCRIPTION_EVENTS[0]]
        assert [d["delta"] for d in deltas] == [completed["transcript"]]
        assert completed["usage"] == {"type": "duration", "seconds": 1.0}
        assert deltas[0]["logprobs"] and completed["logprobs"][0]["token"] == completed["transcript"]
        assert client.invalid == []


def test_session_type_is_fixed_once_audio_arrived(dev, speech_pcm24):
    with RealtimeTestClient(dev.ws_url, dev.api_key) as client:
        manual_session(client)
        append(client, speech_pcm24[:4800])
        client.send({"type": "session.update", "event_id": "evt_back", "session": {"type": "realtime"}})
        error = client.wait_for("error")["error"]
        assert (error["param"], error["event_id"]) == ("session.type", "evt_back")
        assert "'transcription'" in error["message"]
        client.send({"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
            "transcription": {"model": "gpt-4o-transcribe", "language": "fr", "prompt": "dictation"}}}}})
        updated = client.wait_for("session.updated")["session"]
        assert updated["audio"]["input"]["transcription"]["language"] == "fr"
        assert updated["audio"]["input"]["turn_detection"] is None  # untouched keys stay
        assert client.invalid == []


def test_intent_query_selects_the_session_type(dev):
    with RealtimeTestClient(dev.ws_url + "?intent=transcription", dev.api_key) as client:
        created = client.wait_for("session.created")["session"]
        assert created["type"] == "transcription" and "model" not in created
        assert created["audio"]["input"]["transcription"]["model"]
        assert client.invalid == []
    with RealtimeTestClient(dev.ws_url + "?intent=dictate", dev.api_key) as client:
        error = client.recv()["error"]
        assert (error["param"], error["code"]) == ("intent", "invalid_value")
        frame = client.ws.recv_data_frame(True)[1]
        assert frame.opcode == websocket.ABNF.OPCODE_CLOSE
        assert struct.unpack("!H", frame.data[:2])[0] == 1008
        assert client.invalid == []


def test_realtime_sessions_are_unchanged_by_a_transcription_secret_elsewhere(dev):
    realtime = mint(dev, {"type": "realtime", "model": "gpt-realtime-mini"}).json()
    with RealtimeTestClient(dev.ws_url, realtime["value"]) as client:
        created = client.wait_for("session.created")["session"]
        assert (created["type"], created["model"]) == ("realtime", "gpt-realtime-mini")
        assert client.invalid == []


def test_official_sdk_client_in_a_transcription_session(dev, speech_pcm24):
    secret = mint(dev, {"type": "transcription", "audio": {"input": {"turn_detection": None}}}).json()["value"]
    client = OpenAI(api_key=secret, websocket_base_url=f"ws://127.0.0.1:{dev.port}/v1")
    with client.realtime.connect(extra_query={"intent": "transcription"}) as conn:
        assert next(iter(conn)).type == "session.created"
        conn.input_audio_buffer.append(audio=base64.b64encode(speech_pcm24[:24000]).decode())
        conn.input_audio_buffer.commit()
        for event in conn:
            if event.type == "conversation.item.input_audio_transcription.completed":
                assert event.transcript == "Dictation of 0.5 seconds." and event.usage.type == "tokens"
                break
