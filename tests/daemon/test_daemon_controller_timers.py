"""A timer that runs out (controller_timers.py), as tables: idle, a session of its own says the sentence
and ends; no session to be had, the local chime; in a conversation, the sentence waits for no response to
be active; a conversation that ends hands it on."""

import numpy as np
import pytest

from pivoice import chimes
from pivoice import messages as m
from pivoice.audio import codec
from pivoice.controller import ACTIVE, CONNECTING, DRAINING, IDLE, Controller
from pivoice.controller_timers import describe, sentence
from test_daemon_controller import BASE, KEY, PCM_100MS, active, kinds, speaking

FIVE_MIN = m.TimerFired("t1", None, 300.0)


def response_creates(actions):
    return [a.event.get("response", {}).get("instructions") for a in actions
            if isinstance(a, m.Send) and a.event["type"] == "response.create"]


@pytest.mark.parametrize("seconds,label,text", [
    (300, None, "Your 5-minute timer is done."),
    (90, "the eggs", "Your 90-second timer for the eggs is done."),
    (7200, None, "Your 2-hour timer is done."),
])
def test_the_sentence_names_the_timer(seconds, label, text):
    assert sentence(m.TimerFired("t", label, seconds)) == text and describe(60) == "1-minute"


def test_idle_a_session_of_its_own_says_it_without_listening_and_ends_once_heard():
    ctrl = Controller(BASE)
    actions = ctrl.handle(FIVE_MIN, 0.0)
    # the mic route stays "drop" (no RouteMic: it was already): what the mic hears is not sent or kept
    chime = ("Play", len(chimes.timer_chime("audio/pcm")))
    assert kinds(actions) == [("Note", "timer"), ("RequestToken",), ("OpenAudio",), ("BeginReply",), chime,
                              ("FinishReply",)]   # the chime rings while the session opens
    assert ctrl.phase == CONNECTING and ctrl.mic_route() == "drop"
    ctrl.handle(m.PlaybackDrained(), 0.05)
    assert not ctrl.playing and ctrl.phase == CONNECTING
    ctrl.handle(m.TokenReady(KEY), 0.1)
    actions = ctrl.handle(m.SocketOpened(), 0.2)
    assert response_creates(actions) == [
        "Tell the user, in one short sentence and nothing else: Your 5-minute timer is done."]
    assert ctrl.mic_route() == "drop"     # nobody is talking to this session
    speaking(ctrl, 0.5, "resp_1")
    ctrl.handle(m.ServerEvent({"type": "response.done", "response": {"id": "resp_1"}}), 0.6)
    assert ctrl.phase == ACTIVE           # still playing
    actions = ctrl.handle(m.PlaybackDrained(), 1.0)
    assert ctrl.phase == IDLE and ctrl.last_end_code == "timer"
    assert "timer announced: Your 5-minute timer is done." in ctrl.last_end_reason


@pytest.mark.parametrize("failure", [
    m.TokenFailed("backend_unreachable", "connection refused", retryable=False),
    m.SocketClosed(None, "connection refused"),
])
def test_no_session_to_be_had_rings_the_local_chime_then_ends(failure):
    ctrl = Controller(BASE)
    ctrl.handle(FIVE_MIN, 0.0)
    if isinstance(failure, m.SocketClosed):
        ctrl.handle(m.TokenReady(KEY), 0.1)
    actions = ctrl.handle(failure, 0.2)
    assert [k for k in kinds(actions) if k[0] != "Note"][-3:] == [
        ("BeginReply",), ("Play", len(chimes.timer_chime("audio/pcm"))), ("FinishReply",)]
    assert ctrl.phase == DRAINING
    ctrl.handle(m.PlaybackDrained(), 1.5)
    assert ctrl.phase == IDLE and ctrl.last_end_code == "timer" and "local chime" in ctrl.last_end_reason


def test_in_a_conversation_the_chime_rings_unless_a_reply_plays_and_the_sentence_waits_for_the_reply():
    quiet = active()
    assert ("BeginReply",) in kinds(quiet.handle(FIVE_MIN, 1.0))
    ctrl = active()
    speaking(ctrl)
    actions = ctrl.handle(FIVE_MIN, 1.5)
    assert ("BeginReply",) not in kinds(actions)  # not over the reply
    assert response_creates(actions) == []      # a response is active: one now would be refused
    actions = ctrl.handle(m.ServerEvent({"type": "response.done", "response": {"id": "resp_1"}}), 2.0)
    assert response_creates(actions) == [
        "Tell the user, in one short sentence and nothing else: Your 5-minute timer is done."]
    assert ctrl.phase == ACTIVE                 # the user's conversation goes on


def test_a_conversation_ending_hands_the_sentence_to_a_session_of_its_own_but_a_shutdown_does_not():
    ctrl = active()
    speaking(ctrl)
    ctrl.handle(FIVE_MIN, 1.5)
    ctrl.handle(m.Press(), 1.6)                 # barge-in: interrupts the reply
    ctrl.handle(m.PlaybackStopped(100), 1.6)
    actions = ctrl.handle(m.Press(), 1.7)       # and ends the conversation
    assert ("RequestToken",) in kinds(actions) and ctrl.phase == CONNECTING and ctrl.announcing
    ctrl2 = active()
    speaking(ctrl2)
    ctrl2.handle(FIVE_MIN, 1.5)
    ctrl2.handle(m.Shutdown(), 1.6)
    assert ctrl2.phase == IDLE


def test_a_press_stops_an_announcement():
    ctrl = Controller(BASE)
    ctrl.handle(FIVE_MIN, 0.0)
    ctrl.handle(m.TokenReady(KEY), 0.1)
    ctrl.handle(m.SocketOpened(), 0.2)
    speaking(ctrl, 0.5, "resp_1")
    actions = ctrl.handle(m.Press(), 0.6)
    assert ctrl.phase == IDLE and ("StopPlayback",) in kinds(actions)
    assert ctrl.last_end_reason == "timer announcement stopped by a press"


@pytest.mark.parametrize("fmt", codec.FORMATS)
def test_the_chime_is_audible_unclipped_and_in_the_wire_format(fmt):
    wire = chimes.timer_chime(fmt)
    pcm = np.frombuffer(codec.decode(fmt, wire), dtype="<i2").astype(float)
    assert len(pcm) == int(chimes.TIMER_CHIME_S * codec.wire_rate_hz(fmt))
    assert 0.2 * 32767 < np.abs(pcm).max() < 0.5 * 32767
    assert np.abs(pcm[:5]).max() < 2000          # a soft start: no click


def test_text_and_dictation_conversations_open_no_speaker_and_ring_no_chime_but_announcements_do():
    from dataclasses import replace
    text = replace(BASE, speaker=False)
    ctrl = Controller(text)
    [open_audio] = [a for a in ctrl.handle(m.Press(), 0.0) if isinstance(a, m.OpenAudio)]
    assert open_audio.speaker is False     # a display-only kiosk may have no speaker at all
    ctrl = active(text)
    assert ("BeginReply",) not in kinds(ctrl.handle(FIVE_MIN, 1.0))   # the sentence comes as text
    idle = Controller(text)
    [open_audio] = [a for a in idle.handle(FIVE_MIN, 0.0) if isinstance(a, m.OpenAudio)]
    assert open_audio.speaker is True      # a timer announcement is heard
