"""Fixtures: a booted Debian bookworm (systemd-nspawn) with pivoice installed by `scripts/install`, as a user would.

One container per test module (booting and installing take minutes); the tests in
test_booted_systemd.py share it. Inside: user `admin` (sudo, like Pi OS's first user) runs
`sudo scripts/install --token-server ...`, adds the device as the README says, then
`sudo scripts/install --secret-stdin ...` for the daemon, with WAV devices, the mock pin factory
and `pivoice dev-server` (its own unit) as the Realtime upstream, all on loopback.

Step timings go to out/systemd-test-timings.json (written as they happen, so a failed run
still shows how far it got).
"""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from support.fixtures_audio import make_speech_wav
from support.nspawn import Container, booted_container, cannot_boot_reason
from support.rootfs import CACHE_DIR, checkout_files, ensure_base_rootfs

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "out"   # timings, install output and the container's console, kept for a look after a run
TIMINGS_PATH = OUT / "systemd-test-timings.json"
HOSTNAME = "pvtest"
ADMIN = "admin"
CHECKOUT = f"/home/{ADMIN}/pivoice"
DEV_API_KEY = "sk-test"
DEVICE = "kitchen"
# The unit can read /var/lib (ProtectSystem=strict: read-only) but write only its RuntimeDirectory.
QUESTION_WAV = "/var/lib/pivoice-test/question.wav"
REPLY_WAV = "/run/pivoice/reply.wav"
INSTALL_TIMEOUT_S = 900.0


class Timings:
    """Seconds per step plus named figures, rewritten to TIMINGS_PATH after every record."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict = {"started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "steps_s": {},
                           "figures": {}}

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        t0 = time.monotonic()
        try:
            yield
        finally:
            self.data["steps_s"][name] = round(time.monotonic() - t0, 2)
            self.save()

    def figure(self, name: str, value) -> None:
        self.data["figures"][name] = value
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.data, indent=2) + "\n")


@dataclass
class PiHost:
    """The installed container and what the tests need to know about it."""

    ct: Container
    timings: Timings
    dev_port: int
    backend_port: int
    device_secret: str = field(repr=False)
    install_args: list[str] = field(default_factory=list)
    token_install_args: list[str] = field(default_factory=list)

    def ctl(self, *args: str, user: str | None = ADMIN, timeout_s: float = 30.0):
        """`pivoice ctl ...` at the documented path (on PATH, default socket), as the admin, no sudo."""
        return self.ct.run(["pivoice", "ctl", *args], user, timeout_s=timeout_s)

    def status(self) -> dict:
        result = self.ctl("status")
        assert result.returncode == 0, f"ctl status failed: {result.stderr}"
        return json.loads(result.stdout)


def run_install(ct: Container, args: list[str], stdin: str) -> subprocess.CompletedProcess:
    """`sudo scripts/install ARGS` from the admin's checkout, secret on stdin, as the README says."""
    return ct.run(["sudo", f"{CHECKOUT}/scripts/install", *args], ADMIN, input=stdin, cwd=CHECKOUT,
                  timeout_s=INSTALL_TIMEOUT_S)


def free_port() -> int:
    # the container shares the host's network namespace (it needs the package registries), so its
    # servers must not collide with anything listening on the host
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def daemon_config(dev_port: int, backend_port: int) -> dict:
    cfg = yaml.safe_load((REPO / "config" / "pivoice.example.yaml").read_text())
    cfg["button"]["pin_factory"] = "mock"
    cfg["audio"]["input"]["device"] = f"wav:{QUESTION_WAV}"
    cfg["audio"]["output"]["device"] = f"wav:{REPLY_WAV}"
    cfg["realtime"]["url"] = f"ws://127.0.0.1:{dev_port}/v1/realtime"
    cfg["tokens"]["backend_url"] = f"http://127.0.0.1:{backend_port}"
    cfg["tokens"]["device_id"] = DEVICE
    cfg["conversation"]["idle_timeout_s"] = 4
    return cfg


