"""TokenProvider scheduling, driven by tick() on a fake clock with a scripted transport (no threads)."""

import pytest

from pivoice.tokens import TokenProvider
from support.tokens_fakes import DEVICE_ID, SESSION, FakeClock, ScriptedTransport, error, mint, secret, unreachable

URL = "http://127.0.0.1:8780"


def make(*script, rng=lambda: 0.0, clock=None, **kw):
    clock = clock or FakeClock()
    transport = ScriptedTransport(*script, clock=clock)
    lines = []
    p = TokenProvider(URL, DEVICE_ID, secret(), SESSION, transport=transport, clock=clock, rng=rng,
                      on_status=lines.append, **kw)
    return p, transport, clock, lines


def run_until_next_attempt(p, clock):
    """Advance the fake clock to the next scheduled attempt and run it; return the wait that preceded it."""
    wait_s = p.status()["next_refresh_in_s"]
    clock.advance(wait_s)
    p.tick()
    return wait_s


def test_first_tick_fetches_and_posts_the_contract():
    p, t, clock, lines = make(mint("ek_one", 60))
    assert p.cached() is None and p.status()["state"] == "fetching"
    p.tick()
    call = t.calls[0]
    assert call["url"] == "http://127.0.0.1:8780/v1/realtime/client_secrets"
    assert call["body"] == {"session": SESSION}
    assert call["headers"]["Authorization"].startswith("Basic ")
    assert call["timeout_s"] == 5.0
    assert p.cached().value.reveal() == "ek_one"
    st = p.status()
    assert st["state"] == "ok" and st["consecutive_failures"] == 0 and st["last_error"] is None
    assert st["key_valid_for_s"] == pytest.approx(60)
    assert lines[-1] == "token: ok, key valid 60 s"


def test_url_prefix_is_kept():
    clock = FakeClock()
    t = ScriptedTransport(mint())
    p = TokenProvider("https://tokens.example.org/pivoice/", DEVICE_ID, secret(), SESSION, transport=t, clock=clock)
    p.tick()
    assert t.calls[0]["url"] == "https://tokens.example.org/pivoice/v1/realtime/client_secrets"


@pytest.mark.parametrize("rng_value, expected_refresh_s", [(0.0, 40.0), (0.5, 37.0), (1.0, 34.0)])
def test_refresh_ahead_of_expiry_with_jitter(rng_value, expected_refresh_s):
    # 60 s key, 20 s margin, jitter up to 10 % of 60 s.
    p, t, clock, _ = make(mint("ek_a", 60), mint("ek_b", 60), rng=lambda: rng_value)
    p.tick()
    assert p.status()["next_refresh_in_s"] == pytest.approx(expected_refresh_s)
    clock.advance(expected_refresh_s - 0.01)
    p.tick()
    assert len(t.calls) == 1
    clock.advance(0.01)
    p.tick()
    assert len(t.calls) == 2 and p.cached().value.reveal() == "ek_b"


def test_request_latency_shortens_validity():
    clock = FakeClock()
    t = ScriptedTransport(mint("ek_a", 60), clock=clock, latency_s=1.5)
    p = TokenProvider(URL, DEVICE_ID, secret(), SESSION, transport=t, clock=clock, rng=lambda: 0.0)
    p.tick()
    assert p.cached().valid_for_s(clock()) == pytest.approx(58.5)  # anchored when the request was sent


@pytest.mark.parametrize("ttl_s, expected_s", [(10, 5.0), (4, 2.0), (1, 2.0)])
def test_short_ttls_refresh_at_half_life_but_not_faster_than_2_s(ttl_s, expected_s):
    p, _, _, _ = make(mint("ek_a", ttl_s))
    p.tick()
    assert p.status()["next_refresh_in_s"] == pytest.approx(expected_s)


def test_cached_validity_boundaries():
    p, _, clock, _ = make(mint("ek_a", 60), min_valid_s=5.0, refresh_margin_s=0.0)
    p.tick()
    clock.advance(55.0)   # exactly min_valid_s left
    assert p.cached() is not None
    clock.advance(0.001)
    assert p.cached() is None
    assert p.status()["key_valid_for_s"] == pytest.approx(4.999)
    clock.advance(10)
    assert p.status()["key_valid_for_s"] is None


def test_backoff_doubles_to_the_cap_then_recovers():
    p, t, clock, lines = make(*[unreachable()] * 9, mint("ek_back", 60), backoff_initial_s=1.0, backoff_max_s=60.0)
    p.tick()
    waits = [run_until_next_attempt(p, clock) for _ in range(8)]
    assert waits == [1, 2, 4, 8, 16, 32, 60, 60]
    st = p.status()
    assert st["state"] == "backing_off" and st["consecutive_failures"] == 9
    assert "unreachable (connection refused)" in st["last_error"]
    assert lines[-1] == "token: backend 127.0.0.1:9 unreachable (connection refused); retrying in 60 s"
    run_until_next_attempt(p, clock)
    st = p.status()
    assert st["state"] == "ok" and st["consecutive_failures"] == 0 and p.cached().value.reveal() == "ek_back"


def test_backoff_jitter_only_shortens_waits():
    p, _, clock, _ = make(*[unreachable()] * 4, rng=lambda: 1.0)
    p.tick()
    waits = [run_until_next_attempt(p, clock) for _ in range(3)]
    assert waits == pytest.approx([0.8, 1.6, 3.2])


