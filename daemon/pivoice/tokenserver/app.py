"""The token backend's ASGI app: `POST /v1/realtime/client_secrets` and `GET /healthz`
(and the fleet's `POST /v1/devices/status`, `GET /admin/devices`, `GET /admin/fleet`: fleet_http.py).

Order of checks per mint: device auth (401) -> body shape (400) -> policy (403) ->
limits (429, counted only for requests that would reach upstream) -> upstream (502/503/504).
Every error is JSON `{"error": {"code", "message", ...}}`, never a stack trace.

`create_app_from_env` is the uvicorn factory: each worker process calls it once and reads
the config file named by $PIVOICE_TOKEN_SERVER_CONFIG. Request handlers run on the
worker's event loop; DB calls go to the thread pool.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from typing import Any, Callable

import httpx
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pivoice.settings import ConfigError
from pivoice.tokenserver import audit
from pivoice.tokenserver.auth import check_device_name, parse_basic_auth, verify_secret
from pivoice.tokenserver.config import CONFIG_ENV, TokenServerConfig, load_config, read_admin_token, resolve_api_key
from pivoice.tokenserver.fleet_http import FleetService
from pivoice.tokenserver.policy import (PolicyViolation, RequestError, device_policy, merge_session,
                                        resolve_expires_after)
from pivoice.tokenserver.registry import Registry, db_errors
from pivoice.tokenserver.upstream import UpstreamClient, UpstreamFailure

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 64 * 1024
_NO_STORE = {"Cache-Control": "no-store"}


def error(status: int, code: str, message: str, headers: dict | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, **extra}}, status_code=status,
                        headers={**_NO_STORE, **(headers or {})})


def _unauthorized(message: str) -> JSONResponse:
    return error(401, "unauthorized", message, {"WWW-Authenticate": 'Basic realm="pivoice"'})


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_body(raw: bytes) -> dict:
    """The request body as a dict with only known keys; RequestError says what is wrong where."""
    if len(raw) > MAX_BODY_BYTES:
        raise RequestError(f"request body is larger than {MAX_BODY_BYTES} bytes")
    if not raw.strip():
        return {}  # a bodiless POST means "all defaults"
    try:
        body = json.loads(raw, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise RequestError(f"request body is not valid JSON: {exc.msg} at line {exc.lineno} "
                           f"column {exc.colno}") from None
    except (ValueError, RecursionError) as exc:
        raise RequestError(f"request body is not valid JSON: {exc}"[:200]) from None
    if not isinstance(body, dict):
        raise RequestError("request body must be a JSON object")
    unknown = sorted(set(body) - {"session", "expires_after"})
    if unknown:
        raise RequestError(f"unknown field {unknown[0]!r} at the top level (expected session, expires_after)")
    return body


class BodyTooLarge(RequestError):
    pass


async def read_body(request: Request, limit_bytes: int = MAX_BODY_BYTES) -> bytes:
    """The body, read no further than `limit_bytes`: a huge body is refused as it streams in,
    never buffered whole (Content-Length first, then a counted read for chunked bodies)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit_bytes:
        raise BodyTooLarge(f"request body is larger than {limit_bytes} bytes (Content-Length {int(declared)})")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit_bytes:
            raise BodyTooLarge(f"request body is larger than {limit_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


class MintService:
    """Per-worker state behind the routes: config, registry, upstream client, clock."""

    def __init__(self, config: TokenServerConfig, registry: Registry, upstream: UpstreamClient,
                 clock: Callable[[], float] = time.time):
        self.config = config
        self.registry = registry
        self.upstream = upstream
        self.clock = clock

    async def mint(self, request: Request) -> JSONResponse:
        try:
            return await self._mint(request)
        except db_errors() as exc:
            # The driver's message may describe the connection; its type is enough for the log.
            log.error("database error while minting: %s", type(exc).__name__)
            audit.mint_attempt(None, "database_error", 503, code="database_unavailable")
            return error(503, "database_unavailable", "the token backend's database is not answering")

    async def _mint(self, request: Request) -> JSONResponse:
        creds = parse_basic_auth(request.headers.get("authorization"))
        if creds is None:
            audit.mint_attempt(None, "unauthorized", 401, code="no_credentials")
            return _unauthorized("HTTP Basic credentials (device id and secret) are required")
        name, secret = creds
        device = await run_in_threadpool(self.registry.get_device, name) if check_device_name(name) is None else None
        if not verify_secret(secret, device.secret_hash if device else None) or device.revoked:
            # An unknown name is not logged: it may be a secret typed into the wrong field.
            reason = "unknown_device" if device is None else ("revoked" if device.revoked else "wrong_secret")
            audit.mint_attempt(name if device else None, "unauthorized", 401, code=reason)
            return _unauthorized("unknown device, wrong secret, or revoked device")

        try:
            policy = device_policy(self.config.policy, device.policy, name)
        except ConfigError as exc:
            log.error("device %s has an invalid stored policy: %s", audit.safe_name(name), exc)
            audit.mint_attempt(name, "policy_error", 500, code="invalid_device_policy")
            return error(500, "invalid_device_policy", "this device's policy is invalid; the operator must fix it")
        try:
            body = parse_body(await read_body(request))
            session = merge_session(policy, body.get("session"))
            expires_after = resolve_expires_after(policy, body.get("expires_after"))
        except ClientDisconnect:
            # Nobody is left to answer; one quiet line, 499 as nginx counts a client that went away.
            audit.mint_attempt(name, "client_disconnected", 499)
            return error(499, "client_disconnected", "the client went away before sending its whole body")
        except BodyTooLarge as exc:
            audit.mint_attempt(name, "invalid_request", 413, code="body_too_large")
            return error(413, "body_too_large", str(exc), {"Connection": "close"})
        except RequestError as exc:
            audit.mint_attempt(name, "invalid_request", 400)
            return error(400, "invalid_request", str(exc))
        except PolicyViolation as exc:
            audit.mint_attempt(name, "forbidden_override", 403, field=exc.field,
                               code=None if exc.code == "forbidden_override" else exc.code)
            return error(403, exc.code, str(exc), field=exc.field)

        decision = await run_in_threadpool(self.registry.take_mint, name, self.clock(),
                                           policy.mint_rate_per_min, policy.daily_budget)
        if not decision.allowed:
            audit.mint_attempt(name, "limited", 429, code=decision.code)
            message = ("mint rate limit reached" if decision.code == "rate_limited"
                       else "daily mint budget used up (resets at 00:00 UTC)")
            return error(429, decision.code, f"{message}; retry after {decision.retry_after_s} s",
                         {"Retry-After": str(decision.retry_after_s)}, retry_after_s=decision.retry_after_s)

        try:
            result = await self.upstream.create_client_secret(
                {"expires_after": expires_after, "session": session})
        except UpstreamFailure as exc:
            audit.mint_attempt(name, "upstream_failed", exc.http_status, code=exc.code,
                               upstream_status=exc.upstream_status, upstream_latency_ms=exc.latency_ms,
                               attempts=exc.attempts)
            extra: dict[str, Any] = {"upstream_status": exc.upstream_status}
            if exc.upstream_code:
                extra["upstream_code"] = exc.upstream_code
            if exc.upstream_status == 401:
                log.error("the OpenAI API rejected our API key (HTTP 401): check api_key_env/api_key_file")
            return error(exc.http_status, exc.code, exc.message, **extra)

        audit.mint_attempt(name, "minted", 200, upstream_status=result.status,
                           upstream_latency_ms=result.latency_ms, attempts=result.attempts,
                           session_type=session["type"])
        data = result.data
        return JSONResponse({"value": data["value"], "expires_at": data["expires_at"],
                             "session": data["session"], "server_time": self.clock()}, headers=_NO_STORE)

    async def healthz(self, request: Request) -> JSONResponse:
        try:
            await run_in_threadpool(self.registry.ping)
        except Exception as exc:  # any DB failure means "not healthy", whatever the driver raised
            log.warning("health check: database did not answer: %s", type(exc).__name__)
            return JSONResponse({"status": "unavailable"}, status_code=503, headers=_NO_STORE)
        return JSONResponse({"status": "ok"}, headers=_NO_STORE)


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error(exc.status_code, code, f"{request.method} {request.url.path}: {exc.detail}")


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error(500, "internal_error", "internal error in the token backend; see its log")


def create_app(config: TokenServerConfig, *, api_key: str | None = None, registry: Registry | None = None,
               transport: httpx.AsyncBaseTransport | None = None,
               clock: Callable[[], float] = time.time, admin_token: bytes | None = None) -> Starlette:
    """The app for one worker; collaborators may be injected (tests), else built from `config`."""
    key = api_key if api_key is not None else resolve_api_key(config)
    admin_token = admin_token if admin_token is not None else read_admin_token(config)
    registry = registry or Registry(config.database_url, config.db_pool_size)
    up = config.upstream
    upstream = UpstreamClient(up.base_url, key, connect_timeout_s=up.connect_timeout_s, timeout_s=up.timeout_s,
                              retries=up.retries, backoff_s=up.backoff_s,
                              max_retry_after_s=up.max_retry_after_s, transport=transport)
    service = MintService(config, registry, upstream, clock)
    fleet = FleetService(config, registry, admin_token, clock, error, read_body, BodyTooLarge)   # fleet_http.py

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        yield
        await upstream.aclose()
        registry.close()

    app = Starlette(
        routes=[Route("/v1/realtime/client_secrets", service.mint, methods=["POST"]),
                Route("/healthz", service.healthz, methods=["GET"]), *fleet.routes()],
        exception_handlers={HTTPException: _http_error, Exception: _internal_error},
        lifespan=lifespan)
    app.state.service = service
    app.state.fleet = fleet
    return app


def setup_logging(level: str) -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(stream=sys.stderr, level=level.upper(),
                            format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s")
    logging.getLogger().setLevel(level.upper())
    # httpx/httpcore debug output describes requests to the upstream; keep it out of our logs.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)


def create_app_from_env() -> Starlette:
    """uvicorn factory (`--factory`): config path from $PIVOICE_TOKEN_SERVER_CONFIG."""
    config = load_config(os.environ[CONFIG_ENV])
    setup_logging(config.log_level)
    return create_app(config)
