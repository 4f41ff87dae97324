"""A loopback tap between the daemon and the dev server: when did each Realtime event cross the wire?

The daemon's timeline notes only the first reply delta, and the dev server logs only what it
received (with wall-clock times). This TCP pass-through sits on the daemon's `realtime.url`,
forwards every byte at once, and stamps each complete WebSocket message with time.monotonic()
(the clock of the daemon's `--timeline`) and its event type. Client messages are stamped when
their last byte left the daemon, server messages when their last byte reached the tap, i.e.
tens of microseconds before the daemon could read them.

Threads: `WireTap.start()` runs an accept thread and two pump threads per connection (one per
direction); `events()` may be called from any thread (a lock guards the list).
"""

from __future__ import annotations

import json
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass

import numpy as np

CLIENT, SERVER = "client", "server"   # who sent the message
RECV_BYTES = 65536
_TYPE = re.compile(rb'"type"\s*:\s*"([^"]{1,80})"')


@dataclass(frozen=True)
class WireEvent:
    t_s: float        # time.monotonic() when the message was complete at the tap
    sender: str       # CLIENT (the daemon) or SERVER (the dev server)
    type: str         # the event's "type", or "?" for a frame that is not a JSON event
    size_bytes: int


class FrameReader:
    """Splits one direction of a WebSocket connection (RFC 6455) into messages.

    The HTTP upgrade comes first and is skipped; after it, frames: 2 header bytes, an optional
    16/64-bit length, a 4-byte mask on client frames. Control frames (close/ping/pong) are skipped;
    fragmented messages are joined. Not thread-safe: one reader per pump thread."""

    def __init__(self, sender: str, on_message) -> None:
        self._sender, self._on_message = sender, on_message
        self._buf = bytearray()
        self._upgraded = False
        self._fragments: list[bytes] = []

    def feed(self, t_s: float, data: bytes) -> None:
        self._buf += data
        if not self._upgraded:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                return
            del self._buf[:end + 4]
            self._upgraded = True
        while (frame := self._next_frame()) is not None:
            fin, opcode, payload = frame
            if opcode >= 0x8:
                continue
            self._fragments.append(payload)
            if fin:
                message, self._fragments = b"".join(self._fragments), []
                self._on_message(WireEvent(t_s, self._sender, event_type(message), len(message)))

    def _next_frame(self) -> tuple[bool, int, bytes] | None:
        buf = self._buf
        if len(buf) < 2:
            return None
        fin, opcode = bool(buf[0] & 0x80), buf[0] & 0x0F
        masked, length = bool(buf[1] & 0x80), buf[1] & 0x7F
        pos = 2
        if length == 126:
            if len(buf) < 4:
                return None
            length, pos = struct.unpack_from(">H", buf, 2)[0], 4
        elif length == 127:
            if len(buf) < 10:
                return None
            length, pos = struct.unpack_from(">Q", buf, 2)[0], 10
        mask = b""
        if masked:
            if len(buf) < pos + 4:
                return None
            mask, pos = bytes(buf[pos:pos + 4]), pos + 4
        if len(buf) < pos + length:
            return None
        payload = bytes(buf[pos:pos + length])
        del buf[:pos + length]
        if masked:
            payload = unmask(payload, mask)
        return fin, opcode, payload


def unmask(payload: bytes, mask: bytes) -> bytes:
    key = np.resize(np.frombuffer(mask, dtype=np.uint8), len(payload))
    return (np.frombuffer(payload, dtype=np.uint8) ^ key).tobytes()


def event_type(message: bytes) -> str:
    """The top-level "type" of a JSON event (the first one in the text: both peers write it first,
    checked against a full parse for the small events)."""
    found = _TYPE.search(message[:256])
    if found:
        return found.group(1).decode("utf-8", "replace")
    try:
        doc = json.loads(message)
    except ValueError:
        return "?"
    return str(doc.get("type", "?")) if isinstance(doc, dict) else "?"


class WireTap:
    """Listen on 127.0.0.1:<port> and forward each connection to `upstream` (host, port)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self._upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._events: list[WireEvent] = []
        self._sockets: list[socket.socket] = []
        self._closed = False

    def url(self, path: str = "/v1/realtime") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def start(self) -> "WireTap":
        threading.Thread(target=self._accept, name="wiretap-accept", daemon=True).start()
        return self

    def events(self) -> list[WireEvent]:
        with self._lock:
            return list(self._events)

    def stop(self) -> None:
        self._closed = True
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in [self._listener, *sockets]:
            try:
                sock.close()
            except OSError:
                pass

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self._upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._sockets += [client, server]
            for src, dst, sender in ((client, server, CLIENT), (server, client, SERVER)):
                threading.Thread(target=self._pump, args=(src, dst, FrameReader(sender, self._record)),
                                 name=f"wiretap-{sender}", daemon=True).start()

    def _record(self, event: WireEvent) -> None:
        with self._lock:
            self._events.append(event)

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, reader: FrameReader) -> None:
        try:
            while data := src.recv(RECV_BYTES):
                t_s = time.monotonic()
                dst.sendall(data)   # forward first: the tap must not delay the conversation
                reader.feed(t_s, data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
