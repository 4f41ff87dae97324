"""Run a real `pivoice token-server` (and a throwaway PostgreSQL cluster) for tests.

    with run_token_server(tmp_path, dev.url, dev.api_key, devices=["kitchen"], workers=2,
                          mint_rate_per_min=30) as ts:
        httpx.post(ts.url + "/v1/realtime/client_secrets", auth=("kitchen", ts.device_secrets["kitchen"]))

Policy/limit keyword arguments go into the config's `policy:` or `limits:` section.
Every process started here is stopped on exit, also when the body raises.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import yaml

LIMIT_KEYS = ("mint_rate_per_min", "daily_budget")
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


def pivoice_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "pivoice", *args]


@dataclass
class TokenServer:
    port: int
    url: str
    process: subprocess.Popen
    device_secrets: dict[str, str]
    config_path: Path
    log_path: Path
    env: dict = field(repr=False, default_factory=dict)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """`pivoice token-server ARGS --config <this server's config>`."""
        result = subprocess.run(pivoice_cmd("token-server", *args, "--config", str(self.config_path)),
                                env=self.env, capture_output=True, text=True, timeout=60)
        if check and result.returncode != 0:
            raise AssertionError(f"token-server {' '.join(args)} failed: {result.stderr}")
        return result

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def audit_lines(self) -> list[str]:
        return [line for line in self.log_text().splitlines() if "pivoice.tokenserver.audit" in line]


def write_config(path: Path, *, upstream_url: str, database_url: str, workers: int,
                 upstream: dict | None = None, log_level: str = "info", tls: dict | None = None,
                 fleet: dict | None = None, **policy) -> Path:
    data = {"host": "127.0.0.1", "port": 0, "workers": workers, "database_url": database_url,
            "openai_base_url": upstream_url, "api_key_env": "OPENAI_API_KEY", "log_level": log_level,
            "upstream": {"connect_timeout_s": 2.0, "timeout_s": 10.0, "retries": 2, "backoff_s": 0.05,
                         **(upstream or {})},
            "policy": {k: v for k, v in policy.items() if k not in LIMIT_KEYS},
            "limits": {k: v for k, v in policy.items() if k in LIMIT_KEYS}, "tls": tls or {},
            "fleet": fleet or {}}
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def stop_process(process: subprocess.Popen, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM (the supervisor stops its workers), then SIGKILL whatever is left of its group.

    The server is started with start_new_session=True, so its pid is also its process group.
    """
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(5)


@contextlib.contextmanager
def run_token_server(tmp_path: Path, upstream_url: str, api_key: str, devices: list[str] = (),
                     workers: int = 2, *, database_url: str | None = None, upstream: dict | None = None,
                     log_level: str = "info", name: str = "token-server", tls: dict | None = None,
                     fleet: dict | None = None, **policy) -> Iterator[TokenServer]:
    """Write a config, register `devices` through the CLI, start the server, wait until ready.

    `tls={"cert_file": ..., "key_file": ...}` serves HTTPS (then `url` starts with https://).
    """
    work = Path(tmp_path) / name
    work.mkdir(parents=True, exist_ok=True)
    database_url = database_url or f"sqlite:///{work / 'devices.db'}"
    config = write_config(work / "token-server.yaml", upstream_url=upstream_url, database_url=database_url,
                          workers=workers, upstream=upstream, log_level=log_level, tls=tls, fleet=fleet,
                          **policy)
    env = {**os.environ, "OPENAI_API_KEY": api_key, "PYTHONUNBUFFERED": "1"}
    env.pop("PIVOICE_TOKEN_SERVER_CONFIG", None)
    secrets: dict[str, str] = {}
    for device in devices:
        result = subprocess.run(pivoice_cmd("token-server", "devices", "add", device, "--config", str(config)),
                                env=env, capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"devices add {device} failed: {result.stderr}")
        secrets[device] = result.stdout.strip()

    ready_file = work / "ready"
    log_path = work / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            pivoice_cmd("token-server", "serve", "--config", str(config), "--ready-file", str(ready_file)),
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not ready_file.exists():
            if process.poll() is not None:
                raise RuntimeError(f"token server exited with {process.returncode}:\n{log_path.read_text()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"token server not ready after {READY_TIMEOUT_S} s:\n{log_path.read_text()}")
            time.sleep(0.05)
        port = int(ready_file.read_text().strip())
        scheme = "https" if tls else "http"
        yield TokenServer(port, f"{scheme}://127.0.0.1:{port}", process, secrets, config, log_path, env)
    finally:
        stop_process(process)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError(f"PostgreSQL {name} not found under /usr/lib/postgresql/*/bin")
    return found[-1]


@dataclass
class PgCluster:
    url: str
    data_dir: Path
    options: str

    def _ctl(self, *args: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", _pg_bin("pg_ctl"), "-D", str(self.data_dir), *args],
                       check=True, capture_output=True, timeout=90)

    def stop(self) -> None:
        self._ctl("-m", "fast", "-w", "stop")

    def start(self) -> None:
        self._ctl("-l", str(self.data_dir.parent / "postgres.log"), "-o", self.options, "-w", "-t", "60", "start")


@contextlib.contextmanager
def postgres_cluster() -> Iterator[PgCluster]:
    """A throwaway PostgreSQL cluster on a free loopback port (`.url`), removed afterwards.

    We run as root and PostgreSQL refuses to, so initdb/pg_ctl run as `postgres`; the cluster
    lives in its own /tmp directory (pytest's tmp dirs are root-only, postgres cannot enter them).
    """
    base = Path(tempfile.mkdtemp(prefix="pivoice-pg-"))
    shutil.chown(base, "postgres", "postgres")
    port = free_port()
    cluster = PgCluster(f"postgresql://postgres@127.0.0.1:{port}/postgres", base / "data",
                        f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100")
    try:
        subprocess.run(["runuser", "-u", "postgres", "--", _pg_bin("initdb"), "-D", str(cluster.data_dir),
                        "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"],
                       check=True, capture_output=True, timeout=120)
        cluster.start()
        yield cluster
    finally:
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            cluster.stop()  # fails harmlessly if it never started or is already stopped
        shutil.rmtree(base, ignore_errors=True)
