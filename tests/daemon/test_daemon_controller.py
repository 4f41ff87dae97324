"""The controller as tables: events in, actions out."""

from dataclasses import replace

import pytest

from pivoice import messages as m
from pivoice.controller import ACTIVE, CONNECTING, IDLE, Controller, Settings

SESSION = {"type": "realtime", "model": "gpt-realtime"}
BASE = Settings(session=SESSION, output_format="audio/pcm", manual_turns=False, interrupt_response=True,
                half_duplex=True, idle_timeout_s=10, max_duration_s=600, connect_timeout_s=5)
KEY = object()
PCM_100MS = b"\0" * 4800   # 100 ms of 24 kHz s16le


def kinds(actions):
    """Actions as comparable tuples: type name plus the fields that matter."""
    out = []
    for a in actions:
        if isinstance(a, m.Send):
            fields = {k: v for k, v in a.event.items() if k not in ("event_id", "session")}
            out.append(("Send", tuple(sorted(fields.items()))))
        elif isinstance(a, m.Note):
            out.append(("Note", a.kind))
        elif isinstance(a, m.Play):
            out.append((type(a).__name__, len(a.payload)))
        elif isinstance(a, m.RouteMic):
            out.append(("RouteMic", a.route))
        elif isinstance(a, m.RoutePlayback):
            out.append(("RoutePlayback", a.response_id))
        else:
            out.append((type(a).__name__,))
    return out


def run(ctrl, steps):
    """steps: (time_s, event) pairs; returns the actions of the last one."""
    actions = []
    for t, ev in steps:
        actions = ctrl.handle(ev, t)
    return actions


def active(settings=BASE):
    ctrl = Controller(settings)
    run(ctrl, [(0.0, m.Press()), (0.01, m.TokenReady(KEY)), (0.02, m.SocketOpened()),
               (0.03, m.ServerEvent({"type": "session.created"}))])
    assert ctrl.phase == ACTIVE and ctrl.acknowledged
    return ctrl


def speaking(ctrl, t=1.0, response_id="resp_1"):
    ctrl.handle(m.ServerEvent({"type": "response.created", "response": {"id": response_id}}), t)
    return ctrl.handle(m.AudioDelta(response_id, "item_a", 0, PCM_100MS), t)


@pytest.mark.parametrize("event,expected", [
    (m.Press(), [("Note", "pressed"), ("RequestToken",), ("OpenAudio",), ("RouteMic", "buffer")]),
    (m.Release(), []),
    (m.Tick(), []),
    (m.SocketOpened(), []),
    (m.ServerEvent({"type": "response.created"}), []),
    (m.SocketClosed(1000, "bye"), []),
])
def test_idle_table(event, expected):
    ctrl = Controller(BASE)
    assert kinds(ctrl.handle(event, 0.0)) == expected


def test_mic_audio_is_kept_while_connecting_and_sent_after_session_update():
    ctrl = Controller(BASE)
    assert kinds(ctrl.handle(m.Press(), 0.0))[-1] == ("RouteMic", "buffer")
    assert kinds(ctrl.handle(m.SpeechStarted(), 0.01)) == [("Note", "local_speech_start")]
    assert kinds(ctrl.handle(m.TokenReady(KEY), 0.04)) == [("Note", "token"), ("Connect",)]
    actions = ctrl.handle(m.SocketOpened(), 0.05)
    # the mic thread flushes what it kept when told "send": after session.update, never before
    assert kinds(actions) == [("Note", "connected"), ("Send", (("type", "session.update"),)), ("RouteMic", "send")]
    assert actions[1].event["session"] == SESSION
    assert ctrl.handle(m.ServerEvent({"type": "session.created"}), 0.06) == []   # no route change: nothing


