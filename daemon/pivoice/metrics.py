"""Latency and volume figures for `ctl status`, the bench and the fleet view.

A device runs for months: per-conversation lists would grow `ctl status` forever, so each
latency keeps a bounded window of recent values plus running summary figures.

The controller thread writes; `as_dict()` may be called from any thread (it copies first).
"""

from __future__ import annotations

import statistics
import threading
from collections import Counter, deque

from pivoice import messages as m
from pivoice.audio import codec

WINDOW = 100        # median and p95 are over the last WINDOW values
RECENT_SHOWN = 10   # the newest values listed as they are


class Latency:
    """One latency measured once per conversation (or per reply)."""

    def __init__(self, window: int = WINDOW) -> None:
        self._recent: deque[float] = deque(maxlen=window)
        self.count = 0
        self.max_ms: float | None = None

    def add(self, value_ms: float) -> None:
        self._recent.append(value_ms)
        self.count += 1
        self.max_ms = value_ms if self.max_ms is None else max(self.max_ms, value_ms)

    def as_dict(self) -> dict:
        recent = list(self._recent)
        if not recent:
            return {"count": 0, "recent_ms": [], "median_ms": None, "p95_ms": None, "max_ms": None}
        ordered = sorted(recent)
        p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
        return {"count": self.count, "recent_ms": [round(v, 1) for v in recent[-RECENT_SHOWN:]],
                "median_ms": round(statistics.median(recent), 1), "p95_ms": round(p95, 1),
                "max_ms": round(self.max_ms, 1)}


class Metrics:
    """The runtime reports what happened (controller thread); the latencies are worked out here."""

    def __init__(self, input_format: str = codec.PCM, output_format: str = codec.PCM) -> None:
        self.figures = Figures(input_format, output_format)   # usage, audio seconds, ends: per conversation
        self.press_at_s: float | None = None
        self.delta_at_s: float | None = None          # when the delta being handled arrived off the socket
        self._reply_delta_at_s: float | None = None   # ... the one that started the reply, until it is written
        self._device_delta_at_s: float | None = None  # ... until the audio thread released its first sample
        self.press_to_first_append = Latency()
        self.delta_to_speaker = Latency()   # first reply delta -> its first sample written to the speaker
        self.delta_to_device = Latency()    # ... -> released by the speaker's audio thread to the device
        self.raw_capture_bytes = 0
        self.wire_audio_bytes = 0
        self.conversations = 0

    def appended(self, payload_bytes: int, clock) -> None:
        if self.press_at_s is not None:
            value_ms = (clock() - self.press_at_s) * 1000
            self.press_to_first_append.add(value_ms)
            self.figures.first_append(value_ms)
            self.press_at_s = None
        self.wire_audio_bytes += payload_bytes
        self.figures.sent(payload_bytes)

    def reply_began(self) -> None:
        self._reply_delta_at_s = self._device_delta_at_s = self.delta_at_s

    def written_to_speaker(self, first_sample_at_s: float | None) -> None:
        if self._reply_delta_at_s is not None and first_sample_at_s is not None:
            self.delta_to_speaker.add((first_sample_at_s - self._reply_delta_at_s) * 1000)
            self.figures.first_reply_heard((first_sample_at_s - self._reply_delta_at_s) * 1000)
            self._reply_delta_at_s = None

    def reached_device(self, device_first_sample_at) -> None:
        """The audio thread stamps the first sample some ms after it was written: picked up once it has."""
        if self._device_delta_at_s is None:
            return
        device_at_s = device_first_sample_at()
        if device_at_s is not None:
            self.delta_to_device.add((device_at_s - self._device_delta_at_s) * 1000)
            self._device_delta_at_s = None

    def as_dict(self) -> dict:
        return {"press_to_first_append_ms": self.press_to_first_append.as_dict(),
                "delta_to_speaker_ms": self.delta_to_speaker.as_dict(),
                "delta_to_device_ms": self.delta_to_device.as_dict(),
                "raw_capture_bytes": self.raw_capture_bytes, "wire_audio_bytes": self.wire_audio_bytes,
                "conversations": self.conversations}


# ---- per conversation: usage, audio seconds, latencies, ends (`ctl status`, MQTT, the fleet heartbeat) ----

TOKEN_KEYS = ("input_text_tokens", "input_audio_tokens", "output_text_tokens", "output_audio_tokens",
              "total_tokens")


def _tokens_of(usage: dict) -> dict:
    """`response.done.response.usage` (the SDK's RealtimeResponseUsage) -> our token counts."""
    inp, out = usage.get("input_token_details") or {}, usage.get("output_token_details") or {}
    return {"input_text_tokens": inp.get("text_tokens"), "input_audio_tokens": inp.get("audio_tokens"),
            "output_text_tokens": out.get("text_tokens"), "output_audio_tokens": out.get("audio_tokens"),
            "total_tokens": usage.get("total_tokens")}


