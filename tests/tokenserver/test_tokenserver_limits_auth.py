"""Token-bucket/daily-budget arithmetic, secret hashing and HTTP Basic parsing."""

import base64
import hashlib
import math

import pytest

from pivoice.tokenserver.auth import (check_device_name, hash_secret, new_secret, parse_basic_auth,
                                      verify_secret)
from pivoice.tokenserver.limits import LimitState, decide, seconds_to_next_utc_day, utc_day

NOW_S = 1_900_000_000.0


def test_bucket_allows_burst_then_refills_at_rate():
    state, allowed = None, []
    for _ in range(7):
        decision, state = decide(state, NOW_S, 6, 100)
        allowed.append(decision.allowed)
    assert allowed == [True] * 6 + [False]
    refused, _ = decide(state, NOW_S, 6, 100)
    assert refused.code == "rate_limited" and refused.retry_after_s == 10  # 6/min = one per 10 s
    assert not decide(state, NOW_S + 9.5, 6, 100)[0].allowed
    decision, state = decide(state, NOW_S + 10, 6, 100)
    assert decision.allowed and state.day_count == 7
    # a long pause refills to capacity, not beyond
    _, full = decide(state, NOW_S + 3600, 6, 100)
    assert full.bucket_tokens == pytest.approx(5.0)


def test_refused_attempts_cost_nothing():
    state = LimitState(0.5, NOW_S, utc_day(NOW_S), 3)
    decision, after = decide(state, NOW_S, 60, 100)
    assert not decision.allowed and decision.retry_after_s == 1
    assert after.day_count == 3 and after.bucket_tokens == pytest.approx(0.5)


def test_daily_budget_resets_at_utc_midnight():
    state = LimitState(6.0, NOW_S, utc_day(NOW_S), 10)
    decision, _ = decide(state, NOW_S, 6, 10)
    assert decision.code == "daily_budget_exhausted"
    assert decision.retry_after_s == math.ceil(seconds_to_next_utc_day(NOW_S)) == 22400
    midnight = NOW_S - NOW_S % 86400 + 86400
    decision, state = decide(state, midnight, 6, 10)
    assert decision.allowed and state.day_count == 1 and state.day == utc_day(midnight)


def test_clock_stepping_back_neither_mints_nor_blocks_forever():
    state = LimitState(0.0, NOW_S, utc_day(NOW_S), 1)
    decision, after = decide(state, NOW_S - 3600, 6, 100)
    assert not decision.allowed and decision.retry_after_s == 10
    assert decide(after, NOW_S - 3600 + 10, 6, 100)[0].allowed


def test_secret_hash_and_constant_time_compare():
    secret = new_secret()
    assert len(secret) >= 43 and new_secret() != secret  # 32 random bytes, url-safe base64
    stored = hash_secret(secret)
    assert stored == "sha256:" + hashlib.sha256(secret.encode()).hexdigest() and secret not in stored
    assert verify_secret(secret, stored)
    assert not verify_secret(secret + "x", stored)
    assert not verify_secret("", stored)
    assert not verify_secret(secret, None)  # unknown device
    assert not verify_secret("pivoice-no-such-device", None)  # the dummy hash never matches


def _basic(text: str) -> str:
    return "Basic " + base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize("header, expected", [
    (_basic("kitchen:s3:cret"), ("kitchen", "s3:cret")),
    ("basic " + base64.b64encode(b"a:b").decode(), ("a", "b")),
    (_basic("kitchen"), None), (_basic(":secret"), None), ("Bearer abc", None), ("Basic", None),
    ("Basic !!!notbase64", None), ("Basic " + base64.b64encode(b"\xff:x").decode(), None), (None, None), ("", None),
])
def test_parse_basic_auth(header, expected):
    assert parse_basic_auth(header) == expected


@pytest.mark.parametrize("name, ok", [("kitchen", True), ("pi-4.attic_2", True), ("a" * 64, True),
                                      ("a" * 65, False), ("-lead", False), ("has space", False),
                                      ("colon:name", False), ("", False)])
def test_device_names(name, ok):
    assert (check_device_name(name) is None) is ok
