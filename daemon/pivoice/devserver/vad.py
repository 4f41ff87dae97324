"""Server-side turn detection for the dev server: `server_vad` and an approximation of `semantic_vad`.

webrtcvad on 30 ms frames of 16 kHz audio plus an energy floor, so digital
silence and faint hiss never count as speech. All ms offsets are positions in
the session's whole input stream (reference §4: "from the start of all audio
written this session"). Used from the ASGI event loop only.

semantic_vad approximation (there is no language model here): a turn ends after
`CLEAR_SILENCE_MS[eagerness]` of clear silence (every frame since the last
speech below the quiet floor), otherwise after the eagerness maximum timeout
of `MAX_TIMEOUT_MS[eagerness]` (low 8 s, medium 4 s, high 2 s, auto = medium).
"""

from __future__ import annotations

import numpy as np
import soxr
import webrtcvad

VAD_RATE_HZ = 16000
FRAME_MS = 30
FRAME_SAMPLES = VAD_RATE_HZ * FRAME_MS // 1000
START_FRAMES = 3  # 90 ms of voiced frames before a start is declared, to ignore clicks
SPEECH_FLOOR_DBFS = -50.0
QUIET_FLOOR_DBFS = -60.0
MAX_TIMEOUT_MS = {"low": 8000, "medium": 4000, "high": 2000, "auto": 4000}
CLEAR_SILENCE_MS = {"low": 1200, "medium": 800, "high": 400, "auto": 800}


def _dbfs(frame: np.ndarray) -> float:
    rms = float(np.sqrt(np.mean(frame.astype(np.float64) ** 2))) if frame.size else 0.0
    return 20.0 * np.log10(max(rms, 1e-9) / 32768.0)


class TurnDetector:
    """Feed decoded s16le audio; get ("speech_started", audio_start_ms) / ("speech_stopped", audio_end_ms)."""

    def __init__(self, turn_detection: dict, input_rate_hz: int, stream_start_ms: float = 0.0) -> None:
        self.kind = turn_detection["type"]
        threshold = float(turn_detection.get("threshold") or 0.5)
        self._vad = webrtcvad.Vad(min(3, max(0, int(threshold * 4))))
        self._prefix_ms = int(turn_detection.get("prefix_padding_ms") or 0) if self.kind == "server_vad" else 300
        eagerness = turn_detection.get("eagerness") or "auto"
        if self.kind == "server_vad":
            silence = turn_detection.get("silence_duration_ms")
            self._clear_silence_ms = self._max_silence_ms = 500 if silence is None else int(silence)
        else:
            self._clear_silence_ms = CLEAR_SILENCE_MS[eagerness]
            self._max_silence_ms = MAX_TIMEOUT_MS[eagerness]
        self._resampler = None if input_rate_hz == VAD_RATE_HZ else soxr.ResampleStream(
            input_rate_hz, VAD_RATE_HZ, 1, dtype="int16")
        self._pending = np.zeros(0, dtype=np.int16)
        self._frame_start_ms = float(stream_start_ms)
        self.in_speech = False
        self._voiced_run = 0
        self._silence_ms = 0
        self._silence_all_quiet = True

    def feed(self, pcm16: bytes) -> list[tuple[str, int]]:
        samples = np.frombuffer(pcm16, dtype=np.int16)
        if self._resampler is not None:
            samples = self._resampler.resample_chunk(samples)
        self._pending = np.concatenate([self._pending, samples])
        events: list[tuple[str, int]] = []
        while self._pending.size >= FRAME_SAMPLES:
            frame, self._pending = self._pending[:FRAME_SAMPLES], self._pending[FRAME_SAMPLES:]
            event = self._frame(frame)
            if event:
                events.append(event)
            self._frame_start_ms += FRAME_MS
        return events

    def _frame(self, frame: np.ndarray) -> tuple[str, int] | None:
        level_dbfs = _dbfs(frame)
        voiced = level_dbfs > SPEECH_FLOOR_DBFS and self._vad.is_speech(frame.tobytes(), VAD_RATE_HZ)
        frame_end_ms = self._frame_start_ms + FRAME_MS
        if not self.in_speech:
            self._voiced_run = self._voiced_run + 1 if voiced else 0
            if self._voiced_run >= START_FRAMES:
                self.in_speech = True
                self._silence_ms, self._silence_all_quiet = 0, True
                first_voiced_ms = self._frame_start_ms - (START_FRAMES - 1) * FRAME_MS
                return "speech_started", int(max(0.0, first_voiced_ms - self._prefix_ms))
            return None
        if voiced:
            self._silence_ms, self._silence_all_quiet = 0, True
            return None
        self._silence_ms += FRAME_MS
        self._silence_all_quiet = self._silence_all_quiet and level_dbfs < QUIET_FLOOR_DBFS
        limit_ms = self._clear_silence_ms if self._silence_all_quiet else self._max_silence_ms
        if self._silence_ms >= limit_ms:
            self.in_speech = False
            self._voiced_run = 0
            return "speech_stopped", int(frame_end_ms)
        return None
