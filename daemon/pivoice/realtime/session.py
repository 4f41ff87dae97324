"""One WebSocket connection to a Realtime session (GA interface), on websocket-client.

`RealtimeConnector.connect(key, on_event)` returns a `RealtimeConnection` whose
own reader thread dials, then turns every frame into a controller event
(`events.FrameParser`, shared with the scripted peer in `scripted.py`) and hands
it to `on_event` (which only enqueues). Whatever ends the reader, the last
event it hands over is one `SocketClosed`. `send()` / `send_audio()` are
called from the controller thread; websocket-client serialises frame writes
with its own lock, so they are safe while the reader thread runs.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import struct
import threading
import time
from typing import Callable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import websocket

from pivoice import messages as m
from pivoice.osthread import name_this_thread
from pivoice.realtime.events import MAX_TEXT_CHARS, FrameParser
from pivoice.tls import websocket_options

log = logging.getLogger(__name__)

# A silent peer for this long is treated as gone; pings keep a healthy idle session alive.
PING_INTERVAL_S = 15.0
DEAD_AFTER_S = 45.0


def session_url(base_url: str, model: str | None) -> str:
    """`wss://host/v1/realtime` + `?model=` (the docs' examples always send it; the key's model must
    match), or with no model `?intent=transcription` (the API reference: transcription sessions set
    the intent and omit the model)."""
    parts = urlsplit(base_url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "model" and (model or k != "intent")]
    query.append(("model", model) if model else ("intent", "transcription"))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


def _redact_url(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.hostname or "", parts.path, parts.query, ""))


class RealtimeConnection:
    """A live session socket. Reader thread: its own; send*/close: the controller thread."""

    def __init__(self, url: str, bearer: str, on_event: Callable[[object], None], *,
                 connect_timeout_s: float, create_connection=websocket.create_connection):
        self._url = url
        self._bearer = bearer
        self._on_event = on_event
        self._connect_timeout_s = connect_timeout_s
        self._create_connection = create_connection
        self._ws: websocket.WebSocket | None = None
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name="realtime-ws", daemon=True)
        self._parser = FrameParser()
        self._reported_close = False   # the controller has had its SocketClosed
        self.bytes_sent = 0

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout_s: float) -> bool:
        """Wait for the reader thread to end (after a close); True if it has."""
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def send(self, event: dict) -> None:
        self._send_text(json.dumps(event, separators=(",", ":")))

    def send_audio(self, payload: bytes) -> None:
        # Runs 25 times a second: the JSON is built by hand and so is the frame (see _PrebuiltFrame).
        ws = self._ws
        if ws is None or self._closing.is_set():
            return
        body = b'{"type":"input_audio_buffer.append","audio":"' + base64.b64encode(payload) + b'"}'
        try:
            ws.send_frame(_PrebuiltFrame(body))
            self.bytes_sent += len(body)
        except (websocket.WebSocketException, OSError) as exc:
            log.debug("send failed: %s", exc)

    def close(self) -> None:
        self._closing.set()
        ws = self._ws
        if ws is not None:
            try:
                ws.close(status=1000, timeout=1)
            except Exception:   # already gone: nothing to tidy up
                pass

    def _send_text(self, text: str) -> None:
        ws = self._ws
        if ws is None or self._closing.is_set():
            return
        try:
            ws.send(text)
            self.bytes_sent += len(text)
        except (websocket.WebSocketException, OSError) as exc:
            # The reader thread notices the broken socket and reports the close.
            log.debug("send failed: %s", exc)

    def _run(self) -> None:
        name_this_thread("realtime")
        # Whatever happens in here, the controller hears that the socket is gone: a reader that
        # died quietly would leave the conversation waiting for events that never come.
        reason = "the daemon's Realtime reader stopped"
        try:
            self._dial_and_read()
        except Exception as exc:   # a bug: end the conversation with a reason, not the thread silently
            log.error("Realtime reader failed", exc_info=True)
            reason = f"the daemon's Realtime reader failed ({type(exc).__name__})"
        finally:
            if not self._reported_close:
                self._emit_closed(None, reason)

    def _dial_and_read(self) -> None:
        try:
            ws = self._create_connection(
                self._url, header=[f"Authorization: Bearer {self._bearer}"],
                timeout=self._connect_timeout_s, enable_multithread=True,
                # websocket-client checks UTF-8 in pure Python on every frame (a third of the daemon's
                # busy time in profiles); json.loads rejects invalid UTF-8 anyway
                skip_utf8_validation=True, **websocket_options(self._url))
        except websocket.WebSocketBadStatusException as exc:
            self._emit_closed(None, handshake_refused(exc.status_code, exc.resp_body))
            return
        except (websocket.WebSocketException, OSError) as exc:
            self._emit_closed(None, f"cannot connect to {_redact_url(self._url)}: {exc}")
            return
        self._ws = ws
        if self._closing.is_set():
            self._reported_close = True   # the daemon dropped us while dialling: nobody is listening
            ws.close()
            return
        ws.settimeout(PING_INTERVAL_S)
        self._on_event(m.SocketOpened())
        self._read_loop(ws)

    def _read_loop(self, ws: websocket.WebSocket) -> None:
        last_rx = time.monotonic()
        while True:
            try:
                opcode, frame = ws.recv_data_frame(True)
            except websocket.WebSocketTimeoutException:
                if time.monotonic() - last_rx > DEAD_AFTER_S:
                    self._emit_closed(None, f"no data from the server for {DEAD_AFTER_S:.0f} s")
                    ws.shutdown()
                    return
                try:
                    ws.ping()
                except (websocket.WebSocketException, OSError):
                    pass
                continue
            except (websocket.WebSocketException, OSError) as exc:
                reason = "closed by the daemon" if self._closing.is_set() else f"connection lost: {exc}"
                self._emit_closed(1000 if self._closing.is_set() else None, reason)
                return
            last_rx = time.monotonic()
            try:
                event = self._parser.parse(opcode, frame.data)
            except Exception as exc:   # the parser is meant to be total; if not, lose one event, not the link
                log.warning("server frame dropped: the daemon could not read it (%s)", type(exc).__name__)
                continue
            if isinstance(event, m.SocketClosed):
                self._emit_closed(event.code, event.reason)
                return
            if event is not None:
                self._on_event(event)

    def _emit_closed(self, code: int | None, reason: str) -> None:
        self._reported_close = True
        self._on_event(m.SocketClosed(code, reason))


class _PrebuiltFrame(websocket.ABNF):
    """A masked client text frame built in one pass, for `WebSocket.send_frame`.

    websocket-client's own path (create_frame, validation, header by chr(), mask) costs ~130 us
    per 2.6 kB append on the dev VM right after a wakeup; this costs ~75 us. The mask key comes
    from os.urandom like the library's default.
    """

    def __init__(self, body: bytes) -> None:
        super().__init__(fin=1, opcode=websocket.ABNF.OPCODE_TEXT, mask_value=1, data=body)

    def format(self) -> bytes:
        body = self.data
        n = len(body)
        if n < 126:
            header = struct.pack("!BB", 0x81, 0x80 | n)
        elif n < 1 << 16:
            header = struct.pack("!BBH", 0x81, 0xFE, n)
        else:
            header = struct.pack("!BBQ", 0x81, 0xFF, n)
        key = os.urandom(4)
        mask = int.from_bytes(key * (n // 4) + key[:n % 4], "little")
        return header + key + (int.from_bytes(body, "little") ^ mask).to_bytes(n, "little")


def error_detail(body: bytes | None) -> str:
    """The server's error code/message from a refused handshake, e.g. `: invalid_api_key (...)`;
    "" when the body is not an OpenAI error object."""
    try:
        doc = json.loads(body or b"{}")
    except (ValueError, RecursionError):
        return ""
    err = doc.get("error") if isinstance(doc, dict) else None
    if not isinstance(err, dict):
        return ""
    code, message = err.get("code"), err.get("message")
    code = code if isinstance(code, str) else None
    message = message[:MAX_TEXT_CHARS] if isinstance(message, str) else None
    return f": {code or 'error'} ({message})" if (code or message) else ""


def handshake_refused(status: int, body: bytes | None) -> str:
    """The SocketClosed reason for an HTTP answer instead of the WebSocket upgrade."""
    return f"handshake refused with HTTP {status}{error_detail(body)}"


class RealtimeConnector:
    """Builds connections for the configured server and model. Called from the controller thread."""

    def __init__(self, base_url: str, model: str | None, *, connect_timeout_s: float,
                 create_connection=websocket.create_connection):
        self.url = session_url(base_url, model)
        self._connect_timeout_s = connect_timeout_s
        self._create_connection = create_connection

    def connect(self, bearer: str, on_event: Callable[[object], None]) -> RealtimeConnection:
        conn = RealtimeConnection(self.url, bearer, on_event, connect_timeout_s=self._connect_timeout_s,
                                  create_connection=self._create_connection)
        conn.start()
        return conn
