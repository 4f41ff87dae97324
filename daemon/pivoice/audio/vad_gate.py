"""Local speech gate in front of the uplink: only speech (plus context) is sent to the server.

Design (times in frames of `frame_ms`):
* Closed: a ring keeps the last `preroll_ms` + one decision window of frames. The gate opens when
  at least `start_ms` of voiced frames fall inside the decision window of the last
  ceil(start_frames * 5 / 3) frames (3 of 5 at 20 ms frames and start_ms=60): isolated clicks
  do not open it, a syllable does. Opening emits SpeechStart, then the ring (so the emitted audio
  starts at least `preroll_ms` before the first voiced frame of the window), then live frames.
* Open: frames pass through. Every voiced frame re-arms a countdown of `trailing_ms`; when it
  runs out, SpeechEnd is emitted and the gate closes. The lead sets trailing_ms above the server's
  silence_duration_ms so the server VAD always sees enough silence to end the turn itself.
webrtcvad only takes 8/16/32/48 kHz and 10/20/30 ms: at other rates the decision runs on a 16 kHz
copy (the original frames still pass through); longer frames are split and voted.
A fresh webrtcvad calls the first ~80 ms of any noise speech while it adapts its noise model, so
decisions during the first `warmup_ms` after construction are treated as unvoiced (the VAD still
sees the frames and adapts).

Thread: `process`/`reset` from the controller thread only.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Union

import webrtcvad

from pivoice.audio.resample import StreamResampler

VAD_RATES_HZ = (8000, 16000, 32000, 48000)
VAD_FRAME_MS = (30, 20, 10)


@dataclass(frozen=True)
class SpeechStart:
    pass


@dataclass(frozen=True)
class Audio:
    frame: bytes


@dataclass(frozen=True)
class SpeechEnd:
    voiced: bool = True   # False: a stretch opened by open_now() in which no speech was heard


GateOutput = Union[SpeechStart, Audio, SpeechEnd]


class VadGate:
    def __init__(self, sample_rate_hz: int, frame_ms: int, *, aggressiveness: int = 2, preroll_ms: int = 500,
                 trailing_ms: int = 800, start_ms: int = 60,
                 warmup_ms: int = 200, vad_factory: Callable[[], Any] = webrtcvad.Vad) -> None:
        if frame_ms % 10:
            raise ValueError(f"frame_ms must be a multiple of 10 for webrtcvad, got {frame_ms}")
        if not 0 <= aggressiveness <= 3:
            raise ValueError(f"aggressiveness must be 0..3, got {aggressiveness}")
        self.sample_rate_hz, self.frame_ms = sample_rate_hz, frame_ms
        self._vad = vad_factory()
        self._vad.set_mode(aggressiveness)
        self._vad_rate_hz = sample_rate_hz if sample_rate_hz in VAD_RATES_HZ else 16000
        self._resampler = (None if self._vad_rate_hz == sample_rate_hz
                           else StreamResampler(sample_rate_hz, self._vad_rate_hz))
        vad_frame_ms = next(ms for ms in VAD_FRAME_MS if frame_ms % ms == 0)
        self._vad_frame_bytes = self._vad_rate_hz * vad_frame_ms // 1000 * 2
        self._vad_buf = bytearray()
        self._last_voiced = False
        self.start_frames = max(1, math.ceil(start_ms / frame_ms))
        self.window_frames = max(self.start_frames, math.ceil(self.start_frames * 5 / 3))
        self.preroll_frames = math.ceil(preroll_ms / frame_ms)
        self.trailing_frames = max(1, math.ceil(trailing_ms / frame_ms))
        self._ring: deque[bytes] = deque(maxlen=self.preroll_frames + self.window_frames)
        self._window: deque[bool] = deque(maxlen=self.window_frames)
        self.is_open = False
        self._heard_voice = False
        self._countdown = 0
        self._warmup_frames = math.ceil(warmup_ms / frame_ms)

    def reset(self) -> None:
        self._ring.clear()
        self._window.clear()
        self._vad_buf.clear()
        self._last_voiced = False
        if self._resampler is not None:
            self._resampler.reset()
        self.is_open = False
        self._countdown = 0

    def is_voiced(self, frame: bytes) -> bool:
        """webrtcvad decision for one frame: majority of its 10/20/30 ms pieces."""
        if self._resampler is None and not self._vad_buf and len(frame) == self._vad_frame_bytes:
            # the usual case (16 kHz, 10/20/30 ms frames): one decision, no buffering
            self._last_voiced = bool(self._vad.is_speech(frame, self._vad_rate_hz))
            return self._last_voiced
        self._vad_buf += frame if self._resampler is None else self._resampler.process(frame)
        votes = []
        n = self._vad_frame_bytes
        while len(self._vad_buf) >= n:
            votes.append(self._vad.is_speech(bytes(self._vad_buf[:n]), self._vad_rate_hz))
            del self._vad_buf[:n]
        if votes:  # resampler delay can leave a frame without its own decision: reuse the last one
            self._last_voiced = 2 * sum(votes) >= len(votes)
        return self._last_voiced

    def process(self, frame: bytes) -> list[GateOutput]:
        voiced = self.is_voiced(frame)
        if self._warmup_frames > 0:
            self._warmup_frames -= 1
            voiced = False
        if self.is_open:
            out: list[GateOutput] = [Audio(frame)]
            self._countdown = self.trailing_frames if voiced else self._countdown - 1
            self._heard_voice = self._heard_voice or voiced
            if self._countdown <= 0:
                out.append(SpeechEnd(self._heard_voice))
                self.is_open = False
                self._ring.clear()
                self._window.clear()
            return out
        self._ring.append(frame)
        self._window.append(voiced)
        if sum(self._window) < self.start_frames:
            return []
        return self._open(heard_voice=True)

    def open_now(self) -> list[GateOutput]:
        """Open without waiting for speech (a button press says speech is coming); it closes again
        after `trailing_ms` without voice, like any stretch."""
        return [] if self.is_open else self._open(heard_voice=False)

    def _open(self, heard_voice: bool) -> list[GateOutput]:
        self.is_open = True
        self._heard_voice = heard_voice
        self._countdown = self.trailing_frames
        out: list[GateOutput] = [SpeechStart()] + [Audio(f) for f in self._ring]
        self._ring.clear()
        self._window.clear()
        return out
