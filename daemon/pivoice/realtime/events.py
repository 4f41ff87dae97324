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

log = logging.getLogger(__name__)

OPCODE_TEXT, OPCODE_BINARY, OPCODE_CLOSE = 0x1, 0x2, 0x8
MAX_MS = 1 << 31            # audio offsets: anything larger is not a position in a session
MAX_INDEX = 1 << 16         # content_index: an item has a handful of parts
MAX_TEXT_CHARS = 2000       # transcripts and messages are shortened to this for the log
# A text delta (transcript, text, function arguments) tells the controller only that the server is
# still at work (its reply-stall timer counts in seconds): one per this interval is enough, and
# each one not posted is a wakeup of the controller thread saved (about one per audio delta).
LIVENESS_INTERVAL_S = 1.0
MAX_ID_CHARS = 256
MAX_NAME_CHARS = 64             # function names: ^[a-zA-Z0-9_-]{1,64}$ in the API
MAX_ARGUMENTS_CHARS = 1 << 16   # a function call's JSON arguments
MAX_REPLY_CHARS = 20000         # a text-only reply, kept whole for the transcript file and a display
NO_STATUS = 1005            # RFC 6455: the close frame carried no status code
CLOSE_NAMES = {1000: "normal closure", 1001: "going away", 1002: "protocol error", 1003: "unsupported data",
               NO_STATUS: "no status code", 1006: "abnormal closure", 1007: "invalid payload", 1008: "policy violation",
               1009: "message too big", 1011: "internal error", 1012: "service restart", 1013: "try again later"}


class BadField(ValueError):
    """`field` of the event is missing or not what the daemon can use; `why` says what was expected."""

    def __init__(self, field: str, why: str):
        super().__init__(f"{field} {why}")
        self.field, self.why = field, why


# ---- field checks: value -> clean value, or BadField -------------------------------

def _id(field: str, value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_ID_CHARS:
        raise BadField(field, f"must be an id string of 1..{MAX_ID_CHARS} characters")
    return value


def _opt_id(field: str, value: Any) -> str | None:
    return None if value is None else _id(field, value)


def _opt_text(field: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadField(field, "must be a string")
    return value if len(value) <= MAX_TEXT_CHARS else value[:MAX_TEXT_CHARS] + "..."


def _count(field: str, value: Any, limit: int) -> int:
    # bool is an int in Python, and JSON true is not a count
    if type(value) is not int or not 0 <= value < limit:
        raise BadField(field, f"must be an integer in 0..{limit - 1}")
    return value


def _opt_count(field: str, value: Any) -> int | None:
    """An offset in ms or a token count: a non-negative int that fits a session."""
    return None if value is None else _count(field, value, MAX_MS)


def _object(field: str, value: Any, *, optional: bool = False) -> dict:
    if value is None and optional:
        return {}
    if not isinstance(value, dict):
        raise BadField(field, "must be an object")
    return value


# ---- per event type: the raw dict -> the clean dict the controller and narration read ----

def _response_created(d: dict) -> dict:
    r = _object("response", d.get("response"))
    return {"response": {"id": _id("response.id", r.get("id"))}}


def _name(field: str, value: Any) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_NAME_CHARS:
        raise BadField(field, f"must be a name of 1..{MAX_NAME_CHARS} characters")
    return value


def _arguments(field: str, value: Any) -> str:
    # kept whole (never shortened like log text): the tool runner parses it
    if not isinstance(value, str) or len(value) > MAX_ARGUMENTS_CHARS:
        raise BadField(field, f"must be a JSON text of at most {MAX_ARGUMENTS_CHARS} characters")
    return value


def _function_call(prefix: str, item: dict, response_id: str | None) -> dict:
    return {"call_id": _id(prefix + "call_id", item.get("call_id")),
            "name": _name(prefix + "name", item.get("name")),
            "arguments": _arguments(prefix + "arguments", item.get("arguments")),
            "response_id": response_id}


def _function_calls(r: dict, response_id: str | None) -> list[dict]:
    """The function_call items of a finished response (the calls a client must answer)."""
    output = r.get("output")
    if output is None:
        return []
    if not isinstance(output, list):
        raise BadField("response.output", "must be a list of items")
    return [_function_call(f"response.output[{i}].", item, response_id) for i, item in enumerate(output)
            if isinstance(item, dict) and item.get("type") == "function_call"]


def _response_done(d: dict) -> dict:
    r = _object("response", d.get("response"))
    usage = _object("response.usage", r.get("usage"), optional=True)
    response_id = _opt_id("response.id", r.get("id"))
    return {"response": {"id": response_id,
                         "status": _opt_text("response.status", r.get("status")),
                         "usage": {"output_tokens": _opt_count("response.usage.output_tokens",
                                                                usage.get("output_tokens"))},
                         "function_calls": _function_calls(r, response_id)}}


def _arguments_done(d: dict) -> dict:
    return _function_call("", d, _opt_id("response_id", d.get("response_id")))


def _reply_text(field: str, value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise BadField(field, "must be a string")
    return value if value is None or len(value) <= MAX_REPLY_CHARS else value[:MAX_REPLY_CHARS] + "..."


def _error(d: dict) -> dict:
    e = _object("error", d.get("error"))
    return {"error": {"code": _opt_text("error.code", e.get("code")),
                      "type": _opt_text("error.type", e.get("type")),
                      "message": _opt_text("error.message", e.get("message")),
                      "event_id": _opt_text("error.event_id", e.get("event_id"))}}


def _field(name: str, check: Callable[[str, Any], Any]) -> Callable[[dict], dict]:
    return lambda d: {name: check(name, d.get(name))}


_SCHEMAS: dict[str, Callable[[dict], dict]] = {
    "session.created": lambda d: {},
    "session.updated": lambda d: {},
    "response.created": _response_created,
    "response.done": _response_done,
    "response.output_audio.done": _field("response_id", _id),
    "error": _error,
    "input_audio_buffer.speech_started": _field("audio_start_ms", _opt_count),
    "input_audio_buffer.speech_stopped": _field("audio_end_ms", _opt_count),
    "input_audio_buffer.committed": lambda d: {},
    "response.output_audio_transcript.done": _field("transcript", _opt_text),
    "response.output_text.done": _field("text", _reply_text),
    "response.function_call_arguments.done": _arguments_done,
    "conversation.item.input_audio_transcription.completed": _field("transcript", _reply_text),
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
    return m.AudioDelta(_id("response_id", d.get("response_id")), _id("item_id", d.get("item_id")),
                        _count("content_index", index, MAX_INDEX), payload, now_s)


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
