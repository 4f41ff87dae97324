"""The edge parser: every field the daemon reads is checked; a bad event is one WARNING, never a crash."""

from __future__ import annotations

import base64
import json
import logging

import pytest

from pivoice import messages as m
from pivoice.realtime.events import OPCODE_BINARY, OPCODE_CLOSE, OPCODE_TEXT, FrameParser, parse_close

DELTA = {"type": "response.output_audio.delta", "response_id": "resp_1", "item_id": "item_1",
         "output_index": 0, "content_index": 0, "delta": base64.b64encode(b"\x01\x00" * 8).decode()}


CALL = {"type": "response.function_call_arguments.done", "event_id": "e", "response_id": "resp_1",
        "item_id": "fc_1", "output_index": 0, "call_id": "call_1", "name": "get_time", "arguments": '{"tz": "UTC"}'}


def parse(event, opcode=OPCODE_TEXT):
    data = event if isinstance(event, bytes) else json.dumps(event).encode()
    return FrameParser(clock=lambda: 7.0).parse(opcode, data)


def warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_good_events_become_clean_controller_events():
    delta = parse(DELTA)
    assert delta == m.AudioDelta("resp_1", "item_1", 0, b"\x01\x00" * 8) and delta.received_at_s == 7.0
    done = parse({"type": "response.done", "event_id": "e", "response": {
        "id": "resp_1", "status": "completed", "output": [{"big": "x" * 1000}], "usage": {"output_tokens": 12}}})
    assert done.data == {"type": "response.done", "response": {"id": "resp_1", "status": "completed",
                                                                "usage": {"output_tokens": 12}, "function_calls": [],
                                                                "mcp_calls": 0}}
    # optional fields may be absent; unknown types pass as bare events (progress on the reply)
    assert parse({"type": "response.done", "response": {}}).data["response"]["id"] is None
    assert parse({"type": "rate_limits.updated", "rate_limits": "whatever"}).data == {"type": "rate_limits.updated"}
    assert parse({"type": "session.created", "session": 5}).data == {"type": "session.created"}


@pytest.mark.parametrize("event,kind,field", [
    # the four: content_index as a word, and objects given as strings
    ({**DELTA, "content_index": "zero"}, "response.output_audio.delta", "content_index"),
    ({"type": "response.created", "response": "x"}, "response.created", "response"),
    ({"type": "error", "error": "x"}, "error", "error"),
    ({"type": "error", "error": None}, "error", "error"),
    # and the rest of what the daemon reads
    ({**DELTA, "content_index": True}, "response.output_audio.delta", "content_index"),
    ({**DELTA, "content_index": -1}, "response.output_audio.delta", "content_index"),
    ({**DELTA, "content_index": 1.5}, "response.output_audio.delta", "content_index"),
    ({**DELTA, "content_index": 10 ** 30}, "response.output_audio.delta", "content_index"),
    ({**DELTA, "delta": "!!not base64!!"}, "response.output_audio.delta", "delta"),
    ({**DELTA, "delta": 12}, "response.output_audio.delta", "delta"),
    ({**DELTA, "response_id": 5}, "response.output_audio.delta", "response_id"),
    ({**DELTA, "item_id": None}, "response.output_audio.delta", "item_id"),
    ({k: v for k, v in DELTA.items() if k != "item_id"}, "response.output_audio.delta", "item_id"),
    ({"type": "response.created", "response": {"id": ["r"]}}, "response.created", "response.id"),
    ({"type": "response.created"}, "response.created", "response"),
    ({"type": "response.done", "response": {"id": "r", "usage": "lots"}}, "response.done", "response.usage"),
    ({"type": "response.done", "response": {"id": "r", "usage": {"output_tokens": "9"}}}, "response.done",
     "response.usage.output_tokens"),
    ({"type": "response.done", "response": {"id": "r", "status": {}}}, "response.done", "response.status"),
    ({"type": "response.output_audio.done", "response_id": {"id": 1}}, "response.output_audio.done", "response_id"),
    ({"type": "error", "error": {"code": 401}}, "error", "error.code"),
    ({"type": "error", "error": {"message": ["m"]}}, "error", "error.message"),
    ({"type": "input_audio_buffer.speech_started", "audio_start_ms": "soon"}, "input_audio_buffer.speech_started",
     "audio_start_ms"),
    ({"type": "response.output_audio_transcript.done", "transcript": 42}, "response.output_audio_transcript.done",
     "transcript"),
    # function calls: what the tool runner gets must be whole and of the right type
    ({**CALL, "call_id": 7}, "response.function_call_arguments.done", "call_id"),
    ({**CALL, "name": ""}, "response.function_call_arguments.done", "name"),
    ({**CALL, "name": "n" * 65}, "response.function_call_arguments.done", "name"),
    ({**CALL, "arguments": {"minutes": 5}}, "response.function_call_arguments.done", "arguments"),
    ({**CALL, "arguments": "x" * 70000}, "response.function_call_arguments.done", "arguments"),
    ({"type": "response.done", "response": {"id": "r", "output": "calls"}}, "response.done", "response.output"),
    ({"type": "response.done", "response": {"id": "r", "output": [{"type": "function_call", "name": "f",
                                                                     "arguments": "{}"}]}},
     "response.done", "response.output[0].call_id"),
])
def test_bad_field_drops_the_event_with_one_warning_naming_type_and_field(event, kind, field, caplog):
    caplog.set_level(logging.DEBUG, logger="pivoice.realtime.events")
    assert parse(event) is None
    lines = warnings(caplog)
    assert len(lines) == 1 and lines[0].startswith(f"server event {kind} dropped: {field} "), lines


