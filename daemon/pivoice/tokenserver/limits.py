"""Per-device mint limits: a token bucket for the rate and a per-UTC-day budget.

The state lives in one DB row per device; `registry.Registry.take_mint` locks that row,
calls `decide` and writes the new state in the same transaction, so every worker on every
host sees one consistent count. This module is the arithmetic only: pure and thread-agnostic.

Why a token bucket and not a fixed per-minute counter: a fixed window lets a device mint
twice its rate across a window boundary; the bucket holds at most `rate_per_min` tokens
(the burst a rebooting fleet needs) and refills continuously at rate_per_min / 60 per second.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class LimitState:
    bucket_tokens: float
    bucket_at_s: float   # wall-clock unix seconds of the last refill computation
    day: str             # UTC day, YYYY-MM-DD, the counter below belongs to
    day_count: int


@dataclass(frozen=True)
class LimitDecision:
    allowed: bool
    code: str | None = None     # "rate_limited" or "daily_budget_exhausted" when refused
    retry_after_s: int = 0      # whole seconds, >= 1 when refused


def utc_day(now_s: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(now_s))


def seconds_to_next_utc_day(now_s: float) -> float:
    return 86400.0 - (now_s % 86400.0)


def decide(state: LimitState | None, now_s: float, rate_per_min: int,
           daily_budget: int) -> tuple[LimitDecision, LimitState]:
    """Decide one mint attempt; returns the decision and the state to store.

    A refused attempt does not consume budget, so a device that backs off per
    Retry-After gets through as soon as it is allowed to.
    """
    capacity = float(rate_per_min)
    refill_per_s = rate_per_min / 60.0
    day = utc_day(now_s)
    if state is None:
        tokens, day_count = capacity, 0
    else:
        # A clock step backwards must not mint tokens or refuse forever: clamp elapsed at 0.
        elapsed_s = max(0.0, now_s - state.bucket_at_s)
        tokens = min(capacity, state.bucket_tokens + elapsed_s * refill_per_s)
        day_count = state.day_count if state.day == day else 0

    if day_count >= daily_budget:
        retry = max(1, math.ceil(seconds_to_next_utc_day(now_s)))
        return (LimitDecision(False, "daily_budget_exhausted", retry),
                LimitState(tokens, now_s, day, day_count))
    if tokens < 1.0:
        retry = max(1, math.ceil((1.0 - tokens) / refill_per_s))
        return LimitDecision(False, "rate_limited", retry), LimitState(tokens, now_s, day, day_count)
    return LimitDecision(True), LimitState(tokens - 1.0, now_s, day, day_count + 1)
