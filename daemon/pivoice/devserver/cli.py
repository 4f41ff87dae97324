"""`pivoice dev-server`: a local, offline stand-in for the OpenAI Realtime API (GA protocol).

--script FILE (JSON or YAML) makes the "model" reply with scripted text and call tools:
function calls (answered by the client's function_call_output + response.create) and MCP
tools (list/approval/call). There is no network: MCP tool lists, outputs and errors come from
the script, and the server never contacts an MCP server_url. Format: see devserver/script.py.

Transcription sessions (`session.type: transcription`) get NO real ASR: every committed
turn is "transcribed" as the --transcript text, with {seconds} replaced by the turn's length.

The API key is a local fake (`sk-dev-local` unless --api-key or
PIVOICE_DEV_API_KEY says otherwise); it protects nothing real. `POST /_dev/faults`
is a dev-only fault-injection knob for tests. Runs uvicorn on a socket bound
here, so `--port 0` works and the real port can be reported in --ready-file.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
from pathlib import Path

import uvicorn

from .app import DevServerConfig, create_app
from .eventlog import EventLog
from .script import ScriptError, load
from .transcription import DEFAULT_TRANSCRIPT
from .voice import DEFAULT_REPLY_TEXT, VoiceSource

log = logging.getLogger(__name__)
DEFAULT_API_KEY = "sk-dev-local"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="pivoice dev-server", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765, help="0 binds a free port (see --ready-file)")
    p.add_argument("--api-key", default=os.environ.get("PIVOICE_DEV_API_KEY") or DEFAULT_API_KEY,
                   help="the local fake API key (default: $PIVOICE_DEV_API_KEY or sk-dev-local)")
    p.add_argument("--reply-text", default=DEFAULT_REPLY_TEXT,
                   help="spoken reply; {seconds} is replaced by the length of the user's speech")
    p.add_argument("--mode", choices=["speak", "parrot", "tone"], default="speak")
    p.add_argument("--transcript", default=DEFAULT_TRANSCRIPT,
                   help="NO ASR: the text every turn of a transcription session is 'transcribed' as; "
                        "{seconds} is replaced by the turn's length (pure silence fails as unintelligible)")
    p.add_argument("--script", type=Path, metavar="FILE",
                   help="scripted turns (say / function calls / MCP calls), one per response on a user turn; "
                        "offline: MCP outputs come from the file, no MCP server is contacted")
    p.add_argument("--script-scope", choices=["server", "session"], default="server",
                   help="server: one turn sequence across all sessions (a daemon opens one per conversation); "
                        "session: every session starts at the first turn")
    p.add_argument("--max-session-s", type=float, default=3600.0)
    p.add_argument("--ready-file", type=Path, help="written with the bound port once listening")
    p.add_argument("--event-log", type=Path, help="append one JSON line per client event received")
    p.add_argument("--audio-pace", type=float, default=4.0,
                   help="audio delta speed relative to real time; 0 = as fast as possible")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--tls-cert", type=Path, metavar="PEM", help="serve https:// and wss:// with this certificate")
    p.add_argument("--tls-key", type=Path, metavar="PEM", help="the certificate's private key")
    args = p.parse_args(argv)
    if (args.tls_cert is None) != (args.tls_key is None):
        p.error("--tls-cert and --tls-key go together")
    for name in ("tls_cert", "tls_key"):
        path = getattr(args, name)
        if path is not None and not path.is_file():
            p.error(f"--{name.replace('_', '-')} {path}: file not found")
    if args.audio_pace < 0 or args.max_session_s <= 0 or not 0 <= args.port <= 65535:
        p.error("--audio-pace must be >= 0, --max-session-s > 0 and --port 0..65535")
    return args


def _write_ready_file(path: Path, port: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{port}\n")
    tmp.replace(path)  # atomic: a waiting reader never sees a half-written port


async def _serve(server: uvicorn.Server, sock: socket.socket, args: argparse.Namespace) -> None:
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():
        await asyncio.sleep(0.02)
    if server.started:
        port = sock.getsockname()[1]
        log.info("listening on %s://%s:%d", "https" if args.tls_cert else "http", args.host, port)
        if args.ready_file:
            _write_ready_file(args.ready_file, port)
    await task


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        sock = socket.create_server((args.host, args.port), reuse_port=False)
    except OSError as exc:
        print(f"pivoice dev-server: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    try:
        script = load(args.script) if args.script else None
    except ScriptError as exc:
        print(f"pivoice dev-server: --script {exc}", file=sys.stderr)
        return 2
    event_log = EventLog(args.event_log)
    config = DevServerConfig(api_key=args.api_key, voice=VoiceSource(args.mode, args.reply_text),
                             audio_pace=args.audio_pace, max_session_s=args.max_session_s, event_log=event_log,
                             transcript=args.transcript, script=script, script_scope=args.script_scope)
    server = uvicorn.Server(uvicorn.Config(create_app(config), log_level="warning", ws="websockets-sansio",
                                           lifespan="off", timeout_graceful_shutdown=2,
                                           ssl_certfile=args.tls_cert, ssl_keyfile=args.tls_key))
    try:
        asyncio.run(_serve(server, sock, args))
    except KeyboardInterrupt:
        pass
    finally:
        event_log.close()
        sock.close()
    return 0
