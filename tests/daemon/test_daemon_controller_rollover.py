"""Session rollover (controller_rollover.py) as tables: past max_duration_s at a quiet moment, or when
the server closes at its cap, a new session opens and the last turns are carried over as message items
(checked with the SDK's types, as the dev server checks them); the mic audio kept meanwhile goes after
them; a rollover that fails ends the conversation "... during rollover"."""

from dataclasses import replace

import pytest
from openai.types.realtime import ConversationItemCreateEvent
from pydantic import TypeAdapter

from pivoice import messages as m
from pivoice.controller import ACTIVE, CONNECTING, IDLE, Controller
from pivoice.devserver.validation import check_client_event
from support.controller_rig import SETTINGS as RIG_SETTINGS, Rig
from support.runtime_fakes import Key
from test_daemon_controller import BASE, KEY, PCM_100MS, kinds, run, speaking

TRANSCRIBED = {"type": "realtime", "model": "gpt-realtime",
               "audio": {"input": {"transcription": {"model": "gpt-4o-mini-transcribe"}}}}
ROLL = replace(BASE, session=TRANSCRIBED, rollover=True, carry_turns=3, max_duration_s=60, idle_timeout_s=120)
CAP_CLOSE = m.SocketClosed(1001, "Your session hit the maximum duration of 60 minutes.")


def ev(type_, **fields):
    return m.ServerEvent({"type": type_, **fields})


def exchange(ctrl, t, question, answer):
    """A user turn (committed, then transcribed) and the spoken reply's transcript."""
    ctrl.handle(ev("input_audio_buffer.committed"), t)
    ctrl.handle(ev("conversation.item.input_audio_transcription.completed", transcript=question), t + 0.1)
    ctrl.handle(ev("response.output_audio_transcript.done", transcript=answer), t + 0.2)


def talked(settings=ROLL):
    ctrl = Controller(settings)
    run(ctrl, [(0.0, m.Press()), (0.01, m.TokenReady(KEY)), (0.02, m.SocketOpened()),
               (0.03, ev("session.created"))])
    exchange(ctrl, 1.0, "What is on at the cinema?", "Two films tonight.")
    exchange(ctrl, 5.0, "Which one is shorter?", "The second one.")
    return ctrl


def carried(actions):
    return [a.event for a in actions if isinstance(a, m.Send) and a.event["type"] == "conversation.item.create"]


def reopen(ctrl, t):
    ctrl.handle(m.TokenReady(KEY), t)
    return ctrl.handle(m.SocketOpened(), t + 0.2)


def test_a_quiet_moment_past_max_duration_opens_a_new_session_carrying_the_last_turns_in_order():
    ctrl = talked()
    assert ctrl.handle(m.Tick(), 59.9) == []
    actions = ctrl.handle(m.Tick(), 60.0)
    # the mic is kept before the socket goes; nothing plays, no end
    assert kinds(actions) == [("RouteMic", "buffer"), ("Disconnect",), ("Note", "rolling_over"), ("RequestToken",)]
    assert ctrl.phase == CONNECTING and ctrl.rollovers == 1 and ctrl.last_end_code is None
    opened = reopen(ctrl, 60.3)
    types = [a.event["type"] if isinstance(a, m.Send) else type(a).__name__ for a in opened
             if not isinstance(a, m.Note)]
    assert types == ["session.update", "conversation.item.create", "conversation.item.create",
                     "conversation.item.create", "RouteMic"]   # the kept audio goes after the items
    items = carried(opened)
    assert [(i["item"]["role"], i["item"]["content"][0]) for i in items] == [
        ("assistant", {"type": "output_text", "text": "Two films tonight."}),
        ("user", {"type": "input_text", "text": "Which one is shorter?"}),
        ("assistant", {"type": "output_text", "text": "The second one."})]
    for event in items:   # what the API accepts: the SDK's type, strictly, and the dev server's check
        TypeAdapter(ConversationItemCreateEvent).validate_python(event, strict=True)
        check = check_client_event(event)
        assert check.ok and not check.unknown, check.messages()
    note = next(a for a in opened if isinstance(a, m.Note) and a.kind == "rollover")
    assert "3 turn(s) carried" in note.text and "500 ms pause" in note.text
    assert ctrl.phase == ACTIVE and ctrl.mic_route() == "send"
    ctrl.handle(ev("session.created"), 60.6)
    assert not ctrl.rolling
    snap = ctrl.snapshot()
    assert snap["conversation_s"] == 60.6 and snap["state"] == "active"   # the conversation's clock goes on


