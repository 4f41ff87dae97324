"""Session rollover: a conversation outlives the API's 60-minute session cap.

Past `max_duration_s` (below the cap), at the first quiet moment (no response, no reply playing, the
user not speaking, no tool or question pending), or at the latest when the server closes the socket
at its own cap, the controller opens a new session for the same conversation: a fresh key, Connect,
`session.update`, then the last `carry_turns` turns as message items (the user's transcripts as
`input_text`, the assistant's as `output_text`), in order. The mic is kept (route BUFFER) in between
and its audio goes out after the items, so words said during the pause are not lost. Nothing plays.
A rollover that fails (no key, no connection) ends the conversation "... during rollover".

User turns need the session's input transcription; without it only the assistant's turns can be
carried (`warn_without_transcription` says so once at start-up).

A mixin of `controller.Controller`; called from the controller thread only.
"""

from __future__ import annotations

import logging

from pivoice import ends
from pivoice import messages as m
from pivoice.ends import End

log = logging.getLogger(__name__)

# The close the API sends at its session cap (realtime-protocol.md §9: WS 1001 with this text).
CAP_CLOSE_CODE = 1001
CAP_CLOSE_TEXT = "maximum duration"
# A user turn whose transcript has not arrived holds the rollover back this long at most.
TRANSCRIPT_WAIT_S = 5.0
USER, ASSISTANT = "user", "assistant"


def transcribes(session: dict) -> bool:
    """Whether the session payload asks for input transcription (the user's words as text)."""
    audio_in = (session.get("audio") or {}).get("input") or {}
    return bool(audio_in.get("transcription")) or session.get("type") == "transcription"


def warn_without_transcription(session: dict, rollover: bool, carry_turns: int) -> None:
    """At start-up: rollover cannot carry what the user said if nobody transcribes it."""
    if rollover and carry_turns > 0 and not transcribes(session):
        # INFO, not WARNING: that is the default config, and transcribing costs money; nothing is broken
        log.info("conversation.rollover: session.audio.input.transcription is not set, so a new session "
                    "after conversation.max_duration_s can carry only the assistant's turns, not the user's")


