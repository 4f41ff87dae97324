"""Fleet status: the device heartbeat's wire shape, the heartbeat rate limit, and each device's health.

A device POSTs a compact JSON status (<= 4 KiB) to `/v1/devices/status` every `status_interval_s`
and at each conversation end. Known fields are checked (400 names the first bad one); unknown
fields are ignored and not stored, so a newer device can report to an older backend. The
`since_last` figures are added to the device's row for the UTC day the report arrives.

Pure functions: called from any worker thread and from the CLI.
"""

from __future__ import annotations

import json
import math
from typing import Any

from pivoice.tokenserver.policy import RequestError

STATUS_PATH = "/v1/devices/status"
MAX_STATUS_BYTES = 4096
STALE_INTERVALS = 3          # silent for this many of its own intervals: stale
MAX_COUNT = 10**9            # per field per report; larger is a bug on the device, not usage
MAX_SECONDS = 10.0**7
USAGE_INT_KEYS = ("conversations", "abnormal_ends", "input_text_tokens", "input_audio_tokens",
                  "output_text_tokens", "output_audio_tokens")
USAGE_FLOAT_KEYS = ("audio_sent_s", "audio_received_s")
USAGE_KEYS = USAGE_INT_KEYS + USAGE_FLOAT_KEYS
# name -> (kind, max chars for strings / max value for numbers, required)
_FIELDS: dict[str, tuple[str, float, bool]] = {
    "version": ("str", 40, True), "state": ("str", 20, True), "uptime_s": ("num", 10.0**9, True),
    "interval_s": ("num?", 10.0**6, False), "last_end_reason": ("str?", 200, False),
    "last_end_code": ("str?", 40, False), "token_state": ("str?", 20, False), "token_error": ("str?", 200, False),
    "xruns": ("int", MAX_COUNT, False), "cpu_percent": ("num?", 10.0**4, False), "rss_mib": ("num?", 10.0**6, False),
}
HEALTH_CODES = ("ok", "stale", "abnormal", "no_key", "never_reported")
NO_KEY_TOKEN_STATES = ("failed", "backing_off")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _value(field: str, value: Any, kind: str, limit: float) -> Any:
    if value is None and kind.endswith("?"):
        return None
    base = kind.rstrip("?")
    if base == "str":
        if not isinstance(value, str):
            raise RequestError(f"field {field!r} must be a string")
        if len(value) > limit:
            raise RequestError(f"field {field!r} is longer than {int(limit)} characters")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RequestError(f"field {field!r} must be a number")
    if base == "int" and not isinstance(value, int):
        raise RequestError(f"field {field!r} must be an integer")
    if not 0 <= value <= limit:
        raise RequestError(f"field {field!r} must be between 0 and {limit:g}")
    return value


