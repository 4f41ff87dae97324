"""HTTP transport for the token client: a one-method interface and its stdlib implementation,
and the rules for the backend URL (`endpoint_url`: https off loopback, no credentials in it).

The Pi only needs `urllib.request` + `ssl`. Transports are called from the token provider's
refresh thread only, one request at a time.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

from pivoice.loopback import is_loopback
from pivoice.tls import build_context, client_context
from pivoice.tokens.keys import TokenError

ENDPOINT_PATH = "/v1/realtime/client_secrets"
# A mint response is a few KiB; cap reads so a misbehaving backend cannot fill memory.
MAX_RESPONSE_BYTES = 256 * 1024


@dataclass(frozen=True)
class HttpResponse:
    """status, headers with lower-cased names, raw body."""

    status: int
    headers: dict
    body: bytes


class HttpTransport(Protocol):
    def post_json(self, url: str, headers: dict, body: bytes, timeout_s: float) -> HttpResponse:
        """POST `body`; return any HTTP response (errors included). Raise TokenError with code
        backend_unreachable, backend_timeout, tls_error or bad_response when no usable response came."""


def host_label(url: str) -> str:
    """host:port of a URL, without user info, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    return f"{host}:{port}"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # Following a redirect would resend the Basic credentials to wherever it points.
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class UrllibTransport:
    """Real transport: TLS with certificate and host name verification always on, environment
    proxies ignored, redirects not followed. `ca_bundle` (PEM file) replaces the system CAs, for
    a self-hosted backend with its own CA or self-signed certificate."""

    def __init__(self, ca_bundle: str | None = None):
        self._context: ssl.SSLContext | None = None   # None: the shared system context, on first use
        if ca_bundle is not None:   # a configured bundle is read at start-up, where its key is named
            path = Path(ca_bundle)
            if not path.is_file():
                raise ValueError(f"CA bundle {ca_bundle}: file not found")
            try:
                self._context = build_context(str(path))
            except (ssl.SSLError, OSError) as exc:
                raise ValueError(f"CA bundle {ca_bundle}: not a usable PEM certificate file "
                                 f"({getattr(exc, 'reason', None) or type(exc).__name__})") from None
        self._opener: urllib.request.OpenerDirector | None = None

    def _build_opener(self) -> urllib.request.OpenerDirector:
        # on first use: an http:// loopback backend never loads TLS at all (tls.py says what it costs)
        self._opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}),
            urllib.request.HTTPSHandler(context=self._context or client_context()),
            _NoRedirect(),
        )
        return self._opener

    def post_json(self, url: str, headers: dict, body: bytes, timeout_s: float) -> HttpResponse:
        where = f"backend {host_label(url)}"
        deadline_mono_s = time.monotonic() + timeout_s
        request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
        try:
            try:
                response = (self._opener or self._build_opener()).open(request, timeout=timeout_s)
            except urllib.error.HTTPError as exc:
                response = exc  # an error status is still a response we want to read
            with response:
                status = int(response.status if hasattr(response, "status") else response.code)
                hdrs = {k.lower(): v for k, v in response.headers.items()}
                payload = _read_limited(response, deadline_mono_s, where)
            return HttpResponse(status=status, headers=hdrs, body=payload)
        except TokenError:
            raise
        except urllib.error.URLError as exc:
            raise _classify(exc.reason, where, timeout_s) from None
        except (http.client.HTTPException, OSError) as exc:
            raise _classify(exc, where, timeout_s) from None


def _read_limited(response, deadline_mono_s: float, where: str) -> bytes:
    chunks, total = [], 0
    while True:
        if time.monotonic() > deadline_mono_s:
            raise TokenError("backend_timeout", f"{where} too slow sending its response")
        chunk = response.read(16384)
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > MAX_RESPONSE_BYTES:
            raise TokenError("bad_response", f"{where} sent more than {MAX_RESPONSE_BYTES} bytes")
        chunks.append(chunk)


def _classify(reason, where: str, timeout_s: float) -> TokenError:
    if isinstance(reason, ssl.SSLCertVerificationError):
        detail = reason.verify_message or "certificate verification failed"
        return TokenError("tls_error", f"{where} TLS certificate rejected ({detail})")
    if isinstance(reason, ssl.SSLError):
        return TokenError("tls_error", f"{where} TLS handshake failed ({reason.reason or 'ssl error'})")
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return TokenError("backend_timeout", f"{where} did not answer within {timeout_s:g} s")
    if isinstance(reason, ConnectionRefusedError):
        return TokenError("backend_unreachable", f"{where} unreachable (connection refused)")
    if isinstance(reason, socket.gaierror):
        return TokenError("backend_unreachable", f"{where} unreachable (host name not resolved)")
    if isinstance(reason, http.client.RemoteDisconnected):
        return TokenError("backend_unreachable", f"{where} closed the connection without answering")
    if isinstance(reason, http.client.HTTPException):
        return TokenError("bad_response", f"{where} sent a malformed HTTP response ({type(reason).__name__})")
    if isinstance(reason, OSError):
        detail = reason.strerror or type(reason).__name__
        return TokenError("backend_unreachable", f"{where} unreachable ({detail})")
    return TokenError("backend_unreachable", f"{where} unreachable ({str(reason)[:80]})")


def endpoint_url(backend_url: str, allow_insecure_http: bool) -> str:
    """The mint endpoint under `backend_url`, or ValueError saying what is wrong with the URL."""
    parts = urlsplit(backend_url)
    shown = f"{parts.scheme}://{host_label(backend_url)}{parts.path}"  # never the user info
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"token backend URL {shown!r}: must be http(s)://host[:port][/prefix]")
    try:
        parts.port
    except ValueError:
        raise ValueError(f"token backend URL {shown!r}: bad port") from None
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"token backend URL {shown!r}: must not carry credentials (use the device secret)")
    if parts.query or parts.fragment:
        raise ValueError(f"token backend URL {shown!r}: must not have a query or fragment")
    if parts.scheme == "http" and not is_loopback(parts.hostname) and not allow_insecure_http:
        raise ValueError(f"token backend URL {shown!r}: https is required for a non-loopback backend "
                         "(or set allow_insecure_http)")
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") + ENDPOINT_PATH, "", ""))
