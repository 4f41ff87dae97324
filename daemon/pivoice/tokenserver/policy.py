"""What a device may ask for: the pinned session, the fields it may override, TTLs and limits.

The upstream session is the pinned base (model, instructions, tools, extra pinned fields)
merged with the device's request, restricted to `allowed_overrides`. A device may repeat a
pinned value unchanged (the daemon sends its whole session config, `type` and `model`
included); any other leaf is refused, naming its dotted path.

A request with `session.type: "transcription"` (dictation) is merged the same way onto the
policy's `transcription` section instead: its pinned `audio.input.transcription.model` (and
`language`, when set), extra pinned fields and its own `allowed_overrides`. A policy without
that section (the default) refuses transcription sessions with 403 transcription_not_allowed.

Pure functions and frozen data: called from any worker's request handling.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Any

from pivoice.jsonvalue import json_equal  # noqa: F401  (part of this module's API)
from pivoice.settings import ConfigError, Section
from pivoice.tokenserver.transcription_policy import (TranscriptionPolicy, override_paths,
                                                      parse_transcription_policy, pinned_transcription_session)

MIN_EXPIRES_AFTER_S = 10  # upstream accepts 10 ... 7200 s
MAX_EXPIRES_AFTER_S = 7200
DEFAULT_ALLOWED_OVERRIDES = (
    "audio.output.voice", "audio.output.speed", "audio.output.format", "audio.input.format",
    "audio.input.noise_reduction", "audio.input.turn_detection", "audio.input.transcription",
    "output_modalities",
)
# These have their own policy keys; accepting them in `session` too would make two sources of truth.
_DEDICATED_KEYS = ("type", "model", "instructions", "tools")
POLICY_KEYS = ("model", "instructions", "tools", "session", "default_expires_after_s",
               "max_expires_after_s", "allowed_overrides", "transcription", "mint_rate_per_min", "daily_budget")
_MISSING = object()


class RequestError(ValueError):
    """The request body is malformed (HTTP 400 invalid_request)."""


class PolicyViolation(ValueError):
    """The device asked for something its policy forbids (HTTP 403 `code`, forbidden_override by default)."""

    def __init__(self, field: str, message: str, code: str = "forbidden_override"):
        super().__init__(message)
        self.field = field
        self.code = code


@dataclass(frozen=True)
class Policy:
    model: str
    instructions: str
    tools: tuple
    session: dict
    default_expires_after_s: int
    max_expires_after_s: int
    allowed_overrides: tuple[str, ...]
    mint_rate_per_min: int
    daily_budget: int
    transcription: TranscriptionPolicy | None = None  # None: no transcription sessions

    def as_dict(self) -> dict:
        return {"model": self.model, "instructions": self.instructions, "tools": list(self.tools),
                "session": copy.deepcopy(self.session),
                "default_expires_after_s": self.default_expires_after_s,
                "max_expires_after_s": self.max_expires_after_s,
                "allowed_overrides": list(self.allowed_overrides),
                "transcription": self.transcription.as_dict() if self.transcription else None,
                "mint_rate_per_min": self.mint_rate_per_min, "daily_budget": self.daily_budget}


def _policy_fields(sec: Section, d: dict) -> dict:
    """Read the policy keys of `sec`, each defaulting to `d[key]`."""
    tools = sec.raw("tools", d["tools"])
    if not isinstance(tools, (list, tuple)) or not all(
            isinstance(t, dict) and isinstance(t.get("type"), str) for t in tools):
        raise sec.error("tools", "must be a list of mappings, each with a string `type`")
    session = sec.raw("session", d["session"])
    if not isinstance(session, dict):
        raise sec.error("session", "must be a mapping of extra pinned session fields")
    for key in _DEDICATED_KEYS:
        if key in session:
            hint = ("is always realtime here (transcription sessions: use policy.transcription)" if key == "type"
                    else f"use {sec.key_path(key)} instead")
            raise ConfigError(sec.file, f"{sec.key_path('session')}.{key}", f"not allowed here: {hint}")
    allowed = override_paths(sec, d["allowed_overrides"])
    return {
        "model": sec.str("model", d["model"]),
        "instructions": sec.str("instructions", d["instructions"], non_empty=False),
        "tools": tuple(copy.deepcopy(tools)), "session": copy.deepcopy(session),
        "default_expires_after_s": sec.int("default_expires_after_s", d["default_expires_after_s"],
                                           min=MIN_EXPIRES_AFTER_S, max=MAX_EXPIRES_AFTER_S),
        "max_expires_after_s": sec.int("max_expires_after_s", d["max_expires_after_s"],
                                       min=MIN_EXPIRES_AFTER_S, max=MAX_EXPIRES_AFTER_S),
        "allowed_overrides": allowed,
        "transcription": parse_transcription_policy(sec, d.get("transcription")),
    }


def _check_ttls(sec: Section, fields: dict) -> None:
    if fields["default_expires_after_s"] > fields["max_expires_after_s"]:
        raise sec.error("default_expires_after_s",
                        f"must be <= max_expires_after_s ({fields['max_expires_after_s']})")


_BUILTIN = {"model": "gpt-realtime", "instructions": "You are a concise, friendly voice assistant.",
            "tools": [], "session": {}, "default_expires_after_s": 60, "max_expires_after_s": 300,
            "allowed_overrides": list(DEFAULT_ALLOWED_OVERRIDES), "mint_rate_per_min": 6, "daily_budget": 1000}


def parse_policy(policy_sec: Section, limits_sec: Section) -> Policy:
    """The default policy from the config's `policy:` and `limits:` sections."""
    fields = _policy_fields(policy_sec, _BUILTIN)
    _check_ttls(policy_sec, fields)
    policy_sec.done()
    fields["mint_rate_per_min"] = limits_sec.int("mint_rate_per_min", _BUILTIN["mint_rate_per_min"],
                                                 min=1, max=100_000)
    fields["daily_budget"] = limits_sec.int("daily_budget", _BUILTIN["daily_budget"], min=1, max=10**9)
    return Policy(**fields)


