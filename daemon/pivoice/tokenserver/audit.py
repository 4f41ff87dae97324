"""One audit line per mint attempt on logger `pivoice.tokenserver.audit`.

Fields are key=value so the lines grep and parse easily. Only the device name, outcome,
statuses, codes, timings and the worker pid are written: never the API key, a device
secret, or an `ek_` value. The device name comes from the request (it may be an unknown,
attacker-chosen string), so it is reduced to a safe printable form before logging.

Called from the ASGI event loop of one worker.
"""

from __future__ import annotations

import logging
import os
import re

log = logging.getLogger("pivoice.tokenserver.audit")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_UNSAFE_FIELD = re.compile(r"[^A-Za-z0-9._\[\]-]")
MAX_NAME_CHARS = 64


def safe_name(name: str | None) -> str:
    if not name:
        return "-"
    cleaned = _UNSAFE.sub("?", name[:MAX_NAME_CHARS])
    return cleaned + ("..." if len(name) > MAX_NAME_CHARS else "")


def mint_attempt(device: str | None, outcome: str, status: int, *, code: str | None = None,
                 upstream_status: int | None = None, upstream_latency_ms: float | None = None,
                 attempts: int = 0, field: str | None = None, session_type: str | None = None) -> None:
    parts = [f"mint device={safe_name(device)}", f"outcome={outcome}", f"status={status}"]
    if code:
        parts.append(f"code={code}")
    if field:
        parts.append(f"field={_UNSAFE_FIELD.sub('?', field[:120])}")
    parts.append(f"upstream_status={upstream_status if upstream_status is not None else '-'}")
    parts.append("upstream_ms=" + (f"{upstream_latency_ms:.1f}" if upstream_latency_ms is not None else "-"))
    parts.append(f"attempts={attempts}")
    if session_type:
        parts.append(f"session={_UNSAFE.sub('?', session_type[:20])}")
    parts.append(f"worker={os.getpid()}")
    log.log(logging.INFO if status < 500 else logging.WARNING, " ".join(parts))
