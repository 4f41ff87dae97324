"""A token backend on 127.0.0.1 whose answers a test scripts: the fault matrix's token rows.

A real HTTP server (http.server, one thread per request) speaking the backend's wire contract
(`POST /v1/realtime/client_secrets`, Basic device:secret, a 200 with an `ek_` value, `expires_at`
and `server_time`, or an error object), so the daemon's real `TokenProvider` and urllib transport
are what is tested. The full backend (tests/support/tokenserver.py) needs PostgreSQL and a dev
server; these rows need only its answers, on demand: down, slow, 401, 429 + Retry-After, 5xx,
a clock that is off.

    with TokenBackendPeer(secret="s3cret") as backend:
        backend.answer(503, times=1)         # the next request fails, then normal answers
"""

from __future__ import annotations

import base64
import email.utils
import json
import secrets
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEVICE_ID = "kitchen"
MAX_DELAY_S = 5.0


class TokenBackendPeer:
    """`answer()`/`secret`/`skew_s`/`delay_s`/`stop()`/`start()`: test thread; handlers: server threads."""

    def __init__(self, *, secret: str = "device-secret-1", lifetime_s: float = 60.0, port: int = 0):
        self.secret = secret
        self.lifetime_s = lifetime_s
        self.skew_s = 0.0          # the backend's wall clock minus ours
        self.delay_s = 0.0         # answer this late (bounded)
        self.requests: list[dict] = []   # {"at_s", "authorized", "status"}
        self._plan: list[tuple[int, dict, dict]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.port = port or _free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def answer(self, status: int, *, times: int = 1, code: str | None = None, headers: dict | None = None,
               raw: bytes | None = None) -> None:
        """The next `times` requests get `status` with an error body (`code`), or the bytes `raw`,
        and `headers`."""
        body = raw if raw is not None else \
            {"error": {"message": f"scripted {status}", "code": code}} if code else {"error": {"message": "x"}}
        with self._lock:
            self._plan += [(status, body, headers or {})] * times

    def clear(self) -> None:
        """Drop the answers still planned: normal answers from now on."""
        with self._lock:
            self._plan.clear()

    def start(self) -> "TokenBackendPeer":
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:   # noqa: N802 - http.server's name
                peer._handle(self)

            def log_message(self, *args) -> None:
                pass

            def date_time_string(self, timestamp=None) -> str:   # the Date header, on the backend's clock
                return email.utils.formatdate(time.time() + peer.skew_s, usegmt=True)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="token-backend-peer", daemon=True).start()
        return self

    def stop(self) -> None:
        """The backend goes down: the port refuses connections."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        h.rfile.read(int(h.headers.get("Content-Length") or 0))
        time.sleep(min(self.delay_s, MAX_DELAY_S))
        expected = "Basic " + base64.b64encode(f"{DEVICE_ID}:{self.secret}".encode()).decode()
        authorized = h.headers.get("Authorization") == expected
        with self._lock:
            planned = self._plan.pop(0) if self._plan else None
        now_wall = time.time() + self.skew_s
        if not authorized:
            status, body, headers = 401, {"error": {"message": "unknown device or wrong secret",
                                                    "code": "unauthorized"}}, {}
        elif planned is not None:
            status, body, headers = planned
        else:
            status, headers = 200, {}
            body = {"value": "ek_" + secrets.token_hex(12), "expires_at": int(now_wall + self.lifetime_s),
                    "server_time": int(now_wall), "session": {"type": "realtime", "model": "gpt-realtime"}}
        self.requests.append({"at_s": time.monotonic(), "authorized": authorized, "status": status})
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        try:
            h.send_response(status)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                h.send_header(name, value)
            h.end_headers()
            h.wfile.write(data)
        except OSError:   # the client gave up (its timeout) while we were slow
            pass

    def __enter__(self) -> "TokenBackendPeer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
