"""Fleet heartbeat: a compact status report to the token backend (`POST /v1/devices/status`).

Sent at start, every `tokens.status_interval_s`, and soon after each conversation ends (the
StatusFanout watcher sees the state return to idle), never two within `min_gap_s` (the backend's
rate-limit window: 10 s until the backend's first answer names its own). Usage figures are deltas against the last report the backend accepted, so a
failed report loses nothing: the next one carries it. Same URL rules, CA bundle, device
credentials and HTTP code as the token fetch (tokens/transport.py, tokens/wire.py); after a 401 the
secret file is re-read as the token provider does. A failure is logged once per outage and never
touches a conversation. Between reports the thread sleeps: one wakeup per interval when idle.

Threads: `start`/`stop` on the main thread; `on_status` on the controller thread (copies, sets an
event); everything else on the `pv-heartbeat` thread (or the test thread driving `report_once`).
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from typing import Callable

from pivoice import __version__
from pivoice.ends import NORMAL as NORMAL_ENDS
from pivoice.osthread import name_this_thread
from pivoice.procstats import ProcessSampler
from pivoice.tokens.keys import Secret, SecretFileError, TokenError
from pivoice.tokens.secret_file import SecretFile
from pivoice.tokens.transport import ENDPOINT_PATH, HttpTransport, endpoint_url, host_label
from pivoice.tokens.wire import error_from_response, request_headers

log = logging.getLogger(__name__)
STATUS_PATH = "/v1/devices/status"
MAX_REPORT_BYTES = 4096
DEFAULT_MIN_GAP_S = 10.0
USAGE_INT_KEYS = ("input_text_tokens", "input_audio_tokens", "output_text_tokens", "output_audio_tokens")
USAGE_FLOAT_KEYS = ("audio_sent_s", "audio_received_s")
LAST_CONVERSATION_KEYS = ("started_at", "duration_s", "end_code", "press_to_first_append_ms",
                          "delta_to_speaker_ms", "rollovers", "total_tokens", "audio_sent_s", "audio_received_s")


def status_url(backend_url: str, allow_insecure_http: bool) -> str:
    """The status endpoint under `backend_url`, by the mint URL's rules (ValueError says what is wrong)."""
    return endpoint_url(backend_url, allow_insecure_http)[:-len(ENDPOINT_PATH)] + STATUS_PATH


def _num(value) -> float:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def _cap(text, limit: int) -> str | None:
    return None if text is None else str(text)[:limit]


