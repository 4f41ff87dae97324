"""Parsing backend responses: lifetimes anchored on the monotonic clock, error mapping, redaction."""

import base64
import json

import pytest

from pivoice.tokens import HttpResponse, Secret, TokenError
from pivoice.tokens.wire import parse_mint_response, parse_retry_after, request_headers
from support.tokens_fakes import DEVICE_SECRET, WALL_NOW_S, error, mint

WHERE = "backend 127.0.0.1:8780"


def parse(response, sent=500.0):
    return parse_mint_response(response, sent_mono_s=sent, where=WHERE, device_id="kitchen",
                               secret=Secret(DEVICE_SECRET))


def failure(response) -> TokenError:
    with pytest.raises(TokenError) as info:
        parse(response)
    return info.value


def test_request_headers_basic_auth():
    h = request_headers("kitchen", Secret("pw:with:colons"))
    assert base64.b64decode(h["Authorization"].split()[1]).decode() == "kitchen:pw:with:colons"
    assert h["Content-Type"] == "application/json"


def test_lifetime_from_server_time_anchored_at_send_time():
    key = parse(mint("ek_abc", 60, server_time=WALL_NOW_S + 0.25), sent=500.0)
    assert key.value.reveal() == "ek_abc"
    assert key.expires_at_mono_s == pytest.approx(500.0 + 60 - 0.25)
    assert key.session["type"] == "realtime"


@pytest.mark.parametrize("server_wall_s", [0.0, 86400.0, 1_600_000_000.0, 4_000_000_000.0])
def test_wall_clock_of_server_or_device_does_not_matter(server_wall_s):
    # A Pi booted without RTC thinks it is 1970; only expires_at - server_time counts.
    key = parse(mint("ek_abc", 45, server_time=server_wall_s), sent=10.0)
    assert key.valid_for_s(10.0) == pytest.approx(45, abs=1)


def test_lifetime_falls_back_to_date_header_then_default():
    date = "Thu, 01 Jan 2032 00:00:00 GMT"
    date_s = 1956528000.0
    r = HttpResponse(200, {"date": date}, json.dumps({"value": "ek_x", "expires_at": int(date_s) + 60,
                                                      "session": {}}).encode())
    assert parse(r, sent=0.0).expires_at_mono_s == pytest.approx(59.0)  # 1 s taken off for Date resolution
    r = HttpResponse(200, {}, json.dumps({"value": "ek_x", "expires_at": 123, "session": {}}).encode())
    assert parse(r, sent=0.0).expires_at_mono_s == 30.0


@pytest.mark.parametrize("lifetime_s", [0, -5, 7201, 10**9])
def test_nonsensical_lifetimes_are_bad_response(lifetime_s):
    err = failure(mint("ek_abc", lifetime_s))
    assert err.code == "bad_response" and "lifetime" in err.message and WHERE in err.message


@pytest.mark.parametrize("doc, what", [
    ({"expires_at": 1, "server_time": 0}, "missing 'value'"),
    ({"value": 5, "expires_at": 60, "server_time": 0}, "'value' is a int"),
    ({"value": "sk-real-key", "expires_at": 60, "server_time": 0}, "not an ek_"),
    ({"value": "ek_has space", "expires_at": 60, "server_time": 0}, "unexpected characters"),
    ({"value": "ek_" + "a" * 600, "expires_at": 60, "server_time": 0}, "unexpected characters or length"),
    ({"value": "ek_ok"}, "missing 'expires_at'"),
    ({"value": "ek_ok", "expires_at": "60"}, "'expires_at' is not a number"),
    ({"value": "ek_ok", "expires_at": True}, "'expires_at' is not a number"),
    ({"value": "ek_ok", "expires_at": 60, "server_time": "now"}, "'server_time' is not a number"),
    ({"value": "ek_ok", "expires_at": 60, "server_time": 0, "session": []}, "'session' is a list"),
    (["ek_ok"], "JSON list"),
])
def test_malformed_bodies_name_the_problem_without_echoing_values(doc, what):
    err = failure(HttpResponse(200, {}, json.dumps(doc).encode()))
    assert err.code == "bad_response" and what in err.message
    assert "sk-real-key" not in err.message and "has space" not in err.message


def test_non_json_200():
    err = failure(HttpResponse(200, {}, b"<html>ek_leaked</html>"))
    assert err.code == "bad_response" and "not JSON" in err.message and "leaked" not in err.message


@pytest.mark.parametrize("response, code, status, snippets", [
    (error(400, "invalid_request", "session.model missing"), "invalid_request", 400, ["400", "session.model"]),
    (error(401, "unauthorized"), "unauthorized", 401, ["401 unauthorized", "'kitchen'"]),
    (error(403, "forbidden_override", field="session.model"), "forbidden_override", 403,
     ["403", "session.model may not be overridden"]),
    (error(429, "rate_limited", retry_after="12"), "rate_limited", 429, ["429 rate_limited"]),
    (error(429, "daily_budget_exhausted", retry_after="3600"), "daily_budget_exhausted", 429, ["budget"]),
    (error(502, "upstream_error", upstream_status=500), "upstream_error", 502, ["upstream answered 500"]),
    (error(503, "upstream_unavailable"), "upstream_unavailable", 503, ["503"]),
    (error(504, "upstream_timeout"), "upstream_timeout", 504, ["504"]),
    (HttpResponse(500, {}, b"Internal Server Error"), "server_error", 500, ["unexpected HTTP 500"]),
    (HttpResponse(302, {"location": "http://evil"}, b""), "bad_response", 302, ["unexpected HTTP 302"]),
    (HttpResponse(429, {"retry-after": "5"}, b"slow down"), "rate_limited", 429, ["429 rate_limited"]),
])
def test_error_statuses_map_to_codes(response, code, status, snippets):
    err = failure(response)
    assert (err.code, err.http_status) == (code, status)
    assert WHERE in err.message
    for s in snippets:
        assert s in err.message


def test_retry_after_is_carried_and_parsed():
    assert failure(error(429, "rate_limited", retry_after="12")).retry_after_s == 12.0
    assert failure(error(503, "upstream_unavailable", retry_after="2.5")).retry_after_s == 2.5
    assert failure(error(401, "unauthorized")).retry_after_s is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") is None  # needs a wall clock we distrust
    assert parse_retry_after("-3") is None and parse_retry_after("nan") is None
    assert parse_retry_after("999999999") == 86400.0


def test_server_messages_are_redacted_and_truncated():
    msg = f"bad secret {DEVICE_SECRET} for ek_abc123 " + "x" * 500 + "\x1b[31m"
    err = failure(error(401, "unauthorized", msg))
    assert DEVICE_SECRET not in err.message and "ek_abc123" not in err.message
    assert "\x1b" not in err.message and len(err.message) < 400


def test_weird_error_codes_are_not_trusted():
    err = failure(error(400, "<script>alert(1)</script>"))
    assert err.code == "invalid_request" and "script" not in err.message.split(":")[0]
