"""Ephemeral-key client: keeps a fresh `ek_` client secret from the token backend on hand.

A button press calls `request()`, which answers at once from the cache; a background refresh
thread fetches ahead of expiry, backs off on failure and reports a human status line. Given the
secret as a `SecretFile`, a 401 makes it re-read that file before the next attempt, so a secret
rotated on the backend and written to the file works without restarting the daemon.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from typing import Callable

from pivoice import errors
from pivoice.osthread import name_this_thread
from pivoice.tokens.keys import EphemeralKey, Secret, SecretFileError, TokenError
from pivoice.tokens.secret_file import SecretFile
from pivoice.tokens.transport import ENDPOINT_PATH  # noqa: F401  (doctor imports it from here)
from pivoice.tokens.transport import HttpTransport, UrllibTransport, endpoint_url, host_label
from pivoice.tokens.wire import parse_mint_response, request_headers

log = logging.getLogger(__name__)

MIN_REFRESH_INTERVAL_S = 2.0     # scheduled refreshes never come faster than this
REFRESH_JITTER_FRACTION = 0.10   # of the key's lifetime, so a fleet does not refresh in step
BACKOFF_JITTER_FRACTION = 0.20   # backoff waits are shortened by up to this much
# These need an operator (wrong secret, revoked device, bad config, wrong CA): retry slowly. One list
# for the daemon: errors.py.
OPERATOR_CODES = errors.OPERATOR_CODES

Waiter = tuple[Callable[[EphemeralKey], None], Callable[[TokenError], None]]


class TokenProvider:
    """Fetches and caches ephemeral keys.

    Thread contract: cached()/request()/status() from any thread; callbacks (on_ready, on_failed,
    on_status) run on the provider's refresh thread, except on_ready for a cached key, which runs
    in request()'s caller. Without start(), a caller may drive `tick()` itself (tests, one thread);
    requests then wait for the next tick(). stop() answers requests still waiting with code "stopped".
    """

    def __init__(self, backend_url: str, device_id: str, secret: Secret | SecretFile, session_config: dict, *,
                 transport: HttpTransport | None = None, timeout_s: float = 5.0, refresh_margin_s: float = 20.0,
                 min_valid_s: float = 5.0, backoff_initial_s: float = 1.0, backoff_max_s: float = 60.0,
                 ca_bundle: str | None = None, allow_insecure_http: bool = False,
                 clock: Callable[[], float] = time.monotonic, rng: Callable[[], float] = random.random,
                 on_status: Callable[[str], None] | None = None):
        self._url = endpoint_url(backend_url, allow_insecure_http)
        self._where = f"backend {host_label(self._url)}"
        if not device_id or ":" in device_id or not device_id.isprintable():
            raise ValueError(f"device id {device_id!r}: must be non-empty, printable and without ':'")
        self._secret_file = secret if isinstance(secret, SecretFile) else None
        if self._secret_file is not None:
            secret = self._secret_file.secret
        if not isinstance(secret, Secret) or not secret:
            raise ValueError("device secret: must be a non-empty Secret")
        if not isinstance(session_config, dict):
            raise ValueError("session config: must be a mapping")
        if transport is not None and ca_bundle is not None:
            raise ValueError("ca_bundle applies to the built-in transport; configure the injected one instead")
        try:
            self._body = json.dumps({"session": session_config}).encode()
        except (TypeError, ValueError) as exc:
            raise ValueError(f"session config: not JSON-serialisable ({exc})") from None
        if not (timeout_s > 0 and 0 < backoff_initial_s <= backoff_max_s and min_valid_s >= 0
                and refresh_margin_s >= 0):
            raise ValueError("token provider: timeout_s, backoff_*_s, min_valid_s, refresh_margin_s out of range")
        self._device_id = device_id
        self._secret = secret
        self._headers = request_headers(device_id, secret)
        self._transport = transport if transport is not None else UrllibTransport(ca_bundle)
        self._timeout_s = timeout_s
        self._refresh_margin_s = refresh_margin_s
        self._min_valid_s = min_valid_s
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._clock = clock
        self._rng = rng
        self._on_status = on_status

        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._key: EphemeralKey | None = None
        self._waiters: list[Waiter] = []
        self._state = "fetching"  # a fetch is due or running
        self._last_error: TokenError | None = None
        self._failures = 0
        self._next_attempt_mono_s = clock()
        self._not_before_mono_s = float("-inf")  # server Retry-After floor, even for requests

    # ---- any thread ----
    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("token provider already started")
        # A fresh Event per run: a thread left finishing a slow fetch after stop() still sees its own stop.
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(self._stopping,), name="token-refresh", daemon=True)
        self._thread.start()

    def stop(self, join_timeout_s: float | None = None) -> None:
        """Stop the refresh thread. Immediate unless a fetch is in flight (then at most timeout_s)."""
        self._stopping.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(self._timeout_s + 1.0 if join_timeout_s is None else join_timeout_s)
            if thread.is_alive():
                log.warning("token: refresh thread still finishing a fetch after stop(); it will exit by itself")

    def cached(self) -> EphemeralKey | None:
        key = self._key
        if key is not None and key.valid_for_s(self._clock()) >= self._min_valid_s:
            return key
        return None

    def request(self, on_ready: Callable[[EphemeralKey], None], on_failed: Callable[[TokenError], None]) -> None:
        key = self.cached()
        if key is not None:
            on_ready(key)
            return
        with self._lock:
            self._waiters.append((on_ready, on_failed))
        self._wake.set()

    def status(self) -> dict:
        now = self._clock()
        with self._lock:
            key, state, err = self._key, self._state, self._last_error
            next_in = None if state == "fetching" else max(0.0, self._next_attempt_mono_s - now)
            failures = self._failures
        valid = key.valid_for_s(now) if key is not None else None
        return {"state": state, "last_error": err.message if err else None,
                "key_valid_for_s": valid if valid is not None and valid > 0 else None,
                "next_refresh_in_s": next_in, "consecutive_failures": failures}

    # ---- refresh thread (or a single test thread driving tick) ----
    def tick(self) -> float:
        """Do whatever is due now: answer requests blocked by Retry-After, fetch if scheduled or
        requested. Returns seconds until the next scheduled fetch."""
        now = self._clock()
        blocked: list[Waiter] = []
        with self._lock:
            pending = bool(self._waiters)
            if pending and now < self._not_before_mono_s and self._last_error is not None:
                blocked, self._waiters = self._waiters, []
                pending = False
            due = now >= self._next_attempt_mono_s or pending
            err = self._last_error
            remaining_s = self._not_before_mono_s - now
        if blocked and err is not None:
            refused = TokenError(err.code, f"{err.message}; backend asked to wait {remaining_s:.0f} s more",
                                 http_status=err.http_status, retry_after_s=remaining_s)
            self._answer(blocked, None, refused)
        if due and not self._stopping.is_set():
            self._attempt()
        with self._lock:
            return max(0.0, self._next_attempt_mono_s - self._clock())

    def _run(self, stopping: threading.Event) -> None:
        name_this_thread("tokens")
        while not stopping.is_set():
            self._wake.clear()
            wait_s = self.tick()
            if stopping.is_set():
                break
            self._wake.wait(wait_s)
        with self._lock:
            leftover, self._waiters = self._waiters, []
        self._answer(leftover, None, TokenError("stopped", "token provider stopped"))

    def _attempt(self) -> None:
        with self._lock:
            self._state = "fetching"
            after_401 = self._last_error is not None and self._last_error.code == "unauthorized"
        if after_401 and self._secret_file is not None:
            self._reread_secret(self._secret_file)
        self._emit(f"token: fetching key from {self._where}", logging.DEBUG)
        sent_mono_s = self._clock()
        try:
            response = self._transport.post_json(self._url, dict(self._headers), self._body, self._timeout_s)
            key = parse_mint_response(response, sent_mono_s=sent_mono_s, where=self._where,
                                      device_id=self._device_id, secret=self._secret)
        except TokenError as exc:
            self._failed(exc)
        except Exception as exc:  # a transport bug must not kill the refresh thread
            self._failed(TokenError("internal_error", f"{self._where}: fetch failed ({type(exc).__name__})"))
        else:
            self._succeeded(key)

    def _reread_secret(self, source: SecretFile) -> None:
        """After a 401: the operator may have rotated the device and written the new secret."""
        try:
            secret = source.changed()
        except SecretFileError as exc:
            self._emit(f"token: {exc}; keeping the secret read before", logging.WARNING)
            return
        if secret is None:
            self._emit(f"token: {source.path} unchanged since the 401", logging.DEBUG)
            return
        self._secret = secret
        self._headers = request_headers(self._device_id, secret)
        self._emit(f"token: device secret re-read from {source.path} (changed since the 401)", logging.INFO)

    def _succeeded(self, key: EphemeralKey) -> None:
        now = self._clock()
        lifetime_s = key.valid_for_s(now)
        margin_s = min(self._refresh_margin_s, lifetime_s / 2)  # short TTLs refresh at half-life
        jitter_s = self._rng() * REFRESH_JITTER_FRACTION * lifetime_s
        refresh_in_s = max(MIN_REFRESH_INTERVAL_S, lifetime_s - margin_s - jitter_s)
        with self._lock:
            recovered = self._failures > 0 or self._key is None
            self._key = key
            self._state, self._last_error, self._failures = "ok", None, 0
            self._next_attempt_mono_s = now + refresh_in_s
            self._not_before_mono_s = float("-inf")
            waiters, self._waiters = self._waiters, []
        self._emit(f"token: ok, key valid {lifetime_s:.0f} s", logging.INFO if recovered else logging.DEBUG)
        self._answer(waiters, key, None)

    def _failed(self, err: TokenError) -> None:
        now = self._clock()
        if err.code == "unauthorized" and self._secret_file is not None:
            err = TokenError(err.code, f"{err.message}; a new secret written to {self._secret_file.path} is used "
                                       "from the next attempt", http_status=err.http_status,
                             retry_after_s=err.retry_after_s)
        with self._lock:
            self._failures += 1
            if err.code in OPERATOR_CODES:
                base_s = self._backoff_max_s
            else:
                base_s = min(self._backoff_max_s, self._backoff_initial_s * 2.0 ** (self._failures - 1))
            delay_s = base_s * (1.0 - BACKOFF_JITTER_FRACTION * self._rng())
            if err.retry_after_s is not None:
                delay_s = max(delay_s, err.retry_after_s)
                self._not_before_mono_s = now + err.retry_after_s
            else:
                self._not_before_mono_s = float("-inf")
            self._next_attempt_mono_s = now + delay_s
            self._state = "failed" if err.code in OPERATOR_CODES else "backing_off"
            self._last_error = err
            key = self._key
            waiters, self._waiters = self._waiters, []
        line = f"token: {err.message}; retrying in {delay_s:.0f} s"
        if key is not None and key.valid_for_s(now) > 0:
            line += f" (current key still valid {key.valid_for_s(now):.0f} s)"
        self._emit(line, logging.WARNING)
        self._answer(waiters, None, err)

    def _emit(self, line: str, level: int) -> None:
        log.log(level, "%s", line)
        if self._on_status is not None:
            try:
                self._on_status(line)
            except Exception as exc:
                log.error("token: on_status callback raised %s", type(exc).__name__)

    def _answer(self, waiters: list[Waiter], key: EphemeralKey | None, err: TokenError | None) -> None:
        for on_ready, on_failed in waiters:
            try:
                if key is not None:
                    on_ready(key)
                else:
                    on_failed(err)
            except Exception as exc:
                log.error("token: request callback raised %s", type(exc).__name__)