def token_server_config(dev_port: int, backend_port: int) -> dict:
    cfg = yaml.safe_load((REPO / "config" / "token-server.example.yaml").read_text())
    cfg["port"] = backend_port
    cfg["openai_base_url"] = f"http://127.0.0.1:{dev_port}"
    cfg["workers"] = 2
    return cfg


def sandbox_copy_of_daemon_unit(unit_text: str, exec_start: str) -> str:
    """The daemon's [Service] sandbox with ExecStart replaced by a one-shot probe. Lines that belong to
    a long-running notify service go; the RuntimeDirectory is shared with the running daemon, so it
    is preserved when the probe stops."""
    drop = ("Type=", "NotifyAccess=", "WatchdogSec=", "ExecStart=", "ExecReload=", "Restart", "ExecStop")
    service, in_service = [], False
    for line in unit_text.splitlines():
        if line.startswith("["):
            in_service = line.strip() == "[Service]"
            continue
        if in_service and line.strip() and not line.startswith("#") and not line.startswith(drop):
            service.append(line)
    return ("[Unit]\nDescription=pivoice sandbox probe (test only)\n[Service]\nType=oneshot\n"
            f"ExecStart={exec_start}\nRuntimeDirectoryPreserve=yes\n" + "\n".join(service) + "\n")


DEVSERVER_UNIT = """\
[Unit]
Description=pivoice dev-server (local Realtime stand-in, test only)
[Service]
ExecStart=/opt/devserver/.venv/bin/pivoice dev-server --port {port} --api-key {key}
[Install]
WantedBy=multi-user.target
"""


@pytest.fixture(scope="module")
def timings() -> Timings:
    return Timings(TIMINGS_PATH)


@pytest.fixture(scope="module")
def booted(timings) -> Iterator[Container]:
    reason = cannot_boot_reason()
    if reason:
        pytest.skip(f"booted-systemd test: {reason}")
    OUT.mkdir(exist_ok=True)
    with timings.step("base_rootfs"):
        base, built = ensure_base_rootfs()
    timings.figure("base_rootfs_built_now", built)
    pip_cache = CACHE_DIR / "pip"   # root's ~/.cache/pip inside, kept between runs for speed
    pip_cache.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    binds = [(pip_cache, "/root/.cache/pip")]
    with booted_container(base, HOSTNAME, OUT / "systemd-test-boot.log", binds) as ct:
        timings.data["steps_s"]["copy_and_boot"] = round(time.monotonic() - t0, 2)
        timings.figure("system_state_after_boot", ct.system_state)
        # the layout Pi OS bookworm uses, and the only one in which DevicePolicy= is enforced here
        assert ct.run(["stat", "-fc", "%T", "/sys/fs/cgroup"]).stdout.strip() == "cgroup2fs"
        try:
            yield ct
        finally:
            with contextlib.suppress(Exception):   # the whole journal, for a look after a failure
                (OUT / "systemd-test-journal.log").write_text(ct.journal(fmt="short-monotonic"))
        t_off = time.monotonic()
    timings.data["steps_s"]["poweroff_and_cleanup"] = round(time.monotonic() - t_off, 2)
    timings.figure("container_shutdown", ct.shutdown)
    assert ct.nspawn.poll() is not None, "the container outlived its test module"
    assert ct.keep_root or not ct.root.exists(), f"{ct.root} was not removed"


