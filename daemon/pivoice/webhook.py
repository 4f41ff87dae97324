"""POST JSON records to one URL from a background thread: bounded queue, retries, bounded stop.

`submit()` never blocks: a full queue drops its OLDEST record (counted, one WARNING per backlog).
The worker thread (`pv-<thread_name>`) retries connection errors, timeouts and 5xx after each of
`retry_delays_s`, then drops the record with a WARNING naming the HTTP status (or the error);
other statuses are not retried. The bearer token is read from its file at every send, so it can
be rotated, and is never logged; nor is the URL's query. `close()` cuts off an in-flight POST
and returns within `timeout_s`.

`submit()`, `stats()` and `close()` may be called from any thread; the worker is the only
thread that talks to the network.
"""

from __future__ import annotations

import collections
import http.client
import json
import logging
import socket
import threading
from pathlib import Path
from urllib.parse import urlsplit

from pivoice.credentials import CredentialError, read_one_line
from pivoice.osthread import name_this_thread
from pivoice.loopback import url_problem
from pivoice.tls import client_context

log = logging.getLogger(__name__)

RETRY_DELAYS_S = (0.5, 1.0, 2.0)
MAX_RESPONSE_BYTES = 64 * 1024  # an answer is read (and ignored) only this far


class _Stopped(Exception):
    pass


class WebhookSender:
    def __init__(self, url: str, *, timeout_s: float = 5.0, bearer_token_file: Path | None = None,
                 max_queue: int = 100, retry_delays_s: tuple[float, ...] = RETRY_DELAYS_S,
                 thread_name: str = "webhook", what: str = "webhook") -> None:
        problem = url_problem(url)
        if problem:
            raise ValueError(f"{what} URL {problem}")
        if max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, got {max_queue}")
        self._url, self._timeout_s, self._what = url, timeout_s, what
        self._token_file = Path(bearer_token_file) if bearer_token_file is not None else None
        self._retry_delays_s = tuple(retry_delays_s)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._queue: collections.deque[dict] = collections.deque(maxlen=max_queue)
        self._full_warned = False
        self._stats = dict.fromkeys(("sent", "retries", "failed", "dropped_queue_full", "dropped_on_close"), 0)
        self._stopping = threading.Event()
        self._conn: http.client.HTTPConnection | None = None
        self._thread_name = thread_name
        self._thread = threading.Thread(target=self._worker, name=f"pv-{thread_name}", daemon=True)
        self._thread.start()

    def submit(self, entry: dict) -> None:
        with self._lock:
            if self._stopping.is_set():
                return
            if len(self._queue) == self._queue.maxlen:
                self._stats["dropped_queue_full"] += 1
                if not self._full_warned:  # once per backlog, not once per record
                    log.warning("%s queue full (%d): dropping the oldest records", self._what, self._queue.maxlen)
                    self._full_warned = True
            self._queue.append(entry)
            self._wake.notify()

    def stats(self) -> dict:
        with self._lock:
            return {**self._stats, "queued": len(self._queue)}

    def close(self, timeout_s: float = 1.0) -> None:
        """Stop the worker: queued records are dropped (counted), an in-flight POST is cut off."""
        self._stopping.set()
        with self._lock:
            left = len(self._queue)
            self._queue.clear()
            self._stats["dropped_on_close"] += left
            self._wake.notify_all()
            conn = self._conn
        if left:
            log.warning("%s: %d queued record(s) not sent at shutdown", self._what, left)
        if conn is not None and conn.sock is not None:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)  # wakes a worker blocked in recv
            except OSError:
                pass
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.warning("%s worker did not stop within %.1f s; left behind", self._what, timeout_s)

    # ---- worker thread
    def _worker(self) -> None:
        name_this_thread(self._thread_name)
        while True:
            with self._lock:
                while not self._queue and not self._stopping.is_set():
                    self._wake.wait()
                if self._stopping.is_set():
                    return
                entry = self._queue.popleft()
                if not self._queue:
                    self._full_warned = False
            try:
                self._deliver(entry)
            except _Stopped:
                return
            except Exception:  # the worker must outlive any one bad record
                log.exception("%s: unexpected error; record dropped", self._what)
                self._count("failed")

    def _count(self, key: str) -> None:
        with self._lock:
            self._stats[key] += 1

    def _deliver(self, entry: dict) -> None:
        body = json.dumps(entry, ensure_ascii=False).encode()
        token = self._token()
        if token is False:
            self._count("failed")
            return
        for attempt, delay_s in enumerate((*self._retry_delays_s, None)):
            status, problem = self._post(body, token)
            if self._stopping.is_set():
                raise _Stopped
            if status is not None and 200 <= status < 300:
                self._count("sent")
                return
            retryable = status is None or status >= 500
            if not retryable or delay_s is None:
                what = f"HTTP status {status}" if status is not None else problem
                tries = f" after {attempt + 1} attempts" if retryable else ""
                log.warning("%s %s: %s%s; %s record dropped", self._what, self._shown_url(), what, tries,
                            entry.get("kind", "a"))
                self._count("failed")
                return
            self._count("retries")
            if self._stopping.wait(delay_s):
                raise _Stopped

    def _token(self) -> str | None | bool:
        """The bearer token (None: none configured; False: configured but unusable, already logged)."""
        if self._token_file is None:
            return None
        try:
            token = read_one_line(self._token_file)
        except CredentialError as exc:
            log.warning("%s: bearer_token_file %s; record dropped", self._what, exc)
            return False
        return token

    def _shown_url(self) -> str:
        parts = urlsplit(self._url)
        return f"{parts.scheme}://{parts.netloc}{parts.path}"  # no query: it might carry a key

    def _post(self, body: bytes, token: str | None) -> tuple[int | None, str]:
        """(HTTP status, "") or (None, what went wrong) for one attempt."""
        parts = urlsplit(self._url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if parts.scheme == "https":
            conn = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=self._timeout_s,
                                               context=client_context())
        else:
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=self._timeout_s)
        headers = {"Content-Type": "application/json", "User-Agent": "pivoice"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        with self._lock:
            if self._stopping.is_set():
                return None, "shutting down"
            self._conn = conn
        try:
            conn.connect()
            if self._stopping.is_set():  # close() may have come while connecting, before there was a socket
                return None, "shutting down"
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            response.read(MAX_RESPONSE_BYTES)
            return response.status, ""
        except (OSError, http.client.HTTPException) as exc:
            if isinstance(exc, socket.timeout):
                return None, f"no answer within {self._timeout_s:g} s"
            return None, f"connection failed ({getattr(exc, 'strerror', None) or type(exc).__name__})"
        finally:
            with self._lock:
                self._conn = None
            conn.close()
