"""The Realtime check's verdicts for servers that upgrade but do not behave (the real dev server is
in test_doctor_stack.py): an error event instead of session.created, and silence until the timeout."""

from __future__ import annotations

import json
import time

import websocket

from pivoice.doctor.realtime import RealtimeCheck
from pivoice.tls import client_context
from pivoice.tokens import EphemeralKey, Secret


class FakeSocket:
    """What websocket.create_connection returns: scripted frames, then a timeout."""

    def __init__(self, frames):
        self.frames = list(frames)
        self.closed_with = None

    def settimeout(self, timeout_s):
        self.timeout_s = timeout_s

    def recv(self):
        if not self.frames:
            raise websocket.WebSocketTimeoutException("timed out")
        return self.frames.pop(0)

    def close(self, status=None, timeout=None):
        self.closed_with = status


def check_with(frames, make_ctx, timeout_s=0.2):
    sock, opened = FakeSocket(frames), []

    def connect(url, header, timeout, **options):
        opened.append((url, header, timeout, options))
        return sock
    ctx = make_ctx()
    ctx.key = EphemeralKey(Secret("ek_fake123"), time.monotonic() + 60)
    return RealtimeCheck(create_connection=connect, timeout_s=timeout_s).run(ctx), sock, opened


def test_session_created_is_ok_and_the_socket_is_closed_normally(make_ctx):
    frames = [json.dumps({"type": "rate_limits.updated"}), json.dumps({"type": "session.created",
                                                                      "session": {"model": "gpt-realtime"}})]
    result, sock, opened = check_with(frames, make_ctx)
    assert result.status == "ok" and result.data["model"] == "gpt-realtime" and sock.closed_with == 1000
    url, header, _, options = opened[0]
    assert url == "wss://api.openai.com/v1/realtime?model=gpt-realtime"
    assert header == ["Authorization: Bearer ek_fake123"]
    assert options == {"sslopt": {"context": client_context()}}   # the daemon's trust (tls.py), not a new one
    assert "ek_fake123" not in json.dumps(result.data) + result.detail


def test_an_error_event_is_named_with_its_code(make_ctx):
    frames = [json.dumps({"type": "error", "error": {"code": "invalid_model", "message": "no such model"}})]
    result, sock, _ = check_with(frames, make_ctx)
    assert result.status == "fail" and result.data["code"] == "invalid_model"
    assert "the server sent error invalid_model: no such model" in result.detail and sock.closed_with == 1000


def test_no_session_created_before_the_timeout(make_ctx):
    result, sock, _ = check_with(["not json"], make_ctx)
    assert result.status == "fail" and "upgraded, then no session.created before the timeout" in result.detail
    assert sock.closed_with == 1000
