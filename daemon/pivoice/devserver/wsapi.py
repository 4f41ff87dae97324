"""`GET /v1/realtime` WebSocket: auth, beta-shape rejection, event validation and the session loop.

One receive loop and one sender task per socket, both on the ASGI event loop;
everything the session emits goes through a queue so the sender keeps order.
"""

from __future__ import annotations

import asyncio
import json
import logging

from starlette.websockets import WebSocket, WebSocketDisconnect

from . import events, sessionconfig
from .httpapi import bearer_token, openai_error
from .session import RealtimeSession
from .validation import check_client_event

log = logging.getLogger(__name__)

BETA_SUBPROTOCOL = "openai-beta.realtime-v1"
INSECURE_KEY_PREFIX = "openai-insecure-api-key."
BETA_MESSAGE = "The Realtime Beta API is no longer supported. Please use /v1/realtime for the GA API."
MAX_DURATION_REASON = "Your session hit the maximum duration of 60 minutes."


class _Close:
    def __init__(self, code: int, reason: str) -> None:
        self.code, self.reason = code, reason


def _credentials(websocket: WebSocket) -> str | None:
    token = bearer_token(websocket.headers)
    for proto in websocket.scope.get("subprotocols", []):
        if token is None and proto.startswith(INSECURE_KEY_PREFIX):
            token = proto[len(INSECURE_KEY_PREFIX):]  # browser form (reference §1.3)
    return token


def _chosen_subprotocol(offered: list[str]) -> str | None:
    if "realtime" in offered:
        return "realtime"
    plain = [p for p in offered if not p.startswith(INSECURE_KEY_PREFIX)]
    return plain[0] if plain else None


async def realtime_socket(websocket: WebSocket) -> None:
    state = websocket.app.state
    token = _credentials(websocket)
    secret = state.secrets.lookup(token) if token and token.startswith("ek_") else None
    if token is None or (token != state.api_key and secret is None):
        reason = "missing" if token is None else ("expired or unknown client secret" if token.startswith("ek_")
                                                   else "wrong key")
        log.info("rejected a realtime connection: %s", reason)
        await websocket.send_denial_response(openai_error(401, "Incorrect API key provided.", "invalid_api_key"))
        return
    offered = list(websocket.scope.get("subprotocols", []))
    await websocket.accept(subprotocol=_chosen_subprotocol(offered))
    if "realtime=v1" in websocket.headers.get("openai-beta", "").lower() or BETA_SUBPROTOCOL in offered:
        await websocket.send_text(json.dumps(events.error(BETA_MESSAGE, "beta_api_shape_disabled")))
        await websocket.close(4000, "beta_api_shape_disabled")
        return
    try:
        config = sessionconfig.for_socket(secret.session if secret else None, websocket.query_params.get("model"),
                                          websocket.query_params.get("intent"))
    except sessionconfig.ConfigRejected as exc:
        await websocket.send_text(json.dumps(events.error(str(exc), exc.code, exc.param)))
        await websocket.close(1008, "invalid intent")
        return
    await _run_session(websocket, state, config)


async def _run_session(websocket: WebSocket, state, config: dict) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    session_id = events.new_id("sess_")
    expires_at_s = int(state.clock_s() + state.max_session_s)
    session = RealtimeSession(session_id, config, expires_at_s, queue.put_nowait, state.voice,
                              state.audio_pace, loop.time, loop.call_later, transcript=state.transcript,
                              script_cursor=state.script_cursor())
    sender = asyncio.create_task(_send_loop(websocket, queue), name=f"devserver-send-{session_id}")
    cap = loop.call_later(state.max_session_s, queue.put_nowait, _Close(1001, MAX_DURATION_REASON))
    log.info("session %s opened (%s)", session_id, f"model {config['model']}" if "model" in config
             else f"transcription, {config['audio']['input']['transcription']}")
    try:
        session.start()
        while True:
            # after the sender closes the socket, the client's close reply arrives here as a disconnect
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            _dispatch(session, state, message, queue.put_nowait)
    except (WebSocketDisconnect, RuntimeError) as exc:
        log.info("session %s: connection ended (%s)", session_id, exc)
    finally:
        cap.cancel()
        await session.aclose()
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        log.info("session %s closed", session_id)


async def _send_loop(websocket: WebSocket, queue: asyncio.Queue) -> None:
    try:
        while True:
            item = await queue.get()
            if isinstance(item, _Close):
                await websocket.close(item.code, item.reason)
                return
            await websocket.send_text(json.dumps(item, separators=(",", ":")))
    except (WebSocketDisconnect, RuntimeError, OSError):
        return  # the client went away; the receive loop ends the session


def _dispatch(session: RealtimeSession, state, message: dict, emit) -> None:
    text = message.get("text")
    if text is None:
        emit(events.error("Binary frames are not supported; send JSON text events.", "invalid_event"))
        return
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        state.event_log.record(session.id, text, [f"invalid JSON: {exc}"], [])
        emit(events.error(f"Invalid JSON in client event: {exc.msg} at position {exc.pos}.", "invalid_event"))
        return
    check = check_client_event(obj)
    state.event_log.record(session.id, obj, check.messages() if check.errors else [], check.unknown)
    event_id = obj.get("event_id") if isinstance(obj, dict) and isinstance(obj.get("event_id"), str) else None
    if check.errors:
        param, problem = check.errors[0]
        message = problem if problem.startswith(("The ", "Invalid value:")) else f"Invalid '{param}': {problem}."
        emit(events.error(message, "invalid_event", param or None, event_id))
    elif check.unknown:
        emit(events.error(f"Unknown parameter: '{check.unknown[0]}'.", "unknown_parameter", check.unknown[0], event_id))
    else:
        try:
            session.handle(obj)
        except Exception:  # one bad event must not take down the session or the server
            log.exception("session %s: handling %s failed", session.id, obj.get("type"))
            emit(events.error("The server had an error while processing your event.", "server_error",
                              None, event_id, type_="server_error"))
