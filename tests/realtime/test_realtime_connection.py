"""The real RealtimeConnection and its reader thread, fed by a fake websocket: the reader never
dies on a bad frame, and whatever ends it, the controller gets exactly one SocketClosed."""

from __future__ import annotations

import base64
import logging
import queue
import threading

import websocket

from pivoice import messages as m
from pivoice.realtime.session import RealtimeConnector
from support.fake_websocket import BINARY, PONG, FakeDialer, FakeWebSocket, close, text

PCM = b"\x01\x00" * 240


def delta(**over):
    return {"type": "response.output_audio.delta", "response_id": "resp_1", "item_id": "item_1",
            "content_index": 0, "delta": base64.b64encode(PCM).decode(), **over}


def connect(*sockets):
    events: queue.Queue = queue.Queue()
    dialer = FakeDialer(*sockets)
    conn = RealtimeConnector("ws://127.0.0.1:9/v1/realtime", "gpt-realtime", connect_timeout_s=1,
                             create_connection=dialer).connect("ek_test", events.put)
    return conn, events, dialer


def collect(conn, events) -> list:
    assert conn.join(5), "the reader thread did not end after the close"
    out = []
    while not events.empty():
        out.append(events.get_nowait())
    return out


def test_a_malformed_delta_does_not_kill_the_reader(thread_crashes, caplog):
    """Issue 7 symptom 2: `"content_index": "zero"` was a ValueError in the reader thread."""
    caplog.set_level(logging.WARNING)
    ws = FakeWebSocket([text({"type": "session.created"}), text(delta(content_index="zero")),
                        text(delta(delta=base64.b64encode(b"\x01\x02\x03").decode())),   # odd: the controller's call
                        text({"type": "response.created", "response": "x"}),
                        text({"type": "error", "error": "x"}), text({"type": "error", "error": None}),
                        (BINARY, b"\x00"), (PONG, b""), text(b"[" * 100_000),
                        text(delta()), close(1001, "going away")])
    conn, events, _ = connect(ws)
    got = collect(conn, events)
    assert thread_crashes == []
    assert [type(e).__name__ for e in got] == ["SocketOpened", "ServerEvent", "AudioDelta", "AudioDelta",
                                               "SocketClosed"]
    assert got[3].payload == PCM and got[-1] == m.SocketClosed(1001, "going away")
    assert "server error unknown" not in caplog.text and "Traceback" not in caplog.text


def test_a_lost_link_is_one_socket_closed_without_a_code(thread_crashes):
    ws = FakeWebSocket([text({"type": "session.created"}),
                        websocket.WebSocketConnectionClosedException("Connection to remote host was lost.")])
    conn, events, _ = connect(ws)
    got = collect(conn, events)
    assert got[-1].code is None and got[-1].reason.startswith("connection lost: ")
    assert sum(isinstance(e, m.SocketClosed) for e in got) == 1 and thread_crashes == []


def test_an_unexpected_error_in_the_reader_still_tells_the_controller(thread_crashes, caplog):
    caplog.set_level(logging.ERROR)
    ws = FakeWebSocket([text({"type": "session.created"}), RuntimeError("bug in a library")])
    conn, events, _ = connect(ws)
    got = collect(conn, events)
    assert got[-1] == m.SocketClosed(None, "the daemon's Realtime reader failed (RuntimeError)")
    assert sum(isinstance(e, m.SocketClosed) for e in got) == 1 and thread_crashes == []
    assert "Realtime reader failed" in caplog.text   # a bug is an ERROR with its traceback, for the developer


def test_a_refused_handshake_with_an_odd_body_is_one_clear_close(thread_crashes):
    refusal = websocket.WebSocketBadStatusException("Handshake status %d %s", 403, "Forbidden",
                                                    resp_body=b'{"error": "no"}')
    conn, events, _ = connect(refusal)
    assert collect(conn, events) == [m.SocketClosed(None, "handshake refused with HTTP 403")]


def test_sends_reach_the_socket_and_the_bearer_goes_in_the_header():
    ws_gate = threading.Event()   # the socket stays open until the test has sent
    ws = FakeWebSocket([text({"type": "session.created"})], hold_open=ws_gate)
    conn, events, dialer = connect(ws)
    assert isinstance(events.get(timeout=5), m.SocketOpened)
    conn.send({"type": "session.update", "session": {"type": "realtime"}})
    conn.send_audio(b"\x00\x01")
    ws_gate.set()
    collect(conn, events)
    assert ws.sent == [{"type": "session.update", "session": {"type": "realtime"}},
                       {"type": "input_audio_buffer.append", "audio": "AAE="}]
    assert dialer.calls[0]["header"] == ["Authorization: Bearer ek_test"]
