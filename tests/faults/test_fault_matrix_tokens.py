"""The fault matrix, token backend rows: the daemon's real TokenProvider (urllib, refresh thread)
against a scripted backend on 127.0.0.1 (support/token_backend_peer.py), the in-process runtime and
the scripted Realtime peer. Each row: the end code and level, a held press answered where the
fault passes within connect_timeout_s, and a next press that works."""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import replace

import pytest

from pivoice.realtime.scripted import ScriptedConnector
from pivoice.tokens import SecretFile, TokenProvider
from pivoice.tokens.keys import Secret
from support.fault_rig import SESSION, SETTINGS, FaultRig, check_end, next_press_works, normal_reply
from support.token_backend_peer import DEVICE_ID, TokenBackendPeer

SECRET = "device-secret-1"
# Long enough for the controller's one-second token retries to reach a backend that recovers.
HELD = replace(SETTINGS, connect_timeout_s=2.5)


@pytest.fixture(autouse=True)
def _log_info(caplog):
    caplog.set_level(logging.INFO)


def provider(backend: TokenBackendPeer, secret=None, **kwargs) -> TokenProvider:
    return TokenProvider(backend.url, DEVICE_ID, secret or Secret(SECRET), SESSION, timeout_s=1.0,
                         backoff_initial_s=0.2, backoff_max_s=2.0, **kwargs)


@contextlib.contextmanager
def token_row(tmp_path, fault=None, *, settings=SETTINGS, secret=None, backend_up=True):
    """The backend (with `fault(backend)` already in place), then the provider, then the daemon: a
    press made at once meets the fault on the provider's first fetch."""
    backend, peer = TokenBackendPeer(), ScriptedConnector()
    if backend_up:
        backend.start()
    if fault is not None:
        fault(backend)
    tokens = provider(backend, secret)
    try:
        with FaultRig(tmp_path, connector=peer, tokens=tokens, settings=settings) as rig:
            tokens.start()
            try:
                yield backend, peer, tokens, rig
            finally:
                tokens.stop(join_timeout_s=3)
    finally:
        backend.stop()


def held_press_answered(rig: FaultRig, peer: ScriptedConnector, mark: int, caplog) -> None:
    """The press made during the fault got its conversation once the backend answered."""
    conn = peer.wait_for_connection(1, timeout_s=5)
    conn.play_all(normal_reply("resp_held"))
    rig.wait_note("reply_played", mark)
    check_end(rig, caplog, rig.press(), "user", "info", "ended by a press")


def test_token_backend_down_at_start(tmp_path, caplog):
    with token_row(tmp_path, backend_up=False) as (backend, peer, tokens, rig):
        mark = rig.press()
        check_end(rig, caplog, mark, "token_failed", "warning", "no ephemeral key (backend_unreachable)",
                  "connection refused")
        assert not peer.connections
        backend.start()
        next_press_works(rig, scripted=peer)


def test_token_backend_goes_down_mid_life_the_cached_key_still_serves(tmp_path, caplog):
    with token_row(tmp_path) as (backend, peer, tokens, rig):
        next_press_works(rig, scripted=peer)
        backend.stop()
        asked = len(backend.requests)
        next_press_works(rig, scripted=peer)   # the key fetched before the outage is still valid
        assert len(backend.requests) == asked


def test_token_backend_revokes_the_device(tmp_path, caplog):
    def revoke(backend):
        backend.secret = "someone-else"   # our secret is no longer accepted
    with token_row(tmp_path, revoke) as (backend, peer, tokens, rig):
        mark = rig.press()
        note = check_end(rig, caplog, mark, "token_failed", "error", "no ephemeral key (unauthorized)",
                         "unknown or revoked")
        assert SECRET not in note.text
        assert tokens.status()["state"] == "failed"
        backend.secret = SECRET            # the operator re-registers the device with the same secret
        next_press_works(rig, scripted=peer)


