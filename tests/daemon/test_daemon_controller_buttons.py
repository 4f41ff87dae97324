"""The button's rules as tables (controller_buttons.py): each mode, the push-to-talk release, the long
press and other end requests, and mute. The rig runs the real send path, so "what reached the
server" is what the scripted peer recorded."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pivoice import messages as m
from pivoice.controller import ACTIVE, CONNECTING, DRAINING, IDLE, Controller
from pivoice.controller_buttons import PUSH_TAIL_MAX_S
from pivoice.realtime.scripted import reply_events
from support.controller_rig import PCM_100MS, SETTINGS, Key, Rig

PTT = replace(SETTINGS, manual_turns=True, interrupt_response=False, button_mode="push_to_talk")
ONE_SHOT = replace(SETTINGS, button_mode="one_shot")
CHUNK = b"\x01\x02" * 480   # one 20 ms "frame" (the rig's uplink passes frames through as chunks)


def kinds(actions) -> list:
    out = []
    for a in actions:
        if isinstance(a, m.Send):
            out.append(a.event["type"])
        elif isinstance(a, m.Note):
            out.append(("Note", a.kind))
        elif isinstance(a, m.RouteMic):
            out.append(("RouteMic", a.route))
        else:
            out.append(type(a).__name__)
    return out


def opened(settings=SETTINGS, source="button") -> Rig:
    rig = Rig(settings)
    rig.handle(m.Press(source), 0.0)
    rig.handle(m.TokenReady(Key()), 0.01)
    assert rig.phase == ACTIVE and rig.ctrl.acknowledged
    return rig


def reply(rig: Rig, response_id="resp_1", done=True) -> None:
    rig.conn.play_all(reply_events(response_id, "item_" + response_id, PCM_100MS * 3, done=done))


def sent(rig: Rig) -> list[str]:
    return rig.conn.sent_types(audio=True)


# ---- toggle (the default) -----------------------------------------------------------------

def test_toggle_ignores_the_release_and_a_press_while_listening_ends():
    rig = opened()
    assert rig.handle(m.Release("button"), 0.5) == []
    rig.handle(m.Press("button"), 1.0)
    assert rig.phase == IDLE and rig.ctrl.last_end_reason == "ended by a press"


def test_a_long_press_ends_a_conversation_already_going_and_stops_the_reply_at_once():
    rig = opened()
    rig.handle(m.Release("button"), 0.3)
    reply(rig, done=False)
    assert rig.ctrl.playing
    rig.handle(m.Press("button"), 1.0)       # the press itself interrupts, as ever
    reply(rig, "resp_2", done=False)         # the model had started another answer meanwhile
    actions = rig.handle(m.EndRequest("button"), 2.0)
    assert "StopPlayback" in kinds(actions) and "Disconnect" in kinds(actions) and rig.phase == IDLE
    assert (rig.ctrl.last_end_code, rig.ctrl.last_end_reason) == ("user", "ended by a long press")
    assert rig.handle(m.Release("button"), 2.2) == []   # the release after the hold does nothing more
    rig.handle(m.Press("button"), 3.0)
    assert rig.phase == CONNECTING                   # and the next press starts afresh


def test_holding_the_press_that_started_the_conversation_does_not_end_it():
    rig = opened()
    actions = rig.handle(m.EndRequest("button"), 1.0)
    assert kinds(actions) == [("Note", "long_press")] and rig.phase == ACTIVE
    rig.handle(m.Release("button"), 1.5)
    rig.handle(m.Press("button"), 2.0)
    assert rig.phase == IDLE   # a later short press still ends it (listening)


@pytest.mark.parametrize("source,reason", [("ctl", "ended from ctl"), ("mqtt", "ended from mqtt"),
                                           ("cancel_button", "ended by the cancel button")])
def test_end_requests_from_elsewhere_end_whatever_the_conversation_is_doing(source, reason):
    rig = opened()
    reply(rig, done=False)
    actions = rig.handle(m.EndRequest(source), 1.0)
    assert kinds(actions)[0] == "RoutePlayback" and "StopPlayback" in kinds(actions)
    assert rig.phase == IDLE and rig.ctrl.last_end_code == "user" and rig.ctrl.last_end_reason == reason


def test_an_end_request_while_idle_or_connecting():
    ctrl = Controller(SETTINGS)
    assert kinds(ctrl.handle(m.EndRequest("ctl"), 0.0)) == [("Note", "end_request")]
    ctrl.handle(m.Press("ctl"), 1.0)
    actions = ctrl.handle(m.EndRequest("ctl"), 1.1)
    assert ctrl.phase == IDLE and "CloseAudio" in kinds(actions)
    assert ctrl.last_end_reason == "ended from ctl"


def test_an_end_request_while_draining_keeps_the_real_cause():
    rig = opened()
    reply(rig, done=False)
    rig.conn.server_close(1011, "internal error")
    assert rig.phase == DRAINING
    rig.handle(m.EndRequest("ctl"), 1.0)
    assert rig.phase == IDLE and rig.ctrl.last_end_code == "server_closed"
    assert rig.ctrl.last_end_reason.endswith("; playout stopped (ended from ctl)")


# ---- mute ---------------------------------------------------------------------------------

def test_mute_ends_the_conversation_refuses_presses_and_outlives_it():
    rig = opened()
    assert rig.ctrl.snapshot()["muted"] is False
    actions = rig.handle(m.SetMute(True, "mqtt"), 1.0)
    assert ("Note", "mute") in kinds(actions) and "Disconnect" in kinds(actions)
    assert rig.phase == IDLE and (rig.ctrl.last_end_code, rig.ctrl.last_end_reason) == ("muted", "muted (mqtt)")
    for source in ("button", "ctl"):
        refused = rig.handle(m.Press(source), 2.0)
        assert kinds(refused) == [("Note", "muted")] and rig.phase == IDLE
    assert rig.ctrl.snapshot()["muted"] is True
    rig.handle(m.SetMute(False, "ctl"), 3.0)
    assert rig.ctrl.snapshot()["muted"] is False
    rig.handle(m.Press("button"), 4.0)
    assert rig.phase == CONNECTING


def test_mute_while_idle_ends_nothing_and_a_timer_still_announces():
    ctrl = Controller(SETTINGS)
    assert kinds(ctrl.handle(m.SetMute(True), 0.0)) == [("Note", "mute")]
    ctrl.handle(m.TimerFired("t1", None, 60.0), 1.0)
    assert ctrl.phase == CONNECTING and ctrl.announcing is not None
    assert kinds(ctrl.handle(m.SetMute(True), 1.1)) == [("Note", "mute")] and ctrl.phase == CONNECTING


# ---- push to talk -------------------------------------------------------------------------

def test_push_to_talk_sends_while_held_and_the_release_commits_and_asks_for_the_reply():
    rig = opened(PTT)
    rig.handle(m.SpeechStarted(), 0.1)
    rig.mic_chunks(CHUNK, CHUNK)
    actions = rig.handle(m.SpeechEnded(voiced=True), 1.0)   # a pause mid-hold ends no turn
    assert kinds(actions) == [("Note", "local_speech_stop")]
    rig.mic_chunks(CHUNK)
    actions = rig.handle(m.Release("button"), 1.5)
    # the mic stops before the commit, so no chunk lands after it in the next turn's buffer
    assert kinds(actions) == [("RouteMic", "drop"), ("Note", "push_released"), "input_audio_buffer.commit",
                              "response.create"]
    rig.mic_chunks(CHUNK)                                   # after the release: not sent
    assert sent(rig) == ["session.update"] + ["input_audio_buffer.append"] * 3 + [
        "input_audio_buffer.commit", "response.create"]


def test_push_to_talk_released_mid_word_commits_once_the_gate_has_sent_the_last_words():
    rig = opened(PTT)
    rig.handle(m.SpeechStarted(), 0.1)
    actions = rig.handle(m.Release("button"), 1.0)
    assert kinds(actions) == [("Note", "push_released")] and rig.ctrl.route == m.SEND
    rig.mic_chunks(CHUNK)                                   # the tail of the last word still goes
    actions = rig.handle(m.SpeechEnded(voiced=True), 1.3)
    assert "input_audio_buffer.commit" in kinds(actions) and rig.ctrl.route == m.DROP
    assert sent(rig)[-3:] == ["input_audio_buffer.append", "input_audio_buffer.commit", "response.create"]


def test_push_to_talk_tail_that_never_ends_is_cut_after_the_limit():
    rig = opened(PTT)
    rig.handle(m.SpeechStarted(), 0.1)
    rig.handle(m.Release("button"), 1.0)
    rig.handle(m.Tick(), 1.0 + PUSH_TAIL_MAX_S - 0.1)
    assert "input_audio_buffer.commit" not in sent(rig)
    rig.handle(m.Tick(), 1.0 + PUSH_TAIL_MAX_S)
    assert sent(rig)[-2:] == ["input_audio_buffer.commit", "response.create"]


def test_push_to_talk_released_before_the_session_opens_commits_after_the_kept_audio():
    rig = Rig(PTT)
    rig.handle(m.Press("button"), 0.0)
    rig.mic_chunks(CHUNK, CHUNK)                            # kept while connecting
    rig.handle(m.SpeechEnded(voiced=True), 0.8)
    actions = rig.handle(m.Release("button"), 1.0)
    assert kinds(actions) == [("Note", "push_released")] and rig.ctrl.pending_commit
    assert rig.ctrl.route == m.BUFFER                       # the kept audio is not dropped
    rig.handle(m.TokenReady(Key()), 1.2)                    # the scripted peer opens at once
    assert sent(rig) == ["session.update", "input_audio_buffer.append", "input_audio_buffer.append",
                         "input_audio_buffer.commit", "response.create"]
    assert rig.ctrl.route == m.DROP and not rig.ctrl.pending_commit
    rig.mic_chunks(CHUNK)
    assert sent(rig).count("input_audio_buffer.append") == 2
    opened_actions = [a for a in rig.actions if isinstance(a, m.RouteMic)]
    assert [a.route for a in opened_actions][-2:] == [m.SEND, m.DROP]   # flush, commit, then drop


@pytest.mark.parametrize("held_s", [0.05, 0.14])
def test_a_too_short_push_clears_instead_of_an_empty_commit(held_s):
    rig = opened(PTT)
    rig.handle(m.Release("button"), 0.5)                    # the first push: nothing said
    rig.handle(m.Press("button"), 2.0)
    rig.handle(m.SpeechStarted(), 2.01)
    actions = rig.handle(m.Release("button"), 2.0 + held_s)
    assert kinds(actions) == [("RouteMic", "drop"), ("Note", "push_empty"), "input_audio_buffer.clear"]
    assert "input_audio_buffer.commit" not in sent(rig) and rig.phase == ACTIVE


def test_a_push_without_speech_clears_and_a_too_short_first_push_drops_the_kept_audio():
    rig = opened(PTT)
    rig.handle(m.SpeechEnded(voiced=False), 0.4)            # the press opened the gate; nobody spoke
    actions = rig.handle(m.Release("button"), 1.0)
    assert ("Note", "push_empty") in kinds(actions) and "input_audio_buffer.clear" in kinds(actions)
    tap = Rig(PTT)
    tap.handle(m.Press("button"), 0.0)
    tap.mic_chunks(CHUNK)
    tap.handle(m.Release("button"), 0.05)
    tap.handle(m.TokenReady(Key()), 0.3)
    assert sent(tap) == ["session.update"] and tap.phase == ACTIVE


def test_push_to_talk_press_during_the_reply_interrupts_and_starts_the_next_turn():
    rig = opened(PTT)
    rig.handle(m.SpeechEnded(voiced=True), 0.5)
    rig.handle(m.Release("button"), 0.6)
    reply(rig, done=False)
    assert rig.ctrl.playing and rig.ctrl.route == m.DROP
    rig.played_ms_on_stop = 120
    actions = rig.handle(m.Press("button"), 1.0)
    assert "StopPlayback" in kinds(actions) and ("Note", "push") in kinds(actions)
    assert rig.phase == ACTIVE and rig.ctrl.route == m.SEND
    assert sent(rig)[-2:] == ["conversation.item.truncate", "response.cancel"]
    rig.handle(m.SpeechEnded(voiced=True), 1.8)
    rig.handle(m.Release("button"), 2.0)
    assert sent(rig).count("input_audio_buffer.commit") == 2


def test_push_to_talk_presses_never_end_the_conversation_but_holding_keeps_it_from_idling_out():
    rig = opened(PTT)
    rig.handle(m.Release("button"), 0.5)
    rig.handle(m.Press("button"), 1.0)                      # while listening: another push, not an end
    assert rig.phase == ACTIVE and rig.ctrl.held
    rig.tick_until(25.0)                                    # held past idle_timeout_s (10 s)
    assert rig.phase == ACTIVE
    rig.handle(m.Release("button"), 25.0)
    rig.tick_until(40.0)
    assert rig.phase == IDLE and rig.ctrl.last_end_code == "idle"


def test_push_to_talk_a_press_from_a_source_without_releases_acts_as_toggle():
    rig = opened(PTT)
    rig.handle(m.Release("button"), 0.5)
    rig.handle(m.Press("mqtt"), 1.0)
    assert rig.phase == IDLE and rig.ctrl.last_end_reason == "ended by a press"


# ---- one shot -----------------------------------------------------------------------------

def test_one_shot_ends_once_the_first_reply_has_been_heard():
    rig = opened(ONE_SHOT)
    reply(rig)
    assert rig.phase == ACTIVE and rig.ctrl.playing
    actions = rig.handle(m.PlaybackDrained(), 2.0)
    assert ("Note", "reply_played") in kinds(actions) and rig.phase == IDLE
    assert (rig.ctrl.last_end_code, rig.ctrl.last_end_reason) == ("user", "one question answered (one_shot)")


def test_one_shot_waits_for_the_answer_a_tool_call_leads_to():
    rig = opened(ONE_SHOT)
    rig.conn.play_all([
        {"type": "response.created", "response": {"id": "resp_1"}},
        {"type": "response.function_call_arguments.done", "response_id": "resp_1", "call_id": "call_1",
         "name": "get_time", "arguments": "{}"},
        {"type": "response.done", "response": {"id": "resp_1", "status": "completed", "output": [
            {"type": "function_call", "call_id": "call_1", "name": "get_time", "arguments": "{}"}]}}])
    assert rig.phase == ACTIVE and rig.ctrl.tools_busy
    rig.handle(m.ToolDone("call_1", "get_time", '{"ok": true}'), 1.0)
    assert rig.phase == ACTIVE and sent(rig)[-1] == "response.create"
    reply(rig, "resp_2")
    rig.handle(m.PlaybackDrained(), 3.0)
    assert rig.phase == IDLE and rig.ctrl.last_end_reason == "one question answered (one_shot)"


def test_one_shot_press_during_the_reply_ends_and_silence_ends_by_the_idle_timeout():
    rig = opened(ONE_SHOT)
    reply(rig, done=False)
    rig.handle(m.Press("button"), 1.0)
    assert rig.phase == IDLE and rig.ctrl.last_end_reason == "reply stopped by a press (one_shot)"
    quiet = opened(ONE_SHOT)
    quiet.tick_until(12.0)
    assert quiet.phase == IDLE and quiet.ctrl.last_end_code == "idle"


def test_one_shot_in_a_text_session_ends_when_the_reply_is_done():
    rig = opened(replace(ONE_SHOT, speaker=False))
    rig.conn.play_all([{"type": "response.created", "response": {"id": "resp_1"}},
                       {"type": "response.output_text.done", "response_id": "resp_1", "text": "Noon."},
                       {"type": "response.done", "response": {"id": "resp_1", "status": "completed"}}])
    assert rig.phase == IDLE and rig.ctrl.last_end_reason == "one question answered (one_shot)"


def test_a_push_cut_short_by_an_end_leaves_nothing_for_the_next_session():
    rig = opened(PTT)
    rig.handle(m.SpeechStarted(), 0.1)
    rig.handle(m.Release("button"), 1.0)                    # waiting for the last words...
    rig.handle(m.EndRequest("ctl"), 1.1)                    # ...when the conversation is ended
    assert rig.phase == IDLE
    rig.handle(m.TimerFired("t1", None, 60.0), 2.0)         # a session of its own for the timer
    rig.handle(m.TokenReady(Key()), 2.1)
    rig.tick_until(2.1 + PUSH_TAIL_MAX_S + 0.5)
    assert "input_audio_buffer.commit" not in sent(rig)
