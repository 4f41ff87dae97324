"""The ASGI app in-process: auth, body/policy/limit errors, upstream mapping, audit log hygiene."""

import asyncio
import json
import logging

import httpx
import pytest

from pivoice.tokenserver.app import create_app
from pivoice.tokenserver.auth import hash_secret
from pivoice.tokenserver.config import parse_config
from pivoice.tokenserver.registry import Registry

API_KEY = "sk-app-test-KEY-do-not-log-77"
SECRETS = {"kitchen": "kitchen-secret-abcdefghijklmnopqrstuvwxyz012345", "attic": "attic-secret-0987654321"}
EK = "ek_app_test_value_1234567890"
NOW_S = 1_900_000_000.5
MINT = "/v1/realtime/client_secrets"


class Upstream:
    """Scripted upstream: records request bodies, answers with `status` (200 = a secret)."""

    def __init__(self):
        self.bodies, self.status = [], 200

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.bodies.append(body)
        if self.status != 200:
            return httpx.Response(self.status, json={"error": {"code": "boom", "message": API_KEY}})
        return httpx.Response(200, json={"value": EK, "expires_at": int(NOW_S) + 60,
                                         "session": {**body["session"], "object": "realtime.session"}})


@pytest.fixture
def env(tmp_path):
    config = parse_config({"database_url": f"sqlite:///{tmp_path / 'd.db'}",
                           "upstream": {"retries": 1, "backoff_s": 0},
                           "policy": {"instructions": "Be brief.", "max_expires_after_s": 120},
                           "limits": {"mint_rate_per_min": 3, "daily_budget": 100}}, "t.yaml")
    registry = Registry(config.database_url)
    registry.init_schema()
    for name, secret in SECRETS.items():
        registry.add_device(name, hash_secret(secret), NOW_S)
    upstream = Upstream()
    app = create_app(config, api_key=API_KEY, registry=registry, transport=httpx.MockTransport(upstream),
                     clock=lambda: NOW_S)
    yield app, registry, upstream
    registry.close()


def call(app, method="POST", path=MINT, *, auth=("kitchen", SECRETS["kitchen"]), body=None, raw=None, n=1):
    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ts.test") as client:
            out = []
            for _ in range(n):
                content = raw if raw is not None else (json.dumps(body) if body is not None else None)
                out.append(await client.request(method, path, auth=auth, content=content))
            return out
    responses = asyncio.run(go())
    return responses[0] if n == 1 else responses


def test_mint_returns_secret_server_time_and_no_store(env):
    app, _, upstream = env
    r = call(app, body={"session": {"type": "realtime", "model": "gpt-realtime",
                                    "audio": {"output": {"voice": "cedar"}}}})
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    assert r.json() == {"value": EK, "expires_at": int(NOW_S) + 60, "server_time": NOW_S,
                        "session": {**upstream.bodies[0]["session"], "object": "realtime.session"}}
    sent = upstream.bodies[0]
    assert sent["expires_after"] == {"anchor": "created_at", "seconds": 60}
    assert sent["session"]["instructions"] == "Be brief." and sent["session"]["audio"]["output"]["voice"] == "cedar"


@pytest.mark.parametrize("raw", [None, b"", b"{}", b"  \n"])
def test_empty_bodies_mean_defaults(env, raw):
    app, _, upstream = env
    assert call(app, raw=raw).status_code == 200
    assert upstream.bodies[-1]["session"]["model"] == "gpt-realtime"


@pytest.mark.parametrize("auth", [None, ("kitchen", "wrong"), ("ghost", "x"), ("kitchen", ""),
                                  ("bad name!", "x"), ("attic", SECRETS["kitchen"])])
def test_unauthorized(env, auth):
    app, _, upstream = env
    r = call(app, auth=auth)
    assert r.status_code == 401 and r.headers["www-authenticate"] == 'Basic realm="pivoice"'
    assert r.json()["error"]["code"] == "unauthorized" and upstream.bodies == []


def test_revoked_device_is_refused_at_once(env):
    app, registry, _ = env
    assert call(app).status_code == 200
    registry.revoke("kitchen", NOW_S)
    assert call(app).status_code == 401
    assert call(app, auth=("attic", SECRETS["attic"])).status_code == 200


@pytest.mark.parametrize("raw, where", [
    (b"{not json", "not valid JSON: Expecting property name enclosed in double quotes at line 1 column 2"),
    (b"[1, 2]", "must be a JSON object"), (b'{"session": 3}', "session must be a JSON object"),
    (b'{"sesion": {}}', "unknown field 'sesion'"), (b'{"expires_after": {"seconds": 5}}', "expires_after.seconds"),
    (b'{"expires_after": {"seconds": NaN}}', "NaN"), (b"[" * 60000, "not valid JSON")
])
def test_invalid_request(env, raw, where):
    app, _, upstream = env
    r = call(app, raw=raw)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request"
    assert where in r.json()["error"]["message"] and upstream.bodies == []


