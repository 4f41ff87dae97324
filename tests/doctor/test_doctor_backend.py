"""The backend check's answers for responses a healthy loopback backend does not give (5xx, no
server_time), through a scripted transport; the real backend is in test_doctor_stack.py."""

from __future__ import annotations

from email.utils import formatdate

import pytest

from pivoice.doctor.backend import BackendCheck
from support import tokens_fakes as fakes


@pytest.fixture
def ctx(make_ctx):
    c = make_ctx()
    c.secret = fakes.secret()
    return c


@pytest.mark.parametrize("response,code,words", [
    (fakes.error(502, "upstream_error", "upstream said no", upstream_status=500), "upstream_error",
     "answered 502 upstream_error (upstream answered 500)"),
    (fakes.error(503, "upstream_unavailable"), "upstream_unavailable", "answered 503 upstream_unavailable"),
])
def test_server_errors_are_named_with_status_and_code(ctx, response, code, words):
    result = BackendCheck(transport=fakes.ScriptedTransport(response)).run(ctx)
    assert result.status == "fail" and result.data["code"] == code and words in result.detail
    assert "journalctl -u pivoice-token-server" in result.remedy
    assert ctx.key is None


def test_a_mint_without_server_time_cannot_check_the_clock(ctx):
    transport = fakes.ScriptedTransport(fakes.mint(server_time=None, date_header=formatdate(fakes.WALL_NOW_S, usegmt=True)))
    result = BackendCheck(transport=transport).run(ctx)
    assert result.status == "warn" and "clock skew not checked" in result.detail
    assert ctx.key is not None and ctx.key.value.reveal() == "ek_test0001"
    call = transport.calls[0]
    assert call["url"] == "http://127.0.0.1:9/v1/realtime/client_secrets"
    assert call["headers"]["Authorization"].startswith("Basic ") and call["body"]["session"]["type"] == "realtime"


def test_skew_uses_the_middle_of_the_round_trip(ctx):
    mono = iter([100.0, 102.0])   # sent at 100 s, answered at 102 s: the server stamped at ~101 s
    check = BackendCheck(transport=fakes.ScriptedTransport(fakes.mint()), wall_clock=lambda: fakes.WALL_NOW_S - 1,
                         monotonic=lambda: next(mono))
    result = check.run(ctx)
    assert result.status == "ok" and result.data["clock_skew_s"] == 0.0 and result.data["rtt_ms"] == 2000.0
