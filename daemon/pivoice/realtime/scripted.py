"""A scripted in-process Realtime peer for tests: a stand-in for `RealtimeConnector`, the way
gpiozero's MockFactory stands in for pins.

`ScriptedConnector().connect(bearer, on_event)` returns a `ScriptedConnection` that records every
event the daemon sends (decoded dicts, in order, audio appends included) and lets the test play
server frames, closes and link losses into `on_event`. Frames go through the same
`events.FrameParser` as the real connection's reader thread, so a scripted fault exercises the
daemon's real parsing. No sockets, no threads of its own: `on_event` runs on the test's thread.

    peer = ScriptedConnector()
    runtime = Runtime(..., connector=peer)
    conn = peer.wait_for_connection(1)
    conn.play_all(reply_events("resp_1", "item_1", pcm))
    conn.server_close(1001, "going away")
"""

from __future__ import annotations

import base64
import json
import threading
import time
from typing import Callable

from pivoice import messages as m
from pivoice.realtime.events import OPCODE_BINARY, OPCODE_CLOSE, OPCODE_TEXT, FrameParser
from pivoice.realtime.session import handshake_refused


def session_created(session_id: str = "sess_scripted") -> dict:
    return {"type": "session.created", "event_id": "event_s0", "session": {"id": session_id, "type": "realtime"}}


def reply_events(response_id: str, item_id: str, audio: bytes, *, chunk_bytes: int = 4800,
                 done: bool = True, transcript: str = "scripted reply") -> list[dict]:
    """A reply as the server sends it: response.created, audio deltas, and (if `done`) the ends."""
    events = [{"type": "response.created", "response": {"id": response_id, "status": "in_progress"}}]
    for i in range(0, len(audio), chunk_bytes):
        events.append({"type": "response.output_audio.delta", "response_id": response_id, "item_id": item_id,
                       "output_index": 0, "content_index": 0,
                       "delta": base64.b64encode(audio[i:i + chunk_bytes]).decode()})
    if done:
        events += [{"type": "response.output_audio.done", "response_id": response_id, "item_id": item_id},
                   {"type": "response.output_audio_transcript.done", "response_id": response_id,
                    "transcript": transcript},
                   {"type": "response.done", "response": {"id": response_id, "status": "completed",
                                                          "usage": {"output_tokens": 42}}}]
    return events


class ScriptedConnection:
    """The daemon's side (send/send_audio/close): the controller thread. The server's side
    (open/play/server_close/lose_link): the test's thread."""

    def __init__(self, bearer: str, on_event: Callable[[object], None], clock: Callable[[], float]):
        self.bearer = bearer
        self._on_event = on_event
        self._parser = FrameParser(clock)
        self._lock = threading.Lock()
        self._sent: list[dict] = []
        self.closed_by_daemon = threading.Event()
        self.reported_close = False
        self.bytes_sent = 0

    # ---- the daemon's side (same interface as RealtimeConnection) ----

    def send(self, event: dict) -> None:
        text = json.dumps(event, separators=(",", ":"))   # what would go on the wire, decoded again
        self._record(json.loads(text), len(text))

    def send_audio(self, payload: bytes) -> None:
        body = {"type": "input_audio_buffer.append", "audio": base64.b64encode(payload).decode()}
        self._record(body, len(json.dumps(body, separators=(",", ":"))))

    def close(self) -> None:
        self.closed_by_daemon.set()
        self._emit_closed(m.SocketClosed(1000, "closed by the daemon"))

    def _record(self, event: dict, size: int) -> None:
        if self.closed_by_daemon.is_set() or self.reported_close:
            return   # the real connection drops sends on a closed socket too
        with self._lock:
            self._sent.append(event)
            self.bytes_sent += size

    # ---- what the daemon sent ----

    def sent(self, type_: str | None = None) -> list[dict]:
        with self._lock:
            return [e for e in self._sent if type_ is None or e.get("type") == type_]

    def sent_types(self, *, audio: bool = False) -> list[str]:
        return [e["type"] for e in self.sent() if audio or e["type"] != "input_audio_buffer.append"]

    # ---- the server's side ----

    def open(self, *, greet: bool = True) -> None:
        """The WebSocket upgrade succeeded; `greet` sends session.created like the real server."""
        self._on_event(m.SocketOpened())
        if greet:
            self.play(session_created())

    def play(self, event: dict | str | bytes) -> object | None:
        """One text frame from the server; returns the controller event it became (None: dropped)."""
        if isinstance(event, dict):
            event = json.dumps(event)
        data = event.encode("utf-8", "surrogatepass") if isinstance(event, str) else event
        return self._deliver(self._parser.parse(OPCODE_TEXT, data))

    def play_all(self, events: list) -> None:
        for event in events:
            self.play(event)

    def play_binary(self, data: bytes) -> object | None:
        return self._deliver(self._parser.parse(OPCODE_BINARY, data))

    def server_close(self, code: int | None = 1000, reason: str = "") -> None:
        """A close frame from the server (`code` None: a close frame without a status)."""
        payload = b"" if code is None else code.to_bytes(2, "big") + reason.encode()
        self._deliver(self._parser.parse(OPCODE_CLOSE, payload))

    def lose_link(self, why: str = "Connection reset by peer") -> None:
        """The TCP connection died without a close frame (what the real reader reports)."""
        self._emit_closed(m.SocketClosed(None, f"connection lost: {why}"))

    def refuse(self, status: int, body: bytes | None = None) -> None:
        """The server answered the upgrade with an HTTP error instead."""
        self._emit_closed(m.SocketClosed(None, handshake_refused(status, body)))

    @property
    def dropped(self) -> int:
        """Frames the parser dropped as malformed."""
        return self._parser.dropped

    def _deliver(self, event: object | None) -> object | None:
        if isinstance(event, m.SocketClosed):
            self._emit_closed(event)
        elif event is not None and not self.reported_close:
            self._on_event(event)
        return event

    def _emit_closed(self, event: m.SocketClosed) -> None:
        if not self.reported_close:   # like the real reader: one SocketClosed, then nothing
            self.reported_close = True
            self._on_event(event)


class ScriptedConnector:
    """A peer of `RealtimeConnector`. `connect` is called from the controller thread; the test reads
    `connections` or waits with `wait_for_connection`. `auto_open` opens (and greets) at once."""

    def __init__(self, *, auto_open: bool = True, greet: bool = True, clock: Callable[[], float] = time.monotonic):
        self.url = "scripted://realtime"
        self._auto_open, self._greet, self._clock = auto_open, greet, clock
        self._cond = threading.Condition()
        self.connections: list[ScriptedConnection] = []

    def connect(self, bearer: str, on_event: Callable[[object], None]) -> ScriptedConnection:
        conn = ScriptedConnection(bearer, on_event, self._clock)
        if self._auto_open:
            conn.open(greet=self._greet)
        with self._cond:
            self.connections.append(conn)
            self._cond.notify_all()
        return conn

    def wait_for_connection(self, number: int = 1, timeout_s: float = 5.0) -> ScriptedConnection:
        """The `number`-th connection the daemon made (1 = the first), once it exists."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.connections) >= number, timeout_s):
                raise TimeoutError(f"the daemon made {len(self.connections)} connection(s), not {number}")
            return self.connections[number - 1]
