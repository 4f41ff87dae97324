"""The button's rules: the press in each mode, the push-to-talk release, the long press and other
end requests, and mute.

Modes (`button.mode`, button_config.py):
* toggle: a press starts a conversation; in one it interrupts the reply, or ends it while listening.
* push_to_talk: every push is one user turn. The mic is sent only while the button is down (and,
  after the release, until the local gate has sent the last words); the release commits the turn
  and asks for the response (the session has `turn_detection: null`). A press during the reply
  interrupts it and starts the next turn. A push shorter than MIN_PUSH_S, or one in which the gate
  heard no speech, sends no commit (the API would answer `input_audio_buffer_commit_empty`): the
  buffer is cleared instead. A press never ends the conversation here: the idle timeout does,
  after the last reply, or an end request (cancel button, `ctl end`, MQTT).
* one_shot: as toggle, but the conversation ends once the first reply has been heard (after any
  tool calls it needed), and a press during the reply stops it and ends the conversation.
Presses from sources that never release (MQTT's press button) act as toggle presses in every mode.

A long press (`EndRequest("button")`) ends a conversation that was already going when the button
went down; holding the press that started one does nothing (a user holding to talk on a tap device
is not cut off). push_to_talk never arms the hold timer. Mute (`SetMute`) outlives conversations.

A mixin of `controller.Controller`; called from the controller thread only.
"""

from __future__ import annotations

from pivoice import ends
from pivoice import messages as m
from pivoice.button_config import ONE_SHOT, PUSH_TO_TALK
from pivoice.controller_reply import ACTIVE, CONNECTING, DRAINING, IDLE
from pivoice.controller_timers import TIMER
from pivoice.ends import End

MIN_PUSH_S = 0.15      # shorter is a tap, not speech (and under the API's 100 ms commit minimum)
PUSH_TAIL_MAX_S = 1.0  # after a release, wait this long at most for the gate to send the last words
HOLDING_SOURCES = ("button", "ctl")   # sources whose presses are followed by a release
END_REASONS = {"button": "ended by a long press", "cancel_button": "ended by the cancel button"}


