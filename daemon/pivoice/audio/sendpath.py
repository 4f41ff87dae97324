"""The send path, run on the mic's own thread: mic frames -> the uplink DSP (gate, resample,
encode, chunking) -> `input_audio_buffer.append` on the session socket, along the route the
controller has set.

Why on the mic thread: the daemon's CPU is set by wakeups, not by work (a block's DSP costs
~60 us hot; waking another thread to do it costs several times that on a Pi-class CPU). The mic
thread is awake anyway when a block arrives, so it finishes the job and the controller thread
sleeps through the stream.

The controller still owns the conversation: it decides the route from its state (`RouteMic`
actions: `buffer` while connecting, `send` once the session is open, `drop` while the half-duplex
speaker plays or after the end) and hears the gate's SpeechStarted/SpeechEnded as queued events,
posted after the chunks before them have gone out (a manual-turn commit follows its audio). This
path only obeys.

Thread: `on_frames` on the mic's audio thread; `begin`, `route`, `attach` from the controller
thread. One lock orders them: a route change flushes the backlog before any later chunk.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Callable

from pivoice import messages as m
from pivoice.messages import BUFFER, DROP, SEND

__all__ = ["BUFFER", "DROP", "MAX_BACKLOG_MS", "SEND", "SendPath"]
# Before the socket opens the audio is kept; past this much the oldest goes (the press was long ago).
MAX_BACKLOG_MS = 30_000


class SendPath:
    def __init__(self, post: Callable[[object], None], metrics, clock: Callable[[], float],
                 max_backlog_ms: float = MAX_BACKLOG_MS) -> None:
        self._post, self._metrics, self._clock = post, metrics, clock
        self._uplink = None
        self._early: list[bytes] = []   # frames that came before begin(): the mic opens first
        self._max_backlog_ms = max_backlog_ms
        self._lock = threading.Lock()
        self._mode = BUFFER
        self._conn = None
        self._backlog: deque[m.Chunk] = deque()
        self._backlog_ms = 0.0

    # ---- controller thread ------------------------------------------------------------

    def attach(self, conn) -> None:
        """The session socket chunks go to (None: there is none)."""
        with self._lock:
            self._conn = conn

    def route(self, mode: str) -> float:
        """Obey the controller's route; returns the ms of backlog sent (switching to `send`)."""
        with self._lock:
            self._mode = mode
            flushed_ms = 0.0
            if mode != BUFFER:   # what was kept goes out now, or goes
                while self._backlog:
                    chunk = self._backlog.popleft()
                    if mode == SEND:
                        self._send(chunk)
                        flushed_ms += chunk.duration_ms
                self._backlog_ms = 0.0
            return flushed_ms

    def begin(self, uplink) -> list:
        """The press: the uplink for the mic's rate (known once the mic is open), its gate opened at
        once (speech is coming), then any frames that arrived meanwhile. Returns the gate's events
        of the opening, for the caller to handle at once instead of queueing them."""
        with self._lock:
            self._uplink = uplink
            opened: list = []
            self._deliver(uplink.open_now(), opened.append)
            early, self._early = self._early, []
            if early:
                self._deliver(uplink.process_frames(early))
            return opened

    # ---- mic thread -------------------------------------------------------------------

    def on_frames(self, frames: list[bytes]) -> None:
        with self._lock:
            self._metrics.raw_capture_bytes += sum(map(len, frames))
            if self._uplink is None:
                self._early += frames
                return
            self._deliver(self._uplink.process_frames(frames))

    def _deliver(self, items: list, post: Callable[[object], None] | None = None) -> None:
        for item in items:
            if not isinstance(item, m.Chunk):
                (post or self._post)(item)   # SpeechStarted / SpeechEnded: the controller's to judge
            elif self._mode == SEND:
                self._send(item)
            elif self._mode == BUFFER:
                self._backlog.append(item)
                self._backlog_ms += item.duration_ms
                while self._backlog_ms > self._max_backlog_ms:
                    self._backlog_ms -= self._backlog.popleft().duration_ms

    def _send(self, chunk: m.Chunk) -> None:
        if self._conn is not None:
            self._metrics.appended(len(chunk.payload), self._clock)
            self._conn.send_audio(chunk.payload)