class Usage:
    """Tokens billed and audio seconds on the wire, summed."""

    def __init__(self) -> None:
        self.tokens = dict.fromkeys(TOKEN_KEYS, 0)
        self.sent_ms = self.received_ms = 0.0
        self.responses = 0

    def add_response(self, tokens: dict) -> None:
        self.responses += 1
        for key, value in tokens.items():
            self.tokens[key] += value or 0

    def as_dict(self) -> dict:
        return {**self.tokens, "audio_sent_s": round(self.sent_ms / 1000, 2),
                "audio_received_s": round(self.received_ms / 1000, 2), "responses": self.responses}


class Conversation:
    """One conversation (press or timer announcement to its end), across its sessions."""

    def __init__(self, started_at: float, started_mono_s: float) -> None:
        self.usage = Usage()
        self.started_at, self.started_mono_s = started_at, started_mono_s
        self.duration_s: float | None = None   # None while it runs
        self.end_reason = self.end_code = None
        self.press_to_first_append_ms: float | None = None
        self.delta_to_speaker_ms: float | None = None   # of its first reply
        self.rollovers = 0

    def as_dict(self, now_mono_s: float) -> dict:
        duration_s = self.duration_s if self.duration_s is not None else now_mono_s - self.started_mono_s
        return {**self.usage.as_dict(), "started_at": round(self.started_at, 3), "duration_s": round(duration_s, 2),
                "end_reason": self.end_reason, "end_code": self.end_code,
                "press_to_first_append_ms": _ms(self.press_to_first_append_ms),
                "delta_to_speaker_ms": _ms(self.delta_to_speaker_ms), "rollovers": self.rollovers}


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


class Figures:
    """Cumulative and per-conversation usage. `sent`/`first_append` run on the mic thread, the rest on
    the controller thread; `as_dict` on any (under the lock)."""

    def __init__(self, input_format: str, output_format: str) -> None:
        self._in_bytes_per_ms = codec.bytes_per_ms(input_format)
        self._out_bytes_per_ms = codec.bytes_per_ms(output_format)
        self._lock = threading.Lock()
        self.total = Usage()
        self.current: Conversation | None = None
        self.last: Conversation | None = None
        self.ends: Counter = Counter()

    def started(self, at: float, mono_s: float) -> None:
        with self._lock:
            self.current = self.last = Conversation(at, mono_s)

    def ended(self, code: str | None, reason: str | None, rollovers: int, mono_s: float) -> None:
        with self._lock:
            if code is not None:
                self.ends[code] += 1
            if self.current is not None:
                c, self.current = self.current, None
                c.end_code, c.end_reason, c.rollovers = code, reason, rollovers
                c.duration_s = mono_s - c.started_mono_s

    def response_done(self, usage: dict) -> None:
        tokens = _tokens_of(usage)
        with self._lock:
            for u in self._usages():
                u.add_response(tokens)

    def sent(self, payload_bytes: int) -> None:
        with self._lock:
            for u in self._usages():
                u.sent_ms += payload_bytes / self._in_bytes_per_ms

    def heard(self, event: object) -> None:
        """An event from the session (controller thread): reply audio received, or a response's usage."""
        if isinstance(event, m.AudioDelta):
            self.received(len(event.payload) / self._out_bytes_per_ms)
        elif isinstance(event, m.PlayedDelta):   # a delta the socket's reader played itself
            self.received(event.duration_ms)
        elif isinstance(event, m.ServerEvent) and event.type == "response.done":
            self.response_done((event.data.get("response") or {}).get("usage") or {})

    def received(self, ms: float) -> None:
        with self._lock:
            for u in self._usages():
                u.received_ms += ms

    def rolled_over(self, rollovers: int) -> None:
        with self._lock:
            if self.current is not None:
                self.current.rollovers = rollovers

    def first_append(self, value_ms: float) -> None:
        with self._lock:
            if self.current is not None and self.current.press_to_first_append_ms is None:
                self.current.press_to_first_append_ms = value_ms

    def first_reply_heard(self, value_ms: float) -> None:
        with self._lock:
            if self.current is not None and self.current.delta_to_speaker_ms is None:
                self.current.delta_to_speaker_ms = value_ms

    def as_dict(self, now_mono_s: float) -> dict:
        with self._lock:
            return {"usage": self.total.as_dict(),
                    "last_conversation": self.last.as_dict(now_mono_s) if self.last is not None else None,
                    "ends": dict(self.ends)}

    def _usages(self) -> list[Usage]:
        return [self.total] + ([self.current.usage] if self.current is not None else [])


def input_format_of(session: dict) -> str:
    """The wire format of the mic audio a session payload (GA shape) asks for."""
    fmt = (((session.get("audio") or {}).get("input") or {}).get("format") or {}).get("type")
    return fmt if fmt in codec.FORMATS else codec.PCM