class RolloverRules:
    def _reset_rollover(self) -> None:
        self.turns: list[dict] = []      # {role, text (None: transcript awaited), at_s}, oldest first
        self.rolling = False             # a new session is being opened for this conversation
        self.rolling_since_s = self.now_s
        self.rollovers = 0
        self.rolled_s = 0.0              # the conversation's time in sessions before this one
        self.__dict__.setdefault("last_rollovers", 0)   # of the conversation that ended last (outlives _reset)

    def last_conversation_end(self) -> tuple[str | None, str | None, int]:
        """(end code, reason, rollovers) of the conversation that ended last, for its figures."""
        return self.last_end_code, self.last_end_reason, self.last_rollovers

    def conversation_age_s(self) -> float:
        return self.rolled_s + self.now_s - self.started_s

    # ---- hooks ------------------------------------------------------------------------

    def _capped(self) -> list | None:
        """Tick: the conversation's own cap, or the session's; None: carry on with the tick."""
        cap_s = self.s.max_conversation_s
        if cap_s is not None and self.conversation_age_s() >= cap_s:
            return self._end(End(ends.MAX_DURATION, f"maximum conversation length ({cap_s:.0f} s) reached"))
        if self.now_s - self.started_s < self.s.max_duration_s:
            return None
        if not self.s.rollover or self.announcing is not None or self.phase == "connecting":
            return self._end(End(ends.MAX_DURATION,
                                 f"maximum conversation length ({self.s.max_duration_s:.0f} s) reached"))
        if self.phase == "active" and self._quiet():
            return self._roll_over(f"the session reached {self.s.max_duration_s:.0f} s")
        return None   # busy (or draining out an end): wait; the server's own cap forces it at the latest

    def _rolled_at_cap(self, ev: m.SocketClosed) -> list | None:
        """The server closed the session at its cap: roll over now, whatever is going on."""
        if (not self.s.rollover or self.announcing is not None or ev.code != CAP_CLOSE_CODE
                or CAP_CLOSE_TEXT not in (ev.reason or "").lower()):
            return None
        return self._roll_over("the server closed the session at its cap")

    def _rollover_end(self, end: End) -> End:
        """Every end passes here first: a failed rollover says so."""
        self.last_rollovers = self.rollovers
        return end.but(" during rollover") if self.rolling else end

    def _carry_over(self) -> list:
        """The new socket is open (after session.update, before the kept mic audio): the turns."""
        if not self.rolling:
            return []
        kept = [t for t in self.turns if t["text"]]
        # a transcription session has no conversation to put them in
        turns = kept[-self.s.carry_turns:] if self.s.carry_turns and not self.s.dictation else []
        items = [self._event("conversation.item.create", item=_message(t["role"], t["text"])) for t in turns]
        pause_ms = (self.now_s - self.rolling_since_s) * 1000
        return items + [m.Note("rollover", f"new session {self.rollovers + 1}: {len(turns)} turn(s) carried "
                                           f"over after a {pause_ms:.0f} ms pause")]

    def _remember_turn(self, kind: str, d: dict) -> None:
        """Every server event of the session: keep the turns a new session would need."""
        if kind in ("session.created", "session.updated"):
            self.rolling = False
        if not self.s.carry_turns:
            return
        if kind == "input_audio_buffer.committed" and transcribes(self.s.session):
            self.turns.append({"role": USER, "text": None, "at_s": self.now_s})
        elif kind == "conversation.item.input_audio_transcription.completed":
            self._fill_user_turn(d.get("transcript") or "")
        elif kind == "conversation.item.input_audio_transcription.failed":
            self._fill_user_turn("")
        elif kind == "response.output_audio_transcript.done" and d.get("transcript"):
            self.turns.append({"role": ASSISTANT, "text": d["transcript"], "at_s": self.now_s})
        elif kind == "response.output_text.done" and d.get("text"):
            self.turns.append({"role": ASSISTANT, "text": d["text"], "at_s": self.now_s})
        # bounded: a few placeholders of turns still being transcribed, plus what can be carried
        del self.turns[:-(self.s.carry_turns + 4)]

    # ---- inside ---------------------------------------------------------------------------

    def _fill_user_turn(self, text: str) -> None:
        # transcripts arrive in commit order: the oldest awaited one is this one
        for turn in self.turns:
            if turn["role"] == USER and turn["text"] is None:
                turn["text"] = text
                return
        if text:   # its commit was not seen (e.g. before a rollover): later than all we have
            self.turns.append({"role": USER, "text": text, "at_s": self.now_s})

    def _quiet(self) -> bool:
        awaited = any(t["text"] is None and self.now_s - t["at_s"] < TRANSCRIPT_WAIT_S for t in self.turns)
        return not (self.playing or self.response_id is not None or self.user_speaking or self.tools_busy
                    or self.asking is not None or self.pending_commit or awaited
                    or self.stop_after_transcript_s is not None or self.end_stage is not None)

    def _roll_over(self, why: str) -> list:
        # keep the mic before the socket goes, so nothing said meanwhile is lost
        actions: list = [] if self.route == m.BUFFER else [m.RouteMic(m.BUFFER)]
        self.route = m.BUFFER
        actions += self._cancel_tools(tell_model=False) + [m.Disconnect(f"rolling over: {why}")]
        if self.playing:   # the cap came mid-reply: what arrived plays out; it belongs to no session now
            if not self.reply_flushed:
                self.reply_flushed = True
                actions.append(m.FinishReply())
            self.response_id, self.reply_item = None, None
        else:
            self._reset_reply()
        self.rolled_s += self.now_s - self.started_s
        self.started_s = self.rolling_since_s = self.now_s
        self.phase, self.rolling, self.dialing, self.acknowledged = "connecting", True, False, False
        self.token_retry_at_s, self.pending_commit, self.partial_transcript = None, False, ""
        self.rollovers += 1
        return actions + [m.Note("rolling_over", f"{why}: opening a new session "
                                                 f"({self.conversation_age_s():.0f} s into the conversation)"),
                          m.RequestToken()]


def _message(role: str, text: str) -> dict:
    part = "input_text" if role == USER else "output_text"
    return {"type": "message", "role": role, "content": [{"type": part, "text": text}]}
