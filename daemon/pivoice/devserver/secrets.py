"""Ephemeral client secrets (`ek_...`) issued by the dev server, kept in memory.

A secret can open several sessions until it expires; expiry limits session
*creation* only (reference §1.1). Called from the ASGI event loop only.
Secret values are never logged.
"""

from __future__ import annotations

import secrets as _random
import time
from dataclasses import dataclass
from typing import Callable

MIN_TTL_S = 10
MAX_TTL_S = 7200
DEFAULT_TTL_S = 600


@dataclass(frozen=True)
class ClientSecret:
    value: str
    created_at_s: int
    expires_at_s: int
    session: dict  # the effective session config every session opened with it starts from


class SecretStore:
    """Issues and looks up ephemeral keys; `clock_s` is injectable so tests can expire keys instantly."""

    def __init__(self, clock_s: Callable[[], float] = time.time) -> None:
        self._clock_s = clock_s
        self._by_value: dict[str, ClientSecret] = {}

    def issue(self, session: dict, ttl_s: int = DEFAULT_TTL_S) -> ClientSecret:
        if not MIN_TTL_S <= ttl_s <= MAX_TTL_S:
            raise ValueError(f"ttl_s must be in {MIN_TTL_S}..{MAX_TTL_S}, got {ttl_s}")
        now_s = int(self._clock_s())
        secret = ClientSecret("ek_" + _random.token_hex(16), now_s, now_s + ttl_s, session)
        self._purge(now_s)
        self._by_value[secret.value] = secret
        return secret

    def lookup(self, value: str) -> ClientSecret | None:
        """The secret if it was issued here and has not expired, else None."""
        secret = self._by_value.get(value)
        if secret is None or self._clock_s() >= secret.expires_at_s:
            return None
        return secret

    def _purge(self, now_s: float) -> None:
        # bounded memory for load tests that mint many keys
        for value in [v for v, s in self._by_value.items() if now_s >= s.expires_at_s]:
            del self._by_value[value]

    def __len__(self) -> int:
        return len(self._by_value)
