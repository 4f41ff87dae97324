"""Server frames -> controller events, checked field by field at the edge.

The controller trusts what it gets from here: every field the daemon reads is
checked where it is read (type, range, base64), and an event that fails a
check is dropped with one WARNING naming its type and the bad field, never its
content (a transcript or audio is the user's data). Unknown event types pass
through as a bare `ServerEvent({"type": ...})`: they still prove the server is
making progress on a reply.

Both the real connection (its reader thread) and the scripted peer (the test's
thread) turn frames into events with a `FrameParser`, so tests exercise this
exact code. One parser per connection; it is not shared between threads.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from typing import Any, Callable

from pivoice import messages as m
from pivoice.realtime.fields import (MAX_ID_CHARS, MAX_INDEX, MAX_TEXT_CHARS, BadField, check_id, count, obj,
                                     opt_count, opt_id, opt_text, reply_text)
from pivoice.realtime.tool_events import arguments_done, function_calls, item_done

log = logging.getLogger(__name__)

OPCODE_TEXT, OPCODE_BINARY, OPCODE_CLOSE = 0x1, 0x2, 0x8
# A text delta (transcript, text, function arguments) tells the controller only that the server is
# still at work (its reply-stall timer counts in seconds): one per this interval is enough, and
# each one not posted is a wakeup of the controller thread saved (about one per audio delta).
LIVENESS_INTERVAL_S = 1.0
NO_STATUS = 1005            # RFC 6455: the close frame carried no status code
CLOSE_NAMES = {1000: "normal closure", 1001: "going away", 1002: "protocol error", 1003: "unsupported data",
               NO_STATUS: "no status code", 1006: "abnormal closure", 1007: "invalid payload", 1008: "policy violation",
               1009: "message too big", 1011: "internal error", 1012: "service restart", 1013: "try again later"}


# ---- per event type: the raw dict -> the clean dict the controller and narration read ----

def _response_created(d: dict) -> dict:
    r = obj("response", d.get("response"))
    return {"response": {"id": check_id("response.id", r.get("id"))}}


def _response_done(d: dict) -> dict:
    r = obj("response", d.get("response"))
    usage = obj("response.usage", r.get("usage"), optional=True)
    response_id = opt_id("response.id", r.get("id"))
    output = r.get("output") if isinstance(r.get("output"), list) else []
    return {"response": {"id": response_id,
                         "status": opt_text("response.status", r.get("status")),
                         "usage": _usage(usage),
                         "function_calls": function_calls(r, response_id),
                         "mcp_calls": sum(1 for item in output if isinstance(item, dict)
                                          and item.get("type") == "mcp_call")}}


def _usage(usage: dict) -> dict:
    """The token counts of RealtimeResponseUsage (for the usage figures); those absent stay absent."""
    out = {"output_tokens": opt_count("response.usage.output_tokens", usage.get("output_tokens"))}
    for key in ("input_tokens", "total_tokens"):
        if key in usage:
            out[key] = opt_count(f"response.usage.{key}", usage[key])
    for details in ("input_token_details", "output_token_details"):
        d = obj(f"response.usage.{details}", usage.get(details), optional=True)
        picked = {k: opt_count(f"response.usage.{details}.{k}", d[k]) for k in ("text_tokens", "audio_tokens")
                  if k in d}
        if picked:
            out[details] = picked
    return out


def _error(d: dict) -> dict:
    e = obj("error", d.get("error"))
    return {"error": {"code": opt_text("error.code", e.get("code")),
                      "type": opt_text("error.type", e.get("type")),
                      "message": opt_text("error.message", e.get("message")),
                      "event_id": opt_text("error.event_id", e.get("event_id"))}}


def _field(name: str, check: Callable[[str, Any], Any]) -> Callable[[dict], dict]:
    return lambda d: {name: check(name, d.get(name))}


_SCHEMAS: dict[str, Callable[[dict], dict]] = {
    "session.created": lambda d: {},
    "session.updated": lambda d: {},
    "response.created": _response_created,
    "response.done": _response_done,
    "response.output_audio.done": _field("response_id", check_id),
    "error": _error,
    "input_audio_buffer.speech_started": _field("audio_start_ms", opt_count),
    "input_audio_buffer.speech_stopped": _field("audio_end_ms", opt_count),
    "input_audio_buffer.committed": lambda d: {},
    "response.output_audio_transcript.done": _field("transcript", opt_text),
    "response.output_text.done": _field("text", reply_text),
    "response.function_call_arguments.done": arguments_done,
    "conversation.item.done": item_done,
    "conversation.item.input_audio_transcription.completed": _field("transcript", reply_text),
    # every piece: in dictation the partial line is what a display shows while the user talks
    "conversation.item.input_audio_transcription.delta": _field("delta", opt_text),
    "conversation.item.input_audio_transcription.failed": _error,
}


def _audio_delta(d: dict, now_s: float) -> m.AudioDelta:
    raw = d.get("delta")
    if not isinstance(raw, str):
        raise BadField("delta", "must be a base64 string")
    try:
        payload = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise BadField("delta", "is not valid base64") from None
    index = d.get("content_index", 0)
    return m.AudioDelta(check_id("response_id", d.get("response_id")), check_id("item_id", d.get("item_id")),
                        count("content_index", index, MAX_INDEX), payload, now_s)


def parse_close(data: bytes) -> m.SocketClosed:
    """A close frame's payload: 2-byte code + UTF-8 reason (either may be absent or garbled)."""
    if len(data) < 2:
        return m.SocketClosed(NO_STATUS, "")
    reason = data[2:].decode("utf-8", "replace")
    return m.SocketClosed(int.from_bytes(data[:2], "big"), reason[:MAX_TEXT_CHARS])