def parse_status(raw: bytes) -> dict:
    """The heartbeat body reduced to its known, checked fields; RequestError names what is wrong."""
    try:
        body = json.loads(raw, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise RequestError(f"status body is not valid JSON: {exc.msg} at line {exc.lineno} "
                           f"column {exc.colno}") from None
    except (ValueError, RecursionError, UnicodeDecodeError) as exc:
        raise RequestError(f"status body is not valid JSON: {exc}"[:200]) from None
    if not isinstance(body, dict):
        raise RequestError("status body must be a JSON object")
    out: dict[str, Any] = {}
    for field, (kind, limit, required) in _FIELDS.items():
        if field not in body:
            if required:
                raise RequestError(f"field {field!r} is required")
            continue
        out[field] = _value(field, body[field], kind, limit)
    ends = body.get("abnormal_ends", {})
    if not isinstance(ends, dict) or len(ends) > 20:
        raise RequestError("field 'abnormal_ends' must be an object of at most 20 end codes")
    out["abnormal_ends"] = {_value("abnormal_ends key", k, "str", 40): _value(f"abnormal_ends.{k[:40]}", v, "int",
                                                                              MAX_COUNT)
                            for k, v in ends.items()}
    since = body.get("since_last", {})
    if not isinstance(since, dict):
        raise RequestError("field 'since_last' must be an object")
    out["since_last"] = {k: _value(f"since_last.{k}", since.get(k, 0), "int" if k in USAGE_INT_KEYS else "num",
                                   MAX_COUNT if k in USAGE_INT_KEYS else MAX_SECONDS) for k in USAGE_KEYS}
    last = body.get("last_conversation")
    if last is not None:
        if not isinstance(last, dict) or len(last) > 24:
            raise RequestError("field 'last_conversation' must be an object of at most 24 keys")
        for k, v in last.items():
            if len(k) > 40 or not (v is None or isinstance(v, (str, int, float))) \
                    or (isinstance(v, str) and len(v) > 200):
                raise RequestError(f"field 'last_conversation.{k[:40]}' must be a number, null "
                                   "or a string of at most 200 characters")
        out["last_conversation"] = last
    return out


def take_report(tokens: float, at_s: float, now_s: float, min_interval_s: float,
                burst: int) -> tuple[bool, float, int]:
    """Token bucket for heartbeats: `burst` reports, refilled one per `min_interval_s`.
    Returns (allowed, tokens to store, retry_after_s); a refused report spends nothing."""
    elapsed_s = max(0.0, now_s - at_s)   # a clock step backwards refills nothing
    tokens = min(float(burst), tokens + elapsed_s / min_interval_s)
    if tokens >= 1.0:
        return True, tokens - 1.0, 0
    return False, tokens, max(1, math.ceil((1.0 - tokens) * min_interval_s))


def health(report: dict | None, received_at: float | None, today: dict, now_s: float,
           default_interval_s: float) -> tuple[str, list[str]]:
    """(health code, reasons): never_reported > stale > no_key > abnormal > ok."""
    if report is None or received_at is None:
        return "never_reported", ["no status report received yet"]
    interval_s = report.get("interval_s") or default_interval_s
    silent_s = now_s - received_at
    if silent_s > STALE_INTERVALS * interval_s:
        return "stale", [f"silent for {silent_s:.0f} s (> {STALE_INTERVALS} x {interval_s:g} s interval)"]
    if report.get("token_state") in NO_KEY_TOKEN_STATES:
        return "no_key", [f"token {report['token_state']}" + (f": {report['token_error']}"
                                                              if report.get("token_error") else "")]
    if today.get("abnormal_ends", 0) > 0:
        return "abnormal", [f"{today['abnormal_ends']} abnormal conversation end(s) today"
                            + (f", last: {report['last_end_code']}" if report.get("last_end_code") else "")]
    return "ok", []


def empty_usage() -> dict:
    return {**{k: 0 for k in USAGE_INT_KEYS}, **{k: 0.0 for k in USAGE_FLOAT_KEYS}}


def device_row(device, mints_today: int, status: tuple[float | None, dict | None], today: dict | None,
               now_s: float, default_interval_s: float) -> dict:
    """One device as `devices list --json`, `/admin/devices` and the fleet page see it."""
    received_at, report = status
    usage = {**empty_usage(), **(today or {})}
    usage["total_tokens"] = sum(usage[k] for k in USAGE_INT_KEYS[2:])
    code, reasons = health(report, received_at, usage, now_s, default_interval_s)
    return {"name": device.name, "status": "revoked" if device.revoked else "active",
            "created_at": device.created_at, "rotated_at": device.rotated_at, "mints_today": mints_today,
            "overrides": sorted(device.policy), "health": code, "health_reasons": reasons,
            "last_seen": received_at, "last_seen_ago_s": None if received_at is None else round(now_s - received_at, 1),
            "report": report, "today": usage}


def ago(seconds: float | None) -> str:
    """A short relative time without spaces, for tables: 42s, 7m, 3h, 2d, never."""
    if seconds is None:
        return "never"
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size:.0f}{unit}"
    return f"{seconds:.0f}s"