def test_an_oversized_body_is_413_whether_declared_or_streamed(env):
    app, _, upstream = env
    declared = call(app, raw=b"[" * 70000)
    assert declared.status_code == 413 and declared.json()["error"]["code"] == "body_too_large"
    assert "Content-Length 70000" in declared.json()["error"]["message"]

    async def chunks():   # no Content-Length: the limit must hold on the counted read
        for _ in range(100):
            yield b" " * 4096
    streamed = call(app, raw=chunks())
    assert streamed.status_code == 413 and "larger than 65536 bytes" in streamed.json()["error"]["message"]
    assert upstream.bodies == []


@pytest.mark.parametrize("body, field", [
    ({"session": {"instructions": "Obey me."}}, "session.instructions"),
    ({"session": {"tools": [{"type": "mcp", "server_label": "x"}]}}, "session.tools"),
    ({"expires_after": {"anchor": "created_at", "seconds": 600}}, "expires_after.seconds"),
])
def test_forbidden_override(env, body, field):
    app, _, upstream = env
    r = call(app, body=body)
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden_override"
    assert r.json()["error"]["field"] == field and upstream.bodies == []


def test_rate_limit_per_device_with_retry_after(env):
    app, _, upstream = env
    responses = call(app, n=4)
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    limited = responses[3]
    assert limited.headers["retry-after"] == "20"
    assert limited.json()["error"]["code"] == "rate_limited" and limited.json()["error"]["retry_after_s"] == 20
    assert len(upstream.bodies) == 3
    assert call(app, auth=("attic", SECRETS["attic"])).status_code == 200  # other devices unaffected


def test_device_policy_overrides_apply_per_request(env):
    app, registry, _ = env
    registry.set_policy("kitchen", {"max_expires_after_s": 600, "daily_budget": 1})
    assert call(app, body={"expires_after": {"seconds": 600}}).status_code == 200
    r = call(app)
    assert r.status_code == 429 and r.json()["error"]["code"] == "daily_budget_exhausted"
    assert int(r.headers["retry-after"]) == r.json()["error"]["retry_after_s"] > 0
    registry.set_policy("kitchen", {"daily_budget": "many"})
    r = call(app)
    assert r.status_code == 500 and r.json()["error"]["code"] == "invalid_device_policy"


@pytest.mark.parametrize("status, expected", [(503, 503), (500, 502), (400, 502)])
def test_upstream_failures_are_mapped(env, status, expected):
    app, _, upstream = env
    upstream.status = status
    r = call(app)
    assert r.status_code == expected
    error = r.json()["error"]
    assert error["upstream_status"] == status and error["upstream_code"] == "boom"
    assert API_KEY not in r.text


def test_unknown_routes_and_methods_are_json(env):
    app, _, _ = env
    r = call(app, "GET", "/nope", auth=None)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = call(app, "GET", MINT, auth=None)
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


def test_healthz_reflects_the_database(env, tmp_path):
    app, _, _ = env
    r = call(app, "GET", "/healthz", auth=None)
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    config = parse_config({"database_url": "sqlite:////proc/pivoice-nonexistent/d.db"}, "t.yaml")
    broken = create_app(config, api_key=API_KEY, transport=httpx.MockTransport(Upstream()))
    r = call(broken, "GET", "/healthz", auth=None)
    assert r.status_code == 503 and r.json() == {"status": "unavailable"}
    r = call(broken)
    assert r.status_code == 503 and r.json()["error"]["code"] == "database_unavailable"


def test_audit_log_has_one_line_per_attempt_and_no_secrets(env, caplog):
    app, registry, upstream = env
    caplog.set_level(logging.DEBUG)
    call(app, body={"session": {"audio": {"output": {"voice": "ash"}}}})
    call(app, auth=("kitchen", "wrong-" + SECRETS["kitchen"]))
    call(app, auth=(SECRETS["attic"], SECRETS["kitchen"]))  # secret typed as the device id
    call(app, body={"session": {"instructions": SECRETS["attic"]}})
    call(app, raw=b"{")
    upstream.status = 503
    call(app, auth=("attic", SECRETS["attic"]))
    call(app, n=3)  # kitchen has 2 tokens left: 2 upstream failures, then 429
    audit = [r.getMessage() for r in caplog.records if r.name == "pivoice.tokenserver.audit"]
    assert len(audit) == 9
    assert "device=- outcome=unauthorized status=401 code=unknown_device" in audit.pop(2)
    assert audit[0].startswith("mint device=kitchen outcome=minted status=200") and "upstream_status=200" in audit[0]
    assert "device=kitchen outcome=unauthorized status=401 code=wrong_secret" in audit[1]
    assert "outcome=forbidden_override status=403" in audit[2] and "field=session.instructions" in audit[2]
    assert "outcome=invalid_request status=400" in audit[3]
    assert "device=attic outcome=upstream_failed status=503" in audit[4] and "attempts=2" in audit[4]
    assert "device=kitchen outcome=upstream_failed status=503" in audit[6]
    assert "outcome=limited status=429 code=rate_limited" in audit[7]
    everything = caplog.text + "\n".join(audit)
    for needle in [API_KEY, EK, *SECRETS.values(), "ek_"]:
        assert needle not in everything
