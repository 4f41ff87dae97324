"""Fleet routes: `POST /v1/devices/status` (devices) and `GET /admin/devices`, `GET /admin/fleet` (operators).

Heartbeat order of checks, as for a mint: device auth (401; revoked = 401) -> body size (413) ->
body shape (400, naming the field) -> rate limit (429 + Retry-After) -> stored (200).

The admin routes exist only when `admin_token_file` is set (else 404). The token is accepted as
`Authorization: Bearer <token>`, or as the password of HTTP Basic (any user name) so a browser can
open the page: a 401 on /admin/fleet asks the browser for Basic credentials. The token is compared
as SHA-256 digests with `hmac.compare_digest` (same length, constant time) and never logged.

Handlers run on a worker's event loop; DB calls go to the thread pool.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from typing import Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from pivoice.tokenserver import audit
from pivoice.tokenserver.auth import check_device_name, parse_basic_auth, verify_secret
from pivoice.tokenserver.config import TokenServerConfig
from pivoice.tokenserver.fleet import MAX_STATUS_BYTES, STATUS_PATH, device_row, parse_status
from pivoice.tokenserver.fleet_page import render_fleet_page
from pivoice.tokenserver.fleet_store import FleetStore
from pivoice.tokenserver.limits import utc_day
from pivoice.tokenserver.policy import RequestError

log = logging.getLogger(__name__)
_NO_STORE = {"Cache-Control": "no-store"}
# The page has no script of its own: forbid any, so an unescaped string could not run one either.
_PAGE_HEADERS = {**_NO_STORE, "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
                 "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


def _digest(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()


def admin_token_from(header: str | None) -> bytes | None:
    """The presented admin token: a Bearer token or a Basic password; None if absent or malformed."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip().encode("utf-8", "replace")
    basic = parse_basic_auth(header)
    return basic[1].encode("utf-8", "replace") if basic and basic[1] else None


class FleetService:
    def __init__(self, config: TokenServerConfig, registry, admin_token: bytes | None, clock: Callable[[], float],
                 error: Callable[..., JSONResponse], read_body: Callable, too_large: type[Exception]):
        """`error`, `read_body` (capped read) and `too_large` (its exception) are the mint's own (app.py)."""
        self.config = config.fleet
        self.registry = registry
        self.store = FleetStore(registry)
        self._admin_digest = _digest(admin_token) if admin_token else None
        self.clock = clock
        self._error = error
        self._read_body = read_body
        self._too_large = too_large

    def routes(self) -> list[Route]:
        routes = [Route(STATUS_PATH, self.status, methods=["POST"])]
        if self._admin_digest is not None:
            routes += [Route("/admin/devices", self.admin_devices, methods=["GET"]),
                       Route("/admin/fleet", self.admin_fleet, methods=["GET"])]
        return routes

    # ---- devices -----------------------------------------------------------------------------
    async def status(self, request: Request) -> JSONResponse:
        creds = parse_basic_auth(request.headers.get("authorization"))
        if creds is None:
            return self._unauthorized_device("HTTP Basic credentials (device id and secret) are required")
        name, secret = creds
        device = await run_in_threadpool(self.registry.get_device, name) if check_device_name(name) is None else None
        if not verify_secret(secret, device.secret_hash if device else None) or device.revoked:
            log.info("status report refused: device=%s unauthorized", audit.safe_name(name if device else None))
            return self._unauthorized_device("unknown device, wrong secret, or revoked device")
        try:
            report = parse_status(await self._read_body(request, MAX_STATUS_BYTES))
        except ClientDisconnect:
            return self._error(499, "client_disconnected", "the client went away before sending its whole body")
        except self._too_large as exc:
            return self._error(413, "body_too_large", str(exc), {"Connection": "close"})
        except RequestError as exc:
            log.info("status report refused: device=%s invalid: %s", audit.safe_name(name), exc)
            return self._error(400, "invalid_request", str(exc))
        now_s = self.clock()
        decision = await run_in_threadpool(self.store.record, name, now_s, report,
                                           self.config.status_min_interval_s, self.config.status_burst)
        if not decision.stored:
            return self._error(429, "rate_limited", f"status reports too frequent; retry after "
                               f"{decision.retry_after_s} s", {"Retry-After": str(decision.retry_after_s)},
                               retry_after_s=decision.retry_after_s)
        log.debug("status report stored: device=%s", audit.safe_name(name))
        return JSONResponse({"stored": True, "server_time": now_s,
                             "min_interval_s": self.config.status_min_interval_s}, headers=_NO_STORE)

    def _unauthorized_device(self, message: str) -> JSONResponse:
        return self._error(401, "unauthorized", message, {"WWW-Authenticate": 'Basic realm="pivoice"'})

    # ---- operators ---------------------------------------------------------------------------
    def _admin_ok(self, request: Request) -> bool:
        presented = admin_token_from(request.headers.get("authorization"))
        return presented is not None and hmac.compare_digest(_digest(presented), self._admin_digest)

    def rows(self, now_s: float) -> list[dict]:
        """Every device with its health and today's usage (also what `devices list --json` prints)."""
        return fleet_rows(self.registry, self.store, now_s, self.config.default_status_interval_s)

    async def admin_devices(self, request: Request) -> Response:
        if not self._admin_ok(request):
            return self._error(401, "unauthorized", "admin token required (Authorization: Bearer <token>)",
                               {"WWW-Authenticate": 'Bearer realm="pivoice-admin"'})
        now_s = self.clock()
        rows = await run_in_threadpool(self.rows, now_s)
        return JSONResponse({"server_time": now_s, "day": utc_day(now_s), "devices": rows}, headers=_NO_STORE)

    async def admin_fleet(self, request: Request) -> Response:
        if not self._admin_ok(request):
            # Basic: the browser prompts; any user name, the admin token as the password.
            return HTMLResponse("<!doctype html><title>401</title><p>Admin token required.</p>", status_code=401,
                                headers={**_PAGE_HEADERS, "WWW-Authenticate": 'Basic realm="pivoice fleet"'})
        now_s = self.clock()
        rows = await run_in_threadpool(self.rows, now_s)
        return HTMLResponse(render_fleet_page(rows, now_s), headers=_PAGE_HEADERS)


def fleet_rows(registry, store: FleetStore, now_s: float, default_interval_s: float) -> list[dict]:
    day = utc_day(now_s)
    statuses, usage = store.statuses(), store.usage(day)
    rows = []
    for device in registry.list_devices():
        counts = registry.mint_counts(device.name)
        mints = counts[1] if counts and counts[0] == day else 0
        rows.append(device_row(device, mints, statuses.get(device.name, (None, None)), usage.get(device.name),
                               now_s, default_interval_s))
    return rows


def dumps_rows(rows: list[dict], now_s: float) -> str:
    return json.dumps({"server_time": now_s, "day": utc_day(now_s), "devices": rows}, indent=2, sort_keys=True)
