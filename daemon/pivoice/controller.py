"""The conversation state machine: `handle(event, now_s) -> actions`, no I/O.

Only the controller thread calls it. Every edge (button, mic, socket, speaker,
token refresh) reaches it as a queued event; everything it wants done comes
back as actions for the runtime to execute. That keeps the rules of a
conversation in one place and testable as tables of events in, actions out.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from pivoice import messages as m
from pivoice.audio import codec
from pivoice.narration import error_note, note_for

IDLE, CONNECTING, ACTIVE = "idle", "connecting", "active"
# Before the socket opens we keep the audio; past this much we drop the oldest (the press was long ago).
MAX_PENDING_MS = 30_000
TOKEN_RETRY_S = 1.0


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
    connect_timeout_s: float


class Controller:
    """Owns conversation state. Called from the controller thread only."""

    def __init__(self, settings: Settings):
        self.s = settings
        self._ids = itertools.count(1)
        self._reset()

    def handle(self, event: object, now_s: float) -> list:
        self.now_s = now_s
        handler = getattr(self, "_on_" + type(event).__name__, None)
        return handler(event) if handler else []

    def snapshot(self) -> dict:
        return {
            "state": self.phase,
            "conversation_s": round(self.now_s - self.started_s, 1) if self.phase != IDLE else None,
            "response_active": self.response_id is not None,
            "playing": self.playing,
            "user_speaking": self.user_speaking,
            "last_end_reason": self.last_end_reason,
        }

    def _reset(self) -> None:
        self.phase = IDLE
        self.now_s = getattr(self, "now_s", 0.0)
        self.started_s = self.last_activity_s = self.now_s
        self.pending: list[m.Chunk] = []
        self.pending_ms = 0.0
        self.pending_commit = False
        self.token_retry_at_s: float | None = None
        self.dialing = False            # a key arrived and Connect was issued; later token answers are stale
        self.response_id: str | None = None
        self.cancelled: set[str] = set()
        self.playing = False
        self.drained = True
        self.reply_item: tuple[str, int] | None = None
        self.reply_received_ms = 0.0
        self.reply_complete = False     # response.done arrived for the reply being played
        self.stop_reason: str | None = None
        self.user_speaking = False
        self.last_end_reason = getattr(self, "last_end_reason", None)

    def _event(self, type_: str, **fields) -> m.Send:
        return m.Send({"type": type_, "event_id": f"evt_pv_{next(self._ids)}", **fields})

    def _end(self, reason: str, level: str = "info") -> list:
        actions: list = []
        if self.playing:
            actions.append(m.StopPlayback())
        if self.phase != IDLE:
            actions.append(m.Disconnect(reason))
        actions += [m.CloseAudio(), m.Note("ended", f"conversation ended: {reason}", level)]
        self.last_end_reason = reason
        self._reset()
        return actions

    def _manual_turn_end(self) -> list:
        # With turn_detection null nobody else closes the turn: commit and ask for the answer ourselves.
        return [self._event("input_audio_buffer.commit"), self._event("response.create")]

    def _interrupt(self, reason: str) -> list:
        actions: list = []
        if self.response_id is not None:
            self.cancelled.add(self.response_id)
            if reason == "button" or not self.s.interrupt_response:
                actions.append(self._event("response.cancel", response_id=self.response_id))
            self.response_id = None   # from here on we are listening: the next press ends the conversation
        if self.playing:
            self.stop_reason = reason
            actions.insert(0, m.StopPlayback())
        actions.append(m.Note("interrupted", f"reply interrupted by {reason}"))
        return actions

    # ---- button -----------------------------------------------------------------

    def _on_Press(self, ev: m.Press) -> list:
        if self.phase == IDLE:
            self.phase = CONNECTING
            self.started_s = self.last_activity_s = self.now_s
            # The key request goes first so the socket dials while the audio devices open.
            return [m.Note("pressed", f"pressed ({ev.source}): starting a conversation"),
                    m.RequestToken(), m.OpenAudio()]
        if self.phase == CONNECTING:
            return self._end("cancelled by a press while connecting")
        if self.playing or self.response_id is not None:
            return self._interrupt("button")
        return self._end("ended by a press")

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
        return self._end(f"no ephemeral key ({ev.code}): {ev.message}", "error")

    def _on_SocketOpened(self, ev: m.SocketOpened) -> list:
        if self.phase != CONNECTING:
            return []
        self.phase = ACTIVE
        actions: list = [m.Note("connected", "connected to the Realtime session"),
                         self._event("session.update", session=self.s.session)]
        actions += [m.SendAudio(c.payload) for c in self.pending]
        if self.pending:
            actions.append(m.Note("flushed", f"sent {self.pending_ms:.0f} ms captured while connecting"))
        if self.pending_commit:
            actions += self._manual_turn_end()
        self.pending, self.pending_ms, self.pending_commit = [], 0.0, False
        return actions

    def _on_SocketClosed(self, ev: m.SocketClosed) -> list:
        if self.phase == IDLE:
            return []
        detail = f" (code {ev.code})" if ev.code is not None else ""
        level = "info" if ev.code in (1000, None) and self.phase == ACTIVE else "error"
        return self._end(f"server closed the connection{detail}: {ev.reason or 'no reason given'}", level)

    def _on_AudioFailed(self, ev: m.AudioFailed) -> list:
        return self._end(f"audio device error: {ev.reason}", "error") if self.phase != IDLE else []

    # ---- local audio --------------------------------------------------------------

    def _on_Chunk(self, ev: m.Chunk) -> list:
        if self.phase == CONNECTING:
            self.pending.append(ev)
            self.pending_ms += ev.duration_ms
            while self.pending_ms > MAX_PENDING_MS:
                self.pending_ms -= self.pending.pop(0).duration_ms
            return []
        if self.phase != ACTIVE:
            return []
        if self.s.half_duplex and self.playing:
            return []   # muted: the mic would send the reply back to the server
        return [m.SendAudio(ev.payload)]

    def _on_SpeechStarted(self, ev: m.SpeechStarted) -> list:
        if self.phase == IDLE:
            return []
        self.user_speaking = True
        self.last_activity_s = self.now_s
        return [m.Note("local_speech_start", "speech started (local gate)")]

    def _on_SpeechEnded(self, ev: m.SpeechEnded) -> list:
        if self.phase == IDLE:
            return []
        self.user_speaking = False
        self.last_activity_s = self.now_s
        actions: list = [m.Note("local_speech_stop", "speech ended (local gate)" if ev.voiced
                                else "gate closed: nothing was said after the press")]
        if self.s.manual_turns and ev.voiced and not (self.s.half_duplex and self.playing):
            if self.phase == CONNECTING:
                self.pending_commit = True
            else:
                actions += self._manual_turn_end()
        return actions

    # ---- playback -----------------------------------------------------------------

    def _on_AudioDelta(self, ev: m.AudioDelta) -> list:
        if self.phase != ACTIVE or ev.response_id in self.cancelled:
            return []
        actions: list = []
        if not self.playing:
            self.playing = True
            self.reply_item = (ev.item_id, ev.content_index)
            self.reply_received_ms = 0.0
            self.reply_complete = False
            actions += [m.BeginReply(), m.Note("reply_audio", "reply audio started")]
        self.drained = False
        self.reply_received_ms += len(ev.payload) / codec.bytes_per_ms(self.s.output_format)
        actions.append(m.Play(ev.payload))
        return actions

    def _on_PlaybackDrained(self, ev: m.PlaybackDrained) -> list:
        self.drained = True
        if self.playing and self.response_id is None:
            return self._reply_finished()
        return []

    def _reply_finished(self) -> list:
        self.playing = False
        self.last_activity_s = self.now_s
        return [m.Note("reply_played", f"reply played ({self.reply_received_ms:.0f} ms of audio)")]

    def _on_PlaybackStopped(self, ev: m.PlaybackStopped) -> list:
        if self.phase != ACTIVE or not self.playing or self.reply_item is None:
            return []
        self.playing = False
        self.last_activity_s = self.now_s
        audio_end_ms = int(min(ev.played_ms, self.reply_received_ms))
        item_id, content_index = self.reply_item
        note = m.Note("truncated", f"reply stopped after {audio_end_ms} ms ({self.stop_reason})")
        if self.reply_complete and audio_end_ms >= int(self.reply_received_ms):
            return [note]   # the whole reply arrived and was heard: nothing to truncate
        return [self._event("conversation.item.truncate", item_id=item_id, content_index=content_index,
                            audio_end_ms=audio_end_ms), note]

    # ---- server events ------------------------------------------------------------

    def _on_ServerEvent(self, ev: m.ServerEvent) -> list:
        if self.phase != ACTIVE:
            return []
        d, kind = ev.data, ev.type
        if kind in ("input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped"):
            self.last_activity_s = self.now_s
        if kind == "input_audio_buffer.speech_started" and self.playing and not self.s.half_duplex:
            return [note_for(kind, d)] + self._interrupt("voice")
        if kind == "response.created":
            self.response_id = (d.get("response") or {}).get("id")
        elif kind == "response.done":
            return self._on_response_done(d.get("response") or {})
        elif kind == "error":
            return [error_note(d.get("error") or {})]
        elif kind == "response.output_audio.done" and self.playing and d.get("response_id") not in self.cancelled:
            return [m.FinishReply()]
        note = note_for(kind, d)
        return [note] if note else []

    def _on_response_done(self, response: dict) -> list:
        if response.get("id") in (self.response_id, None):
            self.response_id = None
            self.reply_complete = True
        self.last_activity_s = self.now_s
        usage = response.get("usage") or {}
        actions: list = [m.Note("response_done", f"response {response.get('status', '?')} "
                                f"({usage.get('output_tokens', '?')} output tokens)")]
        if self.playing and self.drained:
            actions += self._reply_finished()
        return actions

    # ---- timers -------------------------------------------------------------------

    def _on_Tick(self, ev: m.Tick) -> list:
        if self.phase == IDLE:
            return []
        if self.now_s - self.started_s >= self.s.max_duration_s:
            return self._end(f"maximum conversation length ({self.s.max_duration_s:.0f} s) reached")
        if self.phase == CONNECTING:
            if self.now_s - self.started_s >= self.s.connect_timeout_s:
                return self._end(f"could not connect within {self.s.connect_timeout_s:.0f} s", "error")
            if self.token_retry_at_s is not None and self.now_s >= self.token_retry_at_s:
                self.token_retry_at_s = None
                return [m.RequestToken()]
            return []
        busy = self.playing or self.response_id is not None or self.user_speaking
        if not busy and self.now_s - self.last_activity_s >= self.s.idle_timeout_s:
            return self._end(f"no speech for {self.s.idle_timeout_s:.0f} s")
        return []

    def _on_Shutdown(self, ev: m.Shutdown) -> list:
        return self._end("daemon stopping") if self.phase != IDLE else []

