"""Start `pivoice dev-server` as a real process for tests: `with run_dev_server(tmp_path, ...) as dev:`."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parents[2]
PIVOICE = REPO / ".venv" / "bin" / "pivoice"
DEFAULT_API_KEY = "sk-dev-local"
READY_TIMEOUT_S = 15.0


@dataclass
class DevServer:
    port: int
    url: str  # http://127.0.0.1:PORT (https:// with --tls-cert)
    api_key: str
    event_log_path: Path
    process: subprocess.Popen

    @property
    def ws_url(self) -> str:
        return f"{'wss' if self.url.startswith('https:') else 'ws'}://127.0.0.1:{self.port}/v1/realtime"


def _option(args: tuple[str, ...], name: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


@contextlib.contextmanager
def run_dev_server(tmp_path: Path, *args: str, ready_timeout_s: float = READY_TIMEOUT_S) -> Iterator[DevServer]:
    """Run the dev server on a free loopback port; extra `args` go to the command line.

    Unless given in `args`, adds `--port 0`, a ready file and an event log inside `tmp_path`.
    The process is terminated (then killed) on exit; stderr goes to `tmp_path/dev-server-*.stderr`.
    """
    tmp_path.mkdir(parents=True, exist_ok=True)
    stamp = f"{os.getpid()}-{time.monotonic_ns()}"
    ready = tmp_path / f"dev-server-{stamp}.ready"
    event_log = Path(_option(args, "--event-log") or tmp_path / f"dev-server-{stamp}.events.jsonl")
    stderr_path = tmp_path / f"dev-server-{stamp}.stderr"
    cmd = [str(PIVOICE) if PIVOICE.exists() else sys.executable, *([] if PIVOICE.exists() else ["-m", "pivoice"]),
           "dev-server", "--ready-file", str(ready)]
    if _option(args, "--port") is None:
        cmd += ["--port", "0"]
    if _option(args, "--event-log") is None:
        cmd += ["--event-log", str(event_log)]
    cmd += list(args)
    api_key = _option(args, "--api-key") or os.environ.get("PIVOICE_DEV_API_KEY") or DEFAULT_API_KEY
    with open(stderr_path, "wb") as stderr:
        process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        deadline = time.monotonic() + ready_timeout_s
        while not ready.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                state = f"exited with {process.returncode}" if process.poll() is not None else "timed out"
                raise RuntimeError(f"dev server {state} before it was ready; stderr:\n"
                                   + stderr_path.read_text(errors="replace"))
            time.sleep(0.05)
        port = int(ready.read_text().strip())
        scheme = "https" if _option(args, "--tls-cert") else "http"
        yield DevServer(port, f"{scheme}://127.0.0.1:{port}", api_key, event_log, process)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


class RealtimeTestClient:
    """A websocket-client connection that validates every server event it receives against the SDK types.

    `received` keeps every event; `invalid` lists (event, problems) for events that fail
    `RealtimeServerEvent` strict validation or carry unknown fields.
    """

    def __init__(self, url: str, key: str | None, headers: list[str] | None = None,
                 subprotocols: list[str] | None = None, timeout_s: float = 10.0) -> None:
        import websocket  # websocket-client

        from pivoice.devserver.validation import check_server_event

        self._check = check_server_event
        header = ([f"Authorization: Bearer {key}"] if key else []) + list(headers or [])
        self.ws = websocket.create_connection(url, header=header, subprotocols=subprotocols, timeout=timeout_s)
        self.received: list[dict] = []
        self.invalid: list[tuple[dict, list[str]]] = []
        self._count = 0

    def send(self, event: dict) -> None:
        import json

        self.ws.send(json.dumps(event))

    def recv(self) -> dict:
        import json

        event = json.loads(self.ws.recv())
        check = self._check(event)
        if not check.ok:
            self.invalid.append((event, check.messages()))
        self.received.append(event)
        return event

    def wait_for(self, type_: str, timeout_s: float = 10.0) -> dict:
        """Receive until an event of `type_` arrives (others stay in `received`)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            event = self.recv()
            if event["type"] == type_:
                return event
        raise TimeoutError(f"no {type_} within {timeout_s} s; got {[e['type'] for e in self.received[-10:]]}")

    def since(self, mark: int) -> list[dict]:
        return self.received[mark:]

    def close(self) -> None:
        self.ws.close()

    def __enter__(self) -> "RealtimeTestClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