def test_error_null_is_not_server_error_unknown(caplog):
    caplog.set_level(logging.DEBUG)
    assert parse({"type": "error", "error": None}) is None
    assert "unknown" not in caplog.text and "dropped: error must be an object" in caplog.text


def test_payloads_never_reach_the_log(caplog):
    caplog.set_level(logging.DEBUG)
    parse({"type": "response.output_audio_transcript.done", "transcript": {"secret": "my pin is 4711"}})
    parse({**DELTA, "delta": "c2VjcmV0IDQ3MTE=!", "content_index": 0})
    parse(b'{"type": "x", "oops": "my pin is 4711"')
    assert "4711" not in caplog.text and "c2VjcmV0" not in caplog.text


@pytest.mark.parametrize("opcode,data,label", [
    (OPCODE_TEXT, b"not json at all", "(not JSON)"),
    (OPCODE_TEXT, b'{"type": "response.created", "response": {"id": "r"', "(not JSON)"),
    (OPCODE_TEXT, b"\xff\xfe{}", "(not JSON)"),                      # not UTF-8
    (OPCODE_TEXT, b"[" * 200_000 + b"]" * 200_000, "(not JSON)"),    # deep nesting: RecursionError
    (OPCODE_TEXT, b"1" * 5000, "(not JSON)"),                        # an int past Python's digit limit
    (OPCODE_TEXT, b'["type", "error"]', "(not an object)"),
    (OPCODE_TEXT, b"null", "(not an object)"),
    (OPCODE_TEXT, b'{"type": 7}', "(no type)"),
    (OPCODE_TEXT, b'{"type": ""}', "(no type)"),
    (OPCODE_TEXT, b'{"delta": "AAAA"}', "(no type)"),
    (OPCODE_BINARY, b"\x00\x01\x02", "(binary frame)"),
])
def test_frames_that_are_not_events_are_dropped_with_a_warning(opcode, data, label, caplog):
    caplog.set_level(logging.WARNING)
    assert FrameParser().parse(opcode, data) is None
    assert [line.split(" dropped")[0] for line in warnings(caplog)] == [f"server event {label}"]


def test_control_frames_carry_nothing_for_the_controller():
    # a pong proves the link, not progress on a reply: it never reaches the controller
    assert FrameParser().parse(0xA, b"") is None and FrameParser().parse(0x9, b"x") is None


def test_repeated_faults_warn_once_per_type_and_field_then_debug(caplog):
    caplog.set_level(logging.DEBUG, logger="pivoice.realtime.events")
    parser = FrameParser()
    bad = json.dumps({**DELTA, "content_index": "zero"}).encode()
    for _ in range(50):
        assert parser.parse(OPCODE_TEXT, bad) is None
    parser.parse(OPCODE_TEXT, json.dumps({**DELTA, "delta": 3}).encode())
    assert len(warnings(caplog)) == 2 and parser.dropped == 51
    assert sum(r.levelno == logging.DEBUG for r in caplog.records) == 49


def test_strange_types_are_printed_as_one_short_line(caplog):
    caplog.set_level(logging.WARNING)
    FrameParser().parse(OPCODE_TEXT, json.dumps({"type": "response.created\n" + "x" * 200}).encode())
    FrameParser().parse(OPCODE_TEXT, json.dumps({"type": "error\nforged line", "error": 1}).encode())
    assert all("\n" not in line and len(line) < 200 for line in warnings(caplog))


