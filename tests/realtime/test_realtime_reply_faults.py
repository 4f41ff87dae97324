"""Issue 7 symptoms 1, 3, 4, 5 as controller tables against the scripted Realtime peer: a stalled
reply, a close while the reply plays, a server that never acknowledges, and the code and level of
every end."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pivoice import messages as m
from pivoice.controller import ACTIVE, CONNECTING, DRAINING, IDLE
from pivoice.realtime.scripted import ScriptedConnector, reply_events
from support.controller_rig import PCM_100MS, SETTINGS, Key, Rig

REPLY_5S = PCM_100MS * 51   # 5.1 s of reply audio


def started(**settings) -> Rig:
    rig = Rig(replace(SETTINGS, **settings))
    rig.start()
    assert rig.phase == ACTIVE and rig.conn.sent_types()[0] == "session.update"
    return rig


def actions_since(rig: Rig, mark: int) -> list[str]:
    return [type(a).__name__ for a in rig.actions[mark:]]


def assert_next_press_works(rig: Rig) -> None:
    """After any end: idle, and a new press gives a new, working session."""
    assert rig.phase == IDLE
    connections = len(rig.peer.connections)
    rig.start(rig.now_s + 1)
    if rig.phase == CONNECTING:   # a peer that does not open by itself
        rig.conn.open()
    assert rig.phase == ACTIVE and len(rig.peer.connections) == connections + 1
    rig.conn.play_all(reply_events("resp_next", "item_next", PCM_100MS))
    rig.handle(m.PlaybackDrained())
    assert rig.kinds()[-1] == "reply_played"


# ---- 1. a stalled reply ---------------------------------------------------------------

def test_reply_that_stalls_after_a_few_deltas_ends_after_reply_stall_s():
    """Issue 7 symptom 1: deltas, then nothing (pongs still come, but never reach the controller)."""
    rig = started()
    rig.now_s = 1.0
    rig.conn.play_all(reply_events("resp_1", "item_1", PCM_100MS * 3, done=False))
    rig.handle(m.PlaybackDrained(), 1.4)     # the 300 ms played; the response is still open
    rig.tick_until(10.9)
    assert rig.phase == ACTIVE and rig.ctrl.response_id == "resp_1"
    rig.tick_until(11.1)
    end = rig.last_end()
    assert rig.phase == IDLE and end.level == "warning" and rig.ctrl.last_end_code == "stalled"
    assert "server stopped answering mid-reply" in end.text and "reply cut off after 300 ms" in end.text
    assert rig.conn is None and rig.peer.connections[0].closed_by_daemon.is_set()
    assert_next_press_works(rig)


def test_stall_with_audio_still_queued_plays_it_out_first():
    rig = started(reply_stall_s=3)
    rig.now_s = 1.0
    rig.conn.play_all(reply_events("resp_1", "item_1", PCM_100MS * 50, done=False))   # 5 s, fast
    rig.tick_until(4.05)
    assert rig.phase == DRAINING and "StopPlayback" not in actions_since(rig, 0)
    assert rig.peer.connections[0].closed_by_daemon.is_set()   # the stuck session is dropped at once
    rig.handle(m.PlaybackDrained(), 6.2)
    assert rig.ctrl.last_end_code == "stalled" and rig.last_end().level == "warning"
    assert rig.last_end().text.endswith("what arrived was played")


def test_every_server_event_for_the_reply_counts_as_progress():
    rig = started(reply_stall_s=3)
    rig.conn.play({"type": "response.created", "response": {"id": "resp_1"}})
    for t in range(1, 20):   # slow, but never 3 s without an event
        rig.now_s = float(t)
        rig.conn.play({"type": "response.output_audio_transcript.delta", "response_id": "resp_1", "delta": "a"})
        rig.handle(m.Tick())
    assert rig.phase == ACTIVE


# ---- 3. a close while the reply plays -------------------------------------------------

def test_close_1001_after_the_whole_reply_arrived_plays_it_out_then_says_so():
    """Issue 7 symptom 3: the 5.1 s reply had arrived; 1.56 s were played when the server went away."""
    rig = started()
    rig.now_s = 1.0
    rig.conn.play_all(reply_events("resp_1", "item_1", REPLY_5S))
    assert rig.ctrl.reply_complete and rig.ctrl.playing
    mark = len(rig.actions)
    rig.now_s = 2.56
    rig.peer.connections[0].server_close(1001, "going away")
    assert rig.phase == DRAINING
    assert "StopPlayback" not in actions_since(rig, mark) and "CloseAudio" not in actions_since(rig, mark)
    rig.tick_until(6.0)                      # the rest is still playing: no end yet
    assert rig.phase == DRAINING
    rig.handle(m.PlaybackDrained(), 6.2)
    end = rig.last_end()
    assert end.text == "conversation ended: server closed the session (1001 going away): going away; reply played out"
    assert end.level == "warning" and rig.ctrl.last_end_code == "server_closed"
    assert actions_since(rig, mark).count("FinishReply") == 0   # output_audio.done already flushed the tail
    assert_next_press_works(rig)


def test_a_mic_that_dies_while_the_reply_plays_lets_the_reply_play_out():
    rig = started()
    rig.now_s = 1.0
    rig.conn.play_all(reply_events("resp_1", "item_1", REPLY_5S))
    mark = len(rig.actions)
    rig.handle(m.AudioFailed("mic stopped: input 'USB': stream no longer running", stopped=True, device="mic"), 1.5)
    assert rig.phase == DRAINING
    assert "StopPlayback" not in actions_since(rig, mark) and "Disconnect" in actions_since(rig, mark)
    rig.handle(m.PlaybackDrained(), 6.2)
    end = rig.last_end()
    assert end.text == "conversation ended: mic stopped: input 'USB': stream no longer running; reply played out"
    assert end.level == "warning" and rig.ctrl.last_end_code == "audio_failed"
    assert_next_press_works(rig)


def test_close_before_the_reply_was_complete_says_it_was_cut_off():
    rig = started()
    rig.now_s = 1.0
    rig.conn.play_all(reply_events("resp_1", "item_1", PCM_100MS * 5, done=False))
    mark = len(rig.actions)
    rig.peer.connections[0].server_close(1001, "")
    assert rig.phase == DRAINING and actions_since(rig, mark)[:3] == ["RoutePlayback", "Disconnect", "FinishReply"]
    rig.handle(m.PlaybackDrained(), 1.6)
    end = rig.last_end()
    assert end.level == "warning"
    assert end.text == ("conversation ended: reply cut off after 500 ms of audio: server closed the session "
                        "(1001 going away); what arrived was played")


def test_press_while_playing_out_stops_it_and_ends():
    rig = started()
    rig.conn.play_all(reply_events("resp_1", "item_1", REPLY_5S))
    rig.peer.connections[0].server_close(1000, "")
    mark = len(rig.actions)
    rig.handle(m.Press(), 2.0)
    assert actions_since(rig, mark)[0] == "StopPlayback" and rig.phase == IDLE
    assert rig.last_end().text.endswith("; playout stopped by a press")
    assert_next_press_works(rig)


def test_a_speaker_that_never_drains_cannot_hold_the_end_forever():
    rig = started()
    rig.now_s = 1.0
    rig.conn.play_all(reply_events("resp_1", "item_1", PCM_100MS * 10))   # 1 s
    rig.peer.connections[0].server_close(1001, "")
    rig.tick_until(3.9)
    assert rig.phase == DRAINING
    rig.tick_until(4.1)   # 1 s of audio + 2 s of slack
    assert rig.phase == IDLE and rig.last_end().text.endswith("; playout did not finish")


# ---- 4. a server that never acknowledges ----------------------------------------------

def test_session_never_acknowledged_ends_with_its_own_reason_at_warning():
    """Issue 7 symptom 4: the user spoke; the end said `no speech for 4 s` at INFO."""
    rig = Rig(replace(SETTINGS, idle_timeout_s=4, connect_timeout_s=5), ScriptedConnector(greet=False))
    rig.start()
    rig.handle(m.SpeechStarted(), 0.3)
    rig.handle(m.SpeechEnded(), 2.0)
    rig.tick_until(4.9)
    assert rig.phase == ACTIVE
    rig.tick_until(5.2)
    end = rig.last_end()
    assert rig.ctrl.last_end_code == "not_acknowledged" and end.level == "warning"
    assert "server did not acknowledge the session within 5 s" in end.text and "no speech" not in end.text
    assert rig.ctrl.snapshot()["last_end_code"] == "not_acknowledged"


def test_session_updated_alone_also_acknowledges():
    rig = Rig(SETTINGS, ScriptedConnector(greet=False))
    rig.start()
    rig.conn.play({"type": "session.updated", "session": {}})
    rig.tick_until(10.2)
    assert rig.ctrl.last_end_code == "idle"   # the idle timeout (10 s from the press), not not_acknowledged


# ---- 5. every end has a code and a level ----------------------------------------------

def _listening() -> Rig:
    rig = Rig()
    rig.start()
    return rig


def _connecting() -> Rig:
    rig = Rig()
    rig.handle(m.Press(), 0.0)
    return rig


def _refused() -> Rig:
    """Dialling: the scripted peer waits for the test to open or refuse."""
    rig = Rig(SETTINGS, ScriptedConnector(auto_open=False))
    rig.handle(m.Press(), 0.0)
    rig.handle(m.TokenReady(Key()), 0.1)
    return rig


@pytest.mark.parametrize("setup,fault,code,level,words", [
    (_listening, lambda r: r.handle(m.Press(), 1.0), "user", "info", "ended by a press"),
    (_connecting, lambda r: r.handle(m.Press(), 0.5), "user", "info", "cancelled by a press while connecting"),
    (_listening, lambda r: r.tick_until(10.5), "idle", "info", "no speech for 10 s"),
    (_listening, lambda r: r.handle(m.Shutdown(), 1.0), "shutdown", "info", "daemon stopping"),
    (_listening, lambda r: [r.handle(m.SpeechStarted(), 1.0), r.handle(m.Tick(), 600.0)], "max_duration", "info",
     "maximum conversation length (600 s)"),
    (_listening, lambda r: r.conn.server_close(1000, ""), "server_closed", "warning",
     "server closed the session (1000 normal closure)"),
    (_listening, lambda r: r.conn.server_close(1011, "upstream"), "server_closed", "warning",
     "(1011 internal error): upstream"),
    (_listening, lambda r: r.conn.server_close(None), "server_closed", "warning", "(1005 no status code)"),
    (_listening, lambda r: r.conn.server_close(4000, "beta_api_shape_disabled"), "server_closed", "error", "(4000)"),
    (_listening, lambda r: r.conn.server_close(1008, "policy"), "server_closed", "error", "1008 policy violation"),
    (_listening, lambda r: r.conn.lose_link(), "link_lost", "warning",
     "connection to the server lost: connection lost: Connection reset by peer"),
    (_refused, lambda r: r.conn.refuse(401, b'{"error": {"code": "invalid_api_key", "message": "expired"}}'),
     "connect_failed", "error", "handshake refused with HTTP 401: invalid_api_key (expired)"),
    (_connecting, lambda r: r.handle(m.TokenFailed("unauthorized", "401 from the backend", False), 0.2),
     "token_failed", "error", "no ephemeral key (unauthorized)"),
    (_connecting, lambda r: r.handle(m.TokenFailed("tls_error", "certificate rejected", False), 0.2),
     "token_failed", "error", "no ephemeral key (tls_error)"),
    (_connecting, lambda r: [r.handle(m.TokenFailed("backend_unreachable", "refused", True), t) for t in (0.2, 4.5)],
     "token_failed", "warning", "no ephemeral key (backend_unreachable): refused"),
    (_connecting, lambda r: r.handle(m.AudioFailed("no input device 'usb'"), 0.2), "audio_failed", "error",
     "audio device error: no input device 'usb'"),
    (_listening, lambda r: r.handle(m.AudioFailed("speaker stopped: output 'USB': stream no longer running",
                                                  stopped=True), 1.0),
     "audio_failed", "warning", "speaker stopped: output 'USB': stream no longer running"),
    (_connecting, lambda r: r.tick_until(5.1), "connect_timeout", "error", "could not connect within 5 s"),
])
def test_end_codes_and_levels(setup, fault, code, level, words):
    rig = setup()
    fault(rig)
    end = rig.last_end()
    assert rig.phase == IDLE and end is not None, rig.kinds()
    assert (rig.ctrl.last_end_code, end.level) == (code, level) and words in end.text, end
    assert rig.ctrl.snapshot()["last_end_code"] == code and words in rig.ctrl.snapshot()["last_end_reason"]
    assert_next_press_works(rig)


# ---- 2. malformed events from the scripted server: dropped, the reply goes on ---------------

def test_malformed_events_are_dropped_and_the_reply_still_plays(caplog):
    rig = started()
    conn = rig.conn
    conn.play({"type": "response.created", "response": {"id": "resp_1"}})
    bad = [{"type": "response.output_audio.delta", "response_id": "resp_1", "item_id": "item_1",
            "content_index": "zero", "delta": "AAAA"},
           {"type": "response.created", "response": "x"}, {"type": "error", "error": "x"},
           {"type": "error", "error": None}, "not json", b"\xff"]
    conn.play_all(bad)
    assert conn.dropped == len(bad)
    # odd-length PCM is valid base64: the controller (which knows the format) drops it, once loudly
    odd = {"type": "response.output_audio.delta", "response_id": "resp_1", "item_id": "item_1",
           "content_index": 0, "delta": "AAEC"}
    conn.play_all([odd, odd])
    assert [n.level for n in rig.notes if n.kind == "bad_event"] == ["warning"]
    conn.play_all(reply_events("resp_1", "item_1", PCM_100MS * 2)[1:])
    rig.handle(m.PlaybackDrained())
    assert rig.kinds()[-1] == "reply_played" and len(rig.played) == len(PCM_100MS) * 2
    assert not [n for n in rig.notes if n.kind == "server_error"]
    assert rig.phase == ACTIVE and rig.ctrl.acknowledged


def test_g711_odd_lengths_are_whole_samples():
    rig = started(output_format="audio/pcmu")
    rig.conn.play_all(reply_events("resp_1", "item_1", b"\xff" * 801))
    assert len(rig.played) == 801 * 2 and not [n for n in rig.notes if n.kind == "bad_event"]


def test_connecting_phase_is_not_confused_by_a_late_close_of_an_old_connection():
    rig = started()
    first = rig.conn
    rig.handle(m.Press(), 1.0)            # ends the first conversation
    rig.handle(m.Press(), 2.0)            # and starts the next: connecting
    assert rig.phase == CONNECTING or rig.phase == ACTIVE
    first.lose_link()                      # the old socket's reader reports late
    assert rig.ctrl.last_end_code == "user"