def close_name(code: int | None) -> str:
    """`1001 going away`, `4000`, or `no close code`."""
    if code is None:
        return "no close code"
    name = CLOSE_NAMES.get(code)
    return f"{code} {name}" if name else str(code)


class FrameParser:
    """One connection's frames -> controller events. Thread: whichever thread reads that connection.

    Each kind of fault (event type + field) is logged at WARNING the first time on a connection and
    at DEBUG after that, so a server that sends the same bad delta 25 times a second cannot flood
    the journal; `dropped` counts them all.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._warned: set[tuple[str, str]] = set()
        self.dropped = 0
        self._liveness_at_s = float("-inf")   # when the last text delta was passed on

    def parse(self, opcode: int, data: bytes) -> object | None:
        """A controller event for the frame, or None if it carries nothing for the daemon."""
        if opcode == OPCODE_CLOSE:
            return parse_close(data)
        if opcode == OPCODE_BINARY:
            self._drop("(binary frame)", "frame", f"of {len(data)} bytes: the API sends only text frames")
            return None
        if opcode != OPCODE_TEXT:
            return None   # ping/pong: the socket layer's business
        try:
            event = json.loads(data)
        except (ValueError, RecursionError):   # RecursionError: deeply nested arrays
            self._drop("(not JSON)", "frame", f"of {len(data)} bytes is not a JSON document")
            return None
        if not isinstance(event, dict):
            self._drop("(not an object)", "frame", f"is a JSON {type(event).__name__}, not an event object")
            return None
        kind = event.get("type")
        if not isinstance(kind, str) or not kind or len(kind) > MAX_ID_CHARS:
            self._drop("(no type)", "type", f"must be a string of 1..{MAX_ID_CHARS} characters")
            return None
        try:
            if kind == "response.output_audio.delta":
                return _audio_delta(event, self._clock())
            schema = _SCHEMAS.get(kind)
            if schema is None and kind.endswith(".delta"):
                now_s = self._clock()
                if now_s - self._liveness_at_s < LIVENESS_INTERVAL_S:
                    return None
                self._liveness_at_s = now_s
            return m.ServerEvent({"type": kind, **(schema(event) if schema else {})})
        except BadField as bad:
            self._drop(kind, bad.field, bad.why)
            return None

    def _drop(self, kind: str, field: str, why: str) -> None:
        self.dropped += 1
        key = (kind, field)
        level = logging.DEBUG if key in self._warned else logging.WARNING
        self._warned.add(key)
        log.log(level, "server event %s dropped: %s %s", _printable(kind), field, why)


def _printable(kind: str) -> str:
    # the type comes from the server: keep the log line one short line of plain characters
    return kind if kind.isprintable() and len(kind) <= 80 else repr(kind[:80])