@pytest.mark.parametrize("busy", ["response", "playing", "speaking", "transcript_awaited"])
def test_a_busy_moment_waits_for_quiet(busy):
    ctrl = talked()
    if busy == "response":
        ctrl.handle(ev("response.created", response={"id": "resp_9"}), 59.0)
    elif busy == "playing":
        speaking(ctrl, 59.0, "resp_9")
        ctrl.handle(ev("response.done", response={"id": "resp_9"}), 59.1)
    elif busy == "speaking":
        ctrl.handle(m.SpeechStarted(), 59.0)
    else:
        ctrl.handle(ev("input_audio_buffer.committed"), 59.0)
    for t in (60.0, 61.0, 62.0):
        assert not [a for a in ctrl.handle(m.Tick(), t) if isinstance(a, m.Disconnect)], busy
    assert ctrl.phase == ACTIVE and ctrl.rollovers == 0
    if busy == "response":
        ctrl.handle(ev("response.done", response={"id": "resp_9"}), 62.5)
    elif busy == "playing":
        ctrl.handle(m.PlaybackDrained(), 62.5)
    elif busy == "speaking":
        ctrl.handle(m.SpeechEnded(), 62.5)
    else:
        ctrl.handle(ev("conversation.item.input_audio_transcription.completed", transcript="And tomorrow?"), 62.5)
    actions = ctrl.handle(m.Tick(), 62.6)
    assert ("Note", "rolling_over") in kinds(actions) and ctrl.phase == CONNECTING
    if busy == "transcript_awaited":   # the late transcript is carried, in its place
        assert carried(reopen(ctrl, 63.0))[-1]["item"]["content"][0]["text"] == "And tomorrow?"


def test_a_transcript_that_never_comes_holds_the_rollover_back_only_a_few_seconds():
    ctrl = talked()
    ctrl.handle(ev("input_audio_buffer.committed"), 58.0)
    assert ctrl.handle(m.Tick(), 60.0) == []
    assert ("Note", "rolling_over") in kinds(ctrl.handle(m.Tick(), 63.1))


def test_the_server_closing_at_its_cap_rolls_over_at_once_even_mid_response():
    ctrl = talked(replace(ROLL, max_duration_s=3300))
    ctrl.handle(ev("response.created", response={"id": "resp_9"}), 40.0)
    actions = ctrl.handle(CAP_CLOSE, 41.0)
    assert ("Note", "rolling_over") in kinds(actions) and ctrl.phase == CONNECTING
    assert ctrl.response_id is None and ctrl.last_end_code is None
    assert len(carried(reopen(ctrl, 41.5))) == 3


def test_a_reply_playing_when_the_cap_closes_plays_out_and_is_never_truncated_in_the_new_session():
    ctrl = talked(replace(ROLL, max_duration_s=3300))
    speaking(ctrl, 40.0, "resp_9")
    actions = ctrl.handle(CAP_CLOSE, 40.5)
    assert ("FinishReply",) in kinds(actions) and ("StopPlayback",) not in kinds(actions)
    reopen(ctrl, 41.0)
    ctrl.handle(m.PlaybackDrained(), 42.0)
    assert not ctrl.playing and ctrl.phase == ACTIVE
    assert not [a for a in ctrl.handle(m.Press(), 43.0) if isinstance(a, m.Send)
                and a.event["type"] == "conversation.item.truncate"]


@pytest.mark.parametrize("close", [m.SocketClosed(1001, "going away"), m.SocketClosed(1011, "internal error"),
                                   m.SocketClosed(None, "reset")])
def test_other_closes_end_as_before(close):
    ctrl = talked()
    ctrl.handle(close, 30.0)
    assert ctrl.phase == IDLE and ctrl.rollovers == 0 and "rollover" not in ctrl.last_end_reason


@pytest.mark.parametrize("failure,code", [
    (m.TokenFailed("backend_unreachable", "connection refused", retryable=False), "token_failed"),
    (m.SocketClosed(None, "connection refused"), "connect_failed"),
    (None, "connect_timeout"),
])
def test_a_failed_rollover_ends_the_conversation_saying_so(failure, code):
    ctrl = talked()
    ctrl.handle(m.Tick(), 60.0)
    if failure is None:
        ctrl.handle(m.TokenReady(KEY), 60.1)
        for t in (61.0, 63.0, 65.1):   # connect_timeout_s 5
            ctrl.handle(m.Tick(), t)
    else:
        if isinstance(failure, m.SocketClosed):
            ctrl.handle(m.TokenReady(KEY), 60.1)
        actions = ctrl.handle(failure, 60.2)
        assert ("CloseAudio",) in kinds(actions)
    assert ctrl.phase == IDLE and ctrl.last_end_code == code
    assert ctrl.last_end_reason.endswith(" during rollover")
    assert ctrl.last_conversation_end() == (code, ctrl.last_end_reason, 1)