@pytest.fixture(scope="module")
def pi(booted, timings, tmp_path_factory) -> PiHost:
    ct = booted
    work = tmp_path_factory.mktemp("pi")
    dev_port, backend_port = free_port(), free_port()
    while backend_port == dev_port:
        backend_port = free_port()

    with timings.step("checkout_and_admin"):
        ct.run(["useradd", "--create-home", "--shell", "/bin/bash", "--groups", "sudo", ADMIN], check=True)
        # Pi OS's first user may sudo without a password; this file is how Pi OS does it
        ct.put_file("/etc/sudoers.d/010_admin-nopasswd", f"{ADMIN} ALL=(ALL) NOPASSWD: ALL\n", mode=0o440)
        ct.put_tree(REPO, checkout_files(REPO), CHECKOUT, owner=f"{ADMIN}:{ADMIN}")
        for name, cfg in (("test-pivoice.yaml", daemon_config(dev_port, backend_port)),
                          ("test-token-server.yaml", token_server_config(dev_port, backend_port))):
            ct.put_file(f"/home/{ADMIN}/{name}", yaml.safe_dump(cfg, sort_keys=False), owner=f"{ADMIN}:{ADMIN}")
        question = make_speech_wav(work / "question.wav",
                                   "Hello! What can you tell me about the weather in the kitchen today?",
                                   rate_hz=16000, lead_silence_s=0.2, tail_silence_s=2.5)
        ct.put_file(QUESTION_WAV, question.read_bytes(), mode=0o644)

    token_args = ["--token-server", "--api-key-stdin", "--config", f"/home/{ADMIN}/test-token-server.yaml"]
    with timings.step("install_token_server"):
        result = run_install(ct, token_args, DEV_API_KEY)
    (OUT / "systemd-test-install-token-server.log").write_text(result.stdout + result.stderr)
    assert result.returncode == 0, f"scripts/install --token-server failed:\n{result.stdout}\n{result.stderr}"

    with timings.step("devserver_venv_and_unit"):
        # test tooling, not part of the product: the dev server needs pivoice[dev]; built from a root-owned
        # copy so pip leaves nothing behind in the admin's checkout
        ct.sh(f"cp -a {CHECKOUT} /opt/devserver-src && python3 -m venv /opt/devserver/.venv && "
              "/opt/devserver/.venv/bin/pip install -q '/opt/devserver-src[dev]'", timeout_s=INSTALL_TIMEOUT_S,
              check=True)
        ct.put_file("/etc/systemd/system/pivoice-devserver.service",
                    DEVSERVER_UNIT.format(port=dev_port, key=DEV_API_KEY))
        ct.run(["systemctl", "daemon-reload"], check=True)
        ct.run(["systemctl", "enable", "--now", "pivoice-devserver"], check=True)
        ct.wait_until("dev server listening", lambda: _listening(ct, dev_port), 30)

    with timings.step("devices_add"):
        # exactly the command install's last line gives, run by the admin through sudo
        hint = re.search(r"(runuser .*devices add) NAME", result.stdout + result.stderr)
        assert hint, f"scripts/install --token-server printed no `devices add` hint:\n{result.stdout}"
        added = ct.run(["sudo", *shlex.split(hint[1]), DEVICE], ADMIN, timeout_s=60, check=True)
        secret = added.stdout.strip()
        assert secret and "\n" not in secret, f"devices add printed {added.stdout!r}"

    # as the README has it: no --admin, so the admin who ran sudo joins group pivoice ($SUDO_USER)
    daemon_args = ["--secret-stdin", "--config", f"/home/{ADMIN}/test-pivoice.yaml"]
    with timings.step("install_daemon"):
        result = run_install(ct, daemon_args, secret)
    (OUT / "systemd-test-install-daemon.log").write_text(result.stdout + result.stderr)
    assert result.returncode == 0, f"scripts/install (device) failed:\n{result.stdout}\n{result.stderr}"
    assert secret not in result.stdout + result.stderr, "install echoed the device secret"

    return PiHost(ct, timings, dev_port, backend_port, secret, daemon_args, token_args)


def _listening(ct: Container, port: int) -> bool:
    return ct.run(["python3", "-c", f"import socket; socket.create_connection(('127.0.0.1', {port}), 1)"],
                  timeout_s=10).returncode == 0
