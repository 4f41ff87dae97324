"""`http` tools: one HTTP request from a URL/body template, on the standard library.

Redirects are never followed (a 3xx is reported), the response is read up to its cap, and the bearer
token, read from its file at call time so a rotated credential needs no restart, is scrubbed from
everything the model gets back. The token never reaches a log line or an error message.

`run_http` is called on a tool worker thread; its cancel hook shuts the socket down from the
cancelling thread, which wakes the worker blocked on it.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import time
from typing import Mapping
from urllib.parse import quote, urlsplit

from pivoice import credentials
from pivoice.credentials import CredentialError
from pivoice.tls import build_context, client_context
from pivoice.tools import template
from pivoice.tools.base import CallContext, Outcome, failure, success
from pivoice.tools.specs import HttpSpec

ERROR_BODY_CHARS = 1024
_READ_BYTES = 65536


class ToolSetupError(Exception):
    """The call cannot be made (token or CA file unusable); the message is safe to show."""


def _expand(path: str, environ: Mapping[str, str], key: str) -> str:
    try:
        return credentials.expand(path, key, environ)
    except CredentialError as exc:
        raise ToolSetupError(str(exc)) from None


def token_path(spec: HttpSpec, environ: Mapping[str, str]) -> str | None:
    try:
        found = credentials.secret_path(spec.bearer_token_file, "bearer_token_file",
                                        spec.bearer_token_credential, "bearer_token_credential", environ)
    except CredentialError as exc:
        raise ToolSetupError(str(exc)) from None
    return found[1] if found else None


def read_token(spec: HttpSpec, environ: Mapping[str, str]) -> str | None:
    path = token_path(spec, environ)
    if path is None:
        return None
    try:
        return credentials.read_one_line(path)
    except CredentialError as exc:
        raise ToolSetupError(f"the bearer token file {exc}") from None


def _connection(spec: HttpSpec, url: str, environ: Mapping[str, str]) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    if parts.scheme == "http":
        return http.client.HTTPConnection(parts.hostname, parts.port, timeout=spec.timeout_s)
    cafile = _expand(spec.ca_file, environ, "ca_file") if spec.ca_file else None
    try:
        # a ca_file is read again per call (it may be rotated); the system's CAs are shared (tls.py)
        context = build_context(cafile) if cafile else client_context()
    except (OSError, ssl.SSLError) as exc:
        raise ToolSetupError(f"cannot load ca_file {cafile}: {getattr(exc, 'strerror', None) or exc}") from None
    return http.client.HTTPSConnection(parts.hostname, parts.port, timeout=spec.timeout_s, context=context)


def _abort(conn: http.client.HTTPConnection) -> None:
    sock = conn.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def run_http(spec: HttpSpec, arguments: dict, ctx: CallContext,
             environ: Mapping[str, str] = os.environ) -> Outcome:
    url = template.fill(spec.url, arguments, quote=lambda s: quote(s, safe=""))
    parts = urlsplit(url)
    where = f"{spec.method} {parts.scheme}://{parts.netloc}{parts.path}"
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    headers = {"User-Agent": "pivoice", "Accept": "application/json, text/plain;q=0.9, */*;q=0.5",
               **dict(spec.headers)}
    body = None
    if spec.body is not None:
        body = json.dumps(template.fill_json(spec.body, arguments)).encode()
        headers["Content-Type"] = "application/json"
    try:
        token = read_token(spec, environ)
        conn = _connection(spec, url, environ)
    except ToolSetupError as exc:
        return failure("failed", str(exc))
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    ctx.on_cancel(lambda: _abort(conn))
    deadline = time.monotonic() + spec.timeout_s
    try:
        conn.request(spec.method, target, body=body, headers=headers)
        conn.sock.settimeout(max(0.01, deadline - time.monotonic()))
        resp = conn.getresponse()
        data = _read_capped(conn, resp, spec.max_response_bytes, deadline)
    except (TimeoutError, socket.timeout):
        if ctx.cancelled:
            return failure("cancelled", f"{where}: the call was cancelled")
        return failure("timeout", f"{where}: no complete answer within {spec.timeout_s:g} s")
    except (OSError, http.client.HTTPException, ValueError) as exc:   # ValueError: TLS socket shut by cancel
        if ctx.cancelled:
            return failure("cancelled", f"{where}: the call was cancelled")
        if isinstance(exc, ssl.SSLCertVerificationError):
            reason = f"the server's TLS certificate is not trusted ({exc.verify_message}); set ca_file"
        else:
            reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or type(exc).__name__
        return failure("failed", _scrub(f"{where}: {reason}", token))
    finally:
        conn.close()
    return _outcome(resp, data, spec.max_response_bytes, where, token)


def _read_capped(conn: http.client.HTTPConnection, resp: http.client.HTTPResponse, cap_bytes: int,
                 deadline: float) -> bytes:
    """At most cap_bytes + 1 bytes of the body (one more than the cap tells us it was cut)."""
    data = bytearray()
    while len(data) <= cap_bytes:
        left_s = deadline - time.monotonic()
        if left_s <= 0:
            raise TimeoutError()
        if conn.sock is not None:
            conn.sock.settimeout(left_s)
        chunk = resp.read(min(_READ_BYTES, cap_bytes + 1 - len(data)))
        if not chunk:
            break
        data += chunk
    return bytes(data)


def _scrub(text: str, token: str | None) -> str:
    return text.replace(token, "[redacted]") if token else text


def _outcome(resp: http.client.HTTPResponse, data: bytes, cap_bytes: int, where: str,
             token: str | None) -> Outcome:
    truncated = len(data) > cap_bytes
    text = _scrub(data[:cap_bytes].decode("utf-8", "replace"), token)
    status = resp.status
    if 300 <= status < 400:
        location = _scrub(resp.getheader("Location", "none"), token)
        return failure("http_status", f"{where}: HTTP {status} {resp.reason}; redirects are not followed "
                                      f"(Location: {location})", status=status)
    if not 200 <= status < 300:
        return failure("http_status", f"{where}: HTTP {status} {resp.reason}", status=status,
                       body=text[:ERROR_BODY_CHARS])
    body: object = text
    if not text:
        body = None
    elif not truncated and "json" in (resp.getheader("Content-Type") or "").lower():
        try:
            body = json.loads(text)
        except ValueError:
            pass
    return success(status=status, body=body, truncated=truncated)