@pytest.mark.parametrize("event,expected_phase,expected", [
    (m.TokenFailed("unauthorized", "401 from backend", retryable=False), IDLE,
     [("RouteMic", "drop"), ("Disconnect",), ("CloseAudio",), ("Note", "ended")]),
    (m.TokenFailed("backend_unreachable", "refused", retryable=True), CONNECTING, [("Note", "token")]),
    (m.SocketClosed(None, "handshake refused with HTTP 401"), IDLE,
     [("RouteMic", "drop"), ("Disconnect",), ("CloseAudio",), ("Note", "ended")]),
    (m.Press(), IDLE, [("RouteMic", "drop"), ("Disconnect",), ("CloseAudio",), ("Note", "ended")]),
    (m.AudioFailed("no input device 'usb'"), IDLE,
     [("RouteMic", "drop"), ("Disconnect",), ("CloseAudio",), ("Note", "ended")]),
])
def test_connecting_table(event, expected_phase, expected):
    ctrl = Controller(BASE)
    ctrl.handle(m.Press(), 0.0)
    assert kinds(ctrl.handle(event, 0.5)) == expected
    assert ctrl.phase == expected_phase


def test_retryable_token_failure_asks_again_then_gives_up_at_the_deadline():
    ctrl = Controller(BASE)
    ctrl.handle(m.Press(), 0.0)
    ctrl.handle(m.TokenFailed("backend_unreachable", "refused", True), 0.1)
    assert kinds(ctrl.handle(m.Tick(), 0.5)) == []
    assert kinds(ctrl.handle(m.Tick(), 1.2)) == [("RequestToken",)]
    # the last failure close to the deadline ends the attempt with the reason
    actions = ctrl.handle(m.TokenFailed("backend_unreachable", "refused", True), 4.5)
    assert ("Note", "ended") in kinds(actions) and ctrl.phase == IDLE
    assert "backend_unreachable" in ctrl.last_end_reason


def test_stale_token_after_connect_is_ignored():
    ctrl = Controller(BASE)
    run(ctrl, [(0.0, m.Press()), (0.1, m.TokenReady(KEY))])
    assert ctrl.handle(m.TokenReady(KEY), 0.2) == []


def test_connect_timeout():
    ctrl = Controller(BASE)
    run(ctrl, [(0.0, m.Press()), (0.1, m.TokenReady(KEY))])
    assert ("Note", "ended") in kinds(ctrl.handle(m.Tick(), 5.1))
    assert "could not connect" in ctrl.last_end_reason


def test_reply_plays_then_finishes_when_drained_after_done():
    ctrl = active()
    # the first delta comes through here; then the socket's reader may play this response's further deltas
    assert kinds(speaking(ctrl)) == [("RouteMic", "drop"), ("BeginReply",), ("Note", "reply_audio"), ("Play", 4800),
                                     ("RoutePlayback", "resp_1")]
    assert kinds(ctrl.handle(m.AudioDelta("resp_1", "item_a", 0, PCM_100MS), 1.1)) == [("Play", 4800)]
    assert ctrl.reply_received_ms == pytest.approx(200)
    # drained while the response is still open: an underrun, still speaking
    assert ctrl.handle(m.PlaybackDrained(), 1.2) == [] and ctrl.playing
    ctrl.handle(m.AudioDelta("resp_1", "item_a", 0, PCM_100MS), 1.3)
    assert kinds(ctrl.handle(m.ServerEvent({"type": "response.done", "response": {"id": "resp_1"}}), 1.4)) == \
        [("RoutePlayback", None), ("Note", "response_done")]   # the response is over: no more deltas to play
    assert kinds(ctrl.handle(m.PlaybackDrained(), 1.6)) == [("Note", "reply_played"), ("RouteMic", "send")]
    assert not ctrl.playing and ctrl.phase == ACTIVE


def test_half_duplex_mutes_uplink_while_playing_full_duplex_does_not():
    ctrl = active()
    assert ctrl.mic_route() == "send"
    assert kinds(speaking(ctrl))[0] == ("RouteMic", "drop") and ctrl.mic_route() == "drop"
    ctrl = active(replace(BASE, half_duplex=False))
    assert not any(isinstance(a, m.RouteMic) for a in speaking(ctrl)) and ctrl.mic_route() == "send"


