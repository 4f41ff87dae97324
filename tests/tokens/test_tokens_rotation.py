"""Secret rotation without a restart: after a 401 the provider re-reads `tokens.secret_file` (only
if it changed) before its next attempt. Unit tests with a scripted transport, then the real
`pivoice token-server` with `devices rotate`."""

from __future__ import annotations

import base64
import logging
import os
import threading
import time

import pytest

from pivoice.tokens import SecretFile, TokenProvider
from support.devserver import run_dev_server
from support.tokens_fakes import DEVICE_ID, SESSION, FakeClock, ScriptedTransport, error, mint
from support.tokenserver import run_token_server

URL = "http://127.0.0.1:8780"
OLD, NEW = "dsec-old-0123456789abcdef", "dsec-new-fedcba9876543210"
BACKEND_SESSION = {"type": "realtime", "model": "gpt-realtime", "audio": {"output": {"voice": "marin"}}}


def write_secret(path, value):
    """As an operator would: a new file moved into place (`install -m 600`, an editor's save)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(value + "\n")
    tmp.chmod(0o600)
    os.replace(tmp, path)


def basic_secret(call) -> str:
    return base64.b64decode(call["headers"]["Authorization"].split()[1]).decode().split(":", 1)[1]


@pytest.fixture
def secret_path(tmp_path):
    path = tmp_path / "device-secret"
    write_secret(path, OLD)
    return path


def make(secret_path, *script):
    clock = FakeClock()
    transport = ScriptedTransport(*script, clock=clock)
    lines = []
    p = TokenProvider(URL, DEVICE_ID, SecretFile(secret_path), SESSION, transport=transport, clock=clock,
                      rng=lambda: 0.0, on_status=lines.append, min_valid_s=1000)
    return p, transport, lines


def press(p):
    got = []
    p.request(lambda k: got.append(("key", k)), lambda e: got.append(("error", e)))
    p.tick()
    return got[0]


def test_after_a_401_a_changed_file_is_read_and_its_secret_used(secret_path, caplog):
    p, t, lines = make(secret_path, error(401, "unauthorized"), mint("ek_after_rotation"))
    caplog.set_level(logging.DEBUG)
    kind, err = press(p)
    assert kind == "error" and err.code == "unauthorized" and basic_secret(t.calls[0]) == OLD
    assert f"a new secret written to {secret_path} is used from the next attempt" in err.message
    write_secret(secret_path, NEW)
    kind, key = press(p)
    assert kind == "key" and key.value.reveal() == "ek_after_rotation"
    assert basic_secret(t.calls[1]) == NEW
    assert f"token: device secret re-read from {secret_path} (changed since the 401)" in lines
    assert OLD not in caplog.text and NEW not in caplog.text


def test_no_401_no_read_and_an_unchanged_file_keeps_the_operator_status(secret_path):
    p, t, lines = make(secret_path, error(503, "upstream_unavailable"), error(401, "unauthorized"))
    write_secret(secret_path, NEW)       # changed, but nothing asked for it: 503 is no reason to look
    press(p)
    kind, err = press(p)
    assert basic_secret(t.calls[1]) == OLD and err.code == "unauthorized"
    # the 401 makes the next attempt look: the file changed before the 401, so it is used now
    press(p)
    assert basic_secret(t.calls[2]) == NEW
    for _ in range(2):                   # unchanged since: still 401, still the operator's status
        kind, err = press(p)
        assert kind == "error" and err.http_status == 401
    assert basic_secret(t.calls[-1]) == NEW
    st = p.status()
    assert st["state"] == "failed" and "401" in st["last_error"] and str(secret_path) in st["last_error"]
    assert sum("re-read" in line for line in lines) == 1


def test_the_same_secret_rewritten_or_a_half_written_file_changes_nothing(secret_path):
    p, t, lines = make(secret_path, error(401, "unauthorized"))
    press(p)
    write_secret(secret_path, OLD)       # rewritten with the same secret: not a rotation
    press(p)
    assert not any("re-read" in line for line in lines)
    secret_path.write_text("")           # caught mid-write: keep the old secret, try again next time
    press(p)
    assert basic_secret(t.calls[2]) == OLD
    assert any(f"secret file {secret_path}: is empty; keeping the secret read before" in line for line in lines)
    write_secret(secret_path, NEW)
    press(p)
    assert basic_secret(t.calls[3]) == NEW


# ---- the real token backend -------------------------------------------------------------

@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    with run_dev_server(tmp_path_factory.mktemp("dev")) as dev:
        with run_token_server(tmp_path_factory.mktemp("ts"), dev.url, dev.api_key, devices=["kitchen"],
                              workers=1) as ts:
            yield ts


@pytest.mark.integration
def test_devices_rotate_then_writing_the_file_works_on_a_running_provider(backend, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    path = tmp_path / "device-secret"
    write_secret(path, backend.device_secrets["kitchen"])
    p = TokenProvider(backend.url, "kitchen", SecretFile(path), BACKEND_SESSION, min_valid_s=1000,
                      timeout_s=5.0)
    p.start()   # the real refresh thread, as in the daemon

    def next_press(timeout_s=10.0):
        done, got = threading.Event(), []
        p.request(lambda k: (got.append(k), done.set()), lambda e: (got.append(e), done.set()))
        assert done.wait(timeout_s)
        return got[0]
    try:
        first = next_press()
        assert first.value.reveal().startswith("ek_")
        new_secret = backend.cli("devices", "rotate", "kitchen").stdout.strip()
        assert new_secret and new_secret != backend.device_secrets["kitchen"]
        refused = next_press()
        assert (refused.code, refused.http_status) == ("unauthorized", 401)
        again = next_press()            # nobody wrote the file: the operator status stays
        assert again.code == "unauthorized" and p.status()["state"] == "failed"
        write_secret(path, new_secret)
        started_s = time.monotonic()
        key = next_press()
        took_s = time.monotonic() - started_s
        assert key.value.reveal().startswith("ek_"), key
        assert p.status()["state"] == "ok" and p.status()["consecutive_failures"] == 0
        assert took_s < 2.0
        print(f"rotated secret written -> key in {took_s * 1000:.0f} ms")
    finally:
        p.stop()
    text = caplog.text
    assert f"device secret re-read from {path}" in text
    for secret in (backend.device_secrets["kitchen"], new_secret):
        assert secret not in text


@pytest.mark.integration
def test_a_running_daemon_takes_a_rotated_secret_from_its_file_without_a_restart(tmp_path):
    from support.fixtures_audio import make_speech_wav
    from support.stack import offline_stack, running

    question = make_speech_wav(tmp_path / "question.wav", "Hello again", lead_silence_s=0.1)
    # keys live 10 s (the API's minimum), so the daemon's cached key runs out soon after the rotation
    with offline_stack(tmp_path, default_expires_after_s=10) as stack:
        config = stack.config(mic=f"wav:{question}", speaker=f"wav:{tmp_path / 'reply.wav'}")
        config["realtime"]["connect_timeout_s"] = 3
        with running(stack.daemon(config)) as daemon:
            pid = daemon.process.pid
            new_secret = stack.tokens.cli("devices", "rotate", "kitchen").stdout.strip()
            token = wait_for_token(daemon, lambda t: t["state"] == "failed" and t["key_valid_for_s"] is None, 20)
            assert "401" in token["last_error"] and str(tmp_path / "device-secret") in token["last_error"]

            mark = len(daemon.timeline())
            daemon.ctl("press")                      # the file still holds the old secret
            ended = daemon.wait_for("ended", timeout_s=10, after=mark)
            assert "no ephemeral key (unauthorized)" in ended["text"]

            write_secret(tmp_path / "device-secret", new_secret)
            mark = len(daemon.timeline())
            daemon.ctl("press")                      # the next press: a key, a session, a reply
            daemon.wait_for("connected", timeout_s=10, after=mark)
            daemon.wait_for("reply_played", timeout_s=30, after=mark)
            assert daemon.status()["token"]["state"] == "ok"
            assert daemon.process.pid == pid and daemon.process.poll() is None   # never restarted
        stderr = daemon.stderr_text()
        assert f"device secret re-read from {tmp_path / 'device-secret'}" in stderr
        assert stack.secret not in stderr and new_secret not in stderr


def wait_for_token(daemon, predicate, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        token = daemon.status()["token"]
        if predicate(token):
            return token
        assert time.monotonic() < deadline, token
        time.sleep(0.1)
