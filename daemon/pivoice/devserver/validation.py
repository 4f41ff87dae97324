"""Schema checks with the official `openai` SDK types (reference §10).

The SDK models accept unknown keys silently (`extra="allow"`), so every check is
a strict pydantic validation plus a walk of `__pydantic_extra__` over the model
tree. Pure functions; safe from any thread or task.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from openai.types.realtime import (
    ClientSecretCreateResponse,
    RealtimeClientEvent,
    RealtimeServerEvent,
    RealtimeSessionCreateRequest,
    RealtimeTranscriptionSessionCreateRequest,
)
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

CLIENT_EVENT = TypeAdapter(Annotated[RealtimeClientEvent, Field(discriminator="type")])
SERVER_EVENT = TypeAdapter(Annotated[RealtimeServerEvent, Field(discriminator="type")])
SESSION_REQUEST = TypeAdapter(RealtimeSessionCreateRequest)
TRANSCRIPTION_SESSION_REQUEST = TypeAdapter(RealtimeTranscriptionSessionCreateRequest)
CLIENT_SECRET_RESPONSE = TypeAdapter(ClientSecretCreateResponse)

# Server-only keys the SDK has no field for, because it reuses *request* models for
# `session.created` / `session.updated`; `obfuscation` rides on some deltas (§10.2).
SERVER_EXTRA_ALLOWED = frozenset({"session.id", "session.object", "session.expires_at", "obfuscation"})
CLIENT_EXTRA_ALLOWED: frozenset[str] = frozenset()


@dataclass
class Check:
    """Outcome of one validation: `errors` are (param, message) pairs, `unknown` are field paths."""

    model: Any = None
    errors: list[tuple[str, str]] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors and not self.unknown

    def messages(self) -> list[str]:
        return [f"{p or '<root>'}: {m}" for p, m in self.errors] + [f"unknown field {u}" for u in self.unknown]


def _param_path(loc: tuple, skip_first: bool) -> str:
    """pydantic loc -> JSON path such as `session.audio.input.turn_detection.type`.

    Union member names (class names, `function-after[...]`, literal tags) are not JSON keys:
    JSON keys in this protocol are all snake_case, so anything else is dropped.
    """
    parts = list(loc[1:] if skip_first else loc)
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part[:1].isupper() or not part.replace("_", "").isalnum() or part in ("str", "int", "bool", "float"):
            continue
        else:
            out += ("." if out else "") + part
    return out


def _errors(exc: ValidationError, skip_first: bool) -> list[tuple[str, str]]:
    # A smart union reports one error per member; keep the deepest, i.e. the member that matched best.
    by_param: dict[str, tuple[int, str]] = {}
    for err in exc.errors(include_url=False):
        param = _param_path(tuple(err["loc"]), skip_first)
        depth = len(err["loc"])
        message = err["msg"]
        if err["type"] == "union_tag_invalid":
            tag = err.get("ctx", {}).get("tag")
            param, message = (param + "." if param else "") + "type", f"Invalid value: {tag!r}. Unknown event type."
        elif err["type"] == "literal_error" and param.split(".")[-1] == "type":
            # the `type` mismatch of a union member that was not meant; other errors say more
            depth -= 1
        if param not in by_param or depth > by_param[param][0]:
            by_param[param] = (depth, message)
    deepest = max(d for d, _ in by_param.values())
    return [(p, m) for p, (d, m) in by_param.items() if d == deepest] or [(p, m) for p, (_, m) in by_param.items()]


def unknown_fields(value: Any, allowed: frozenset[str] = frozenset(), prefix: str = "") -> list[str]:
    """Paths of keys that a model accepted only as extras (typo, beta-only or invented keys)."""
    found: list[str] = []
    if isinstance(value, BaseModel):
        for key in (value.__pydantic_extra__ or {}):
            path = f"{prefix}.{key}" if prefix else key
            if path not in allowed and key not in allowed:
                found.append(path)
        for name in type(value).model_fields:
            found += unknown_fields(getattr(value, name), allowed, f"{prefix}.{name}" if prefix else name)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            found += unknown_fields(v, allowed, f"{prefix}[{i}]")
    elif isinstance(value, dict):
        for k, v in value.items():
            found += unknown_fields(v, allowed, f"{prefix}.{k}" if prefix else str(k))
    return found


def _check(adapter: TypeAdapter, obj: Any, allowed: frozenset[str], skip_first: bool) -> Check:
    try:
        model = adapter.validate_python(obj, strict=True)
    except ValidationError as exc:
        return Check(errors=_errors(exc, skip_first))
    return Check(model=model, unknown=unknown_fields(model, allowed))


def check_client_event(obj: Any) -> Check:
    if not isinstance(obj, dict):
        return Check(errors=[("", "The event must be a JSON object.")])
    if "type" not in obj:
        return Check(errors=[("type", "The 'type' field is missing.")])
    return _check(CLIENT_EVENT, _tolerate_real_clients(obj), CLIENT_EXTRA_ALLOWED, skip_first=True)


def _tolerate_real_clients(obj: dict) -> dict:
    """The SDK type requires `id` on mcp_approval_response but official clients omit it (§10.3)."""
    item = obj.get("item")
    if obj.get("type") == "conversation.item.create" and isinstance(item, dict):
        if item.get("type") == "mcp_approval_response" and "id" not in item:
            return {**obj, "item": {**item, "id": "mcpar_placeholder"}}
    return obj


def check_server_event(obj: Any) -> Check:
    return _check(SERVER_EVENT, obj, SERVER_EXTRA_ALLOWED, skip_first=True)


def check_session_request(obj: Any) -> Check:
    """A GA `session` object as sent in client_secrets or session.update."""
    return _check(SESSION_REQUEST, obj, frozenset(), skip_first=False)


def check_transcription_session_request(obj: Any) -> Check:
    """A GA transcription `session` object (`type: transcription`) as sent in client_secrets or session.update."""
    return _check(TRANSCRIPTION_SESSION_REQUEST, obj, frozenset(), skip_first=False)


def check_client_secret_response(obj: Any) -> Check:
    return _check(CLIENT_SECRET_RESPONSE, obj, frozenset(), skip_first=False)