def test_button_barge_in_stops_cancels_and_truncates_to_what_was_heard():
    ctrl = active()
    speaking(ctrl)
    ctrl.handle(m.AudioDelta("resp_1", "item_a", 0, PCM_100MS), 1.05)
    assert kinds(ctrl.handle(m.Press(), 1.1)) == [
        ("RoutePlayback", None),   # closed first: no delta can reach the speaker after the stop
        ("StopPlayback",), ("Send", (("response_id", "resp_1"), ("type", "response.cancel"))),
        ("Note", "interrupted")]
    assert kinds(ctrl.handle(m.PlaybackStopped(played_ms=130), 1.1)) == [
        ("Send", (("audio_end_ms", 130), ("content_index", 0), ("item_id", "item_a"),
                  ("type", "conversation.item.truncate"))),
        ("Note", "truncated"), ("RouteMic", "send")]   # the speaker is quiet: the mic is heard again
    # deltas of the cancelled response still in flight are dropped
    assert ctrl.handle(m.AudioDelta("resp_1", "item_a", 0, PCM_100MS), 1.2) == []
    # a press right after the interrupt ends the conversation, even before response.done arrives
    assert ("Note", "ended") in kinds(ctrl.handle(m.Press(), 1.3))
    # played_ms can never exceed what was received
    ctrl2 = active()
    speaking(ctrl2)
    ctrl2.handle(m.Press(), 1.1)
    truncate = ctrl2.handle(m.PlaybackStopped(played_ms=900), 1.1)[0]
    assert truncate.event["audio_end_ms"] == 100


@pytest.mark.parametrize("interrupt_response,expect_cancel", [(True, False), (False, True)])
def test_voice_barge_in_cancels_only_when_server_does_not(interrupt_response, expect_cancel):
    ctrl = active(replace(BASE, half_duplex=False, interrupt_response=interrupt_response))
    speaking(ctrl)
    actions = kinds(ctrl.handle(m.ServerEvent({"type": "input_audio_buffer.speech_started",
                                                "audio_start_ms": 1000}), 1.2))
    assert ("StopPlayback",) in actions
    assert any(k[0] == "Send" and ("type", "response.cancel") in k[1] for k in actions) == expect_cancel


def test_voice_is_ignored_for_barge_in_when_half_duplex():
    ctrl = active()
    speaking(ctrl)
    actions = ctrl.handle(m.ServerEvent({"type": "input_audio_buffer.speech_started"}), 1.2)
    assert kinds(actions) == [("Note", "speech_start")]


def test_press_while_listening_ends_conversation():
    ctrl = active()
    assert kinds(ctrl.handle(m.Press(), 2.0)) == [("RouteMic", "drop"), ("Disconnect",), ("CloseAudio",),
                                                  ("Note", "ended")]
    assert ctrl.phase == IDLE
    # and the next press starts a new one
    assert ("RequestToken",) in kinds(ctrl.handle(m.Press(), 3.0))


def test_press_during_reply_with_nothing_heard_yet_cancels_without_truncate():
    ctrl = active()
    ctrl.handle(m.ServerEvent({"type": "response.created", "response": {"id": "resp_9"}}), 1.0)
    assert kinds(ctrl.handle(m.Press(), 1.1)) == [
        ("Send", (("response_id", "resp_9"), ("type", "response.cancel"))), ("Note", "interrupted")]


def test_manual_turns_commit_and_create_response_after_local_speech_end():
    ctrl = active(replace(BASE, manual_turns=True))
    ctrl.handle(m.SpeechStarted(), 1.0)
    assert kinds(ctrl.handle(m.SpeechEnded(), 2.0)) == [
        ("Note", "local_speech_stop"), ("Send", (("type", "input_audio_buffer.commit"),)),
        ("Send", (("type", "response.create"),))]


def test_manual_turn_ending_before_the_socket_opens_commits_after_the_flush():
    ctrl = Controller(replace(BASE, manual_turns=True))
    run(ctrl, [(0.0, m.Press()), (0.1, m.SpeechStarted()), (0.2, m.SpeechEnded()), (0.3, m.TokenReady(KEY))])
    assert kinds(ctrl.handle(m.SocketOpened(), 0.4))[-3:] == [
        ("RouteMic", "send"), ("Send", (("type", "input_audio_buffer.commit"),)),
        ("Send", (("type", "response.create"),))]


@pytest.mark.parametrize("steps,ends_at", [
    ([], 10.1),                                           # quiet from the press
    ([(5.0, m.SpeechStarted()), (7.0, m.SpeechEnded())], 17.1),
])
def test_idle_timeout(steps, ends_at):
    ctrl = active()
    run(ctrl, steps)
    assert ctrl.handle(m.Tick(), ends_at - 0.2) == []
    assert ("Note", "ended") in kinds(ctrl.handle(m.Tick(), ends_at))


