"""One model response: the full event sequence of reference §4, paced like the real API.

The generator runs as an asyncio task; `finish()` (completion, cancel,
interrupt, token limit) emits the closing `.done` events synchronously, so a
cancelled response is over before the next client event is handled. Runs on the
ASGI event loop only.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import soxr

from pivoice.audio import codec

from . import events
from .conversation import Conversation

log = logging.getLogger(__name__)

CHUNK_MS = 100
AUDIO_TOKENS_PER_S = 20  # rough: ~1 output token per 50 ms of audio
RATE_LIMIT_TOKENS = 40_000


@dataclass
class ReplySpec:
    output_modalities: list[str]
    output_format: str
    voice: object
    speed: float
    max_output_tokens: object
    metadata: dict | None
    in_conversation: bool
    heard_s: float
    input_audio_tokens: int
    user_pcm16: bytes = b""
    user_rate_hz: int = 24000
    extra: dict = field(default_factory=dict)
    speak: bool = True  # False: no assistant message, only the items of `tool_step`
    tool_step: Callable[["ResponseRun"], None] | None = None  # emits function/MCP items (tools.py)


class ResponseRun:
    def __init__(self, spec: ReplySpec, emit: Callable[[dict], None], conversation: Conversation, voice_source,
                 audio_pace: float, on_finished: Callable[["ResponseRun"], None]) -> None:
        self.spec, self._emit, self._conversation = spec, emit, conversation
        self._voice, self._pace, self._on_finished = voice_source, audio_pace, on_finished
        self.id = events.new_id("resp_")
        self.item: dict | None = None
        self.finished = False
        self.audio_ms_sent = 0
        self.audio_wire = bytearray()  # everything sent in output_audio.delta, for retrieve and truncate
        self.first_audio_monotonic_s: float | None = None
        self._text_sent = ""
        self._output_tokens = 0
        self._item_closed = False
        self.tool_items: list[dict] = []  # output items after the message, in output_index order
        self.tool_tokens = 0
        self._task: asyncio.Task | None = None

    @property
    def audio_mode(self) -> bool:
        return self.spec.output_modalities == ["audio"]

    def start(self) -> None:
        self._emit(events.event("response.created", response=self._response("in_progress", None)))
        self._emit(events.event("rate_limits.updated", rate_limits=[
            {"name": "requests", "limit": 5000, "remaining": 4999, "reset_seconds": 0.012},
            {"name": "tokens", "limit": RATE_LIMIT_TOKENS, "remaining": RATE_LIMIT_TOKENS - 4096,
             "reset_seconds": 6.144}]))
        self._task = asyncio.create_task(self._run(), name=f"devserver-{self.id}")

    def cancel(self, reason: str) -> None:
        self.finish("cancelled", reason)

    async def aclose(self) -> None:
        """Stop the generator without emitting anything (the socket is gone)."""
        self.finished = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        try:
            if self.spec.speak:
                text, pcm16, rate_hz = await self._voice.reply(
                    self.spec.heard_s, self.spec.user_pcm16, self.spec.user_rate_hz, self.spec.speed)
                if self.finished:
                    return
                self._open_item()
                if self.audio_mode:
                    await self._stream_audio(text, self._to_wire(pcm16, rate_hz))
                else:
                    await self._stream_text(text)
                if self.finished:
                    return
                self._close_item("completed")
            if self.spec.tool_step is not None:
                self.spec.tool_step(self)
            self.finish("completed", None)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a reply that cannot be produced ends as a failed response, not a dead socket
            log.exception("response %s failed", self.id)
            self.finish("failed", None, error={"type": "server_error", "code": "reply_failed", "message": str(exc)})

    def _to_wire(self, pcm16: bytes, rate_hz: int) -> bytes:
        wire_rate_hz = codec.wire_rate_hz(self.spec.output_format)
        if rate_hz != wire_rate_hz:
            samples = np.frombuffer(pcm16, dtype="<i2")
            pcm16 = soxr.resample(samples, rate_hz, wire_rate_hz).astype("<i2").tobytes()
        return codec.encode(self.spec.output_format, pcm16)

    def _open_item(self) -> None:
        self.item = {"id": events.new_id("item_"), "object": "realtime.item", "type": "message",
                     "role": "assistant", "status": "in_progress", "content": []}
        self._emit(self._ids_event("response.output_item.added", item=dict(self.item), with_item=False))
        if self.spec.in_conversation:
            previous = self._conversation.add(self.item)
            self._emit(events.event("conversation.item.added", previous_item_id=previous, item=dict(self.item)))
        part = {"type": "audio", "transcript": ""} if self.audio_mode else {"type": "text", "text": ""}
        self._emit(self._ids_event("response.content_part.added", part=part))

    async def _stream_audio(self, text: str, wire: bytes) -> None:
        chunk_bytes = int(codec.bytes_per_ms(self.spec.output_format) * CHUNK_MS)
        chunk_bytes -= chunk_bytes % 2 if self.spec.output_format == codec.PCM else 0
        chunks = [wire[i:i + chunk_bytes] for i in range(0, len(wire), chunk_bytes)]
        words = text.split(" ")
        self.item["content"] = [{"type": "output_audio", "transcript": "", "audio": ""}]
        loop = asyncio.get_running_loop()
        for index, chunk in enumerate(chunks):
            # words are spread evenly over the audio, transcript running just ahead of it
            lo, hi = index * len(words) // len(chunks), (index + 1) * len(words) // len(chunks)
            if hi > lo:
                delta = (" " if lo else "") + " ".join(words[lo:hi])
                self._text_sent += delta
                self._emit(self._ids_event("response.output_audio_transcript.delta", delta=delta))
            self._emit(self._ids_event("response.output_audio.delta", delta=base64.b64encode(chunk).decode()))
            if self.first_audio_monotonic_s is None:
                self.first_audio_monotonic_s = loop.time()
            self.audio_wire += chunk
            self.audio_ms_sent = round(len(self.audio_wire) / codec.bytes_per_ms(self.spec.output_format))
            self.item["content"][0]["transcript"] = self._text_sent
            self._output_tokens = math.ceil(self.audio_ms_sent / 1000 * AUDIO_TOKENS_PER_S)
            if self._over_token_limit():
                self.finish("incomplete", "max_output_tokens")
                return
            await asyncio.sleep(CHUNK_MS / 1000 / self._pace if self._pace > 0 else 0)
            if self.finished:
                return

    async def _stream_text(self, text: str) -> None:
        self.item["content"] = [{"type": "output_text", "text": ""}]
        for index, word in enumerate(text.split(" ")):
            delta = (" " if index else "") + word
            self._text_sent += delta
            self.item["content"][0]["text"] = self._text_sent
            self._emit(self._ids_event("response.output_text.delta", delta=delta))
            self._output_tokens += 1
            if self._over_token_limit():
                self.finish("incomplete", "max_output_tokens")
                return
            await asyncio.sleep(0.05 / self._pace if self._pace > 0 else 0)
            if self.finished:
                return

    def _over_token_limit(self) -> bool:
        limit = self.spec.max_output_tokens
        return isinstance(limit, int) and self._output_tokens >= limit

    def finish(self, status: str, reason: str | None, error: dict | None = None) -> None:
        """Emit the closing events once; also used for cancel and interruption (reference §4 note)."""
        if self.finished:
            return
        self.finished = True
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
        if self.item is not None and not self._item_closed:
            self._close_item(status)
        details = None if status == "completed" else {"type": status, "reason": reason, "error": error}
        self._emit(events.event("response.done", response=self._response(status, details)))
        self._on_finished(self)

    def _close_item(self, status: str) -> None:
        self._item_closed = True
        if self.audio_mode:
            self.item["content"][0]["audio"] = base64.b64encode(bytes(self.audio_wire)).decode()
            self._emit(self._ids_event("response.output_audio.done"))
            self._emit(self._ids_event("response.output_audio_transcript.done", transcript=self._text_sent))
            part = {"type": "audio", "transcript": self._text_sent}
        else:
            self._emit(self._ids_event("response.output_text.done", text=self._text_sent))
            part = {"type": "text", "text": self._text_sent}
        self._emit(self._ids_event("response.content_part.done", part=part))
        self.item["status"] = "completed" if status == "completed" else "incomplete"
        self._emit(self._ids_event("response.output_item.done", item=events.strip_audio(self.item), with_item=False))
        if self.spec.in_conversation:
            self._emit(events.event("conversation.item.done", item=events.strip_audio(self.item)))

    # ---- output items other than the message, used by tools.py (same task, no awaits in between)
    def emit_event(self, type_: str, **fields) -> None:
        self._emit(events.event(type_, **fields))

    def open_tool_item(self, item: dict) -> int:
        """Announce `item` (output_item.added + conversation.item.added); returns its output_index."""
        index = (0 if self.item is None else 1) + len(self.tool_items)
        self.tool_items.append(item)
        self.emit_event("response.output_item.added", response_id=self.id, output_index=index, item=dict(item))
        if self.spec.in_conversation:
            previous = self._conversation.add(item)
            self.emit_event("conversation.item.added", previous_item_id=previous, item=dict(item))
        return index

    def close_tool_item(self, item: dict, index: int) -> None:
        self.emit_event("response.output_item.done", response_id=self.id, output_index=index, item=dict(item))
        if self.spec.in_conversation:
            self.emit_event("conversation.item.done", item=dict(item))

    def _response(self, status: str, status_details: dict | None) -> dict:
        done = status != "in_progress"
        message = [events.strip_audio(self.item)] if self.item is not None else []
        output = message + [dict(item) for item in self.tool_items] if done else []
        text_tokens = (len(self._text_sent.split()) if self.audio_mode else self._output_tokens) + self.tool_tokens
        audio_tokens = self._output_tokens if self.audio_mode else 0
        usage = None if not done else {
            "total_tokens": self.spec.input_audio_tokens + text_tokens + audio_tokens,
            "input_tokens": self.spec.input_audio_tokens, "output_tokens": text_tokens + audio_tokens,
            "input_token_details": {"text_tokens": 0, "audio_tokens": self.spec.input_audio_tokens,
                                    "image_tokens": 0, "cached_tokens": 0,
                                    "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0}},
            "output_token_details": {"text_tokens": text_tokens, "audio_tokens": audio_tokens}}
        return {"object": "realtime.response", "id": self.id, "status": status, "status_details": status_details,
                "output": output, "conversation_id": self.spec.extra.get("conversation_id") if self.spec.in_conversation else None,
                "output_modalities": self.spec.output_modalities,
                "max_output_tokens": self.spec.max_output_tokens,
                "audio": {"output": {"format": _format_obj(self.spec.output_format), "voice": self.spec.voice}},
                "metadata": self.spec.metadata, "usage": usage}

    def _ids_event(self, type_: str, with_item: bool = True, **fields) -> dict:
        ids = {"response_id": self.id, "output_index": 0}
        if with_item:
            ids.update(item_id=self.item["id"], content_index=0)
        return events.event(type_, **ids, **fields)


def _format_obj(fmt: str) -> dict:
    return {"type": fmt, "rate": 24000} if fmt == codec.PCM else {"type": fmt}