def test_retry_after_is_the_minimum_wait_and_blocks_requests():
    p, t, clock, _ = make(error(429, "rate_limited", retry_after="30"), mint("ek_ok", 60))
    p.tick()
    st = p.status()
    assert st["state"] == "backing_off" and st["next_refresh_in_s"] == pytest.approx(30)
    ready, failed = [], []
    clock.advance(10)
    p.request(ready.append, failed.append)
    p.tick()  # a press during Retry-After is refused at once, without a request to the backend
    assert len(t.calls) == 1 and not ready
    assert failed[0].code == "rate_limited" and failed[0].retry_after_s == pytest.approx(20)
    assert "wait 20 s more" in failed[0].message
    clock.advance(20)
    p.request(ready.append, failed.append)
    p.tick()
    assert len(t.calls) == 2 and ready[0].value.reveal() == "ek_ok"


def test_operator_errors_back_off_at_the_max_with_failed_state():
    p, t, clock, lines = make(error(401, "unauthorized"), error(403, "forbidden_override", field="session.model"))
    p.tick()
    st = p.status()
    assert st["state"] == "failed" and st["next_refresh_in_s"] == pytest.approx(60)
    assert "401 unauthorized" in st["last_error"] and "'kitchen'" in lines[-1] and "retrying in 60 s" in lines[-1]
    run_until_next_attempt(p, clock)
    assert p.status()["state"] == "failed" and "session.model" in p.status()["last_error"]


def test_request_skips_backoff_wait():
    p, t, clock, _ = make(unreachable(), unreachable(), unreachable(), mint("ek_now", 60))
    p.tick()
    run_until_next_attempt(p, clock)
    assert p.status()["next_refresh_in_s"] == pytest.approx(2)
    ready, failed = [], []
    p.request(ready.append, failed.append)
    p.tick()   # no clock advance: fetches at once
    assert failed[0].code == "backend_unreachable" and not ready
    assert p.status()["next_refresh_in_s"] == pytest.approx(4)
    p.request(ready.append, failed.append)
    p.tick()
    assert ready[0].value.reveal() == "ek_now" and len(t.calls) == 4


def test_old_key_kept_while_refresh_fails():
    p, t, clock, lines = make(mint("ek_old", 60), unreachable())
    p.tick()
    run_until_next_attempt(p, clock)  # at 40 s: refresh fails
    assert p.cached().value.reveal() == "ek_old"
    st = p.status()
    assert st["state"] == "backing_off" and st["key_valid_for_s"] == pytest.approx(20)
    assert "current key still valid 20 s" in lines[-1]
    ready = []
    p.request(ready.append, lambda e: None)  # answered from the cache in this thread
    assert ready[0].value.reveal() == "ek_old" and len(t.calls) == 2
    clock.advance(16)
    assert p.cached() is None


def test_cached_key_answers_without_transport():
    p, t, _, _ = make(mint("ek_a", 60))
    p.tick()
    got = []
    for _ in range(5):
        p.request(got.append, lambda e: pytest.fail("unexpected failure"))
    assert len(got) == 5 and len(t.calls) == 1


def test_transport_bug_does_not_escape():
    p, _, _, lines = make(RuntimeError("boom ek_secret"))
    p.tick()
    st = p.status()
    assert st["state"] == "backing_off" and "RuntimeError" in st["last_error"] and "ek_secret" not in st["last_error"]


def test_callback_exceptions_are_contained():
    def explode(_):
        raise ValueError("callback bug")
    p, _, _, _ = make(unreachable(), mint())
    p.request(explode, explode)
    p.tick()
    assert p.status()["consecutive_failures"] == 1


@pytest.mark.parametrize("url, ok", [
    ("http://127.0.0.1:8780", True), ("http://localhost:1", True), ("http://[::1]:80", True),
    ("http://127.3.4.5", True), ("https://tokens.example.org", True),
    ("http://tokens.example.org", False), ("http://192.168.1.5:8780", False), ("ftp://127.0.0.1", False),
    ("https://user:pw@tokens.example.org", False), ("https://tokens.example.org?x=1", False),
    ("https://tokens.example.org:99999", False), ("tokens.example.org", False),
])
def test_https_rule(url, ok):
    def build(**kw):
        return TokenProvider(url, DEVICE_ID, secret(), SESSION, transport=ScriptedTransport(mint()), **kw)
    if ok:
        build()
    else:
        with pytest.raises(ValueError) as info:
            build()
        assert "pw" not in str(info.value)
        assert "token backend URL" in str(info.value)


def test_insecure_http_can_be_allowed_explicitly():
    TokenProvider("http://192.168.1.5:8780", DEVICE_ID, secret(), SESSION, transport=ScriptedTransport(mint()),
                  allow_insecure_http=True)
    with pytest.raises(ValueError, match=r"192\.168\.1\.5:8780.*https is required"):
        TokenProvider("http://192.168.1.5:8780", DEVICE_ID, secret(), SESSION, transport=ScriptedTransport(mint()))


@pytest.mark.parametrize("kwargs, match", [
    ({"device_id": "a:b"}, "device id"), ({"device_id": ""}, "device id"),
    ({"session_config": {"x": object()}}, "not JSON"), ({"session_config": []}, "mapping"),
    ({"ca_bundle": "/nonexistent.pem"}, "ca_bundle"),
])
def test_constructor_rejects_bad_arguments(kwargs, match):
    args = {"device_id": DEVICE_ID, "session_config": SESSION, **kwargs}
    with pytest.raises(ValueError, match=match):
        TokenProvider(URL, args.pop("device_id"), secret(), args.pop("session_config"),
                      transport=ScriptedTransport(mint()), **args)


def test_missing_ca_bundle_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"CA bundle .*missing.pem: file not found"):
        TokenProvider("https://tokens.example.org", DEVICE_ID, secret(), SESSION, ca_bundle=str(tmp_path / "missing.pem"))
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    with pytest.raises(ValueError, match="not a usable PEM"):
        TokenProvider("https://tokens.example.org", DEVICE_ID, secret(), SESSION, ca_bundle=str(bad))
