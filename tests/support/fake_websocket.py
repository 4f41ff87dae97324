"""A websocket-client `WebSocket` stand-in for `RealtimeConnection(create_connection=...)`: it
yields scripted frames to the real reader thread and records what the daemon sent."""

from __future__ import annotations

import json
import threading

import websocket

TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA


def text(event) -> tuple[int, bytes]:
    return TEXT, (event if isinstance(event, bytes) else json.dumps(event).encode())


def close(code: int, reason: str = "") -> tuple[int, bytes]:
    return CLOSE, code.to_bytes(2, "big") + reason.encode()


class _Frame:
    def __init__(self, data: bytes):
        self.data = data


class FakeWebSocket:
    """Reader thread: recv_data_frame; controller side: send/send_frame/close. `frames` are
    (opcode, bytes) pairs, or an exception instance to raise from recv (e.g. a lost link). After the
    last frame, recv raises WebSocketConnectionClosedException (once `hold_open` is set, if given)."""

    def __init__(self, frames: list, hold_open: threading.Event | None = None):
        self._frames = list(frames)
        self._hold_open = hold_open
        self._lock = threading.Lock()
        self.sent: list[dict] = []
        self.closed = threading.Event()
        self.pings = 0

    def recv_data_frame(self, control_frame: bool = False):
        if self._hold_open is not None and not self._frames:
            self._hold_open.wait(10)
        with self._lock:
            item = self._frames.pop(0) if self._frames else \
                websocket.WebSocketConnectionClosedException("socket is already closed.")
        if isinstance(item, BaseException):
            raise item
        opcode, data = item
        return opcode, _Frame(data)

    def settimeout(self, timeout_s) -> None:
        pass

    def ping(self, payload: bytes = b"") -> None:
        self.pings += 1

    def send(self, text_: str) -> None:
        self.sent.append(json.loads(text_))

    def send_frame(self, frame) -> None:
        self.sent.append(json.loads(frame.data))

    def close(self, status: int = 1000, timeout: float = 3) -> None:
        self.closed.set()

    def shutdown(self) -> None:
        self.closed.set()


class FakeDialer:
    """`create_connection`: each call hands out the next FakeWebSocket (or raises the next exception)."""

    def __init__(self, *sockets):
        self._sockets = list(sockets)
        self.calls: list[dict] = []

    def __call__(self, url, **kwargs):
        self.calls.append({"url": url, **kwargs})
        item = self._sockets.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item
