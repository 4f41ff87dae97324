"""`pivoice token-server serve` as systemd's Type=notify sees it: READY=1 only once the workers serve,
STOPPING=1 on SIGTERM, and every process of the service gone by itself soon after (so KillMode=mixed
has nothing left to SIGKILL)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from support.tokenserver import free_port, pivoice_cmd, write_config

pytestmark = pytest.mark.integration
READY_TIMEOUT_S = 30.0


def session_members(sid: int, zombies: bool = False) -> list[tuple[int, str]]:
    """(pid, command line) of every process in session `sid`, as the service's cgroup would hold them."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue   # exited while we looked
        fields = stat[stat.rindex(")") + 2:].split()   # after "pid (comm) "
        state, session = fields[0], int(fields[3])
        if session == sid and (zombies or state != "Z"):
            members.append((int(entry.name), cmdline))
    return members


@pytest.mark.parametrize("workers", [1, 3])
def test_ready_after_workers_serve_and_a_clean_stop(tmp_path, workers):
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    port = free_port()
    config = write_config(tmp_path / "token-server.yaml", upstream_url=f"http://127.0.0.1:{free_port()}",
                          database_url=f"sqlite:///{tmp_path / 'devices.db'}", workers=workers)
    env = {**os.environ, "OPENAI_API_KEY": "sk-notify-test", "NOTIFY_SOCKET": str(tmp_path / "notify"),
           "PYTHONUNBUFFERED": "1"}
    env.pop("PIVOICE_TOKEN_SERVER_CONFIG", None)
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(pivoice_cmd("token-server", "serve", "--config", str(config), "--port", str(port)),
                                   env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        started_at = time.monotonic()
        notify.settimeout(READY_TIMEOUT_S)
        first = notify.recv(4096).decode().split("\n")
        ready_s = time.monotonic() - started_at
        assert first[0] == "READY=1", (first, log_path.read_text())
        assert f"STATUS=serving on port {port} with {workers} worker(s)" in first
        # READY=1 means serving now: every fresh connection (any worker) answers at once
        for _ in range(2 * workers):
            with httpx.Client(timeout=2.0) as client:
                assert client.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        members = session_members(process.pid)
        assert len(members) >= 1 + workers, members

        stop_at = time.monotonic()
        process.send_signal(signal.SIGTERM)   # only to the main process, as KillMode=mixed does
        notify.settimeout(5)
        assert notify.recv(4096) == b"STOPPING=1"
        # systemd SIGKILLs whatever is left in the cgroup the moment the main process is gone
        # (KillMode=mixed): look while it is a zombie, before anyone reaps it
        deadline = stop_at + 5.0
        while os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG) is None:
            assert time.monotonic() < deadline, "the server did not exit within 5 s of SIGTERM"
            time.sleep(0.001)
        stop_s = time.monotonic() - stop_at
        left = [(pid, cmd) for pid, cmd in session_members(process.pid, zombies=True) if pid != process.pid]
        assert process.wait(5) == 0
        assert left == [], f"outlived the main process: {left}"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
        notify.close()
    print(f"{workers} worker(s): READY=1 {ready_s:.2f} s after start; every process gone {stop_s * 1000:.0f} ms "
          f"after SIGTERM")
