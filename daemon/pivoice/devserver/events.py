"""Server event builders and id generators; pure functions."""

from __future__ import annotations

import secrets
import string

_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str, length: int = 22) -> str:
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(length))


def event(type_: str, **fields) -> dict:
    return {"type": type_, "event_id": new_id("event_"), **fields}


def error(message: str, code: str | None, param: str | None = None, event_id: str | None = None,
          type_: str = "invalid_request_error") -> dict:
    return event("error", error={"type": type_, "code": code, "message": message, "param": param,
                                 "event_id": event_id})


def strip_audio(item: dict) -> dict:
    """Items in added/done/response events never carry audio bytes (reference §4)."""
    if "content" not in item:
        return dict(item)
    content = [{k: v for k, v in part.items() if k != "audio"} for part in item["content"]]
    return {**item, "content": content}
