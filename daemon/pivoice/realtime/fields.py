"""Field checks for server events: value -> clean value, or `BadField` naming the field and what was
expected. Pure functions, any thread (realtime/events.py and realtime/tool_events.py use them)."""

from __future__ import annotations

from typing import Any

MAX_MS = 1 << 31            # audio offsets: anything larger is not a position in a session
MAX_INDEX = 1 << 16         # content_index: an item has a handful of parts
MAX_TEXT_CHARS = 2000       # transcripts and messages are shortened to this for the log
MAX_ID_CHARS = 256
MAX_NAME_CHARS = 64             # function names: ^[a-zA-Z0-9_-]{1,64}$ in the API
MAX_ARGUMENTS_CHARS = 1 << 16   # a function call's JSON arguments
MAX_REPLY_CHARS = 20000         # a text-only reply or a transcript, kept whole for the transcript file and a display


class BadField(ValueError):
    """`field` of the event is missing or not what the daemon can use; `why` says what was expected."""

    def __init__(self, field: str, why: str):
        super().__init__(f"{field} {why}")
        self.field, self.why = field, why


# ---- field checks: value -> clean value, or BadField -------------------------------

def check_id(field: str, value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_ID_CHARS:
        raise BadField(field, f"must be an id string of 1..{MAX_ID_CHARS} characters")
    return value


def opt_id(field: str, value: Any) -> str | None:
    return None if value is None else check_id(field, value)


def opt_text(field: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadField(field, "must be a string")
    return value if len(value) <= MAX_TEXT_CHARS else value[:MAX_TEXT_CHARS] + "..."


def count(field: str, value: Any, limit: int) -> int:
    # bool is an int in Python, and JSON true is not a count
    if type(value) is not int or not 0 <= value < limit:
        raise BadField(field, f"must be an integer in 0..{limit - 1}")
    return value


def opt_count(field: str, value: Any) -> int | None:
    """An offset in ms or a token count: a non-negative int that fits a session."""
    return None if value is None else count(field, value, MAX_MS)


def obj(field: str, value: Any, *, optional: bool = False) -> dict:
    if value is None and optional:
        return {}
    if not isinstance(value, dict):
        raise BadField(field, "must be an object")
    return value


def check_name(field: str, value: Any) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_NAME_CHARS:
        raise BadField(field, f"must be a name of 1..{MAX_NAME_CHARS} characters")
    return value


def arguments(field: str, value: Any) -> str:
    # kept whole (never shortened like log text): the tool runner parses it
    if not isinstance(value, str) or len(value) > MAX_ARGUMENTS_CHARS:
        raise BadField(field, f"must be a JSON text of at most {MAX_ARGUMENTS_CHARS} characters")
    return value


def reply_text(field: str, value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise BadField(field, "must be a string")
    return value if value is None or len(value) <= MAX_REPLY_CHARS else value[:MAX_REPLY_CHARS] + "..."
