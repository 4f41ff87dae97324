"""The conversation state machine: `handle(event, now_s) -> actions`, no I/O.

Only the controller thread calls it. Every edge (button, mic, socket, speaker,
token refresh) reaches it as a queued event; everything it wants done comes
back as actions for the runtime to execute. That keeps the rules of a
conversation in one place and testable as tables of events in, actions out.

This module holds the phases, the connection, the local audio and
the timers; `controller_reply.py` holds the reply (server events, reply audio,
playback, and ending after a server close or stall). Every end goes through
`_end` with an `ends.End`: a code, a reason and a level.

Mic audio itself never passes through here: the mic thread sends it
(audio/sendpath.py) along the route this controller sets with `RouteMic`,
worked out from its state after every event (`mic_route`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from pivoice import ends, errors
from pivoice import messages as m
from pivoice.controller_reply import ACTIVE, CONNECTING, DRAINING, IDLE, ReplyRules
from pivoice.controller_buttons import ButtonRules
from pivoice.controller_dictation import DictationRules
from pivoice.controller_mcp import McpRules
from pivoice.controller_rollover import RolloverRules
from pivoice.controller_timers import TimerRules
from pivoice.controller_tools import ToolRules
from pivoice.earcons import Cues
from pivoice.ends import End
from pivoice.mcp_policy import McpPolicy

__all__ = ["ACTIVE", "CONNECTING", "DRAINING", "IDLE", "Controller", "Settings"]
TOKEN_RETRY_S = 1.0
BUFFER, SEND, DROP = m.BUFFER, m.SEND, m.DROP


@dataclass(frozen=True)
class Settings:
    """What the controller needs from the config, with units."""

    session: dict                  # payload for session.update
    output_format: str
    manual_turns: bool             # turn_detection is null: we commit and ask for responses ourselves
    interrupt_response: bool      # the server cancels a response by itself when it hears speech
    half_duplex: bool              # mute the uplink while the reply plays (no echo cancellation on the device)
    idle_timeout_s: float
    max_duration_s: float
    connect_timeout_s: float       # press -> socket open, and socket open -> session acknowledged
    reply_stall_s: float = 10.0    # a response in flight with no server event for this long has stalled
    dictation: bool = False        # a transcription session: turns are transcribed, never answered
    mcp: McpPolicy | None = None   # which MCP calls to approve, ask about or deny (None: deny all)
    speaker: bool = True           # replies are audio: a conversation opens the speaker (not for text/dictation)
    cues: Cues = Cues()            # which earcons play (earcons.py); the default: the timer chime only
    rollover: bool = False         # past max_duration_s a new session carries on (controller_rollover.py)
    carry_turns: int = 6           # ... with this many of the last turns
    max_conversation_s: float | None = None   # the conversation's own cap across sessions (None: none)
    button_mode: str = "toggle"    # toggle | push_to_talk | one_shot (controller_buttons.py)


class Controller(ReplyRules, ToolRules, TimerRules, McpRules, DictationRules, RolloverRules, ButtonRules):
    """Owns conversation state. Called from the controller thread only."""

    def __init__(self, settings: Settings):
        self.s = settings
        self._ids = itertools.count(1)
        self.last_end_reason: str | None = None
        self.last_end_code: str | None = None
        self.now_s = 0.0
        self.route = DROP   # the mic route last announced with RouteMic
        self.playback_route: str | None = None   # ... and the playback route, with RoutePlayback
        self.owed_sentences: list[str] = []   # timers done, not yet announced (controller_timers.py)
        self._reset()

    def handle(self, event: object, now_s: float) -> list:
        self.now_s = now_s
        handler = getattr(self, "_on_" + type(event).__name__, None)
        actions = handler(event) if handler else []
        route = self.mic_route()
        if route != self.route:
            self.route = route
            # muting takes effect before anything else the event caused; sending after (a session first)
            actions = [m.RouteMic(route), *actions] if route == DROP else [*actions, m.RouteMic(route)]
        playing = self.play_route()
        if playing != self.playback_route:
            self.playback_route = playing
            # closing the route comes before a StopPlayback, so no delta can slip in after the stop;
            # opening it after the first delta of the reply went through here (BeginReply, Play)
            actions = [m.RoutePlayback(None), *actions] if playing is None else [*actions, m.RoutePlayback(playing)]
        return actions

    def play_route(self) -> str | None:
        """The response whose further audio deltas the socket's reader may play without asking: the
        one playing now, while the session is active and nobody has interrupted it."""
        if self.phase == ACTIVE and self.playing and self.response_id is not None \
                and self.response_id not in self.cancelled:
            return self.response_id
        return None

    def mic_route(self) -> str:
        """Where mic audio goes now: kept until the session opens, then sent, except while the reply
        plays in half duplex (the mic would send the reply back to the server) and outside a session."""
        if self.announcing is not None or self._push_closed():
            return DROP   # a session of our own to announce a timer, or push_to_talk with no push down
        if self.phase == CONNECTING:
            return BUFFER
        if self.phase == ACTIVE and not (self.s.half_duplex and self.playing):
            return SEND
        return DROP

    def snapshot(self) -> dict:
        return {
            "state": self.phase,
            "conversation_s": round(self.conversation_age_s(), 1) if self.phase != IDLE else None,
            "response_active": self.response_id is not None,
            "playing": self.playing,
            "user_speaking": self.user_speaking,
            "last_end_reason": self.last_end_reason,
            "last_end_code": self.last_end_code,
            "partial_transcript": self.partial_transcript or None,
            "muted": self.muted,
        }

    def _reset(self) -> None:
        self.phase = IDLE
        self.started_s = self.last_activity_s = self.now_s
        self.pending_commit = False
        self.token_retry_at_s: float | None = None
        self.dialing = False            # a key arrived and Connect was issued; later token answers are stale
        self.opened_s = self.now_s      # when the socket opened
        self.acknowledged = False       # session.created/updated arrived
        self.user_speaking = False
        self._reset_reply()
        self._reset_tools()
        self._reset_timers()
        self._reset_mcp()
        self._reset_dictation()
        self._reset_rollover()
        self._reset_push()   # (muted outlives a conversation: controller_buttons.py)

    def _event(self, type_: str, **fields) -> m.Send:
        return m.Send({"type": type_, "event_id": f"evt_pv_{next(self._ids)}", **fields})

    def _end(self, end: End) -> list:
        end = self._rollover_end(end)
        chime = self._announcement_failed(end)
        if chime is not None:
            return chime
        actions: list = self._cancel_tools(tell_model=False)
        if self.playing:
            actions.append(m.StopPlayback())
        if self.phase in (CONNECTING, ACTIVE):
            actions.append(m.Disconnect(end.reason))
        actions += [m.CloseAudio(), m.Note("ended", f"conversation ended: {end.reason}", end.level)]
        actions += self._end_cue(end)
        self.last_end_reason, self.last_end_code = end.reason, end.code
        self._reset()
        return actions + ([] if end.code == ends.SHUTDOWN else self._hand_on_owed())

    def _manual_turn_end(self) -> list:
        # With turn_detection null nobody else closes the turn: commit and ask for the answer ourselves
        # (dictation: the commit alone; the transcript is the answer, and responses do not exist there).
        commit = [self._event("input_audio_buffer.commit")]
        return commit if self.s.dictation else commit + [self._event("response.create")]

    # ---- button: controller_buttons.py (the press in each mode, release, long press, mute) ----

    # ---- connection ---------------------------------------------------------------

    def _on_TokenReady(self, ev: m.TokenReady) -> list:
        if self.phase != CONNECTING or self.dialing:
            return []
        self.dialing, self.token_retry_at_s = True, None
        return [m.Note("token", "ephemeral key ready"), m.Connect(ev.key)]

    def _on_TokenFailed(self, ev: m.TokenFailed) -> list:
        if self.phase != CONNECTING or self.dialing:
            return []
        deadline = self.started_s + self.s.connect_timeout_s
        if ev.retryable and self.now_s + TOKEN_RETRY_S < deadline:
            self.token_retry_at_s = self.now_s + TOKEN_RETRY_S
            return [m.Note("token", f"no key yet ({ev.code}): {ev.message}; retrying", "warning")]
        level = ends.ERROR if errors.needs_operator(ev.code) else ends.WARNING
        return self._end(End(ends.TOKEN_FAILED, f"no ephemeral key ({ev.code}): {ev.message}", level))

    def _on_SocketOpened(self, ev: m.SocketOpened) -> list:
        if self.phase != CONNECTING:
            return []
        self.phase = ACTIVE
        self.opened_s = self.now_s
        # the audio kept while connecting goes out after session.update (and carried turns), before a pending commit
        self.route = self.mic_route()
        actions: list = [m.Note("connected", "connected to the Realtime session"),
                         self._event("session.update", session=self.s.session), *self._carry_over(),
                         m.RouteMic(self.route)]
        if self.pending_commit:
            actions += self._manual_turn_end() + self._pushed()
        self.pending_commit = False
        return actions + self._announcement_opened()

    def _on_SocketClosed(self, ev: m.SocketClosed) -> list:
        if self.phase == CONNECTING:
            return self._end(ends.connect_failed(ev.reason or "the server closed the connection"))
        if self.phase != ACTIVE:
            return []
        return self._rolled_at_cap(ev) or self._finish_session(ends.server_closed(ev.code, ev.reason))

    def _on_AudioFailed(self, ev: m.AudioFailed) -> list:
        if self.phase == IDLE:
            return []
        if ev.stopped:   # it worked at the press and died since (unplugged mid-reply): the next press may work
            end = End(ends.AUDIO_FAILED, ev.reason, ends.WARNING)
            if ev.device == "mic" and self.phase == ACTIVE:
                return self._finish_session(end)   # the speaker still works: the reply that arrived is heard
            return self._end(end)
        return self._end(End(ends.AUDIO_FAILED, f"audio device error: {ev.reason}", ends.ERROR))

    # ---- local audio --------------------------------------------------------------

    def _on_SpeechStarted(self, ev: m.SpeechStarted) -> list:
        if self.phase == IDLE:
            return []
        self.user_speaking = True
        self.last_activity_s = self.now_s
        self.turn_cued = False   # a new turn: its end gets the thinking earcon
        return [m.Note("local_speech_start", "speech started (local gate)")]

    def _on_SpeechEnded(self, ev: m.SpeechEnded) -> list:
        if self.phase == IDLE:
            return []
        self.user_speaking = False
        self.last_activity_s = self.now_s
        actions: list = [m.Note("local_speech_stop", "speech ended (local gate)" if ev.voiced
                                else "gate closed: nothing was said after the press")]
        if self.push_to_talk:   # the release ends the turn (controller_buttons.py)
            return actions + self._push_speech_ended(ev)
        if self.s.manual_turns and ev.voiced and not (self.s.half_duplex and self.playing):
            if self.phase == CONNECTING:
                self.pending_commit = True
            elif self.phase == ACTIVE:
                actions += self._manual_turn_end()
            actions += self._turn_ended_cue()
        return actions

    # ---- timers -------------------------------------------------------------------

    def _on_Tick(self, ev: m.Tick) -> list:
        if self.phase == IDLE:
            return []
        if (capped := self._capped()) is not None:   # max_duration_s: end, or roll over (controller_rollover.py)
            return capped
        if self.phase == CONNECTING:
            if self.now_s - self.started_s >= self.s.connect_timeout_s:
                return self._end(End(ends.CONNECT_TIMEOUT,
                                     f"could not connect within {self.s.connect_timeout_s:.0f} s", ends.ERROR))
            if self.token_retry_at_s is not None and self.now_s >= self.token_retry_at_s:
                self.token_retry_at_s = None
                return [m.RequestToken()]
            return []
        if self.phase == DRAINING:
            return self._drain_overdue()
        if not self.acknowledged and self.now_s - self.opened_s >= self.s.connect_timeout_s:
            return self._end(End(ends.NOT_ACKNOWLEDGED, "server did not acknowledge the session within "
                                 f"{self.s.connect_timeout_s:.0f} s", ends.WARNING))
        expired = self._ask_expired() or self._final_transcript_overdue() or self._push_overdue()
        if expired:
            return expired
        if self.response_id is not None and self.now_s - self.last_reply_event_s >= self.s.reply_stall_s:
            return self._finish_session(End(ends.STALLED, "server stopped answering mid-reply "
                                            f"(nothing for {self.s.reply_stall_s:.0f} s)", ends.WARNING))
        busy = (self.playing or self.response_id is not None or self.user_speaking or self.tools_busy
                or self.asking is not None)
        # an unacknowledged session ends as such (above), never as "idle", whichever deadline a tick sees first
        if not busy and self.acknowledged and self.now_s - self.last_activity_s >= self.s.idle_timeout_s:
            return self._end(End(ends.IDLE, f"no speech for {self.s.idle_timeout_s:.0f} s"))
        return []

    def _on_Shutdown(self, ev: m.Shutdown) -> list:
        return self._end(End(ends.SHUTDOWN, "daemon stopping")) if self.phase != IDLE else []
