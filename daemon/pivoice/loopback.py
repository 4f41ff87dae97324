"""One rule for "this host is loopback" (where plain http:// is allowed; https:// is required anywhere
else): the token backend URL, http tools and the transcript webhook all ask it. Pure functions, light
imports (config load uses them)."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_problem(url: str) -> str | None:
    """Why `url` cannot be a webhook (None if it can): http(s) only, https off loopback, no credentials."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"must be an http(s)://host[:port]/path URL, got {url[:80]!r}"
    try:
        parts.port
    except ValueError:
        return "has a bad port"
    if parts.username is not None or parts.password is not None:
        return "must not carry credentials (use bearer_token_file)"
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        return f"must use https:// for a non-loopback host ({parts.hostname})"
    return None
