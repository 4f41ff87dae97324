"""Starlette app of the dev server: routes and shared in-memory state (single process)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from starlette.applications import Starlette
from starlette.routing import Route, WebSocketRoute

from .eventlog import EventLog
from .faults import FaultPlan
from .httpapi import client_secrets, dev_faults
from .script import Script
from .scriptflow import ScriptCursor
from .secrets import SecretStore
from .transcription import DEFAULT_TRANSCRIPT
from .voice import VoiceSource
from .wsapi import realtime_socket


@dataclass
class DevServerConfig:
    api_key: str
    voice: VoiceSource
    audio_pace: float = 4.0
    max_session_s: float = 3600.0
    event_log: EventLog | None = None
    transcript: str = DEFAULT_TRANSCRIPT  # what every transcription-session turn "says" (no ASR)
    script: Script | None = None  # --script: scripted replies and tool calls
    script_scope: str = "server"  # "server": one cursor for all sessions; "session": each starts at turn 0


def create_app(config: DevServerConfig, clock_s: Callable[[], float] = time.time) -> Starlette:
    app = Starlette(routes=[
        Route("/v1/realtime/client_secrets", client_secrets, methods=["POST"]),
        Route("/_dev/faults", dev_faults, methods=["POST"]),
        WebSocketRoute("/v1/realtime", realtime_socket),
    ])
    app.state.api_key = config.api_key
    app.state.voice = config.voice
    app.state.audio_pace = config.audio_pace
    app.state.max_session_s = config.max_session_s
    app.state.event_log = config.event_log or EventLog(None)
    app.state.transcript = config.transcript
    shared = ScriptCursor(config.script) if config.script is not None else None
    app.state.script_cursor = (lambda: shared) if config.script_scope == "server" or shared is None \
        else (lambda: ScriptCursor(config.script))
    app.state.clock_s = clock_s
    app.state.secrets = SecretStore(clock_s)
    app.state.faults = FaultPlan()
    return app
