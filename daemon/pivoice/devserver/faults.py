"""Dev-only fault injection for `POST /v1/realtime/client_secrets` (`POST /_dev/faults`).

Lets the token backend's fault tests make "upstream" fail or stall on a real
HTTP server instead of a stub. Used from the ASGI event loop only.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_DELAY_S = 60.0
MAX_COUNT = 10_000

_ERRORS = {
    429: ("Rate limit reached for requests. Please try again later.", "requests", "rate_limit_exceeded"),
    500: ("The server had an error while processing your request. Sorry about that!", "server_error", None),
    502: ("Bad gateway.", "server_error", None),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None),
}


@dataclass
class Fault:
    status: int | None  # None: answer normally after the delay
    count: int
    delay_s: float


class FaultPlan:
    def __init__(self) -> None:
        self.client_secrets: Fault | None = None

    def configure(self, body: object) -> str | None:
        """Apply `{"client_secrets": {"status", "count", "delay_s"}}`; returns an error message or None."""
        if not isinstance(body, dict) or set(body) - {"client_secrets"}:
            return "body must be {\"client_secrets\": {...}} (or {\"client_secrets\": null} to clear)"
        spec = body.get("client_secrets")
        if spec is None:
            self.client_secrets = None
            return None
        if not isinstance(spec, dict) or set(spec) - {"status", "count", "delay_s"}:
            return "client_secrets takes only status, count, delay_s"
        status, count, delay_s = spec.get("status"), spec.get("count", 1), spec.get("delay_s", 0)
        if status is not None and (not isinstance(status, int) or not 400 <= status <= 599):
            return "client_secrets.status must be an HTTP error status 400..599 or null"
        if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= MAX_COUNT:
            return f"client_secrets.count must be an integer 0..{MAX_COUNT}"
        if not isinstance(delay_s, (int, float)) or isinstance(delay_s, bool) or not 0 <= delay_s <= MAX_DELAY_S:
            return f"client_secrets.delay_s must be a number 0..{MAX_DELAY_S}"
        self.client_secrets = Fault(status, count, float(delay_s))
        return None

    def take_client_secrets(self) -> Fault | None:
        """The fault for this call (consuming one of `count`), or None."""
        fault = self.client_secrets
        if fault is None or fault.count <= 0:
            return None
        fault.count -= 1
        return fault


def error_body(status: int) -> dict:
    message, type_, code = _ERRORS.get(status, (f"Injected dev-server fault (HTTP {status}).", "invalid_request_error", None))
    return {"error": {"message": message, "type": type_, "code": code, "param": None}}