def test_token_backend_rotates_the_secret_without_a_restart(tmp_path, caplog):
    secret_file = tmp_path / "device-secret"
    secret_file.write_text(SECRET + "\n")

    def rotate(backend):
        backend.secret = "device-secret-2"   # `devices rotate` on the backend...
    with token_row(tmp_path, rotate, secret=SecretFile(str(secret_file))) as (backend, peer, tokens, rig):
        mark = rig.press()
        check_end(rig, caplog, mark, "token_failed", "error", "no ephemeral key (unauthorized)")
        secret_file.write_text("device-secret-2\n")   # ...and the new secret written to the file
        next_press_works(rig, scripted=peer)
        assert any("re-read" in r.getMessage() for r in caplog.records)


def test_token_backend_429_with_retry_after_holds_the_press(tmp_path, caplog):
    def rate_limit(backend):
        backend.answer(429, code="rate_limited", headers={"Retry-After": "1"})
    with token_row(tmp_path, rate_limit, settings=HELD) as (backend, peer, tokens, rig):
        held_press_answered(rig, peer, rig.press(), caplog)
        first, second = backend.requests[:2]
        assert (first["status"], second["status"]) == (429, 200)
        assert second["at_s"] - first["at_s"] >= 0.95, "Retry-After was not respected"
        next_press_works(rig, scripted=peer)


def test_token_backend_429_with_retry_after_longer_than_the_press_can_wait(tmp_path, caplog):
    def rate_limit(backend):
        backend.answer(429, code="rate_limited", headers={"Retry-After": "3"})
    with token_row(tmp_path, rate_limit) as (backend, peer, tokens, rig):
        mark = rig.press()
        check_end(rig, caplog, mark, "token_failed", "warning", "no ephemeral key (rate_limited)",
                  "backend asked to wait")
        assert len(backend.requests) == 1, "the daemon asked again before Retry-After"
        time.sleep(max(0.0, backend.requests[0]["at_s"] + 3.05 - time.monotonic()))
        next_press_works(rig, scripted=peer)


def test_token_backend_5xx_once_holds_the_press(tmp_path, caplog):
    with token_row(tmp_path, lambda backend: backend.answer(503), settings=HELD) as (backend, peer, tokens, rig):
        held_press_answered(rig, peer, rig.press(), caplog)
        assert [r["status"] for r in backend.requests[:2]] == [503, 200]
        next_press_works(rig, scripted=peer)


def test_token_backend_5xx_persistent(tmp_path, caplog):
    with token_row(tmp_path, lambda backend: backend.answer(500, times=50)) as (backend, peer, tokens, rig):
        mark = rig.press()
        check_end(rig, caplog, mark, "token_failed", "warning", "no ephemeral key (server_error)", "HTTP 500")
        assert not peer.connections
        backend.clear()
        next_press_works(rig, scripted=peer)


def test_token_backend_answers_200_with_a_body_that_is_not_json(tmp_path, caplog):
    broken = b'{"value": "ek_'   # cut off mid-body by a proxy
    with token_row(tmp_path, lambda backend: backend.answer(200, times=50, raw=broken)) as (backend, peer, tokens, rig):
        mark = rig.press()
        note = check_end(rig, caplog, mark, "token_failed", "warning", "no ephemeral key (bad_response)",
                         "not JSON")
        assert "ek_" not in note.text
        backend.clear()
        next_press_works(rig, scripted=peer)


def test_token_backend_timeout(tmp_path, caplog):
    def slow(backend):
        backend.delay_s = 2.0
    with token_row(tmp_path, slow, settings=replace(SETTINGS, connect_timeout_s=1.8)) as (backend, peer, tokens, rig):
        mark = rig.press()
        check_end(rig, caplog, mark, "token_failed", "warning", "no ephemeral key (backend_timeout)",
                  "did not answer within 1 s")
        backend.delay_s = 0.0
        time.sleep(1.2)   # the slow answers' handlers finish
        next_press_works(rig, scripted=peer)


@pytest.mark.parametrize("skew_s", [3600.0, -3600.0], ids=["backend-1h-ahead", "backend-1h-behind"])
def test_token_backend_clock_skew(tmp_path, caplog, skew_s):
    """The key's lifetime comes from the backend's own clock (expires_at - server_time), never ours."""
    def skew(backend):
        backend.skew_s = skew_s
    with token_row(tmp_path, skew) as (backend, peer, tokens, rig):
        next_press_works(rig, scripted=peer)
        valid_s = tokens.status()["key_valid_for_s"]
        assert valid_s is not None and 40 < valid_s <= 60, tokens.status()