class ButtonRules:
    muted = False            # set only by SetMute: survives the end of a conversation

    def _reset_push(self) -> None:
        self.held = False             # push_to_talk: a push is down; its audio is sent
        self.push_started_s = self.now_s
        self.push_voiced = False      # the local gate heard speech during this push
        self.push_tail_until_s: float | None = None   # released while the gate still heard speech
        self.press_started = False    # the button is still down from the press that started this conversation

    # ---- the press ------------------------------------------------------------------

    def _on_Press(self, ev: m.Press) -> list:
        push = self.s.button_mode == PUSH_TO_TALK and ev.source in HOLDING_SOURCES
        if self.phase == IDLE:
            if self.muted:
                return [m.Note("muted", f"press ({ev.source}) refused: the device is muted"), *self._cue("error")]
            self.phase = CONNECTING
            self.started_s = self.last_activity_s = self.now_s
            self.press_started = ev.source == "button"
            self.held, self.push_started_s = push, self.now_s
            # The key request goes first so the socket dials while the audio devices open.
            return [m.Note("pressed", f"pressed ({ev.source}): starting a conversation"),
                    m.RequestToken(), m.OpenAudio(speaker=self.s.speaker), *self._cue("listening")]
        if self.announcing is not None:
            return self._end(End(TIMER, "timer announcement stopped by a press"))
        if self.asking is not None and self.phase == ACTIVE:
            return self._press_approves()   # "Shall I ...?": the press is the yes
        if push and self.phase in (CONNECTING, ACTIVE):
            return self._push_press()
        if self.phase == CONNECTING:
            return self._end(End(ends.USER, "cancelled by a press while connecting"))
        if self.phase == DRAINING:
            return self._end(self.closing.but("; playout stopped by a press"))
        if self.s.dictation:
            return self._dictation_press()
        if self.s.button_mode == ONE_SHOT and (self.playing or self.response_id is not None or self.tools_busy):
            return self._end(End(ends.USER, "reply stopped by a press (one_shot)"))
        if self.playing or self.response_id is not None or self.tools_busy:
            return self._interrupt("button")
        return self._end(End(ends.USER, "ended by a press"))

    # ---- push to talk ---------------------------------------------------------------

    def _push_press(self) -> list:
        """Another push in a conversation: stop the reply if one is under way, and listen."""
        actions: list = []
        if self.playing or self.response_id is not None or self.tools_busy:
            actions += self._interrupt("button")
        self.held, self.push_started_s, self.push_voiced = True, self.now_s, False
        self.push_tail_until_s = None
        self.last_activity_s = self.now_s
        self.turn_cued = False
        return actions + [m.Note("push", "push to talk: listening"), *self._cue("listening")]

    def _on_Release(self, ev: m.Release) -> list:
        if ev.source == "button":
            self.press_started = False
        if not self.held or self.phase not in (CONNECTING, ACTIVE):
            return []
        self.held = False
        self.last_activity_s = self.now_s
        held_ms = (self.now_s - self.push_started_s) * 1000
        if held_ms < MIN_PUSH_S * 1000:
            return self._push_empty(f"released after {held_ms:.0f} ms")
        if self.user_speaking:   # the gate still sends the last words: commit once it closes
            self.push_tail_until_s = self.now_s + PUSH_TAIL_MAX_S
            return [m.Note("push_released", f"released after {held_ms:.0f} ms; the turn ends when the "
                                            "last words are sent")]
        return self._push_commit() if self.push_voiced else self._push_empty("nothing was said")

    def _push_speech_ended(self, ev: m.SpeechEnded) -> list:
        """In push_to_talk the gate closing ends no turn; after a release it says the last words are out."""
        self.push_voiced = self.push_voiced or ev.voiced
        if self.held or self.push_tail_until_s is None:
            return []
        return self._push_commit() if self.push_voiced else self._push_empty("nothing was said")

    def _push_overdue(self) -> list:
        """Tick: holding is talking (no idle end meanwhile); a tail that does not end is cut."""
        if self.held:
            self.last_activity_s = self.now_s
        if self.push_tail_until_s is None or self.now_s < self.push_tail_until_s:
            return []
        return self._push_commit()

    def _push_commit(self) -> list:
        self.push_tail_until_s = None
        if self.phase == CONNECTING:
            self.pending_commit = True   # the kept audio is flushed, then committed, as the session opens
            return [m.Note("push_released", "released: the turn is committed once the session opens"),
                    *self._turn_ended_cue()]
        # mic_route() now says drop: handle() puts that before the commit, so nothing lands after it
        return [m.Note("push_released", "released: turn committed"), *self._manual_turn_end(),
                *self._turn_ended_cue()]

    def _push_empty(self, why: str) -> list:
        self.push_tail_until_s = None
        note = m.Note("push_empty", f"push to talk: {why}; nothing to answer")
        if self.phase == ACTIVE:
            return [note, self._event("input_audio_buffer.clear")]   # what this push appended goes
        return [note]   # connecting: the kept audio is dropped with the route

    def _push_closed(self) -> bool:
        """push_to_talk, and no push is down or still being sent: the mic is not sent anywhere."""
        return self.s.button_mode == PUSH_TO_TALK and not (
            self.held or self.push_tail_until_s is not None or self.pending_commit)

    @property
    def push_to_talk(self) -> bool:
        return self.s.button_mode == PUSH_TO_TALK

    def _pushed(self) -> list:
        """The session opened with a release's commit pending: stop sending after the flush and the
        commit (handle() would otherwise put the drop before them and lose the kept audio)."""
        if not self.push_to_talk or self.held or self.push_tail_until_s is not None:
            return []
        self.route = m.DROP
        return [m.RouteMic(m.DROP)]

    # ---- one shot -------------------------------------------------------------------

    def _one_shot_answered(self, text_reply: bool = False) -> list:
        """The reply has been heard (or, in a text session, has arrived): one_shot is over."""
        if (self.s.button_mode != ONE_SHOT or self.phase != ACTIVE
                or (self.s.speaker if text_reply else self.reply_item is None)   # (a timer chime is no reply)
                or self.announcing is not None or self.playing or self.response_id is not None
                or self.tools_busy or self.asking is not None):
            return []
        return self._end(End(ends.USER, "one question answered (one_shot)"))

    # ---- end requests and mute ------------------------------------------------------

    def _on_EndRequest(self, ev: m.EndRequest) -> list:
        if self.phase == IDLE:
            return [m.Note("end_request", f"end requested ({ev.source}): no conversation to end")]
        if ev.source == "button" and self.press_started:
            return [m.Note("long_press", "long press ignored: this press started the conversation")]
        reason = END_REASONS.get(ev.source, f"ended from {ev.source}")
        if self.announcing is not None:
            return self._end(End(TIMER, f"timer announcement stopped ({reason})"))
        if self.phase == DRAINING:
            return self._end(self.closing.but(f"; playout stopped ({reason})"))
        return self._end(End(ends.USER, reason))

    def _on_SetMute(self, ev: m.SetMute) -> list:
        was, self.muted = self.muted, ev.muted
        if not ev.muted:
            return [m.Note("mute", f"unmuted ({ev.source})" + ("" if was else "; it was not muted"))]
        note = m.Note("mute", f"muted ({ev.source}): presses are refused until unmuted")
        if self.phase == IDLE or self.announcing is not None:   # a timer still says it is done
            return [note]
        return [note, *self._end(End(ends.MUTED, f"muted ({ev.source})"))]