def test_long_texts_are_shortened_for_the_log():
    event = parse({"type": "response.output_audio_transcript.done", "transcript": "la " * 10_000})
    assert len(event.data["transcript"]) <= 2003


@pytest.mark.parametrize("payload,expected", [
    (b"\x03\xe9going away", m.SocketClosed(1001, "going away")),
    (b"\x03\xe8", m.SocketClosed(1000, "")),
    (b"", m.SocketClosed(1005, "")),
    (b"\x0f", m.SocketClosed(1005, "")),
    (b"\x0f\xa0\xff\xfe", m.SocketClosed(4000, "\ufffd\ufffd")),
])
def test_close_frames(payload, expected):
    assert parse_close(payload) == expected
    assert FrameParser().parse(OPCODE_CLOSE, payload) == expected


def test_text_deltas_reach_the_controller_at_most_once_a_second_as_liveness():
    now = [10.0]
    parser = FrameParser(clock=lambda: now[0])

    def frame(kind, **fields):
        return parser.parse(OPCODE_TEXT, json.dumps({"type": kind, **fields}).encode())
    assert frame("response.output_audio_transcript.delta", delta="Hel") == m.ServerEvent(
        {"type": "response.output_audio_transcript.delta"})
    now[0] += 0.5
    assert frame("response.output_audio_transcript.delta", delta="lo") is None      # nothing new to say
    assert frame("response.function_call_arguments.delta", delta="{") is None
    assert isinstance(frame("response.output_audio.delta", response_id="r", item_id="i", delta="AAA="),
                      m.AudioDelta)                                                   # audio always goes
    assert frame("response.output_audio_transcript.done", transcript="Hello") is not None
    now[0] += 0.6
    assert frame("response.output_text.delta", delta="x") is not None               # a second later: again
    assert parser.dropped == 0                                                        # skipped, not faulty


def test_function_calls_reach_the_controller_whole_from_arguments_done_and_response_done():
    assert parse(CALL).data == {"type": "response.function_call_arguments.done", "call_id": "call_1",
                                "name": "get_time", "arguments": '{"tz": "UTC"}', "response_id": "resp_1"}
    long_arguments = json.dumps({"text": "x" * 5000})   # longer than log text, kept whole
    assert parse({**CALL, "arguments": long_arguments}).data["arguments"] == long_arguments
    done = parse({"type": "response.done", "response": {"id": "resp_1", "output": [
        {"type": "message", "role": "assistant", "content": []},
        {"type": "function_call", "call_id": "call_1", "name": "get_time", "arguments": "{}"},
        {"type": "function_call", "call_id": "call_2", "name": "set_timer", "arguments": '{"minutes": 1}'}]}})
    assert done.data["response"]["function_calls"] == [
        {"call_id": "call_1", "name": "get_time", "arguments": "{}", "response_id": "resp_1"},
        {"call_id": "call_2", "name": "set_timer", "arguments": '{"minutes": 1}', "response_id": "resp_1"}]
    text = "word " * 1000   # a text-only reply is kept whole for the transcript file
    assert parse({"type": "response.output_text.done", "text": text}).data["text"] == text


def test_mcp_items_the_daemon_acts_on_are_checked_and_other_items_pass_bare(caplog):
    approval = {"type": "conversation.item.done", "previous_item_id": None, "item": {
        "type": "mcp_approval_request", "id": "mcpr_1", "server_label": "home", "name": "turn_on",
        "arguments": '{"entity": "lamp"}'}}
    assert parse(approval).data == {"type": "conversation.item.done", "item": {
        "type": "mcp_approval_request", "server_label": "home", "id": "mcpr_1", "name": "turn_on",
        "arguments": '{"entity": "lamp"}'}}
    failed = {"type": "conversation.item.done", "item": {
        "type": "mcp_call", "id": "mcp_1", "server_label": "home", "name": "turn_on", "arguments": "{}",
        "error": {"type": "http_error", "code": 502, "message": "bad gateway"}}}
    assert parse(failed).data["item"]["error"] == {"type": "http_error", "message": "bad gateway"}
    message = {"type": "conversation.item.done", "item": {"type": "message", "role": "user", "content": ["..."]}}
    assert parse(message).data == {"type": "conversation.item.done", "item": {"type": "message"}}
    caplog.set_level(logging.DEBUG, logger="pivoice.realtime.events")
    bad = {"type": "conversation.item.done", "item": {**approval["item"], "server_label": None}}
    assert parse(bad) is None
    assert warnings(caplog) == ["server event conversation.item.done dropped: item.server_label must be a name "
                                "of 1..64 characters"]