class Heartbeat:
    def __init__(self, backend_url: str, device_id: str, secret: Secret | SecretFile, get_status: Callable[[], dict],
                 *, interval_s: float, transport: HttpTransport, timeout_s: float = 5.0,
                 allow_insecure_http: bool = False, min_gap_s: float = DEFAULT_MIN_GAP_S,
                 clock: Callable[[], float] = time.monotonic, sampler: ProcessSampler | None = None,
                 version: str = __version__):
        self._url = status_url(backend_url, allow_insecure_http)
        self._where = f"backend {host_label(self._url)}"
        self._device_id = device_id
        self._secret_file = secret if isinstance(secret, SecretFile) else None
        self._secret = self._secret_file.secret if self._secret_file else secret
        self._headers = request_headers(device_id, self._secret)
        self._get_status = get_status
        self._interval_s = interval_s
        self._transport = transport
        self._timeout_s = timeout_s
        self._min_gap_s = min_gap_s
        self._clock = clock
        self._sampler = sampler or ProcessSampler(clock=clock)
        self._version = version
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        # Watcher's view (controller thread writes, heartbeat thread reads; under _lock).
        self._prev_state: str | None = None
        self._ends_seen = 0
        self._abnormal_seen: collections.Counter = collections.Counter()
        self._pending_end = False
        # Heartbeat thread only.
        self._baseline = {"ends": 0, "abnormal": 0, **{k: 0 for k in USAGE_INT_KEYS + USAGE_FLOAT_KEYS}}
        self._last_sent_s = float("-inf")
        self._not_before_s = float("-inf")
        self._failing: str | None = None
        self.sent = 0   # reports the backend accepted (tests, `ctl status` some day)

    # ---- controller thread ----
    def on_status(self, status: dict) -> None:
        state = status.get("state")
        with self._lock:
            ended = self._prev_state not in (None, "idle") and state == "idle"
            self._prev_state = state
            if ended:
                self._ends_seen += 1
                code = status.get("last_end_code")
                if code not in NORMAL_ENDS:
                    self._abnormal_seen[str(code)] += 1
                self._pending_end = True
        if ended:
            self._wake.set()

    # ---- main thread ----
    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("heartbeat already started")
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(self._stopping,), name="heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(self._timeout_s + 1.0)

    # ---- heartbeat thread ----
    def _run(self, stopping: threading.Event) -> None:
        name_this_thread("heartbeat")
        next_due_s = self._clock()   # one report at start: the backend learns we are up (and our version)
        while not stopping.is_set():
            self._wake.clear()
            with self._lock:
                pending = self._pending_end
            due_s = min(next_due_s, self._last_sent_s + self._min_gap_s) if pending else next_due_s
            wait_s = max(due_s, self._not_before_s) - self._clock()
            if wait_s > 0:
                self._wake.wait(wait_s)
                continue
            self.report_once()
            next_due_s = self._clock() + self._interval_s

    def report_once(self) -> bool:
        """Build and send one report; True if the backend stored it."""
        self._last_sent_s = self._clock()
        try:
            body, counted = self.build_report(self._get_status())
        except Exception:   # a status shape we did not expect must not end the thread
            log.exception("heartbeat: cannot build the status report")
            return False
        with self._lock:   # this report covers the ends seen so far; a failed one is retried at the interval
            if self._ends_seen <= counted["watched_ends"]:
                self._pending_end = False
        try:
            response = self._transport.post_json(self._url, dict(self._headers), body, self._timeout_s)
            if response.status != 200:
                raise error_from_response(response, where=self._where, device_id=self._device_id,
                                          secret=self._secret)
        except TokenError as exc:
            self._failed(exc)
            return False
        except Exception as exc:   # a transport bug must not end the thread
            self._failed(TokenError("internal_error", f"{self._where}: status report failed ({type(exc).__name__})"))
            return False
        self._baseline = counted
        self.sent += 1
        self._adopt_window(response.body)
        if self._failing is not None:
            log.info("heartbeat: status reports to %s work again", self._where)
            self._failing = None
        return True

    def build_report(self, status: dict) -> tuple[bytes, dict]:
        """The report's JSON (<= MAX_REPORT_BYTES) and the cumulative counts it covers (the next baseline)."""
        with self._lock:
            watched_ends, watched_abnormal = self._ends_seen, dict(self._abnormal_seen)
        ends = status.get("ends")
        if isinstance(ends, dict):   # the runtime's own count (metrics), when it has one
            abnormal = {str(k): int(_num(v)) for k, v in ends.items() if k not in NORMAL_ENDS}
            total_ends = int(sum(_num(v) for v in ends.values()))
        else:
            abnormal, total_ends = watched_abnormal, watched_ends
        usage = status.get("usage") or {}
        counted = {"ends": total_ends, "abnormal": sum(abnormal.values()), "watched_ends": watched_ends,
                   **{k: _num(usage.get(k)) for k in USAGE_INT_KEYS + USAGE_FLOAT_KEYS}}
        base = self._baseline
        since = {"conversations": max(0, counted["ends"] - base["ends"]),
                 "abnormal_ends": max(0, counted["abnormal"] - base["abnormal"]),
                 **{k: int(max(0, counted[k] - base[k])) for k in USAGE_INT_KEYS},
                 **{k: round(max(0.0, counted[k] - base[k]), 2) for k in USAGE_FLOAT_KEYS}}
        token = status.get("token") or {}
        audio = status.get("audio") or {}
        mic, speaker = audio.get("mic") or {}, audio.get("speaker") or {}
        xruns = int(_num(mic.get("overflows")) + _num(speaker.get("underflows")))
        last = status.get("last_conversation") or {}
        report = {"version": _cap(self._version, 40), "interval_s": self._interval_s,
                  "state": _cap(status.get("state"), 20) or "unknown", "last_end_reason": status.get("last_end_reason"),
                  "last_end_code": _cap(status.get("last_end_code"), 40),
                  "abnormal_ends": dict(sorted(abnormal.items())[:20]), "token_state": _cap(token.get("state"), 20),
                  "token_error": token.get("last_error"), "xruns": xruns, **self._sampler.sample(),
                  "since_last": since,
                  "last_conversation": {k: last[k] for k in LAST_CONVERSATION_KEYS if k in last
                                        and (last[k] is None or isinstance(last[k], (int, float, str)))}}
        report["uptime_s"] = report["uptime_s"] or 0.0
        report["abnormal_ends"] = {k[:40]: v for k, v in report["abnormal_ends"].items()}
        for limit in (200, 80, 20):   # shrink the free-text fields until the report fits
            for key in ("last_end_reason", "token_error"):
                report[key] = _cap(report[key], limit)
            report["last_conversation"] = {k: _cap(v, limit) if isinstance(v, str) else v
                                           for k, v in report["last_conversation"].items()}
            body = json.dumps(report, separators=(",", ":")).encode()
            if len(body) <= MAX_REPORT_BYTES:
                return body, counted
        report["abnormal_ends"], report["last_conversation"] = {}, {}
        return json.dumps(report, separators=(",", ":")).encode()[:MAX_REPORT_BYTES], counted

    def _adopt_window(self, body: bytes) -> None:
        """The backend says its rate-limit window (`min_interval_s`): an end report waits out that, not ours."""
        try:
            window_s = json.loads(body).get("min_interval_s")
        except (ValueError, AttributeError, UnicodeDecodeError):
            return
        if isinstance(window_s, (int, float)) and not isinstance(window_s, bool) and 0.1 <= window_s <= 3600:
            self._min_gap_s = float(window_s)

    def _failed(self, err: TokenError) -> None:
        if err.retry_after_s is not None:
            self._not_before_s = self._clock() + err.retry_after_s
        what = f"HTTP {err.http_status} {err.code}" if err.http_status else err.code
        if self._failing is None:
            log.warning("heartbeat: status report to %s failed (%s): %s; retrying at the next interval",
                        self._where, what, err.message)
        self._failing = what
        if err.code == "unauthorized" and self._secret_file is not None:
            try:
                secret = self._secret_file.changed()
            except SecretFileError as exc:
                log.debug("heartbeat: %s", exc)
                return
            if secret is not None:
                self._secret = secret
                self._headers = request_headers(self._device_id, secret)
