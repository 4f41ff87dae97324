"""Check 6: the Realtime endpoint. With the minted key: TLS and the WebSocket upgrade, wait for
`session.created`, then a clean close. Same URL and headers as the daemon's connector.

Main thread.
"""

from __future__ import annotations

import json
import socket
import ssl
import time
from typing import Callable

from pivoice.doctor.report import FAIL, OK, Context, Result

URL_REMEDY = "wrong realtime.url? The OpenAI endpoint is wss://api.openai.com/v1/realtime"


def _status_remedy(status: int) -> str:
    if status == 401:
        return ("the endpoint refused the minted key: realtime.url must be the service the token backend mints for "
                "(its openai_base_url), and the key must not have expired")
    if status in (400, 404):
        return f"{URL_REMEDY}; check session.model too (sent as ?model=)"
    if status == 429:
        return "rate limited by the Realtime API: wait and retry; check the account's limits"
    return "the Realtime service failed: retry later; https://status.openai.com for the OpenAI API"


class RealtimeCheck:
    """`create_connection` is websocket-client's (tests may pass a wrapper); `timeout_s` None uses
    realtime.connect_timeout_s."""

    name = "realtime"

    def __init__(self, *, create_connection: Callable | None = None, timeout_s: float | None = None,
                 monotonic: Callable[[], float] = time.monotonic):
        self._create_connection = create_connection
        self._timeout_s = timeout_s
        self._monotonic = monotonic

    def run(self, ctx: Context) -> Result:
        import websocket
        from pivoice.realtime.session import error_detail, session_url
        from pivoice.tls import websocket_options
        url = session_url(ctx.cfg.realtime.url, ctx.cfg.session.payload().get("model"))
        shown = url.split("?", 1)[0]
        timeout_s = self._timeout_s or ctx.cfg.realtime.connect_timeout_s
        connect = self._create_connection or websocket.create_connection
        data = {"url": url}
        started_s = self._monotonic()
        try:
            ws = connect(url, header=[f"Authorization: Bearer {ctx.key.value.reveal()}"], timeout=timeout_s,
                         **websocket_options(url))   # the daemon's trust, so the check means what it says
        except websocket.WebSocketBadStatusException as exc:
            data["http_status"] = exc.status_code
            return Result(self.name, FAIL, f"{shown}: WebSocket upgrade refused with HTTP {exc.status_code}"
                                           f"{error_detail(exc.resp_body)}", _status_remedy(exc.status_code), data)
        except ssl.SSLCertVerificationError as exc:
            return Result(self.name, FAIL, f"{shown}: TLS certificate rejected ({exc.verify_message})",
                          "check the system clock and CA certificates (`sudo apt install ca-certificates`)", data)
        except (websocket.WebSocketTimeoutException, socket.timeout, TimeoutError):
            return Result(self.name, FAIL, f"{shown}: no WebSocket upgrade within {timeout_s:g} s", URL_REMEDY, data)
        except (websocket.WebSocketException, OSError) as exc:
            return Result(self.name, FAIL, f"{shown}: cannot connect ({exc})", URL_REMEDY, data)
        connected_s = self._monotonic()
        try:
            event = self._first_event(ws, started_s + timeout_s)
        finally:
            try:
                ws.close(status=1000, timeout=1)
            except Exception:   # the server may already have closed it; nothing left to tidy up
                pass
        data.update(connect_ms=round(1000 * (connected_s - started_s), 1),
                    first_event_ms=round(1000 * (self._monotonic() - started_s), 1))
        if isinstance(event, str):
            return Result(self.name, FAIL, f"{shown}: upgraded, then {event}", _status_remedy(0), data)
        if event.get("type") == "error":
            err = event.get("error") or {}
            data["code"] = err.get("code")
            return Result(self.name, FAIL, f"{shown}: the server sent error {err.get('code') or '?'}: "
                                           f"{str(err.get('message') or '')[:160]}",
                          "check the session: block of the config against the API docs", data)
        session = event.get("session") or {}
        data["model"] = session.get("model")
        return Result(self.name, OK, f"{shown}: WebSocket open in {data['connect_ms']:.0f} ms, session.created "
                                     f"(model {session.get('model') or '?'}) in {data['first_event_ms']:.0f} ms, "
                                     "closed cleanly", data=data)

    def _first_event(self, ws, deadline_s: float) -> dict | str:
        """session.created or error as a dict; else a string saying what happened instead."""
        import websocket
        while True:
            remaining_s = deadline_s - self._monotonic()
            if remaining_s <= 0:
                return "no session.created before the timeout"
            ws.settimeout(remaining_s)
            try:
                raw = ws.recv()
            except websocket.WebSocketTimeoutException:
                return "no session.created before the timeout"
            except (websocket.WebSocketException, OSError) as exc:
                return f"the connection closed before session.created ({exc or type(exc).__name__})"
            try:
                event = json.loads(raw)
            except (ValueError, TypeError):
                continue
            if isinstance(event, dict) and event.get("type") in ("session.created", "error"):
                return event
