"""The token backend's wire contract, seen from the device: request headers, response parsing.

Pure functions, safe on any thread. A 200 body carries an `ek_` value, so it is never quoted in
errors; error bodies are quoted only as a redacted, truncated server message.
"""

from __future__ import annotations

import base64
import email.utils
import json
import math
import re

from pivoice import __version__
from pivoice.tokens.transport import HttpResponse
from pivoice.tokens.keys import EphemeralKey, Secret, TokenError

MAX_LIFETIME_S = 7200.0          # the API's own upper bound for expires_after.seconds
DEFAULT_LIFETIME_S = 30.0        # used when neither server_time nor Date is available
MAX_RETRY_AFTER_S = 24 * 3600.0
_MAX_EK_CHARS = 512
_EK_RE = re.compile(r"ek_[A-Za-z0-9_\-]+\Z")
_CODE_RE = re.compile(r"[a-z][a-z0-9_]{0,63}\Z")
_EK_ANYWHERE = re.compile(r"ek_[A-Za-z0-9_\-]*")
_MAX_SERVER_MESSAGE_CHARS = 160

# Default error code per status, used when the body has no usable one.
_STATUS_CODES = {400: "invalid_request", 401: "unauthorized", 403: "forbidden_override",
                 429: "rate_limited", 502: "upstream_error", 503: "upstream_unavailable",
                 504: "upstream_timeout"}


def request_headers(device_id: str, secret: Secret) -> dict:
    token = base64.b64encode(f"{device_id}:{secret.reveal()}".encode()).decode("ascii")
    return {"Authorization": f"Basic {token}", "Content-Type": "application/json",
            "Accept": "application/json", "User-Agent": f"pivoice/{__version__}"}


def parse_mint_response(response: HttpResponse, *, sent_mono_s: float, where: str,
                        device_id: str, secret: Secret) -> EphemeralKey:
    """Turn a backend response into a key anchored on the monotonic clock, or raise TokenError.

    `sent_mono_s` is when the request was sent: anchoring the lifetime there errs on the short
    side by the round-trip time, and never depends on the local wall clock.
    """
    if response.status != 200:
        raise error_from_response(response, where=where, device_id=device_id, secret=secret)
    try:
        doc = json.loads(response.body)
    except (ValueError, UnicodeDecodeError):
        raise TokenError("bad_response", f"{where} answered 200 with a body that is not JSON",
                         http_status=200) from None
    if not isinstance(doc, dict):
        raise _bad(where, f"body is a JSON {type(doc).__name__}, expected an object")
    value = doc.get("value")
    if value is None:
        raise _bad(where, "missing 'value'")
    if not isinstance(value, str):
        raise _bad(where, f"'value' is a {type(value).__name__}, expected a string")
    if not value.startswith("ek_"):
        raise _bad(where, "'value' is not an ek_ client secret")
    if len(value) > _MAX_EK_CHARS or not _EK_RE.match(value):
        raise _bad(where, "'value' has unexpected characters or length")
    expires_at = _number(doc, "expires_at", where, required=True)
    session = doc.get("session", {})
    if not isinstance(session, dict):
        raise _bad(where, f"'session' is a {type(session).__name__}, expected an object")
    lifetime_s = _lifetime_s(doc, response, expires_at, where)
    return EphemeralKey(value=Secret(value), expires_at_mono_s=sent_mono_s + lifetime_s, session=session)


def _lifetime_s(doc: dict, response: HttpResponse, expires_at: float, where: str) -> float:
    server_time = _number(doc, "server_time", where, required=False)
    if server_time is not None:
        lifetime_s = expires_at - server_time
    else:
        date_s = _http_date_s(response.headers.get("date"))
        if date_s is not None:
            lifetime_s = expires_at - date_s - 1.0  # Date has 1 s resolution: round against us
        else:
            lifetime_s = DEFAULT_LIFETIME_S
    if not 0 < lifetime_s <= MAX_LIFETIME_S:
        raise _bad(where, f"key lifetime {lifetime_s:.0f} s is outside 0..{MAX_LIFETIME_S:.0f} s "
                          "(expires_at vs server time)")
    return lifetime_s


def error_from_response(response: HttpResponse, *, where: str, device_id: str, secret: Secret) -> TokenError:
    status = response.status
    code, server_msg, extra = _error_fields(response.body, secret)
    retry_after_s = parse_retry_after(response.headers.get("retry-after"))
    if code is None:
        code = _STATUS_CODES.get(status, "server_error" if status >= 500 else "bad_response")
        if status not in _STATUS_CODES:
            text = f"{where} answered unexpected HTTP {status}"
            return TokenError(code, text, http_status=status, retry_after_s=retry_after_s)
    text = f"{where} answered {status} {code}"
    if status == 401:
        text += f" (device {device_id!r} unknown or revoked, or wrong secret)"
    elif status == 403 and extra.get("field"):
        text += f" (session field {extra['field']} may not be overridden)"
    elif status == 502 and extra.get("upstream_status"):
        text += f" (upstream answered {extra['upstream_status']})"
    if server_msg:
        text += f": {server_msg}"
    return TokenError(code, text, http_status=status, retry_after_s=retry_after_s)


def _error_fields(body: bytes, secret: Secret) -> tuple[str | None, str, dict]:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None, "", {}
    err = doc.get("error") if isinstance(doc, dict) else None
    if not isinstance(err, dict):
        return None, "", {}
    code = err.get("code")
    code = code if isinstance(code, str) and _CODE_RE.match(code) else None
    extra = {}
    field_name = err.get("field")
    if isinstance(field_name, str) and re.fullmatch(r"[A-Za-z0-9_.\[\]]{1,80}", field_name):
        extra["field"] = field_name
    upstream = err.get("upstream_status")
    if isinstance(upstream, int) and not isinstance(upstream, bool):
        extra["upstream_status"] = upstream
    message = err.get("message")
    return code, _safe_text(message, secret) if isinstance(message, str) else "", extra


def _safe_text(text: str, secret: Secret) -> str:
    raw = secret.reveal()
    if raw:
        text = text.replace(raw, "…(redacted)")
    text = _EK_ANYWHERE.sub("ek_…(redacted)", text)
    text = "".join(ch if ch.isprintable() else " " for ch in text).strip()
    if len(text) > _MAX_SERVER_MESSAGE_CHARS:
        text = text[:_MAX_SERVER_MESSAGE_CHARS] + "…"
    return text


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After in delay-seconds form. The HTTP-date form would need the local wall clock,
    which we do not trust, so it is ignored (our backend sends seconds)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, MAX_RETRY_AFTER_S)


def _http_date_s(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _number(doc: dict, name: str, where: str, *, required: bool) -> float | None:
    value = doc.get(name)
    if value is None:
        if required:
            raise _bad(where, f"missing '{name}'")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _bad(where, f"'{name}' is not a number")
    return float(value)


def _bad(where: str, what: str) -> TokenError:
    return TokenError("bad_response", f"{where} answered 200 but {what}", http_status=200)