def test_no_idle_timeout_while_user_speaks_or_reply_plays_but_max_duration_wins():
    ctrl = active()
    ctrl.handle(m.SpeechStarted(), 1.0)
    assert ctrl.handle(m.Tick(), 100.0) == []
    assert ("Note", "ended") in kinds(ctrl.handle(m.Tick(), 600.0))
    assert "maximum conversation length" in ctrl.last_end_reason


def test_server_close_and_error_events():
    ctrl = active()
    err = m.ServerEvent({"type": "error", "error": {"type": "invalid_request_error", "code": "invalid_event",
                                                     "message": "bad"}})
    assert [(a.kind, a.level) for a in ctrl.handle(err, 1.0)] == [("server_error", "warning")]
    assert ctrl.phase == ACTIVE
    race = m.ServerEvent({"type": "error", "error": {"code": "response_cancel_not_active", "message": "x"}})
    assert ctrl.handle(race, 1.1)[0].level == "debug"
    actions = ctrl.handle(m.SocketClosed(1001, "Your session hit the maximum duration of 60 minutes."), 2.0)
    assert ("Note", "ended") in kinds(actions) and ctrl.phase == IDLE
    assert ctrl.last_end_reason == ("server closed the session (1001 going away): "
                                    "Your session hit the maximum duration of 60 minutes.")
    # an abnormal end is a WARNING (1001 is not an ERROR), with its code in the snapshot
    assert actions[-1].level == "warning" and ctrl.snapshot()["last_end_code"] == "server_closed"


def test_a_lost_link_is_a_warning_not_the_server_closing():
    ctrl = active()
    actions = ctrl.handle(m.SocketClosed(None, "connection lost: [Errno 104] Connection reset by peer"), 2.0)
    assert actions[-1].level == "warning" and ctrl.last_end_code == "link_lost"
    assert "server closed" not in ctrl.last_end_reason


def test_user_and_idle_ends_are_info():
    ctrl = active()
    assert ctrl.handle(m.Press(), 1.0)[-1].level == "info" and ctrl.last_end_code == "user"
    ctrl = active()
    assert ctrl.handle(m.Tick(), 10.1)[-1].level == "info" and ctrl.last_end_code == "idle"


def test_unknown_server_events_are_ignored():
    ctrl = active()
    assert ctrl.handle(m.ServerEvent({"type": "brand.new.event"}), 1.0) == []
    assert ctrl.handle(m.ServerEvent({}), 1.0) == []


def test_shutdown_while_speaking_stops_playback_and_disconnects():
    ctrl = active()
    speaking(ctrl)
    assert kinds(ctrl.handle(m.Shutdown(), 2.0)) == [("RoutePlayback", None), ("StopPlayback",), ("Disconnect",),
                                                     ("CloseAudio",),
                                                     ("Note", "ended")]


def test_event_ids_are_unique():
    ctrl = active(replace(BASE, manual_turns=True))
    sent = [a.event["event_id"] for _ in range(3) for a in ctrl.handle(m.SpeechEnded(), 1.0)
            if isinstance(a, m.Send)]
    assert len(sent) == len(set(sent)) == 6


def test_a_delta_the_reader_played_after_an_underrun_keeps_the_reply_playing():
    """The runtime hands PlayedDelta counts over in order with PlaybackDrained (audio/playpath.py):
    a delta that reached the speaker after it ran dry means the reply is not over yet."""
    ctrl = active()
    speaking(ctrl)                                               # resp_1 playing, route open
    assert ctrl.handle(m.PlaybackDrained(), 1.2) == [] and ctrl.drained      # underrun mid-response
    assert ctrl.handle(m.PlayedDelta(100.0), 1.3) == [] and not ctrl.drained
    assert ctrl.reply_received_ms == pytest.approx(200)
    done = kinds(ctrl.handle(m.ServerEvent({"type": "response.done", "response": {"id": "resp_1"}}), 1.4))
    assert ("Note", "reply_played") not in done and ctrl.playing  # still playing what came last
    assert kinds(ctrl.handle(m.PlaybackDrained(), 1.6)) == [("Note", "reply_played"), ("RouteMic", "send")]
    assert ctrl.handle(m.PlayedDelta(100.0), 1.7) == [] and ctrl.reply_received_ms == pytest.approx(200)  # over
