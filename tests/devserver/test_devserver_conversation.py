"""A full scripted conversation against the real dev-server process; every emitted event must
validate strictly against the SDK's `RealtimeServerEvent` union with no unknown fields."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import soxr

from pivoice.audio import codec
from support.devserver import RealtimeTestClient

pytestmark = pytest.mark.integration

CHUNK_MS = 100
SILENCE_MS = 1200


def chunks(wire: bytes, fmt: str):
    size = int(codec.bytes_per_ms(fmt) * CHUNK_MS)
    for i in range(0, len(wire), size):
        yield wire[i:i + size]


def append_all(client: RealtimeTestClient, wire: bytes, fmt: str = codec.PCM) -> None:
    for i, chunk in enumerate(chunks(wire, fmt)):
        client.send({"type": "input_audio_buffer.append", "event_id": f"evt_app_{i}",
                     "audio": base64.b64encode(chunk).decode()})


def with_silence(pcm24: bytes, silence_ms: int = SILENCE_MS) -> bytes:
    return bytes(int(48 * 500)) + pcm24 + bytes(int(48 * silence_ms))


def to_pcmu(pcm24: bytes) -> bytes:
    pcm8 = soxr.resample(np.frombuffer(pcm24, dtype="<i2"), 24000, 8000).astype("<i2").tobytes()
    return codec.encode(codec.PCMU, pcm8)


def test_scripted_conversation_emits_only_valid_events(dev_server, speech_pcm24):
    client = RealtimeTestClient(dev_server.ws_url + "?model=gpt-realtime", dev_server.api_key)
    try:
        created = client.wait_for("session.created")
        assert created["session"]["model"] == "gpt-realtime"
        assert created["session"]["id"].startswith("sess_")

        client.send({"type": "session.update", "event_id": "evt_upd", "session": {
            "type": "realtime", "instructions": "Be brief.",
            "audio": {"input": {"turn_detection": {"type": "server_vad", "silence_duration_ms": 500},
                                "transcription": {"model": "gpt-4o-mini-transcribe"}}}}})
        updated = client.wait_for("session.updated")
        td = updated["session"]["audio"]["input"]["turn_detection"]
        assert td["silence_duration_ms"] == 500 and td["prefix_padding_ms"] == 300  # merged over defaults
        assert updated["session"]["instructions"] == "Be brief."

        # 1. speech in -> VAD turn -> spoken response
        mark = len(client.received)
        append_all(client, with_silence(speech_pcm24))
        done = client.wait_for("response.done")
        turn = client.since(mark)
        types = [e["type"] for e in turn]
        started = next(e for e in turn if e["type"] == "input_audio_buffer.speech_started")
        stopped = next(e for e in turn if e["type"] == "input_audio_buffer.speech_stopped")
        committed = next(e for e in turn if e["type"] == "input_audio_buffer.committed")
        assert started["item_id"] == stopped["item_id"] == committed["item_id"]
        speech_ms = len(speech_pcm24) / 48
        assert 200 <= started["audio_start_ms"] <= 500  # 500 ms leading silence minus <=300 ms prefix padding
        assert 500 + speech_ms * 0.6 <= stopped["audio_end_ms"] <= 500 + speech_ms + 500 + 200
        for first, then in [("input_audio_buffer.committed", "conversation.item.added"),
                            ("response.created", "rate_limits.updated"),
                            ("response.output_item.added", "response.content_part.added"),
                            ("response.content_part.added", "response.output_audio.delta"),
                            ("response.output_audio.delta", "response.output_audio.done"),
                            ("response.output_audio.done", "response.content_part.done"),
                            ("response.output_item.done", "response.done")]:
            assert types.index(first) < types.index(then), (first, then)
        user_item = next(e for e in turn if e["type"] == "conversation.item.added")["item"]
        assert user_item["role"] == "user" and "audio" not in user_item["content"][0]
        assert not any(t.startswith("conversation.item.input_audio_transcription") for t in types)  # no fake ASR
        assert done["response"]["status"] == "completed"
        assert done["response"]["usage"]["output_tokens"] > 0
        transcript = next(e for e in turn if e["type"] == "response.output_audio_transcript.done")["transcript"]
        assert "seconds of speech" in transcript
        audio = b"".join(base64.b64decode(e["delta"]) for e in turn if e["type"] == "response.output_audio.delta")
        assert len(audio) > 48 * 1000  # over a second of 24 kHz speech
        assistant_id = done["response"]["output"][0]["id"]

        # 2. truncate the assistant item: past its end is an error, inside it works
        client.send({"type": "conversation.item.truncate", "event_id": "evt_trunc_bad", "item_id": assistant_id,
                     "content_index": 0, "audio_end_ms": 10 ** 6})
        err = client.wait_for("error")["error"]
        assert err["param"] == "audio_end_ms" and err["event_id"] == "evt_trunc_bad"
        client.send({"type": "conversation.item.truncate", "item_id": assistant_id, "content_index": 0,
                     "audio_end_ms": 400})
        assert client.wait_for("conversation.item.truncated")["audio_end_ms"] == 400
        client.send({"type": "conversation.item.retrieve", "item_id": assistant_id})
        retrieved = client.wait_for("conversation.item.retrieved")["item"]
        assert len(base64.b64decode(retrieved["content"][0]["audio"])) == 400 * 48

        # 3. manual response, a second create while active, then cancel
        client.send({"type": "response.create", "event_id": "evt_rc1"})
        client.wait_for("response.created")
        client.send({"type": "response.create", "event_id": "evt_rc2"})
        err = client.wait_for("error")["error"]
        assert err["code"] == "conversation_already_has_active_response" and err["event_id"] == "evt_rc2"
        client.send({"type": "response.cancel", "event_id": "evt_cancel"})
        cancelled = client.wait_for("response.done")["response"]
        assert cancelled["status"] == "cancelled"
        assert cancelled["status_details"]["reason"] == "client_cancelled"
        client.send({"type": "response.cancel", "event_id": "evt_cancel2"})
        err = client.wait_for("error")["error"]
        assert (err["code"], err["message"]) == ("response_cancel_not_active",
                                                 "Cancellation failed: no active response found")

        # 4. errors keep the session open
        client.send({"type": "input_audio_buffer.clear"})
        client.wait_for("input_audio_buffer.cleared")
        client.send({"type": "input_audio_buffer.commit", "event_id": "evt_commit_empty"})
        err = client.wait_for("error")["error"]
        assert err["code"] == "input_audio_buffer_commit_empty" and "0.00ms" in err["message"]
        client.send({"type": "session.update", "event_id": "evt_beta",
                     "session": {"type": "realtime", "modalities": ["audio", "text"]}})
        err = client.wait_for("error")["error"]
        assert (err["code"], err["param"], err["event_id"]) == ("unknown_parameter", "session.modalities", "evt_beta")
        client.send({"type": "session.update", "session": {"type": "realtime",
                     "audio": {"output": {"voice": "marin"}}}})
        assert client.wait_for("error")["error"]["code"] == "cannot_update_voice"

        # 5. items: create, retrieve, delete; text-mode response
        client.send({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}})
        added = client.wait_for("conversation.item.added")
        last_id = cancelled["output"][0]["id"] if cancelled["output"] else assistant_id
        assert added["previous_item_id"] == last_id
        client.send({"type": "response.create", "response": {"output_modalities": ["text"],
                                                             "metadata": {"turn": "text"}}})
        text_done = client.wait_for("response.done")["response"]
        assert text_done["status"] == "completed" and text_done["output"][0]["content"][0]["type"] == "output_text"
        assert any(e["type"] == "response.output_text.delta" for e in client.received)
        client.send({"type": "conversation.item.delete", "item_id": added["item"]["id"]})
        assert client.wait_for("conversation.item.deleted")["item_id"] == added["item"]["id"]
        client.send({"type": "conversation.item.delete", "event_id": "evt_del", "item_id": added["item"]["id"]})
        assert client.wait_for("error")["error"]["event_id"] == "evt_del"

        # 6. G.711 mu-law in and out, with semantic VAD
        client.send({"type": "session.update", "session": {"type": "realtime", "audio": {
            "input": {"format": {"type": "audio/pcmu"},
                      "turn_detection": {"type": "semantic_vad", "eagerness": "high"}},
            "output": {"format": {"type": "audio/pcmu"}}}}})
        assert client.wait_for("session.updated")["session"]["audio"]["output"]["format"] == {"type": "audio/pcmu"}
        mark = len(client.received)
        append_all(client, to_pcmu(with_silence(speech_pcm24)), codec.PCMU)
        assert client.wait_for("response.done")["response"]["status"] == "completed"
        deltas = [base64.b64decode(e["delta"]) for e in client.since(mark) if e["type"] == "response.output_audio.delta"]
        assert deltas and all(len(d) <= 800 for d in deltas) and len(deltas[0]) == 800  # 100 ms at 8 kHz
        assert client.since(mark)[0]["type"] == "input_audio_buffer.speech_started"

        # 7. barge-in: speech during a response cancels it (interrupt_response defaults to true)
        client.send({"type": "response.create"})
        client.wait_for("response.output_audio.delta")
        append_all(client, to_pcmu(with_silence(speech_pcm24)), codec.PCMU)
        interrupted = client.wait_for("response.done")["response"]
        assert interrupted["status"] == "cancelled"
        assert interrupted["status_details"]["reason"] == "turn_detected"
        assert client.wait_for("response.done")["response"]["status"] == "completed"  # the new turn's reply
    finally:
        client.close()

    assert client.invalid == [], json.dumps(client.invalid[:3], indent=1)[:3000]
    emitted = {e["type"] for e in client.received}
    expected = {"session.created", "session.updated", "input_audio_buffer.speech_started",
                "input_audio_buffer.speech_stopped", "input_audio_buffer.committed", "conversation.item.added",
                "conversation.item.done", "conversation.item.retrieved", "conversation.item.truncated",
                "conversation.item.deleted", "response.created", "rate_limits.updated",
                "response.output_item.added", "response.output_item.done", "response.content_part.added",
                "response.content_part.done", "response.output_audio.delta", "response.output_audio.done",
                "response.output_audio_transcript.delta", "response.output_audio_transcript.done",
                "response.output_text.delta", "response.output_text.done", "response.done", "error"}
    assert expected <= emitted, expected - emitted
