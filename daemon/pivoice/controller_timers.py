"""Timers that run out (`TimerFired`): the device says so.

The timer chime rings at once (unless a reply is playing). Idle, the controller then opens a short
session of its own whose only job is one spoken sentence ("Your 5-minute timer is done."): no user audio is sent (the mic route stays `drop`), and the session ends
once the sentence has been heard. If no session can be had (no key, the server unreachable, no
answer in time) the local timer chime plays instead, so a timer never goes unannounced. In a
conversation the sentence is asked for as soon as no response is active; a conversation that is
ending hands it to a session of its own right after.

A mixin of `controller.Controller`; called from the controller thread only.
"""

from __future__ import annotations

from pivoice import ends
from pivoice import messages as m
from pivoice.ends import End

TIMER = "timer"   # end code of an announcement session
FAILED_BEFORE_SPEAKING = {ends.TOKEN_FAILED, ends.CONNECT_FAILED, ends.CONNECT_TIMEOUT, ends.NOT_ACKNOWLEDGED,
                          ends.SERVER_CLOSED, ends.LINK_LOST, ends.STALLED}


def describe(duration_s: float) -> str:
    """`5-minute`, `90-second`, `2-hour`: how the sentence names the timer."""
    seconds = round(duration_s)
    if seconds % 3600 == 0:
        n, unit = seconds // 3600, "hour"
    elif seconds % 60 == 0:
        n, unit = seconds // 60, "minute"
    else:
        n, unit = seconds, "second"
    return f"{n}-{unit}"


def sentence(ev: m.TimerFired) -> str:
    what = f"{describe(ev.duration_s)} timer" + (f" for {ev.label}" if ev.label else "")
    return f"Your {what} is done."


class TimerRules:
    def _reset_timers(self) -> None:
        # (owed_sentences outlives a conversation: set once in Controller.__init__)
        self.announcing: str | None = None   # this session exists only to say this sentence

    def _on_TimerFired(self, ev: m.TimerFired) -> list:
        text = sentence(ev)
        note = m.Note(TIMER, f"timer {ev.timer_id} done: {text}")
        if self.phase == "idle":
            return [note, *self._start_announcement(text), *self._ring()]
        self.owed_sentences.append(text)
        return [note, *(self._ring() if self.phase == "active" else []), *self._say_owed()]

    def _ring(self) -> list:
        """The timer chime, at once (the sentence follows when the session can say it); not over a reply."""
        if self.playing or (self.phase == "active" and not self.s.speaker) or "timer" not in self.s.cues.enabled:
            return []   # over a reply, with no speaker open (text only), or turned off: the sentence says it
        self.playing, self.drained, self.reply_item = True, False, None
        return [m.BeginReply(), m.Play(self.s.cues.timer(self.s.output_format)), m.FinishReply()]

    def _start_announcement(self, text: str) -> list:
        self.phase = "connecting"
        self.started_s = self.last_activity_s = self.now_s
        self.announcing = text
        return [m.RequestToken(), m.OpenAudio()]

    def _say_owed(self) -> list:
        """Ask for the owed sentences once the session is open and no response is active."""
        if self.phase != "active" or self.response_id is not None or self.tools_busy or not self.owed_sentences:
            return []
        text = " ".join(self.owed_sentences)
        self.owed_sentences = []
        return [self._event("response.create", response={
            "instructions": f"Tell the user, in one short sentence and nothing else: {text}"})]

    def _announcement_opened(self) -> list:
        if self.announcing is None:
            return self._say_owed()
        self.owed_sentences.insert(0, self.announcing)
        return self._say_owed()

    def _announcement_failed(self, end: End) -> list | None:
        """No session for the sentence (no key, no server, no answer): ring the local chime and end
        after it instead. None: this is not an announcement, or it already spoke."""
        if self.announcing is None or end.code not in FAILED_BEFORE_SPEAKING or self.reply_received_ms > 0 \
                or "timer" not in self.s.cues.enabled:
            return None
        actions: list = [m.Disconnect(end.reason)] if self.phase in ("connecting", "active") else []
        self.phase, self.playing, self.drained, self.response_id = "draining", True, False, None
        self.closing = End(TIMER, f"timer rang with the local chime ({end.reason})", ends.WARNING)
        self.drain_deadline_s = self.now_s + self.s.cues.timer_s(self.s.output_format) + 2.0
        return actions + [m.BeginReply(), m.Play(self.s.cues.timer(self.s.output_format)), m.FinishReply(),
                          m.Note("chime", f"no session for the timer ({end.reason}): local chime")]

    def _announcement_heard(self) -> list:
        """The sentence has played (or the reply ended without audio): the announcement is over."""
        if (self.announcing is None or self.phase != "active" or self.response_id is not None or self.playing
                or self.owed_sentences):
            return []
        return self._end(End(TIMER, f"timer announced: {self.announcing}"))

    def _hand_on_owed(self) -> list:
        """After an end: sentences still owed get a session of their own."""
        if not self.owed_sentences:
            return []
        text = " ".join(self.owed_sentences)
        self.owed_sentences = []
        return self._start_announcement(text)
