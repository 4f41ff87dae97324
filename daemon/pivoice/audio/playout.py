"""The sample queue between the controller thread (writes) and a speaker's audio thread (pulls),
with start-of-reply priming, drain detection and a played-position estimate.

Thread: `write`/`clear`/`played_samples`/`pending_samples` from the controller thread, `pull`
from the audio thread; one lock guards the state and is held only for list/byte operations.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable


class PlayoutBuffer:
    """Thread-safe sample queue with priming, drain detection and a played-position estimate.

    Output timeline: every sample handed to the device (audio or silence) advances `out_pos`. The
    device is `latency_samples` behind, so audio counts as played once its position is below
    out_pos - latency (interpolated with the clock between pulls).
    """

    def __init__(self, sample_rate_hz: int, prime_samples: int, latency_samples: int = 0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.sample_rate_hz, self.prime_samples, self.latency_samples = sample_rate_hz, prime_samples, latency_samples
        self._clock = clock
        self._lock = threading.Lock()
        self._chunks: deque[bytes] = deque()
        self._head = 0             # bytes of _chunks[0] already pulled
        self._queued_bytes = 0
        self._priming = True
        self._primed_wait = 0      # samples waited with data queued but below prime_samples
        self._had_audio = False    # audio handed out since the last drain/stop
        self._silence_since = 0    # silence samples handed out after the last audio sample
        self._out_pos = 0
        self._audio_total = 0
        self._blocks: deque[tuple[int, int, int]] = deque(maxlen=512)  # (pos, audio_before, n_audio)
        self._last_pull_s: float | None = None
        self.audible_since_s: float | None = None   # when the audio thread began releasing the current stretch

    def write(self, pcm16: bytes) -> None:
        if not pcm16:
            return
        with self._lock:
            self._chunks.append(bytes(pcm16))
            self._queued_bytes += len(pcm16)

    def clear(self) -> None:
        """Drop the queue; stopped audio does not count as drained."""
        with self._lock:
            self._chunks.clear()
            self._head = self._queued_bytes = 0
            self._priming, self._primed_wait, self._had_audio = True, 0, False

    def active(self) -> bool:
        """Audio is queued or still playing out (not yet drained): the device has work."""
        with self._lock:
            return bool(self._queued_bytes) or self._had_audio

    def queued_samples(self) -> int:
        with self._lock:
            return self._queued_bytes // 2

    def pull(self, n_samples: int) -> tuple[bytes, bool]:
        """Exactly n_samples of mono s16le (silence-padded) and whether playback has just drained."""
        with self._lock:
            queued = self._queued_bytes // 2
            if self._priming and queued:
                self._primed_wait += n_samples
                # wait for prime_samples, but never longer than prime_samples' worth of time
                if queued >= self.prime_samples or self._primed_wait > self.prime_samples:
                    self._priming, self._primed_wait = False, 0
            take = 0 if self._priming else min(n_samples, queued)
            data = self._take(take * 2) if take else b""
            if take:
                if not self._had_audio:
                    self.audible_since_s = self._clock()
                self._blocks.append((self._out_pos, self._audio_total, take))
                self._audio_total += take
                self._had_audio, self._silence_since = True, 0
            self._silence_since += n_samples - take
            self._out_pos += n_samples
            self._last_pull_s = self._clock()
            drained = False
            if self._had_audio and not self._queued_bytes:
                if take:
                    self._priming = True  # ran dry: the next audio (next reply or a late delta) is primed again
                if self._silence_since >= self.latency_samples:
                    drained, self._had_audio = True, False
            return data + bytes(2 * (n_samples - take)), drained

    def _take(self, n_bytes: int) -> bytes:
        parts, need = [], n_bytes
        while need:
            chunk = self._chunks[0]
            part = chunk[self._head:self._head + need]
            parts.append(part)
            need -= len(part)
            self._head += len(part)
            if self._head == len(chunk):
                self._chunks.popleft()
                self._head = 0
        self._queued_bytes -= n_bytes
        return b"".join(parts)

    def played_samples(self) -> int:
        with self._lock:
            cutoff = self._out_pos - self.latency_samples
            if self._last_pull_s is not None:
                cutoff += int((self._clock() - self._last_pull_s) * self.sample_rate_hz)
            cutoff = min(cutoff, self._out_pos)
            if not self._blocks:
                return self._audio_total
            for pos, before, n in reversed(self._blocks):
                if pos < cutoff:
                    return before + min(n, cutoff - pos)
            return self._blocks[0][1]

    def pending_samples(self) -> int:
        played = self.played_samples()
        with self._lock:
            return self._queued_bytes // 2 + self._audio_total - played
