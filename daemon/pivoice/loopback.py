"""One rule for "this host is loopback" (where plain http:// is allowed; https:// is required anywhere
else): the token backend URL, http tools and the transcript webhook all ask it. Pure function."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
