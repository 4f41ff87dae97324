"""The scripted Realtime peer itself: it records what the daemon sends, in wire order, and plays
server frames through the real parser."""

from __future__ import annotations

from pivoice import messages as m
from pivoice.realtime.scripted import ScriptedConnector, reply_events
from support.controller_rig import PCM_100MS, Key, Rig


def test_records_the_daemons_events_in_wire_order_barge_in_truncates_before_cancelling():
    rig = Rig()
    rig.handle(m.Press(), 0.0)
    rig.mic_chunks(b"\x00\x01")                  # captured while connecting: flushed after session.update
    rig.handle(m.TokenReady(Key()), 0.01)
    conn = rig.conn
    conn.play_all(reply_events("resp_1", "item_1", PCM_100MS * 5, done=False))
    rig.played_ms_on_stop = 240
    rig.handle(m.Press(), 1.0)                     # barge-in by the button
    assert conn.sent_types(audio=True) == ["session.update", "input_audio_buffer.append",
                                           "conversation.item.truncate", "response.cancel"]
    truncate, cancel = conn.sent("conversation.item.truncate")[0], conn.sent("response.cancel")[0]
    assert (truncate["item_id"], truncate["content_index"], truncate["audio_end_ms"]) == ("item_1", 0, 240)
    assert cancel["response_id"] == "resp_1"
    assert conn.sent("input_audio_buffer.append")[0]["audio"] == "AAE="


def test_plays_frames_through_the_real_parser_and_reports_one_close():
    events = []
    conn = ScriptedConnector().connect("ek_x", events.append)
    assert [type(e).__name__ for e in events] == ["SocketOpened", "ServerEvent"]   # opened and greeted
    assert conn.play({"type": "response.created", "response": "x"}) is None and conn.dropped == 1
    assert conn.play_binary(b"\x00") is None and conn.dropped == 2
    conn.server_close(1001, "going away")
    conn.lose_link()
    conn.close()
    assert events[2:] == [m.SocketClosed(1001, "going away")]
    conn.send({"type": "session.update"})          # after the close: dropped, like a dead socket
    assert conn.sent() == []


def test_a_daemon_close_is_recorded_and_reported_once():
    events = []
    peer = ScriptedConnector(auto_open=False)
    conn = peer.connect("ek_x", events.append)
    assert peer.wait_for_connection(1) is conn and events == []
    conn.close()
    assert conn.closed_by_daemon.is_set() and events == [m.SocketClosed(1000, "closed by the daemon")]
