"""Equality of JSON values as JSON sees it. Pure function, any thread: the token backend compares a
requested session with the pinned one, the tool schema checks `enum`/`const` with it."""

from __future__ import annotations

from typing import Any


def json_equal(a: Any, b: Any) -> bool:
    """1 == 1.0, but true != 1; containers compare element by element."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b
