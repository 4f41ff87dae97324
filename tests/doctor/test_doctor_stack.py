"""`pivoice doctor` against the real dev server and token backend on loopback: all green on a good
setup, and a wrong backend URL, a revoked device, a skewed clock and a refused key each named with
their remedy."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pivoice.doctor import cli as doctor_cli
from pivoice.doctor.backend import BackendCheck
from pivoice.doctor.configcheck import ConfigCheck
from pivoice.doctor.realtime import RealtimeCheck
from pivoice.tokens import EphemeralKey, Secret
from support.fixtures_audio import tone, write_wav
from support.stack import offline_stack
from support.tokenserver import free_port, run_token_server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    # the default 6 keys a minute per device would run out across this module's mints
    with offline_stack(tmp_path_factory.mktemp("doctor"), mint_rate_per_min=100) as s:
        yield s


def write_config(stack, tmp_path: Path, **changes) -> Path:
    mic = write_wav(tmp_path / "mic.wav", tone(300, 2.5, 16000, amplitude=6000), 16000)
    data = stack.config(mic=f"wav:{mic}", speaker=f"wav:{tmp_path / 'reply.wav'}")
    for dotted, value in changes.items():
        node = data
        *parents, last = dotted.split("__")
        for key in parents:
            node = node[key]
        node[last] = value
    path = tmp_path / "pivoice.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def doctor(*args: str) -> tuple[int, list[dict], str]:
    """The real command, as a script runs it: no terminal on stdin."""
    proc = subprocess.run([sys.executable, "-m", "pivoice", "doctor", "--json", *args], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60)
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def by_check(results: list[dict]) -> dict[str, dict]:
    return {r["check"]: r for r in results}


def run_one(stack, path: Path, *checks) -> dict:
    results = doctor_cli.run_checks(str(path), [ConfigCheck(), *checks])
    return {r.check: r for r in results}


def test_all_green_on_a_good_setup(stack, tmp_path):
    started_s = time.monotonic()
    code, results, stderr = doctor("--config", str(write_config(stack, tmp_path)), "--mic-s", "1")
    elapsed_s = time.monotonic() - started_s
    assert code == 0, (results, stderr)
    assert [r["check"] for r in results] == list(doctor_cli.CHECK_NAMES)
    assert all(set(r) == {"check", "status", "detail", "remedy", "data"} for r in results)
    assert {r["check"]: r["status"] for r in results} == {name: "ok" for name in doctor_cli.CHECK_NAMES}, results
    r = by_check(results)
    assert r["button"]["data"]["pin_factory"] == "MockFactory" and r["button"]["data"]["press"] == "skipped"
    assert "stdin is not a terminal" in r["button"]["detail"]
    assert r["backend"]["data"]["http_status"] == 200 and abs(r["backend"]["data"]["clock_skew_s"]) < 5
    assert r["realtime"]["data"]["model"] == "gpt-realtime" and "closed cleanly" in r["realtime"]["detail"]
    assert stack.secret not in json.dumps(results) + stderr
    print(f"\ndoctor, all checks on loopback: {elapsed_s:.2f} s; mint {r['backend']['data']['rtt_ms']} ms, "
          f"WebSocket {r['realtime']['data']['connect_ms']} ms, session.created {r['realtime']['data']['first_event_ms']} ms")


def test_text_output_is_one_line_per_check(stack, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pivoice", "doctor", "--config", str(write_config(stack, tmp_path)),
                           "--no-button", "--skip", "mic,speaker"], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0 and len(lines) == 6, proc.stdout + proc.stderr
    assert [ln.split()[:2] for ln in lines] == [["ok", "config"], ["skipped", "mic"], ["skipped", "speaker"],
                                                ["ok", "button"], ["ok", "backend"], ["ok", "realtime"]]


def test_wrong_backend_url_fails_with_the_remedy(stack, tmp_path):
    closed = f"http://127.0.0.1:{free_port()}"
    code, results, _ = doctor("--config", str(write_config(stack, tmp_path, tokens__backend_url=closed)),
                              "--no-button", "--skip", "mic,speaker")
    r = by_check(results)
    assert code == 1 and r["config"]["status"] == "ok"
    assert r["backend"]["status"] == "fail" and "connection refused" in r["backend"]["detail"]
    assert r["backend"]["data"]["code"] == "backend_unreachable"
    assert r["backend"]["remedy"].startswith(f"wrong tokens.backend_url ({closed})?")
    assert r["realtime"]["status"] == "skipped" and "its check failed" in r["realtime"]["detail"]


def test_revoked_device_fails_401_with_the_rotate_remedy(stack, tmp_path):
    secret = stack.tokens.cli("devices", "add", "hallway").stdout.strip()
    (tmp_path / "hallway-secret").write_text(secret + "\n")
    path = write_config(stack, tmp_path, tokens__device_id="hallway",
                        tokens__secret_file=str(tmp_path / "hallway-secret"))
    assert run_one(stack, path, BackendCheck())["backend"].status == "ok"   # works before the revoke
    stack.tokens.cli("devices", "revoke", "hallway")
    code, results, _ = doctor("--config", str(path), "--no-button", "--skip", "mic,speaker")
    backend = by_check(results)["backend"]
    assert code == 1 and backend["status"] == "fail" and backend["data"]["http_status"] == 401
    assert "answered 401 unauthorized" in backend["detail"] and "'hallway' unknown or revoked" in backend["detail"]
    assert backend["remedy"].startswith("device unknown or revoked: run `pivoice token-server devices rotate hallway`")
    assert "install the new secret" in backend["remedy"]


def add_device(stack, tmp_path: Path, name: str, **changes) -> Path:
    secret_file = tmp_path / f"{name}-secret"
    secret_file.write_text(stack.tokens.cli("devices", "add", name).stdout.strip() + "\n")
    secret_file.chmod(0o600)
    return write_config(stack, tmp_path, tokens__device_id=name, tokens__secret_file=str(secret_file), **changes)


def test_forbidden_session_field_names_403_and_the_field(stack, tmp_path):
    path = add_device(stack, tmp_path, "study", session__instructions="Talk like a pirate.")
    backend = run_one(stack, path, BackendCheck())["backend"]
    assert backend.status == "fail" and backend.data["http_status"] == 403
    assert "answered 403 forbidden_override (session field session.instructions may not be overridden)" in backend.detail
    assert "devices policy study" in backend.remedy


def test_rate_limit_names_429_and_the_code(stack, tmp_path):
    path = add_device(stack, tmp_path, "porch")
    stack.tokens.cli("devices", "policy", "porch", "--set", "mint_rate_per_min=1")
    first = run_one(stack, path, BackendCheck())["backend"]
    second = run_one(stack, path, BackendCheck())["backend"]
    assert first.status == "ok", first
    assert second.status == "fail" and second.data["http_status"] == 429 and second.data["code"] == "rate_limited"
    assert "answered 429 rate_limited" in second.detail and "Retry-After" in second.remedy


@pytest.mark.parametrize("offset_s,status", [(600, "fail"), (-45, "warn"), (3, "ok")])
def test_clock_skew_against_server_time(stack, tmp_path, offset_s, status):
    check = BackendCheck(wall_clock=lambda: time.time() + offset_s)
    backend = run_one(stack, write_config(stack, tmp_path), check)["backend"]
    assert backend.status == status, backend
    assert abs(backend.data["clock_skew_s"] - offset_s) < 2
    if status != "ok":
        ahead = "ahead of" if offset_s > 0 else "behind"
        assert f"clock skew: this clock is {abs(offset_s)} s {ahead} the backend's" in backend.detail
        assert "anchored on the monotonic clock" in backend.detail and "timedatectl set-ntp true" in backend.remedy


def test_realtime_refused_key_and_wrong_url_are_named(stack, tmp_path):
    from pivoice import config
    cfg = config.load(write_config(stack, tmp_path))
    ctx = doctor_cli.Context("x", cfg=cfg, key=EphemeralKey(Secret("ek_not_minted"), time.monotonic() + 60))
    refused = RealtimeCheck().run(ctx)
    assert refused.status == "fail" and refused.data["http_status"] == 401
    assert "WebSocket upgrade refused with HTTP 401: invalid_api_key" in refused.detail
    assert "realtime.url must be the service the token backend mints for" in refused.remedy

    ctx.cfg = config.load(write_config(stack, tmp_path, realtime__url=f"ws://127.0.0.1:{free_port()}/v1/realtime"))
    closed = RealtimeCheck(timeout_s=3).run(ctx)
    assert closed.status == "fail" and "cannot connect" in closed.detail and "wrong realtime.url?" in closed.remedy


def test_tls_verify_result_with_and_without_the_ca_bundle(stack, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    with run_token_server(tmp_path, stack.dev.url, stack.dev.api_key, devices=["kitchen"], workers=1,
                          tls={"cert_file": str(cert), "key_file": str(key)}) as ts:
        secret_file = tmp_path / "tls-secret"
        secret_file.write_text(ts.device_secrets["kitchen"])
        secret_file.chmod(0o600)
        untrusted = run_one(stack, write_config(stack, tmp_path, tokens__backend_url=ts.url,
                                                tokens__secret_file=str(secret_file)), BackendCheck())["backend"]
        assert untrusted.status == "fail" and untrusted.data["code"] == "tls_error"
        assert "TLS certificate rejected (self-signed certificate)" in untrusted.detail
        assert untrusted.remedy.startswith("set tokens.ca_bundle to the PEM of the CA")
        trusted = run_one(stack, write_config(stack, tmp_path, tokens__backend_url=ts.url, tokens__ca_bundle=str(cert),
                                              tokens__secret_file=str(secret_file)), BackendCheck())["backend"]
        assert trusted.status == "ok", trusted
        assert "over https (certificate and host name verified)" in trusted.detail


@pytest.mark.pulse
def test_real_devices_through_the_command(stack, tmp_path, pulse_rig):
    """The command on PortAudio devices (the rig's): a wrong mic name fails with the device list,
    the speaker plays its tone, and the rest still runs."""
    path = write_config(stack, tmp_path, audio__input__device="USB PnP Sound Device", audio__output__device="default")
    proc = subprocess.run([sys.executable, "-m", "pivoice", "doctor", "--config", str(path), "--mic-s", "1"],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, env=pulse_rig.env())
    print("\n" + proc.stdout)
    lines = {ln.split()[1]: ln for ln in proc.stdout.splitlines()}
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert lines["mic"].startswith("FAIL    mic       audio.input.device 'USB PnP Sound Device': no audio input")
    assert "inputs that exist: [0] pulse" in lines["mic"] and "-> fix: set audio.input.device" in lines["mic"]
    assert lines["speaker"].startswith("ok      speaker   [default] at 48000 Hz: played a 440 Hz tone")
    assert all(lines[name].startswith("ok") for name in ("config", "button", "backend", "realtime"))
