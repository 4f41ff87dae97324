"""The bench's ears: a timestamped recorder of the virtual speaker, silence detection, correlation.

`SpeakerMonitor` runs parec on the speaker sink's monitor and one reader thread of its own that
stamps every block it reads with time.monotonic() (the clock the daemon's timeline uses too).
Everything else here is pure numpy on arrays, called from the bench's main thread.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time

import numpy as np

from support.fixtures_audio import SILENCE_THRESHOLD, waveform_correlation  # noqa: F401  (re-exported)

MONITOR_LATENCY_MS = 10    # what parec asks the server for: the monitor's fragment (pactl shows it configured)
READ_BYTES = 4096


class SpeakerMonitor:
    """parec --raw on `<sink>.monitor`; start() / stop(), then samples() and times_s()."""

    def __init__(self, env: dict, sink: str, rate_hz: int, channels: int) -> None:
        self._cmd = ["parec", "--raw", f"--latency-msec={MONITOR_LATENCY_MS}", "-d", f"{sink}.monitor",
                     "--format=s16le", f"--rate={rate_hz}", f"--channels={channels}"]
        self._env, self.rate_hz, self.channels = env, rate_hz, channels
        self._blocks: list[tuple[float, bytes]] = []
        self._proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> "SpeakerMonitor":
        self._proc = subprocess.Popen(self._cmd, env=self._env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self._thread = threading.Thread(target=self._read, name="speaker-monitor", daemon=True)
        self._thread.start()
        return self

    def _read(self) -> None:
        fd = self._proc.stdout.fileno()
        while True:
            data = os.read(fd, READ_BYTES)
            if not data:
                return
            self._blocks.append((time.monotonic(), data))

    def stop(self) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(5)
        self._thread.join(5)
        self._proc = None

    def samples(self) -> np.ndarray:
        """Mono int16 (the first channel)."""
        raw = b"".join(data for _, data in self._blocks)
        frame = 2 * self.channels
        return np.frombuffer(raw[:len(raw) // frame * frame], dtype="<i2")[::self.channels]

    def times_s(self) -> np.ndarray:
        """Per sample: when the block holding it was read (see read_times_s)."""
        frame = 2 * self.channels
        return read_times_s([(t, len(data) // frame) for t, data in self._blocks])

    def read_periods_ms(self) -> np.ndarray:
        stamps = np.array([t for t, _ in self._blocks])
        return np.diff(stamps) * 1000


def read_times_s(blocks: list[tuple[float, int]]) -> np.ndarray:
    """Per-sample times from (read time, frames) blocks: each sample gets its block's read time.

    An upper bound of when the sink rendered it (a sample cannot be read before it exists) by at
    most the monitor's fragment and the reader's scheduling delay. Extrapolating a smooth clock
    instead would date samples early: the null sink renders a whole fragment at once.
    """
    if not blocks:
        return np.zeros(0)
    return np.repeat(np.array([t for t, _ in blocks], dtype=np.float64), [n for _, n in blocks])


def last_loud_index(samples: np.ndarray, threshold: int = SILENCE_THRESHOLD) -> int:
    """Index of the last sample louder than `threshold`, -1 if all are silent."""
    loud = np.nonzero(np.abs(samples.astype(np.int32)) > threshold)[0]
    return int(loud[-1]) if len(loud) else -1


def silent_after_s(samples: np.ndarray, times_s: np.ndarray, from_s: float, window_s: float,
                   threshold: int = SILENCE_THRESHOLD) -> float | None:
    """Seconds from `from_s` until the speaker was silent for good (up to from_s + window_s): the
    time of the first sample dated after the last loud one, so with block read times it is an
    upper bound (the sound stopped between two reads). 0 if it stopped before `from_s`; None if
    the recording does not reach the end of the window or ends loud (no conclusion possible)."""
    if len(times_s) == 0 or times_s[-1] < from_s + window_s:
        return None
    upto = times_s <= from_s + window_s
    last = last_loud_index(samples[upto], threshold)
    if last < 0:
        return 0.0
    later = np.nonzero(times_s > times_s[last])[0]
    if not len(later) or times_s[later[0]] > from_s + window_s:
        return None
    return max(0.0, float(times_s[later[0]] - from_s))


# ---- does what the speaker played match the question? -----------------------------------------

def envelope(samples: np.ndarray, rate_hz: int, frame_ms: int = 10) -> np.ndarray:
    n = rate_hz * frame_ms // 1000
    x = samples[: len(samples) // n * n].astype(np.float64).reshape(-1, n)
    return np.sqrt((x ** 2).mean(axis=1))


def envelope_correlation(question: np.ndarray, q_rate_hz: int, played: np.ndarray, p_rate_hz: int) -> float:
    """Best sliding Pearson correlation of the 10 ms loudness envelopes (the e2e test's measure):
    tolerant of gaps and resampling, but coarse (a loudness match, not a waveform match)."""
    q_env, p_env = envelope(question, q_rate_hz), envelope(played, p_rate_hz)
    voiced = np.nonzero(q_env > 50)[0]
    if not len(voiced):
        raise ValueError("the question is silent")
    q_env = q_env[voiced[0]:voiced[-1] + 1]
    if len(p_env) < len(q_env):
        return float("nan")
    windows = np.lib.stride_tricks.sliding_window_view(p_env, len(q_env))
    qz = (q_env - q_env.mean()) / (q_env.std() + 1e-9)
    wz = (windows - windows.mean(axis=1, keepdims=True)) / (windows.std(axis=1, keepdims=True) + 1e-9)
    return float((wz @ qz).max() / len(q_env))
