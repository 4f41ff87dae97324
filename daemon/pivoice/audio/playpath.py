"""The play path: reply audio deltas played by the thread that read them from the socket, along the
route the controller sets, with the downlink guarded for the two threads that now use it.

Why: every audio delta used to wake the controller thread only to hand the payload to the
downlink (decode, resample, queue: ~45 us); the wakeup cost several times that, and a reply brings
10-40 deltas a second. The socket's reader thread is awake anyway when a delta arrives.

The controller still owns the reply: the first delta of every reply goes to it (it begins the reply
and plays that delta itself), and only then does it open the route for that response
(`RoutePlayback`); it closes the route before it stops playback (barge-in), when the response ends
or the session does. Deltas of any other response, or malformed ones, still go to the controller.
Each delta played here leaves a `PlayedDelta` for the controller's count (`take_played`), stamped
so the runtime can put it in order with a `PlaybackDrained` from the speaker's thread.

Thread: `offer` on the socket's reader thread; `route`, `take_played` and the downlink methods on
the controller thread. One lock orders them: once `route(None)` has returned, no delta is played
until the route is opened again.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable

from pivoice import messages as m
from pivoice.audio import codec


class PlayPath:
    def __init__(self, downlink, output_format: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.downlink = downlink
        self._bytes_per_ms = codec.bytes_per_ms(output_format)
        self._sample_bytes = 2 if output_format == codec.PCM else 1
        self._clock = clock
        self.lock = threading.Lock()
        self._response_id: str | None = None
        self._played: deque[m.PlayedDelta] = deque()

    def route(self, response_id: str | None) -> None:
        with self.lock:
            self._response_id = response_id

    def offer(self, delta: m.AudioDelta) -> bool:
        """Play `delta` if it belongs to the routed response (True); False: the controller must
        handle it itself."""
        if delta.response_id != self._response_id or len(delta.payload) % self._sample_bytes:
            return False
        with self.lock:
            if delta.response_id != self._response_id:   # closed meanwhile
                return False
            self.downlink.play(delta.payload)
            self._played.append(m.PlayedDelta(len(delta.payload) / self._bytes_per_ms, self._clock()))
            return True

    def take_played(self, before_s: float | None = None) -> list[m.PlayedDelta]:
        """The deltas played here since the last call, oldest first; with `before_s`, only those
        that reached the speaker's queue before then."""
        taken = []
        while self._played and (before_s is None or self._played[0].at_s < before_s):
            taken.append(self._played.popleft())
        return taken

    # ---- the downlink, for the controller thread ----------------------------------------

    def play(self, payload: bytes) -> None:
        with self.lock:
            self.downlink.play(payload)

    def begin_reply(self) -> None:
        with self.lock:
            self.downlink.begin_reply()

    def finish_reply(self) -> None:
        with self.lock:
            self.downlink.finish_reply()

    def stop(self) -> int:
        with self.lock:
            return self.downlink.stop()
