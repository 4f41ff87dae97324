"""Fakes for the token client's collaborators: a settable clock and a scripted HttpTransport."""

from __future__ import annotations

import json
import threading

from pivoice.tokens import HttpResponse, Secret, TokenError

DEVICE_ID = "kitchen"
DEVICE_SECRET = "dsec-9f1c2b7a44e0d5c3b1a2"
SESSION = {"type": "realtime", "model": "gpt-realtime", "instructions": "Be brief."}
WALL_NOW_S = 1_900_000_000.0  # the "server" wall clock; the fake monotonic clock is unrelated


class FakeClock:
    def __init__(self, start_s: float = 1000.0):
        self.now_s = start_s

    def __call__(self) -> float:
        return self.now_s

    def advance(self, dt_s: float) -> None:
        self.now_s += dt_s


def mint(value: str = "ek_test0001", lifetime_s: float = 60.0, *, server_time: float | None = WALL_NOW_S,
         date_header: str | None = None) -> HttpResponse:
    doc = {"value": value, "expires_at": int((WALL_NOW_S if server_time is None else server_time) + lifetime_s), "session": dict(SESSION)}
    if server_time is not None:
        doc["server_time"] = server_time
    headers = {"content-type": "application/json"}
    if date_header is not None:
        headers["date"] = date_header
    return HttpResponse(200, headers, json.dumps(doc).encode())


def error(status: int, code: str, message: str = "nope", *, retry_after: str | None = None,
          **extra) -> HttpResponse:
    headers = {"content-type": "application/json"}
    if retry_after is not None:
        headers["retry-after"] = retry_after
    body = json.dumps({"error": {"code": code, "message": message, **extra}}).encode()
    return HttpResponse(status, headers, body)


class ScriptedTransport:
    """Answers each post_json with the next scripted item: an HttpResponse, or a TokenError to raise.
    When the script runs out it repeats the last item. `gate`, if set, blocks every call until it is set
    (to hold a fetch in flight)."""

    def __init__(self, *items, clock: FakeClock | None = None, latency_s: float = 0.0):
        self.items = list(items)
        self.calls: list[dict] = []
        self.clock = clock
        self.latency_s = latency_s
        self.gate: threading.Event | None = None
        self.entered = threading.Event()

    def push(self, *items) -> None:
        self.items.extend(items)

    def post_json(self, url, headers, body, timeout_s):
        self.calls.append({"url": url, "headers": headers, "body": json.loads(body), "timeout_s": timeout_s})
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(10)
        if self.clock is not None:
            self.clock.advance(self.latency_s)
        item = self.items.pop(0) if len(self.items) > 1 else self.items[0]
        if isinstance(item, BaseException):
            raise item
        return item


def unreachable() -> TokenError:
    return TokenError("backend_unreachable", "backend 127.0.0.1:9 unreachable (connection refused)")


def secret() -> Secret:
    return Secret(DEVICE_SECRET)
