"""HTTP side of the dev server: `POST /v1/realtime/client_secrets` and the dev-only `POST /_dev/faults`.

Handlers run on the ASGI event loop. Error bodies use the OpenAI shape
`{"error": {message, type, code, param}}`. Keys and `ek_` values are never logged.
"""

from __future__ import annotations

import asyncio
import json
import logging

from starlette.requests import Request
from starlette.responses import JSONResponse

from . import events, secrets, sessionconfig, transcription
from .faults import error_body
from .validation import check_session_request, check_transcription_session_request

log = logging.getLogger(__name__)


def openai_error(status: int, message: str, code: str | None, param: str | None = None,
                 type_: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type_, "code": code, "param": param}}, status)


def bearer_token(headers) -> str | None:
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def require_api_key(request: Request, api_key: str) -> JSONResponse | None:
    """None when the request carries the configured API key (an `ek_` key is not enough here)."""
    token = bearer_token(request.headers)
    if token is None:
        return openai_error(401, "You didn't provide an API key. You need to provide your API key in an "
                            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                            "invalid_api_key")
    if token != api_key:
        return openai_error(401, "Incorrect API key provided.", "invalid_api_key")
    return None


def _range_error(param: str, value: int) -> JSONResponse:
    if value < secrets.MIN_TTL_S:
        return openai_error(400, f"Invalid '{param}': integer below minimum value. Expected a value >= "
                            f"{secrets.MIN_TTL_S}, but got {value} instead.", "integer_below_min_value", param)
    return openai_error(400, f"Invalid '{param}': integer above maximum value. Expected a value <= "
                        f"{secrets.MAX_TTL_S}, but got {value} instead.", "integer_above_max_value", param)


def _ttl_s(body: dict) -> int | JSONResponse:
    expires_after = body.get("expires_after")
    if expires_after is None:
        return secrets.DEFAULT_TTL_S
    if not isinstance(expires_after, dict):
        return openai_error(400, "Invalid type for 'expires_after': expected an object.", "invalid_type", "expires_after")
    for key in set(expires_after) - {"anchor", "seconds"}:
        return openai_error(400, f"Unknown parameter: 'expires_after.{key}'.", "unknown_parameter", f"expires_after.{key}")
    if expires_after.get("anchor", "created_at") != "created_at":
        return openai_error(400, "Invalid value for 'expires_after.anchor': expected 'created_at'.",
                            "invalid_value", "expires_after.anchor")
    seconds = expires_after.get("seconds", secrets.DEFAULT_TTL_S)
    if not isinstance(seconds, int) or isinstance(seconds, bool):
        return openai_error(400, "Invalid type for 'expires_after.seconds': expected an integer.",
                            "invalid_type", "expires_after.seconds")
    if not secrets.MIN_TTL_S <= seconds <= secrets.MAX_TTL_S:
        return _range_error("expires_after.seconds", seconds)
    return seconds


def _session_config(body: dict) -> dict | JSONResponse:
    session = body.get("session")
    if session is None:
        return sessionconfig.default_session()
    is_transcription = isinstance(session, dict) and session.get("type") == "transcription"
    check = (check_transcription_session_request if is_transcription else check_session_request)(session)
    if check.errors:
        param, message = check.errors[0]
        param = "session" + (f".{param}" if param else "")
        return openai_error(400, f"Invalid value for '{param}': {message}.", "invalid_value", param)
    if check.unknown:
        param = f"session.{check.unknown[0]}"
        return openai_error(400, f"Unknown parameter: '{param}'.", "unknown_parameter", param)
    try:
        return transcription.from_request(session) if is_transcription else sessionconfig.from_request(session)
    except sessionconfig.ConfigRejected as exc:
        return openai_error(400, f"Invalid value for '{exc.param}': {exc}", exc.code, exc.param)


async def client_secrets(request: Request) -> JSONResponse:
    state = request.app.state
    denied = require_api_key(request, state.api_key)
    if denied is not None:
        return denied
    fault = state.faults.take_client_secrets()
    if fault is not None:
        log.info("client_secrets: injected fault status=%s delay_s=%s", fault.status, fault.delay_s)
        await asyncio.sleep(fault.delay_s)
        if fault.status is not None:
            return JSONResponse(error_body(fault.status), fault.status)
    raw = await request.body()
    try:
        body = json.loads(raw) if raw.strip() else {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        return openai_error(400, "We could not parse the JSON body of your request.", "invalid_json")
    if not isinstance(body, dict):
        return openai_error(400, "The request body must be a JSON object.", "invalid_type")
    for key in set(body) - {"expires_after", "session"}:
        return openai_error(400, f"Unknown parameter: '{key}'.", "unknown_parameter", key)
    ttl_s = _ttl_s(body)
    if isinstance(ttl_s, JSONResponse):
        return ttl_s
    config = _session_config(body)
    if isinstance(config, JSONResponse):
        return config
    secret = state.secrets.issue(config, ttl_s)
    if transcription.is_transcription(config):
        log.info("issued a client secret: ttl %d s, transcription session (%s)", ttl_s, transcription.model_of(config))
        session = transcription.secret_session(config, events.new_id("sess_"))
    else:
        log.info("issued a client secret: ttl %d s, model %s", ttl_s, config["model"])
        # a not-yet-started session has no expiry of its own; the reference example shows 0 here
        session = sessionconfig.wire_session(config, events.new_id("sess_"), 0)
    return JSONResponse({"value": secret.value, "expires_at": secret.expires_at_s, "session": session})


async def dev_faults(request: Request) -> JSONResponse:
    """Dev-only: make the next client_secrets calls fail or stall (see faults.py)."""
    denied = require_api_key(request, request.app.state.api_key)
    if denied is not None:
        return denied
    try:
        body = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return openai_error(400, "We could not parse the JSON body of your request.", "invalid_json")
    problem = request.app.state.faults.configure(body)
    if problem is not None:
        return openai_error(400, problem, "invalid_value")
    log.info("dev faults configured: %s", body)
    return JSONResponse({"ok": True, "client_secrets": body.get("client_secrets")})
