"""`POST /v1/realtime/client_secrets`, the dev-only faults knob and WebSocket auth, on the real process."""

from __future__ import annotations

import struct
import time

import httpx
import pytest
import websocket

from pivoice.devserver.validation import check_client_secret_response
from support.devserver import RealtimeTestClient

pytestmark = pytest.mark.integration


def post_secret(dev, body=None, key="default", **kw):
    headers = {} if key is None else {"Authorization": f"Bearer {dev.api_key if key == 'default' else key}"}
    return httpx.post(dev.url + "/v1/realtime/client_secrets", json=body, headers=headers, timeout=10, **kw)


def test_client_secret_response_validates_and_opens_sessions(dev_server):
    body = {"expires_after": {"anchor": "created_at", "seconds": 60},
            "session": {"type": "realtime", "model": "gpt-realtime-mini", "instructions": "Be a test.",
                        "audio": {"output": {"voice": "marin"}}}}
    before = int(time.time())
    resp = post_secret(dev_server, body)
    assert resp.status_code == 200, resp.text
    data = resp.json()
    check = check_client_secret_response(data)
    assert check.ok, check.messages()
    assert data["value"].startswith("ek_") and len(data["value"]) == 3 + 32
    assert before + 60 <= data["expires_at"] <= before + 62
    session = data["session"]
    assert (session["object"], session["type"], session["model"]) == ("realtime.session", "realtime", "gpt-realtime-mini")
    assert session["audio"]["input"]["turn_detection"]["type"] == "server_vad"  # defaults filled in
    # one key, two sessions, both starting from the secret's config
    for _ in range(2):
        with RealtimeTestClient(dev_server.ws_url, data["value"]) as client:
            created = client.wait_for("session.created")["session"]
            assert created["instructions"] == "Be a test."
            assert created["audio"]["output"]["voice"] == "marin"
            assert created["model"] == "gpt-realtime-mini"
            assert client.invalid == []


@pytest.mark.parametrize("seconds, code", [(9, "integer_below_min_value"), (7201, "integer_above_max_value")])
def test_client_secret_ttl_range(dev_server, seconds, code):
    resp = post_secret(dev_server, {"expires_after": {"anchor": "created_at", "seconds": seconds}})
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert (error["code"], error["param"], error["type"]) == (code, "expires_after.seconds", "invalid_request_error")


@pytest.mark.parametrize("session, param, code", [
    ({"type": "realtime", "modalities": ["audio"]}, "session.modalities", "unknown_parameter"),
    ({"type": "realtime", "audio": {"input": {"noise_reduction": {"type": "studio"}}}},
     "session.audio.input.noise_reduction.type", "invalid_value"),
    ({"type": "realtime", "output_modalities": ["audio", "text"]}, "session.output_modalities", "invalid_value"),
    ({"model": "gpt-realtime"}, "session.type", "invalid_value"),
])
def test_client_secret_session_is_validated(dev_server, session, param, code):
    resp = post_secret(dev_server, {"session": session})
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert (error["param"], error["code"]) == (param, code)
    assert param in error["message"]


@pytest.mark.parametrize("key", [None, "sk-wrong", "ek_0123456789abcdef0123456789abcdef"])
def test_client_secrets_needs_the_api_key(dev_server, key):
    resp = post_secret(dev_server, {}, key=key)
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "invalid_api_key"


def test_an_ephemeral_key_cannot_mint_keys(dev_server):
    ek = post_secret(dev_server).json()["value"]
    assert post_secret(dev_server, key=ek).status_code == 401


def test_faults_knob(dev_server):
    faults = dev_server.url + "/_dev/faults"
    auth = {"Authorization": f"Bearer {dev_server.api_key}"}
    assert httpx.post(faults, json={"client_secrets": {"status": 503, "count": 1}}).status_code == 401
    assert httpx.post(faults, json={"client_secrets": {"status": 99}}, headers=auth).status_code == 400
    assert httpx.post(faults, json={"client_secrets": {"status": 503, "count": 2}}, headers=auth).status_code == 200
    statuses = [post_secret(dev_server).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    httpx.post(faults, json={"client_secrets": {"status": 429, "count": 1}}, headers=auth)
    error = post_secret(dev_server).json()["error"]
    assert error["code"] == "rate_limit_exceeded"
    httpx.post(faults, json={"client_secrets": {"status": None, "count": 1, "delay_s": 0.4}}, headers=auth)
    start = time.monotonic()
    assert post_secret(dev_server).status_code == 200
    assert time.monotonic() - start >= 0.4


def _handshake_status(dev, header: list[str]) -> int:
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        websocket.create_connection(dev.ws_url, header=header, timeout=5)
    return info.value.status_code


def test_websocket_rejects_missing_wrong_and_unknown_keys(dev_server):
    assert _handshake_status(dev_server, []) == 401
    assert _handshake_status(dev_server, ["Authorization: Bearer sk-nope"]) == 401
    assert _handshake_status(dev_server, ["Authorization: Bearer ek_00000000000000000000000000000000"]) == 401


def _close_frame(client: RealtimeTestClient) -> tuple[int, str]:
    frame = client.ws.recv_data_frame(True)[1]
    assert frame.opcode == websocket.ABNF.OPCODE_CLOSE
    return struct.unpack("!H", frame.data[:2])[0], frame.data[2:].decode()


@pytest.mark.parametrize("how", ["header", "subprotocol"])
def test_beta_interface_is_refused_with_4000(dev_server, how):
    kwargs = ({"headers": ["OpenAI-Beta: realtime=v1"]} if how == "header"
              else {"subprotocols": ["realtime", "openai-beta.realtime-v1"]})
    client = RealtimeTestClient(dev_server.ws_url + "?model=gpt-realtime", dev_server.api_key, **kwargs)
    try:
        error = client.recv()
        assert error["type"] == "error"
        assert error["error"]["code"] == "beta_api_shape_disabled"
        assert error["error"]["type"] == "invalid_request_error"
        assert error["error"]["message"] == ("The Realtime Beta API is no longer supported. "
                                             "Please use /v1/realtime for the GA API.")
        assert _close_frame(client)[0] == 4000
        assert client.invalid == []
    finally:
        client.close()


def test_session_cap_closes_with_1001(tmp_path):
    from support.devserver import run_dev_server

    with run_dev_server(tmp_path, "--max-session-s", "0.5") as dev:
        client = RealtimeTestClient(dev.ws_url, dev.api_key)
        try:
            assert client.recv()["type"] == "session.created"
            assert _close_frame(client) == (1001, "Your session hit the maximum duration of 60 minutes.")
        finally:
            client.close()
