"""The one upstream call: `POST {base}/v1/realtime/client_secrets` with the real API key.

Retries are bounded: `retries` extra attempts on 429, 5xx and connection errors, with
exponential backoff; an upstream Retry-After is honoured when it is at most
`max_retry_after_s` (a longer one is not worth holding a device's request for). Read
timeouts are not retried: the device already waited the full `timeout_s` and can retry.

Upstream error *messages* are never passed on or logged: OpenAI echoes a masked form of
a wrong API key in its 401 message. Only the status and the error `code` are kept.

Called from the ASGI event loop of one worker; the httpx transport is injectable.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import httpx

PATH = "/v1/realtime/client_secrets"


@dataclass
class UpstreamResult:
    data: dict            # {"value", "expires_at", "session", ...} as upstream sent it
    status: int
    latency_ms: float     # all attempts, backoff included
    attempts: int


class UpstreamFailure(Exception):
    """Upstream could not mint; `http_status`/`code` are what the device gets."""

    def __init__(self, http_status: int, code: str, message: str, *, upstream_status: int | None,
                 upstream_code: str | None = None, latency_ms: float = 0.0, attempts: int = 0):
        super().__init__(message)
        self.http_status = http_status
        self.code = code
        self.message = message
        self.upstream_status = upstream_status
        self.upstream_code = upstream_code
        self.latency_ms = latency_ms
        self.attempts = attempts


def _error_code(response: httpx.Response) -> str | None:
    try:
        code = response.json().get("error", {}).get("code")
    except (ValueError, AttributeError):
        return None
    return code if isinstance(code, str) and len(code) <= 100 else None


def _retry_after_s(response: httpx.Response) -> float | None:
    try:
        value = float(response.headers.get("retry-after", ""))
    except ValueError:
        return None
    return value if value >= 0 else None


def _valid_secret(data: Any) -> bool:
    return (isinstance(data, dict) and isinstance(data.get("value"), str) and data["value"]
            and isinstance(data.get("expires_at"), int) and not isinstance(data["expires_at"], bool)
            and isinstance(data.get("session"), dict))


class UpstreamClient:
    def __init__(self, base_url: str, api_key: str, *, connect_timeout_s: float = 3.0,
                 timeout_s: float = 10.0, retries: int = 2, backoff_s: float = 0.2,
                 max_retry_after_s: float = 2.0, transport: httpx.AsyncBaseTransport | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic, max_connections: int = 50):
        self._url = base_url.rstrip("/") + PATH
        self._retries = retries
        self._backoff_s = backoff_s
        self._max_retry_after_s = max_retry_after_s
        self._sleep = sleep
        self._clock = clock
        self._client = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
            limits=httpx.Limits(max_connections=max_connections),
            headers={"Authorization": f"Bearer {api_key}"},
            follow_redirects=False)

    async def aclose(self) -> None:
        await self._client.aclose()

    def _backoff(self, attempt: int, response: httpx.Response | None) -> float | None:
        """Seconds to wait before the next attempt, or None to give up now."""
        if attempt > self._retries:
            return None
        retry_after = _retry_after_s(response) if response is not None else None
        if retry_after is not None:
            return retry_after if retry_after <= self._max_retry_after_s else None
        # Full jitter keeps a fleet's retries from arriving in lock step.
        return random.uniform(0.5, 1.0) * self._backoff_s * (2 ** (attempt - 1))

    async def create_client_secret(self, body: dict) -> UpstreamResult:
        start = self._clock()
        attempt = 0
        while True:
            attempt += 1
            elapsed = lambda: (self._clock() - start) * 1000.0  # noqa: E731
            try:
                response = await self._client.post(self._url, json=body)
            except httpx.TimeoutException as exc:
                what = "connecting to" if isinstance(exc, httpx.ConnectTimeout) else "waiting for"
                raise UpstreamFailure(504, "upstream_timeout", f"timed out {what} the OpenAI API",
                                      upstream_status=None, latency_ms=elapsed(), attempts=attempt) from None
            except httpx.TransportError as exc:
                wait = self._backoff(attempt, None) if isinstance(exc, httpx.ConnectError) else None
                if wait is None:
                    raise UpstreamFailure(503, "upstream_unavailable",
                                          f"cannot reach the OpenAI API ({type(exc).__name__})",
                                          upstream_status=None, latency_ms=elapsed(),
                                          attempts=attempt) from None
                await self._sleep(wait)
                continue

            status = response.status_code
            if status == 200:
                try:
                    data = response.json()
                except ValueError:
                    data = None
                if not _valid_secret(data):
                    raise UpstreamFailure(502, "upstream_error", "the OpenAI API sent a malformed client secret",
                                          upstream_status=status, latency_ms=elapsed(), attempts=attempt)
                return UpstreamResult(data, status, elapsed(), attempt)

            retryable = status == 429 or status >= 500
            wait = self._backoff(attempt, response) if retryable else None
            if wait is not None:
                await response.aclose()
                await self._sleep(wait)
                continue
            code = _error_code(response)
            if status == 503:
                raise UpstreamFailure(503, "upstream_unavailable", "the OpenAI API is unavailable (HTTP 503)",
                                      upstream_status=status, upstream_code=code, latency_ms=elapsed(),
                                      attempts=attempt)
            raise UpstreamFailure(502, "upstream_error", f"the OpenAI API refused the request (HTTP {status})",
                                  upstream_status=status, upstream_code=code, latency_ms=elapsed(),
                                  attempts=attempt)
