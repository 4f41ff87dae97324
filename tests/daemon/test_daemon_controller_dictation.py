"""Dictation (controller_dictation.py) as tables: transcripts recorded, the partial line, a press that
keeps the words being spoken, a failed transcript."""

from dataclasses import replace

from pivoice import messages as m
from pivoice.controller import IDLE
from test_daemon_controller import BASE, active, kinds

DICTATION = replace(BASE, dictation=True, session={"type": "transcription"})


def completed(text):
    return m.ServerEvent({"type": "conversation.item.input_audio_transcription.completed", "transcript": text})


def delta(text):
    return m.ServerEvent({"type": "conversation.item.input_audio_transcription.delta", "delta": text})


def test_deltas_build_the_partial_line_and_a_completed_transcript_is_recorded():
    ctrl = active(DICTATION)
    ctrl.handle(delta("buy "), 1.0)
    ctrl.handle(delta("milk"), 1.1)
    assert ctrl.snapshot()["partial_transcript"] == "buy milk"
    actions = ctrl.handle(completed("Buy milk."), 1.2)
    assert [(a.kind, a.text) for a in actions if isinstance(a, m.RecordText)] == [("dictation", "Buy milk.")]
    assert ctrl.snapshot()["partial_transcript"] is None


def test_a_press_while_speaking_commits_and_ends_after_the_last_transcript():
    ctrl = active(DICTATION)
    ctrl.handle(m.SpeechStarted(), 1.0)
    actions = ctrl.handle(m.Press(), 2.0)
    assert [a.event["type"] for a in actions if isinstance(a, m.Send)] == ["input_audio_buffer.commit"]
    assert ctrl.phase != IDLE
    actions = ctrl.handle(completed("and eggs"), 2.3)
    assert ("RecordText",) in kinds(actions) and ctrl.phase == IDLE
    assert ctrl.last_end_reason == "dictation stopped by a press"


def test_a_press_in_silence_ends_at_once_and_a_missing_last_transcript_does_not_hang():
    ctrl = active(DICTATION)
    ctrl.handle(m.Press(), 1.0)
    assert ctrl.phase == IDLE and ctrl.last_end_reason == "dictation stopped by a press"
    ctrl = active(DICTATION)
    ctrl.handle(m.SpeechStarted(), 1.0)
    ctrl.handle(m.Press(), 2.0)
    assert ctrl.handle(m.Tick(), 6.9) == [] and ctrl.phase != IDLE
    ctrl.handle(m.Tick(), 7.1)
    assert ctrl.phase == IDLE and "did not come" in ctrl.last_end_reason


def test_a_failed_transcript_is_a_warning():
    ctrl = active(DICTATION)
    [note] = ctrl.handle(m.ServerEvent({"type": "conversation.item.input_audio_transcription.failed",
                                        "error": {"code": "audio_unintelligible", "message": "could not hear"}}), 1.0)
    assert note.level == "warning" and note.text == "transcription failed (audio_unintelligible): could not hear"
