"""TokenProvider with its real refresh thread: request() never blocks, all waiters answered, prompt stop."""

import threading
import time

from pivoice.tokens import TokenProvider
from support.tokens_fakes import DEVICE_ID, SESSION, ScriptedTransport, mint, secret, unreachable

URL = "http://127.0.0.1:8780"


def provider(transport, **kw):
    lines = []
    p = TokenProvider(URL, DEVICE_ID, secret(), SESSION, transport=transport, on_status=lines.append, **kw)
    return p, lines


def test_request_while_fetching_answers_all_waiters():
    t = ScriptedTransport(mint("ek_shared", 60))
    t.gate = threading.Event()
    p, _ = provider(t)
    p.start()
    try:
        assert t.entered.wait(5)           # first fetch is in flight, held by the gate
        assert p.status()["state"] == "fetching"
        results, done = [], threading.Event()

        def ready(key):
            results.append((threading.current_thread().name, key.value.reveal()))
            if len(results) == 3:
                done.set()

        callers = [threading.Thread(target=p.request, args=(ready, lambda e: results.append(e))) for _ in range(3)]
        for c in callers:
            c.start()
        for c in callers:
            c.join(2)
            assert not c.is_alive()         # request() returned while the fetch was still held
        assert results == []
        t.gate.set()
        assert done.wait(5)
        assert results == [("token-refresh", "ek_shared")] * 3
        assert len(t.calls) == 1
    finally:
        p.stop()


def test_request_after_failure_wakes_the_thread_immediately():
    t = ScriptedTransport(unreachable(), mint("ek_second", 60))
    p, lines = provider(t, backoff_initial_s=30.0, backoff_max_s=60.0)
    p.start()
    try:
        deadline = time.monotonic() + 5
        while p.status()["state"] != "backing_off" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert p.status()["next_refresh_in_s"] > 20     # the scheduled retry is far away
        got = threading.Event()
        keys = []
        p.request(lambda k: (keys.append(k.value.reveal()), got.set()), lambda e: None)
        assert got.wait(5) and keys == ["ek_second"]
        assert any("retrying in" in line for line in lines) and lines[-1].startswith("token: ok")
    finally:
        p.stop()


def test_stop_is_prompt_while_waiting_and_answers_leftover_waiters():
    t = ScriptedTransport(mint("ek_a", 3600))
    p, _ = provider(t)
    p.start()
    deadline = time.monotonic() + 5
    while p.cached() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert p.status()["next_refresh_in_s"] > 1000
    started = time.monotonic()
    p.stop()
    assert time.monotonic() - started < 1.0     # not the ~3500 s until the next refresh
    assert not any(th.name == "token-refresh" and th.is_alive() for th in threading.enumerate())


def test_stop_answers_pending_requests():
    t = ScriptedTransport(unreachable())
    t.gate = threading.Event()
    p, _ = provider(t)
    p.start()
    assert t.entered.wait(5)
    failures = []
    p.request(lambda k: None, failures.append)
    stopper = threading.Thread(target=p.stop)
    stopper.start()
    t.gate.set()
    stopper.join(5)
    assert not stopper.is_alive()
    assert [f.code for f in failures] in (["backend_unreachable"], ["stopped"])


def test_start_twice_is_refused():
    p, _ = provider(ScriptedTransport(mint()))
    p.start()
    try:
        try:
            p.start()
        except RuntimeError as exc:
            assert "already started" in str(exc)
        else:
            raise AssertionError("second start() accepted")
    finally:
        p.stop()
