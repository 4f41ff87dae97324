"""One WebSocket connection to a Realtime session (GA interface), on websocket-client.

`RealtimeConnector.connect(key, on_event)` returns a `RealtimeConnection` whose
own reader thread dials, then turns every frame into a controller event and
hands it to `on_event` (which only enqueues). `send()` / `send_audio()` are
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

log = logging.getLogger(__name__)

# A silent peer for this long is treated as gone; pings keep a healthy idle session alive.
PING_INTERVAL_S = 15.0
DEAD_AFTER_S = 45.0


def session_url(base_url: str, model: str) -> str:
    """`wss://host/v1/realtime` + `?model=` (the docs' examples always send it; the key's model must match)."""
    parts = urlsplit(base_url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "model"] + [("model", model)]
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
        self.bytes_sent = 0

    def start(self) -> None:
        self._thread.start()

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
        try:
            ws = self._create_connection(
                self._url, header=[f"Authorization: Bearer {self._bearer}"],
                timeout=self._connect_timeout_s, enable_multithread=True,
                # websocket-client checks UTF-8 in pure Python on every frame (a third of the daemon's
                # busy time in profiles); json.loads rejects invalid UTF-8 anyway
                skip_utf8_validation=True)
        except websocket.WebSocketBadStatusException as exc:
            self._emit_closed(None, f"handshake refused with HTTP {exc.status_code}"
                                    f"{error_detail(exc.resp_body)}")
            return
        except (websocket.WebSocketException, OSError) as exc:
            self._emit_closed(None, f"cannot connect to {_redact_url(self._url)}: {exc}")
            return
        self._ws = ws
        if self._closing.is_set():
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
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                code, reason = _parse_close(frame.data)
                self._emit_closed(code, reason)
                return
            if opcode == websocket.ABNF.OPCODE_TEXT:
                self._dispatch(frame.data)

    def _dispatch(self, raw: bytes) -> None:
        try:
            data = json.loads(raw)
        except ValueError:
            log.warning("server sent a frame that is not JSON (%d bytes); ignored", len(raw))
            return
        if not isinstance(data, dict):
            log.warning("server sent a JSON %s instead of an event object; ignored", type(data).__name__)
            return
        if data.get("type") == "response.output_audio.delta":
            try:
                payload = base64.b64decode(data.get("delta") or "", validate=True)
            except (ValueError, TypeError):
                log.warning("audio delta with invalid base64 dropped (response %s)", data.get("response_id"))
                return
            self._on_event(m.AudioDelta(str(data.get("response_id", "")), str(data.get("item_id", "")),
                                        int(data.get("content_index") or 0), payload, time.monotonic()))
            return
        self._on_event(m.ServerEvent(data))

    def _emit_closed(self, code: int | None, reason: str) -> None:
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


def _parse_close(data: bytes) -> tuple[int | None, str]:
    if len(data) < 2:
        return None, ""
    return int.from_bytes(data[:2], "big"), data[2:].decode("utf-8", "replace")


def error_detail(body: bytes | None) -> str:
    """The server's error code/message from a refused handshake, e.g. `: invalid_api_key (...)`."""
    try:
        err = json.loads(body or b"{}").get("error") or {}
    except (ValueError, AttributeError):
        return ""
    code, message = err.get("code"), err.get("message")
    return f": {code or 'error'} ({message})" if (code or message) else ""


class RealtimeConnector:
    """Builds connections for the configured server and model. Called from the controller thread."""

    def __init__(self, base_url: str, model: str, *, connect_timeout_s: float,
                 create_connection=websocket.create_connection):
        self.url = session_url(base_url, model)
        self._connect_timeout_s = connect_timeout_s
        self._create_connection = create_connection

    def connect(self, bearer: str, on_event: Callable[[object], None]) -> RealtimeConnection:
        conn = RealtimeConnection(self.url, bearer, on_event, connect_timeout_s=self._connect_timeout_s,
                                  create_connection=self._create_connection)
        conn.start()
        return conn
