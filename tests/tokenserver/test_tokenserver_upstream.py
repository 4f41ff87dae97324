"""Upstream call: retries, Retry-After, and the mapping of failures to 502/503/504 (httpx.MockTransport)."""

import asyncio
import json

import httpx
import pytest

from pivoice.tokenserver.upstream import UpstreamClient, UpstreamFailure

API_KEY = "sk-test-NEVER-LEAK-0123456789"
SECRET = {"value": "ek_abc", "expires_at": 1_900_000_060, "session": {"type": "realtime", "model": "gpt-realtime"}}
BODY = {"expires_after": {"anchor": "created_at", "seconds": 60}, "session": {"type": "realtime"}}


def script(*responses):
    """A MockTransport answering with `responses` in order (an Exception instance is raised)."""
    seen = []

    def handler(request: httpx.Request):
        seen.append(request)
        item = responses[min(len(seen), len(responses)) - 1]
        if isinstance(item, Exception):
            raise item
        return item

    return httpx.MockTransport(handler), seen


def run(transport, *, retries=2, max_retry_after_s=2.0):
    sleeps = []

    async def fake_sleep(s):
        sleeps.append(s)

    async def go():
        client = UpstreamClient("http://upstream.test/", API_KEY, retries=retries, backoff_s=0.2,
                                max_retry_after_s=max_retry_after_s, transport=transport, sleep=fake_sleep)
        try:
            return await client.create_client_secret(BODY)
        finally:
            await client.aclose()

    try:
        return asyncio.run(go()), sleeps
    except UpstreamFailure as exc:
        assert API_KEY not in str(exc) and API_KEY not in exc.message
        return exc, sleeps


def test_success_sends_key_and_body():
    transport, seen = script(httpx.Response(200, json=SECRET))
    result, sleeps = run(transport)
    assert result.data == SECRET and result.status == 200 and result.attempts == 1 and sleeps == []
    request = seen[0]
    assert str(request.url) == "http://upstream.test/v1/realtime/client_secrets"
    assert request.method == "POST" and request.headers["authorization"] == f"Bearer {API_KEY}"
    assert json.loads(request.content) == BODY


def test_retries_5xx_with_growing_backoff_then_succeeds():
    transport, seen = script(httpx.Response(500), httpx.Response(502), httpx.Response(200, json=SECRET))
    result, sleeps = run(transport)
    assert result.attempts == 3 and len(seen) == 3
    assert 0.1 <= sleeps[0] <= 0.2 and 0.2 <= sleeps[1] <= 0.4


def test_short_retry_after_is_honoured_long_one_is_not():
    transport, _ = script(httpx.Response(429, headers={"Retry-After": "1"}), httpx.Response(200, json=SECRET))
    result, sleeps = run(transport)
    assert result.attempts == 2 and sleeps == [1.0]
    transport, seen = script(httpx.Response(429, headers={"Retry-After": "30"},
                                            json={"error": {"code": "rate_limit_exceeded", "message": "slow"}}))
    failure, sleeps = run(transport)
    assert len(seen) == 1 and sleeps == []
    assert (failure.http_status, failure.code, failure.upstream_status, failure.upstream_code) == \
        (502, "upstream_error", 429, "rate_limit_exceeded")


@pytest.mark.parametrize("responses, status, code, upstream_status, attempts", [
    ([httpx.Response(503)], 503, "upstream_unavailable", 503, 3),
    ([httpx.Response(500, json={"error": {"code": "server_error"}})], 502, "upstream_error", 500, 3),
    ([httpx.Response(400, json={"error": {"code": "invalid_value", "message": "bad voice"}})],
     502, "upstream_error", 400, 1),
    ([httpx.Response(401, json={"error": {"code": "invalid_api_key",
                                          "message": f"Incorrect API key provided: {API_KEY[:8]}***"}})],
     502, "upstream_error", 401, 1),
    ([httpx.ConnectError("refused")], 503, "upstream_unavailable", None, 3),
    ([httpx.ConnectError("refused"), httpx.Response(200, json=SECRET)], 200, None, 200, 2),
    ([httpx.ReadTimeout("slow")], 504, "upstream_timeout", None, 1),
    ([httpx.ConnectTimeout("slow")], 504, "upstream_timeout", None, 1),
    ([httpx.RemoteProtocolError("eof")], 503, "upstream_unavailable", None, 1),
    ([httpx.Response(200, text="not json")], 502, "upstream_error", 200, 1),
    ([httpx.Response(200, json={"value": "ek_x", "expires_at": "soon", "session": {}})],
     502, "upstream_error", 200, 1),
])
def test_failure_mapping(responses, status, code, upstream_status, attempts):
    transport, seen = script(*responses)
    outcome, _ = run(transport)
    assert len(seen) == attempts
    if status == 200:
        assert outcome.status == 200 and outcome.attempts == attempts
        return
    assert isinstance(outcome, UpstreamFailure)
    assert (outcome.http_status, outcome.code, outcome.upstream_status, outcome.attempts) == \
        (status, code, upstream_status, attempts)
    assert "Incorrect API key" not in outcome.message  # upstream messages are never passed on


def test_upstream_error_code_is_kept_message_is_not():
    transport, _ = script(httpx.Response(400, json={"error": {"code": "invalid_value", "message": "secret detail"}}))
    failure, _ = run(transport)
    assert failure.upstream_code == "invalid_value" and "secret detail" not in failure.message


def test_zero_retries_means_one_attempt():
    transport, seen = script(httpx.Response(503))
    failure, sleeps = run(transport, retries=0)
    assert len(seen) == 1 and sleeps == [] and failure.http_status == 503
