"""The client TLS context that every edge dialling out with the system's CAs shares: the token fetch,
the fleet heartbeat, the webhook, the http tools and the Realtime WebSocket. Any thread may call it.
A configured CA bundle (`tokens.ca_bundle`, a tool's `ca_file`) gets a context of its own.

Why one, built on first use, from the hashed CA directory: `ssl.create_default_context()` parses the
whole system CA bundle (~140 certificates) into memory, 2.1 MiB the first time in this process and
0.8 MiB for every further context, against a 50 MiB budget on a Pi (issue #8). Each edge used to
build its own, and websocket-client builds a fresh one on every `wss://` connect. With the
directory that update-ca-certificates keeps (`/etc/ssl/certs`, one `<subject hash>.N` link per CA),
OpenSSL reads only the root a server's chain needs, when a handshake needs it; the trust is the same.

`SSL_CERT_FILE` / `SSL_CERT_DIR` still choose the CAs, as they do for OpenSSL (the file, if set, is
loaded whole: that is what was asked). A system without a hashed directory gets the bundle file.
"""

from __future__ import annotations

import os
import re
import ssl
import threading

_HASH_LINK = re.compile(r"[0-9a-f]{8}\.[0-9]+")
_lock = threading.Lock()
_system_context: ssl.SSLContext | None = None


def client_context() -> ssl.SSLContext:
    """The context trusting the system's CAs, built on first use and shared by every caller."""
    global _system_context
    with _lock:
        if _system_context is None:
            _system_context = build_context()
        return _system_context


def websocket_options(url: str) -> dict:
    """Keyword arguments for websocket-client's `create_connection`: the shared context for wss://
    (websocket-client would otherwise load the whole CA bundle into a new context per connect)."""
    return {"sslopt": {"context": client_context()}} if url.startswith("wss://") else {}


def system_trust() -> tuple[str | None, str | None]:
    """(cafile, capath) the system context loads: a hashed directory alone when there is one and no
    SSL_CERT_FILE asks for a file; otherwise OpenSSL's default file (and directory, if any)."""
    paths = ssl.get_default_verify_paths()
    if paths.capath and not os.environ.get(paths.openssl_cafile_env) and _has_hash_links(paths.capath):
        return None, paths.capath
    return paths.cafile, paths.capath


def build_context(ca_bundle: str | None = None) -> ssl.SSLContext:
    """A new context with certificate and host name verification on. `ca_bundle` (a PEM file, read
    now: a reload sees a replaced one) stands in for the system's CAs; its errors (OSError,
    ssl.SSLError) reach the caller, which names the config key."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)   # CERT_REQUIRED and check_hostname by default
    if ca_bundle is not None:
        context.load_verify_locations(cafile=ca_bundle)
        return context
    cafile, capath = system_trust()
    if cafile or capath:
        context.load_verify_locations(cafile=cafile, capath=capath)
    else:
        context.set_default_verify_paths()   # nothing found where OpenSSL looks: its own defaults
    return context


def _has_hash_links(directory: str) -> bool:
    try:
        with os.scandir(directory) as entries:
            return any(_HASH_LINK.fullmatch(entry.name) for entry in entries)
    except OSError:
        return False
