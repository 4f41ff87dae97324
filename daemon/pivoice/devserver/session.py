"""One Realtime WebSocket session: config, input audio buffer, turn detection, conversation, responses.

`handle()` takes one client event that already passed SDK validation and emits
server events through `emit` (a queue drained by the socket's sender task).
Everything runs on the ASGI event loop: the socket's receive task, response
tasks and loop timers (idle timeout); no locks needed.
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Callable

from pivoice.audio import codec

from . import events, sessionconfig, transcription
from .conversation import Conversation
from .inputbuffer import InputBuffer
from .items import ItemHandlers
from .response import ReplySpec, ResponseRun
from .scriptflow import ScriptFlow
from .vad import TurnDetector

log = logging.getLogger(__name__)

MIN_COMMIT_MS = 100
MAX_APPEND_BYTES = 15 * 1024 * 1024  # reference §9


class RealtimeSession(ItemHandlers):
    def __init__(self, session_id: str, config: dict, expires_at_s: int, emit: Callable[[dict], None],
                 voice_source, audio_pace: float, loop_time: Callable[[], float], call_later,
                 transcript: str = transcription.DEFAULT_TRANSCRIPT, script_cursor=None) -> None:
        self.id, self.config, self.expires_at_s = session_id, config, expires_at_s
        self._emit, self._voice, self._pace = emit, voice_source, audio_pace
        self._time, self._call_later = loop_time, call_later
        self.conversation = Conversation()
        self.conversation_id = events.new_id("conv_")
        self.buffer = InputBuffer(sessionconfig.input_format(config))
        self.active: ResponseRun | None = None  # the response writing to the default conversation
        self.out_of_band: set[ResponseRun] = set()
        self.responses: dict[str, ResponseRun] = {}  # assistant item id -> its response, for truncate
        self.audio_was_output = False
        self._detector: TurnDetector | None = None
        self._speech_item_id: str | None = None
        self._speech_start_ms = 0
        self._last_heard_s = 0.0
        self._last_user_pcm16 = b""
        self._idle_handle = None
        self.transcriber = transcription.Transcriber(emit, transcript)  # acts in transcription sessions only
        self.flow = ScriptFlow(script_cursor, lambda: self.config.get("tools") or [])  # --script turns
        self._reset_detector()

    # ---- lifecycle
    def start(self) -> None:
        self._emit(events.event("session.created", session=self._wire()))
        self.flow.list_new_servers(self._emit, self.conversation)
        self._arm_idle(0.0)

    async def aclose(self) -> None:
        if self._idle_handle is not None:
            self._idle_handle.cancel()
        await self.transcriber.aclose()
        for run in [r for r in [self.active, *self.out_of_band] if r is not None]:
            await run.aclose()

    def handle(self, event: dict) -> None:
        handler = getattr(self, "_on_" + event["type"].replace(".", "_"))
        handler(event)

    def _error(self, event: dict, message: str, code: str, param: str | None = None) -> None:
        self._emit(events.error(message, code, param, event.get("event_id")))

    def _wire(self) -> dict:
        return sessionconfig.wire_session(self.config, self.id, self.expires_at_s)

    # ---- session
    def _on_session_update(self, event: dict) -> None:
        update = event["session"]
        try:
            if update.get("type") != self.config["type"]:
                new = transcription.switch_type(update, transcription.session_started(self), self.config["type"])
            else:
                new = sessionconfig.merge(self.config, update, self.audio_was_output)
        except sessionconfig.ConfigRejected as exc:
            self._error(event, str(exc), exc.code, exc.param)
            return
        old_in = self.config["audio"]["input"]
        self.config = new
        if new["audio"]["input"]["format"] != old_in["format"]:
            self.buffer.set_format(sessionconfig.input_format(new))
        if new["audio"]["input"]["turn_detection"] != old_in["turn_detection"]:
            self._reset_detector()
            self._arm_idle(0.0)
        self._emit(events.event("session.updated", session=self._wire()))
        self.flow.list_new_servers(self._emit, self.conversation)

    def _turn_detection(self) -> dict | None:
        return self.config["audio"]["input"]["turn_detection"]

    def _reset_detector(self) -> None:
        td = self._turn_detection()
        fmt = self.buffer.format
        self._detector = None if td is None else TurnDetector(td, codec.wire_rate_hz(fmt), self.buffer.total_ms)
        self._speech_item_id = None

    # ---- input audio buffer
    def _on_input_audio_buffer_append(self, event: dict) -> None:
        try:
            wire = base64.b64decode(event["audio"], validate=True)
        except (binascii.Error, ValueError):
            self._error(event, "Invalid 'audio': the value is not valid base64.", "invalid_value", "audio")
            return
        if len(wire) > MAX_APPEND_BYTES:
            self._error(event, f"Invalid 'audio': {len(wire)} bytes exceeds the 15 MiB limit per append event.",
                        "invalid_value", "audio")
            return
        pcm16 = self.buffer.append(wire)
        if self._detector is None:
            return
        for kind, ms in self._detector.feed(pcm16):
            if kind == "speech_started":
                self._speech_started(ms)
            else:
                self._speech_stopped(ms)

    def _speech_started(self, audio_start_ms: int) -> None:
        self._speech_item_id = events.new_id("item_")
        self._speech_start_ms = audio_start_ms
        self._disarm_idle()
        self._emit(events.event("input_audio_buffer.speech_started", audio_start_ms=audio_start_ms,
                                item_id=self._speech_item_id))
        td = self._turn_detection()
        if td.get("interrupt_response") and self.active is not None:
            self.active.cancel("turn_detected")

    def _speech_stopped(self, audio_end_ms: int) -> None:
        item_id = self._speech_item_id or events.new_id("item_")
        self._speech_item_id = None
        self._emit(events.event("input_audio_buffer.speech_stopped", audio_end_ms=audio_end_ms, item_id=item_id))
        # audio before the speech (and its prefix padding) is not part of the user's turn
        self._commit(item_id, up_to_ms=audio_end_ms, from_ms=self._speech_start_ms)
        self._auto_respond()

    def _on_input_audio_buffer_commit(self, event: dict) -> None:
        held_ms = self.buffer.held_ms
        if held_ms < MIN_COMMIT_MS:
            self._error(event, "Error committing input audio buffer: buffer too small. Expected at least 100ms of "
                        f"audio, but buffer only has {held_ms:.2f}ms of audio.", "input_audio_buffer_commit_empty")
            return
        item_id = self._speech_item_id or events.new_id("item_")
        self._speech_item_id = None
        if self._detector is not None:
            self._reset_detector()
        # a manual commit only adds the user item (reference §3); the client asks for the response
        self._commit(item_id)

    def _on_input_audio_buffer_clear(self, event: dict) -> None:
        self.buffer.clear()
        if self._detector is not None:
            self._reset_detector()
        self._emit(events.event("input_audio_buffer.cleared"))

    def _commit(self, item_id: str, up_to_ms: float | None = None, from_ms: float | None = None) -> None:
        wire = self.buffer.take(up_to_ms, from_ms)
        self._last_user_pcm16 = codec.decode(self.buffer.format, wire)
        self._last_heard_s = len(wire) / codec.bytes_per_ms(self.buffer.format) / 1000
        item = {"id": item_id, "object": "realtime.item", "type": "message", "role": "user", "status": "completed",
                # no ASR here: the transcript stays null and no transcription events are invented
                "content": [{"type": "input_audio", "transcript": None, "audio": base64.b64encode(wire).decode()}]}
        previous = self.conversation.add(item)
        self._emit(events.event("input_audio_buffer.committed", previous_item_id=previous, item_id=item_id))
        self._emit(events.event("conversation.item.added", previous_item_id=previous, item=events.strip_audio(item)))
        self._emit(events.event("conversation.item.done", previous_item_id=previous, item=events.strip_audio(item)))
        self.transcriber.committed(self.config, item, self._last_user_pcm16, self._last_heard_s)

    def _auto_respond(self) -> None:
        if transcription.is_transcription(self.config):
            return  # a transcription session never responds
        td = self._turn_detection()
        if td is not None and not td.get("create_response", True):
            self._arm_idle(0.0)
            return
        if self.active is not None:
            log.info("session %s: turn ended while a response is active; not starting another", self.id)
            return
        self._start_response({}, True, "turn")

    # ---- idle timeout (server_vad.idle_timeout_ms), measured in wall time like the real API
    def _arm_idle(self, extra_delay_s: float) -> None:
        self._disarm_idle()
        td = self._turn_detection()
        if td and td["type"] == "server_vad" and td.get("idle_timeout_ms"):
            self._idle_handle = self._call_later(extra_delay_s + td["idle_timeout_ms"] / 1000, self._idle_fired)

    def _disarm_idle(self) -> None:
        if self._idle_handle is not None:
            self._idle_handle.cancel()
            self._idle_handle = None

    def _idle_fired(self) -> None:
        self._idle_handle = None
        if self.active is not None or (self._detector is not None and self._detector.in_speech):
            return
        if transcription.is_transcription(self.config):
            return  # nothing to prompt: a transcription session never responds
        item_id = events.new_id("item_")
        self._emit(events.event("input_audio_buffer.timeout_triggered", audio_start_ms=int(self.buffer.start_ms),
                                audio_end_ms=int(self.buffer.total_ms), item_id=item_id))
        self._commit(item_id)
        self._start_response({}, True, "turn")

    # ---- responses
    def _on_response_create(self, event: dict) -> None:
        if transcription.is_transcription(self.config):
            self._error(event, transcription.RESPONSE_CREATE_MESSAGE, transcription.RESPONSE_CREATE_CODE, "type")
            return
        params = event.get("response") or {}
        in_conversation = params.get("conversation", "auto") != "none"
        if in_conversation and self.active is not None:
            self._error(event, f"Conversation already has an active response in progress: {self.active.id}. "
                        "Wait until the response is finished before creating a new one.",
                        "conversation_already_has_active_response")
            return
        modalities = params.get("output_modalities")
        if modalities is not None and len(modalities) != 1:
            self._error(event, "output_modalities must be ['audio'] or ['text']; both at once are not supported.",
                        "invalid_value", "response.output_modalities")
            return
        self._start_response(params, in_conversation)

    def _start_response(self, params: dict, in_conversation: bool, trigger: str = "create", plan=None) -> None:
        self._disarm_idle()
        out = self.config["audio"]["output"]
        override = (params.get("audio") or {}).get("output") or {}
        fmt = (override.get("format") or {}).get("type") or sessionconfig.output_format(self.config)
        heard_s = self._last_heard_s
        if plan is None and in_conversation:
            plan = self.flow.plan(trigger)  # a scripted turn or a tool follow-up (scriptflow.py), or None
        spec = ReplySpec(
            output_modalities=params.get("output_modalities") or self.config["output_modalities"],
            output_format=fmt or codec.PCM, voice=_voice_name(override.get("voice") or out["voice"]), speed=out["speed"],
            max_output_tokens=params.get("max_output_tokens", self.config["max_output_tokens"]),
            metadata=params.get("metadata"), in_conversation=in_conversation, heard_s=heard_s,
            input_audio_tokens=round(heard_s * 10), user_pcm16=self._last_user_pcm16,
            user_rate_hz=codec.wire_rate_hz(self.buffer.format), extra={"conversation_id": self.conversation_id},
            speak=plan is None or plan.text is not None, tool_step=plan and plan.step)
        run = ResponseRun(spec, self._emit, self.conversation, self.flow.voice(plan, self._voice), self._pace,
                          self._response_finished)
        if in_conversation:
            self.active = run
        else:
            self.out_of_band.add(run)
        run.start()

    def _response_finished(self, run: ResponseRun) -> None:
        if run.item is not None:
            self.responses[run.item["id"]] = run
        self.audio_was_output = self.audio_was_output or run.audio_ms_sent > 0
        if self.active is run:
            self.active = None
            # the idle timer starts once the client has played the reply (reference: response.done + playback)
            played_s = 0.0 if run.first_audio_monotonic_s is None else self._time() - run.first_audio_monotonic_s
            self._arm_idle(max(0.0, run.audio_ms_sent / 1000 - played_s))
        self.out_of_band.discard(run)

    def _on_response_cancel(self, event: dict) -> None:
        wanted = event.get("response_id")
        runs = [r for r in [self.active, *self.out_of_band] if r is not None and (wanted is None or r.id == wanted)]
        if not runs:
            self._error(event, "Cancellation failed: no active response found", "response_cancel_not_active")
            return
        runs[0].cancel("client_cancelled")

    def _on_output_audio_buffer_clear(self, event: dict) -> None:
        self._error(event, "output_audio_buffer.clear is only supported for WebRTC and SIP connections.",
                    "invalid_event")



def _voice_name(voice: object) -> object:
    # a response reports a custom voice by its id string (RealtimeResponse has no voice object)
    return voice.get("id") if isinstance(voice, dict) else voice
