"""Value types of the token client: redacting secrets, ephemeral keys, token errors.

Everything here is immutable or read-only after construction, so any thread may use it.
The public names are re-exported by `pivoice.tokens`; import them from there.
"""

from __future__ import annotations

import hmac
import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from pivoice.credentials import CredentialError, read_one_line

log = logging.getLogger(__name__)

# Secret files are read whole; anything bigger is certainly not a device secret.
_MAX_SECRET_FILE_BYTES = 4096


class Secret:
    """A string that never shows itself in repr/str/format/logging; `.reveal()` returns it.

    Equality compares in constant time so a Secret can also be checked against another.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str):
        if not isinstance(value, str):
            raise TypeError(f"Secret needs a str, got {type(value).__name__}")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        # Keep the well-known prefix: "which kind of secret" helps debugging, the rest would not.
        prefix = "ek_" if self._value.startswith("ek_") else ""
        return f"{prefix}…(redacted)"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return format(repr(self), spec)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self):
        raise TypeError("Secret cannot be pickled")


@dataclass(frozen=True)
class EphemeralKey:
    """An `ek_` client secret, its expiry on the local monotonic clock and the session it carries."""

    value: Secret
    expires_at_mono_s: float
    session: dict = field(default_factory=dict, compare=False)

    def valid_for_s(self, now_mono_s: float) -> float:
        return self.expires_at_mono_s - now_mono_s


class TokenError(Exception):
    """A failed key fetch. `message` names the backend host, HTTP status and server error code.

    Codes: invalid_request, unauthorized, forbidden_override, rate_limited, daily_budget_exhausted,
    upstream_error, upstream_unavailable, upstream_timeout, server_error, bad_response,
    backend_unreachable, backend_timeout, tls_error, internal_error.
    """

    def __init__(self, code: str, message: str, *, http_status: int | None = None,
                 retry_after_s: float | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = http_status
        self.retry_after_s = retry_after_s

    def __repr__(self) -> str:
        return f"TokenError(code={self.code!r}, http_status={self.http_status!r}, message={self.message!r})"


class SecretFileError(ValueError):
    """A device secret file is missing, empty, unreadable or malformed. The message names the path."""


def read_secret_file(path: str | os.PathLike) -> Secret:
    """Read a one-line secret file (e.g. /etc/pivoice/device-secret), stripping surrounding whitespace.

    Warns (does not fail) when group or others may read the file: the operator should chmod 600 it.
    """
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise SecretFileError(f"secret file {p}: does not exist") from None
    except OSError as exc:
        raise SecretFileError(f"secret file {p}: cannot stat ({exc.strerror or type(exc).__name__})") from None
    if not stat.S_ISREG(st.st_mode):
        raise SecretFileError(f"secret file {p}: is not a regular file")
    if st.st_size > _MAX_SECRET_FILE_BYTES:
        raise SecretFileError(f"secret file {p}: too large ({st.st_size} bytes) to be a secret")
    if st.st_mode & 0o077:
        log.warning("secret file %s has mode %03o: readable by group/others; chmod 600 it",
                    p, stat.S_IMODE(st.st_mode))
    try:
        text = read_one_line(p, _MAX_SECRET_FILE_BYTES)
    except CredentialError as exc:
        raise SecretFileError(f"secret file {exc}") from None
    return Secret(text)