def device_policy(base: Policy, overrides: dict, device: str) -> Policy:
    """`base` with a device's stored overrides applied; ConfigError names device and key."""
    if not overrides:
        return base
    sec = Section(overrides, f"device {device}", "policy")
    fields = _policy_fields(sec, base.as_dict())
    fields["mint_rate_per_min"] = sec.int("mint_rate_per_min", base.mint_rate_per_min, min=1, max=100_000)
    fields["daily_budget"] = sec.int("daily_budget", base.daily_budget, min=1, max=10**9)
    _check_ttls(sec, fields)
    sec.done()
    return replace(base, **fields)


def pinned_session(policy: Policy) -> dict:
    session = copy.deepcopy(policy.session)
    session.update(type="realtime", model=policy.model, instructions=policy.instructions,
                   tools=copy.deepcopy(list(policy.tools)))
    return session


def _lookup(tree: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(tree, dict) or part not in tree:
            return _MISSING
        tree = tree[part]
    return tree


def _assign(tree: dict, path: tuple[str, ...], value: Any) -> None:
    for part in path[:-1]:
        if not isinstance(tree.get(part), dict):
            tree[part] = {}
        tree = tree[part]
    tree[path[-1]] = value


def merge_session(policy: Policy, requested: Any) -> dict:
    """The session to send upstream; raises PolicyViolation naming `session.<path>`."""
    if requested is None:
        requested = {}
    if not isinstance(requested, dict):
        raise RequestError("session must be a JSON object")
    if requested.get("type") == "transcription":
        if policy.transcription is None:
            raise PolicyViolation("session.type", "session.type 'transcription' (dictation) is not allowed for this "
                                  "device: its policy has no transcription section (policy.transcription is null)",
                                  code="transcription_not_allowed")
        base = pinned_transcription_session(policy.transcription)
        overrides = policy.transcription.allowed_overrides
    else:
        base, overrides = pinned_session(policy), policy.allowed_overrides
    result = copy.deepcopy(base)
    allowed = [tuple(p.split(".")) for p in overrides]

    def walk(value: Any, path: tuple[str, ...]) -> None:
        if any(path[:len(a)] == a for a in allowed):
            _assign(result, path, copy.deepcopy(value))
        elif isinstance(value, dict):
            for key, sub in value.items():
                walk(sub, path + (key,))
        else:
            pinned = _lookup(base, path)
            if pinned is _MISSING or not json_equal(pinned, value):
                field = "session." + ".".join(path)
                raise PolicyViolation(field, f"{field} may not be set by this device"
                                      + ("" if pinned is _MISSING else " to a value other than the pinned one"))

    for key, value in requested.items():
        walk(value, (key,))
    return result


def resolve_expires_after(policy: Policy, requested: Any) -> dict:
    """`expires_after` for upstream: the device's request within policy, else the default TTL."""
    if requested is None:
        return {"anchor": "created_at", "seconds": policy.default_expires_after_s}
    if not isinstance(requested, dict):
        raise RequestError("expires_after must be a JSON object")
    unknown = sorted(set(requested) - {"anchor", "seconds"})
    if unknown:
        raise RequestError(f"expires_after.{unknown[0]}: unknown field")
    if requested.get("anchor", "created_at") != "created_at":
        raise RequestError('expires_after.anchor must be "created_at"')
    seconds = requested.get("seconds", policy.default_expires_after_s)
    if isinstance(seconds, bool) or not isinstance(seconds, int):
        raise RequestError("expires_after.seconds must be an integer number of seconds")
    if seconds < MIN_EXPIRES_AFTER_S:
        raise RequestError(f"expires_after.seconds must be >= {MIN_EXPIRES_AFTER_S}")
    if seconds > policy.max_expires_after_s:
        raise PolicyViolation("expires_after.seconds",
                              f"expires_after.seconds must be <= {policy.max_expires_after_s} for this device")
    return {"anchor": "created_at", "seconds": seconds}
