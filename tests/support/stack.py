"""The whole thing offline: dev server + token backend + the real daemon process.

Used by the end-to-end tests, `scripts/demo` and `scripts/bench`. The daemon
runs as `pivoice run --config ... --timeline ...`; the button is pressed through
its control socket (`pivoice ctl press`), exactly as a kiosk app would.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import yaml

from support.devserver import run_dev_server
from support.tokenserver import run_token_server, stop_process

from pivoice import control

DEVICE_ID = "kitchen"
READY_TIMEOUT_S = 20.0


def daemon_config(work: Path, *, backend_url: str, realtime_url: str, mic: str, speaker: str,
                  session_audio: dict | None = None, conversation: dict | None = None,
                  log_level: str = "info", **sections) -> dict:
    secret_file = work / "device-secret"
    audio_session = {"input": {"noise_reduction": {"type": "far_field"},
                               "turn_detection": {"type": "server_vad", "silence_duration_ms": 500}}}
    for key, value in (session_audio or {}).items():
        audio_session.setdefault(key, {}).update(value)
    return {
        "button": {"pin": "GPIO17", "pin_factory": "mock"},
        "control": {"socket_path": str(work / "control.sock")},
        "audio": {"input": {"device": mic}, "output": {"device": speaker}, **sections.pop("audio", {})},
        "realtime": {"url": realtime_url, "connect_timeout_s": 10},
        "tokens": {"backend_url": backend_url, "device_id": DEVICE_ID, "secret_file": str(secret_file)},
        "conversation": {"idle_timeout_s": 4, **(conversation or {})},
        "session": {"audio": audio_session},
        "logging": {"level": log_level},
        # the earcons would sound in every recorded reply: off unless a test asks (the timer chime stays)
        "feedback": {"earcons": {"listening": False, "thinking": False, "ended": False, "error": False}},
        **sections,
    }


@dataclass
class Daemon:
    process: subprocess.Popen
    config_path: Path
    socket_path: Path
    timeline_path: Path
    stderr_path: Path
    started_at_s: float = field(default_factory=time.monotonic)

    def ctl(self, cmd: str) -> dict:
        return control.request(str(self.socket_path), cmd)

    def status(self) -> dict:
        return self.ctl("status")["status"]

    def timeline(self) -> list[dict]:
        if not self.timeline_path.exists():
            return []
        return [json.loads(line) for line in self.timeline_path.read_text().splitlines() if line.strip()]

    def wait_for(self, kind: str, timeout_s: float, after: int = 0) -> dict:
        """The first timeline entry of `kind` at index >= after; raises with the timeline on timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for entry in self.timeline()[after:]:
                if entry["kind"] == kind:
                    return entry
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"no {kind!r} in the timeline after {timeout_s} s; timeline:\n"
                             + "\n".join(json.dumps(e) for e in self.timeline())
                             + "\nstderr:\n" + self.stderr_text()[-4000:])

    def stderr_text(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""


def start_daemon(work: Path, config: dict, env: dict | None = None) -> Daemon:
    config_path = work / "pivoice.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    timeline = work / "timeline.jsonl"
    stderr_path = work / "daemon.stderr"
    with open(stderr_path, "wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "pivoice", "run", "--config", str(config_path), "--timeline", str(timeline)],
            stdout=subprocess.DEVNULL, stderr=stderr, env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"},
            start_new_session=True)
    daemon = Daemon(process, config_path, Path(config["control"]["socket_path"]), timeline, stderr_path)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"daemon exited with {process.returncode}:\n{daemon.stderr_text()}")
        if time.monotonic() > deadline:
            stop_process(process)
            raise RuntimeError(f"daemon not ready after {READY_TIMEOUT_S} s:\n{daemon.stderr_text()}")
        with contextlib.suppress(OSError, ValueError):
            if daemon.status()["token"].get("state") == "ok":
                return daemon
        time.sleep(0.05)


@dataclass
class Stack:
    work: Path
    dev: object
    tokens: object
    secret: str

    def config(self, **kwargs) -> dict:
        return daemon_config(self.work, backend_url=self.tokens.url, realtime_url=self.dev.ws_url, **kwargs)

    def daemon(self, config: dict, env: dict | None = None) -> Daemon:
        return start_daemon(self.work, config, env)

    def client_events(self) -> list[dict]:
        path = Path(self.dev.event_log_path)
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


@contextlib.contextmanager
def offline_stack(work: Path, *dev_args: str, workers: int = 2, **policy) -> Iterator[Stack]:
    """Dev server (Realtime stand-in) and token backend on loopback, with one registered device;
    `policy` goes to the backend's config (e.g. default_expires_after_s=10)."""
    work.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(work / "token-server", ignore_errors=True)   # a fresh device registry each time
    with run_dev_server(work, *dev_args) as dev, \
            run_token_server(work, dev.url, dev.api_key, devices=[DEVICE_ID], workers=workers,
                             **policy) as tokens:
        secret = tokens.device_secrets[DEVICE_ID]
        secret_file = work / "device-secret"
        secret_file.write_text(secret + "\n")
        secret_file.chmod(0o600)
        yield Stack(work, dev, tokens, secret)


@contextlib.contextmanager
def running(daemon: Daemon) -> Iterator[Daemon]:
    try:
        yield daemon
    finally:
        stop_process(daemon.process)
