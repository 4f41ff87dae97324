"""The reply half of the controller: server events, reply audio, playback, and how a session that
stops (closed by the server, or stalled mid-reply) still plays out what already arrived.

A mixin of `controller.Controller` (it shares its state and `_end`); split out along the seam
between "the conversation" and "the reply". Called from the controller thread only.
"""

from __future__ import annotations

from pivoice import ends
from pivoice import messages as m
from pivoice.audio import codec
from pivoice.ends import End
from pivoice.narration import error_note, note_for

IDLE, CONNECTING, ACTIVE = "idle", "connecting", "active"
DRAINING = "draining"   # the session is gone; the reply audio that arrived is still playing out
# Playing out after a close may take as long as the audio received, plus priming and device latency.
DRAIN_SLACK_S = 2.0


class ReplyRules:
    def _reset_reply(self) -> None:
        self.response_id: str | None = None
        self.cancelled: set[str] = set()
        self.playing = False
        self.drained = True
        self.reply_item: tuple[str, int] | None = None
        self.reply_received_ms = 0.0
        self.reply_complete = False     # response.done arrived for the reply being played
        self.reply_flushed = False      # FinishReply was sent for the reply being played
        self.last_reply_event_s = self.now_s
        self.stop_reason: str | None = None
        self.closing: End | None = None    # DRAINING: how the conversation ends once the audio is out
        self.drain_deadline_s = self.now_s
        self.warned_bad_audio = False
        self.turn_cued = False          # the thinking earcon of this user turn has played

    # ---- earcons (earcons.py) --------------------------------------------------------------

    def _cue(self, cue: str) -> list:
        """An earcon, if that cue is on: never over a reply (it would queue into it) nor in a
        session of our own for a timer."""
        if cue not in self.s.cues.enabled or self.playing or self.announcing is not None:
            return []
        return [m.Earcon(cue)]

    def _turn_ended_cue(self) -> list:
        """Thinking: once per user turn, at whichever comes first of our commit and the server's
        speech_stopped/committed."""
        if self.turn_cued:
            return []
        self.turn_cued = True
        return self._cue("thinking")

    def _end_cue(self, end: End) -> list:
        """After CloseAudio: ended, or error when the end was not the user's choice."""
        if end.code == ends.SHUTDOWN or (self.announcing is not None and end.level == ends.INFO):
            return []
        cue = "ended" if end.level == ends.INFO else "error"
        return [m.Earcon(cue)] if cue in self.s.cues.enabled else []

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
        actions += self._cancel_tools()
        actions.append(m.Note("interrupted", f"reply interrupted by {reason}"))
        return actions

    # ---- the session stops under a reply ----------------------------------------------

    def _finish_session(self, end: End) -> list:
        """The session is over (closed, or stalled): play out the reply audio already queued, then end."""
        cut = self.response_id is not None
        if cut:
            end = end.cut_off(self.reply_received_ms)
        if not self.playing or self.drained:
            return self._end(end)
        actions: list = [m.Disconnect(end.reason)]   # only the speaker is left to wait for
        if not self.reply_flushed:
            self.reply_flushed = True
            actions.append(m.FinishReply())
        self.phase, self.response_id = DRAINING, None
        self.closing = end.but("; what arrived was played" if cut else "; reply played out")
        self.drain_deadline_s = self.now_s + self.reply_received_ms / 1000 + DRAIN_SLACK_S
        actions.append(m.Note("draining", f"{end.reason}; playing out the {self.reply_received_ms:.0f} ms "
                                          "of reply audio received"))
        return actions

    def _drain_overdue(self) -> list:
        if self.now_s < self.drain_deadline_s:
            return []
        return self._end(self.closing.but("; playout did not finish", ends.WARNING))

    # ---- reply audio and playback -------------------------------------------------------

    def _on_AudioDelta(self, ev: m.AudioDelta) -> list:
        if self.phase != ACTIVE:
            return []
        self.last_reply_event_s = self.now_s
        if ev.response_id in self.cancelled:
            return []
        if len(ev.payload) % (2 if self.s.output_format == codec.PCM else 1):
            # a half sample would shift every later sample into noise; the speaker path cannot take it
            if self.warned_bad_audio:
                return []
            self.warned_bad_audio = True
            return [m.Note("bad_event", f"server event response.output_audio.delta dropped: delta has "
                                        f"{len(ev.payload)} bytes, not whole {self.s.output_format} samples "
                                        "(further ones this conversation: dropped silently)", "warning")]
        actions: list = []
        if not self.playing:
            self.playing = True
            self.reply_item = (ev.item_id, ev.content_index)
            self.reply_received_ms = 0.0
            self.reply_complete = self.reply_flushed = False
            actions += [m.BeginReply(), m.Note("reply_audio", "reply audio started")]
        self.drained = False
        self.reply_received_ms += len(ev.payload) / codec.bytes_per_ms(self.s.output_format)
        actions.append(m.Play(ev.payload))
        return actions

    def _on_PlayedDelta(self, ev: m.PlayedDelta) -> list:
        """A delta of the routed reply, already played by the socket's reader thread: count it."""
        if self.phase != ACTIVE or not self.playing:
            return []
        self.last_reply_event_s = self.now_s
        self.drained = False
        self.reply_received_ms += ev.duration_ms
        return []

    def _on_PlaybackDrained(self, ev: m.PlaybackDrained) -> list:
        self.drained = True
        if self.phase == DRAINING:
            self.playing = False
            return self._end(self.closing)
        if self.playing and self.response_id is None:
            return self._reply_finished()
        return []

    def _reply_finished(self) -> list:
        self.playing = False
        self.last_activity_s = self.now_s
        self._question_heard()
        return [m.Note("reply_played", f"reply played ({self.reply_received_ms:.0f} ms of audio)"),
                *self._end_if_asked(), *self._announcement_heard(), *self._one_shot_answered()]

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

    # ---- server events (fields checked by realtime.events) ------------------------------

    def _on_ServerEvent(self, ev: m.ServerEvent) -> list:
        if self.phase != ACTIVE:
            return []
        d, kind = ev.data, ev.type
        self.last_reply_event_s = self.now_s   # any event shows the server is still working on a reply
        self._remember_turn(kind, d)           # what a new session would need (controller_rollover.py)
        if kind in ("session.created", "session.updated"):
            self.acknowledged = True
        if kind in ("input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped"):
            self.last_activity_s = self.now_s
        if kind == "input_audio_buffer.speech_started":
            self.turn_cued = False
        cue = self._turn_ended_cue() if kind in ("input_audio_buffer.speech_stopped",
                                                 "input_audio_buffer.committed") else []
        if kind == "input_audio_buffer.speech_started" and self.playing and not self.s.half_duplex:
            return [note_for(kind, d)] + self._interrupt("voice")
        if kind == "response.created":
            self.response_id = (d.get("response") or {}).get("id")
            self._response_started()
            self._question_started()
        elif kind == "response.function_call_arguments.done":
            return self._start_call(d)
        elif kind == "conversation.item.done":
            return self._on_item_done(d.get("item") or {})
        elif kind == "mcp_list_tools.failed":
            return [m.Note("mcp_failed", "an MCP server's tools could not be listed (mcp_list_tools.failed): "
                                         "its tools are unavailable this session", "warning")]
        elif kind == "response.output_text.done" and d.get("text"):
            return [note_for(kind, d), m.RecordText("reply_text", d["text"])]
        elif kind == "response.output_audio_transcript.done" and d.get("transcript"):
            # what was said aloud, for the transcript log and MQTT's last-reply sensor
            return [note_for(kind, d), m.RecordText("reply_text", d["transcript"])] + cue
        elif kind == "conversation.item.input_audio_transcription.completed":
            self.last_activity_s = self.now_s
            recorded = [note_for(kind, d), m.RecordText("dictation" if self.s.dictation else "user_transcript",
                                                        d["transcript"])] if d.get("transcript") else []
            return recorded + self._transcribed()
        elif kind == "conversation.item.input_audio_transcription.delta":
            return self._transcription_delta(d.get("delta") or "")
        elif kind == "conversation.item.input_audio_transcription.failed":
            return self._transcription_failed(d.get("error") or {})
        elif kind == "response.done":
            return self._on_response_done(d.get("response") or {})
        elif kind == "error":
            return [error_note(d.get("error") or {})]
        elif kind == "response.output_audio.done" and self.playing and d.get("response_id") not in self.cancelled:
            self.reply_flushed = True
            return [m.FinishReply()]
        note = note_for(kind, d)
        return ([note] if note else []) + cue

    def _on_response_done(self, response: dict) -> list:
        if response.get("id") in (self.response_id, None):
            self.response_id = None
            self.reply_complete = True
        self.last_activity_s = self.now_s
        usage = response.get("usage") or {}
        tokens = usage.get("output_tokens")
        actions: list = [m.Note("response_done", f"response {response.get('status') or '?'} "
                                f"({'?' if tokens is None else tokens} output tokens)")]
        actions += self._calls_done(response) + self._mcp_followup(response) + self._say_owed()
        if self.playing and self.drained:
            actions += self._reply_finished()
        self._question_heard()
        return actions + self._end_if_asked() + self._announcement_heard() + self._one_shot_answered(text_reply=True)