def test_without_rollover_max_duration_ends_and_a_conversation_cap_ends_across_rollovers():
    ctrl = talked(replace(ROLL, rollover=False))
    ctrl.handle(m.Tick(), 60.0)
    assert ctrl.phase == IDLE and ctrl.last_end_code == "max_duration"
    ctrl = talked(replace(ROLL, max_conversation_s=100))
    ctrl.handle(m.Tick(), 60.0)
    reopen(ctrl, 60.1)
    ctrl.handle(ev("session.created"), 60.4)
    ctrl.handle(m.Tick(), 99.9)
    assert ctrl.phase == ACTIVE
    ctrl.handle(m.Tick(), 100.0)
    assert ctrl.phase == IDLE and ctrl.last_end_code == "max_duration" and "(100 s)" in ctrl.last_end_reason
    assert ctrl.last_conversation_end()[2] == 1


def test_without_input_transcription_only_the_assistants_turns_are_carried():
    ctrl = Controller(replace(ROLL, session=BASE.session))
    run(ctrl, [(0.0, m.Press()), (0.01, m.TokenReady(KEY)), (0.02, m.SocketOpened()), (0.03, ev("session.created"))])
    for t in (1.0, 5.0):   # no transcript comes: a commit must not hold a place (or the rollover) for one
        ctrl.handle(ev("input_audio_buffer.committed"), t)
        ctrl.handle(ev("response.output_audio_transcript.done", transcript=f"Reply at {t:.0f} s."), t + 0.2)
    assert ("Note", "rolling_over") in kinds(ctrl.handle(m.Tick(), 60.0))
    assert [i["item"]["role"] for i in carried(reopen(ctrl, 60.1))] == ["assistant", "assistant"]


def test_text_replies_are_turns_too_and_carry_turns_zero_carries_none():
    ctrl = talked()
    ctrl.handle(ev("response.output_text.done", text="A text answer."), 20.0)
    ctrl.handle(m.Tick(), 60.0)
    assert carried(reopen(ctrl, 60.1))[-1]["item"]["content"][0] == {"type": "output_text", "text": "A text answer."}
    ctrl = talked(replace(ROLL, carry_turns=0))
    ctrl.handle(m.Tick(), 60.0)
    assert carried(reopen(ctrl, 60.1)) == [] and ctrl.phase == ACTIVE


def test_words_said_during_the_pause_are_sent_after_the_carried_items():
    rig = Rig(replace(RIG_SETTINGS, session=TRANSCRIBED, rollover=True, max_duration_s=60, idle_timeout_s=120))
    rig.start()
    first = rig.conn
    first.play(ev("response.output_audio_transcript.done", transcript="Hello there.").data)
    rig.tick_until(60.5)
    assert rig.phase == CONNECTING and first.closed_by_daemon.is_set()
    rig.mic_chunks(PCM_100MS[:960], PCM_100MS[:960])   # the user speaks while the new session opens
    rig.handle(m.TokenReady(Key()), 60.4)
    second = rig.conn
    assert second is not first and rig.phase == ACTIVE
    assert second.sent_types(audio=True)[:4] == ["session.update", "conversation.item.create",
                                                 "input_audio_buffer.append", "input_audio_buffer.append"]
    assert second.sent("conversation.item.create")[0]["item"]["content"][0]["text"] == "Hello there."
    assert "rollover" in rig.kinds() and "ended" not in rig.kinds()


# ---- the config keys, and the start-up warning ----

def test_conversation_keys_reach_the_controller_with_their_defaults(tmp_path):
    import logging

    from pivoice.app import controller_settings
    from pivoice.controller_rollover import warn_without_transcription
    from test_daemon_config import EXAMPLE, MINIMAL, load_dict, with_
    from pivoice import config
    from pivoice.settings import ConfigError

    s = controller_settings(config.load(EXAMPLE))
    assert (s.rollover, s.carry_turns, s.max_conversation_s) == (True, 6, None)
    s = controller_settings(load_dict(tmp_path, {**MINIMAL, "conversation": {
        "rollover": False, "carry_turns": 0, "max_conversation_s": 7200}}))
    assert (s.rollover, s.carry_turns, s.max_conversation_s) == (False, 0, 7200.0)
    for key, value, reason in [("carry_turns", 51, "must be <= 50"), ("max_conversation_s", 5, "must be >= 10"),
                               ("rollover", "yes", "must be true or false")]:
        with pytest.raises(ConfigError, match=reason) as err:
            load_dict(tmp_path, with_(f"conversation.{key}", value))
        assert f"conversation.{key}" in str(err.value)

    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("pivoice.controller_rollover")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)   # said at INFO: the default config has no transcription
    try:
        warn_without_transcription(BASE.session, True, 6)          # nobody transcribes the user
        warn_without_transcription(TRANSCRIBED, True, 6)
        warn_without_transcription(BASE.session, False, 6)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert len(records) == 1 and "only the assistant's turns" in records[0].getMessage()
    assert records[0].levelno == logging.INFO
