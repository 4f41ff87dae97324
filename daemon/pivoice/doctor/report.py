"""Check results and how they are printed: one line each, or one JSON document for scripts.

Pure data and formatting; main thread.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

OK, WARN, FAIL, SKIPPED = "ok", "warn", "fail", "skipped"
_SHOWN = {OK: "ok", WARN: "warn", FAIL: "FAIL", SKIPPED: "skipped"}


@dataclass
class Result:
    """One check's verdict. `remedy` is a concrete command or config key, empty when status is ok."""

    check: str
    status: str
    detail: str
    remedy: str = ""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Context:
    """What earlier checks found, for the later ones: the config, the device secret, a minted key."""

    config_path: str
    cfg: Any = None           # pivoice.config.Config once the file parses
    secret: Any = None        # pivoice.tokens.Secret once the secret (or its credential source) reads
    key: Any = None           # pivoice.tokens.EphemeralKey once the backend minted one
    failed: set[str] = field(default_factory=set)


def line(result: Result) -> str:
    text = f"{_SHOWN[result.status]:<8}{result.check:<10}{result.detail}"
    if result.remedy and result.status != OK:
        text += f"  -> fix: {result.remedy}"
    return text


def to_json(results: list[Result]) -> str:
    return json.dumps([asdict(r) for r in results], indent=2, default=str)


def exit_status(results: list[Result]) -> int:
    return 1 if any(r.status == FAIL for r in results) else 0
