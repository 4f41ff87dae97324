"""Dictation (a `transcription` session): every turn is transcribed, nothing is answered.

The transcripts are the product: each completed one is recorded (`RecordText("dictation")`: log,
JSONL, webhook, `ctl status`), the deltas build the partial line `ctl status` shows while the user
speaks, and a failed one is a WARNING. A press while the user is still talking does not throw the
words away: it commits the buffer and the conversation ends once that last transcript is in (or
after FINAL_TRANSCRIPT_WAIT_S).

A mixin of `controller.Controller`; called from the controller thread only.
"""

from __future__ import annotations

from pivoice import ends
from pivoice import messages as m
from pivoice.ends import End

FINAL_TRANSCRIPT_WAIT_S = 5.0
STOPPED = "dictation stopped by a press"


class DictationRules:
    def _reset_dictation(self) -> None:
        self.partial_transcript = ""
        self.stop_after_transcript_s: float | None = None   # a press asked to stop: end when the last is in

    def _dictation_press(self) -> list:
        """A press in an active dictation: stop, keeping the words being spoken."""
        if not self.user_speaking:
            return self._end(End(ends.USER, STOPPED))
        self.stop_after_transcript_s = self.now_s + FINAL_TRANSCRIPT_WAIT_S
        return [self._event("input_audio_buffer.commit"),
                m.Note("dictation_stopping", "press: committing what was said, ending after its transcript")]

    def _transcription_delta(self, delta: str) -> list:
        self.partial_transcript = (self.partial_transcript + delta)[-500:]
        return [m.Note("transcript_delta", f"partial transcript: {self.partial_transcript[-120:]}", "debug")]

    def _transcribed(self) -> list:
        self.partial_transcript = ""
        if self.stop_after_transcript_s is not None:
            return self._end(End(ends.USER, STOPPED))
        return []

    def _transcription_failed(self, error: dict) -> list:
        note = m.Note("transcription_failed", "transcription failed "
                      f"({error.get('code') or error.get('type') or 'error'}): {error.get('message') or 'no message'}",
                      "warning")
        return [note, *self._transcribed()]

    def _final_transcript_overdue(self) -> list:
        if self.stop_after_transcript_s is None or self.now_s < self.stop_after_transcript_s:
            return []
        return self._end(End(ends.USER, STOPPED + " (the last transcript did not come)"))
