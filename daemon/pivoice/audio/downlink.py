"""The play path: wire audio deltas -> decode -> resample to the speaker rate -> speaker, plus the
bookkeeping barge-in needs (how much of the current reply was actually heard).

Thread: controller thread only (the speaker's own audio thread only calls `on_drained` and
`on_error`; see ports.py).
"""

from __future__ import annotations

import math
import time
from typing import Callable

from pivoice.audio import codec
from pivoice.audio.ports import OnError, Speaker
from pivoice.audio.resample import DEFAULT_QUALITY, StreamResampler
from pivoice.audio.volume import Volume


class Downlink:
    def __init__(self, speaker: Speaker, wire_format: str, *, clock: Callable[[], float] = time.monotonic,
                 resample_quality: str = DEFAULT_QUALITY, volume: Volume | None = None) -> None:
        if wire_format not in codec.FORMATS:
            raise ValueError(f"unknown wire format {wire_format!r}; expected one of {', '.join(codec.FORMATS)}")
        self.speaker, self.wire_format = speaker, wire_format
        self.wire_rate_hz = codec.wire_rate_hz(wire_format)
        self._clock = clock
        self._quality = resample_quality
        self.volume = volume or Volume()
        self._resampler: StreamResampler | None = None
        self._received_wire_samples = 0
        self._reply_base_samples = 0   # speaker sample position where the current reply starts
        self._reply_begun_at: float | None = None
        self.first_sample_at: float | None = None  # monotonic time the reply's first sample was written

    def open(self, on_drained: Callable[[], None], on_error: OnError | None = None) -> None:
        self.speaker.open(on_drained, on_error)
        self._resampler = StreamResampler(self.wire_rate_hz, self.speaker.sample_rate_hz, self._quality)
        self.begin_reply()

    def begin_reply(self) -> None:
        """Start counting a new reply; it plays after anything still queued from an earlier one."""
        self._received_wire_samples = 0
        self.first_sample_at = None
        self._reply_begun_at = self._clock()
        self._reply_base_samples = self.speaker.played_samples() + self.speaker.pending_samples()
        if self._resampler is not None:
            self._resampler.reset()

    def play(self, payload: bytes) -> None:
        pcm16 = codec.decode(self.wire_format, payload)
        self._received_wire_samples += len(pcm16) // 2
        out = self._resampler.process(pcm16)
        if out:
            if self.first_sample_at is None:
                self.first_sample_at = self._clock()
            self.speaker.write(self.volume.apply(out))

    def finish_reply(self) -> None:
        """The reply's last delta arrived: push out what the resampler filter still holds."""
        tail = self._resampler.flush() if self._resampler is not None else b""
        if tail:
            self.speaker.write(self.volume.apply(tail))

    def device_first_sample_at(self) -> float | None:
        """When the speaker's audio thread released this reply's first sample (None until it has)."""
        since = self.speaker.audible_since_s()
        begun = self._reply_begun_at
        return since if since is not None and begun is not None and since >= begun else None

    @property
    def received_ms(self) -> float:
        return self._received_wire_samples * 1000.0 / self.wire_rate_hz

    def played_ms(self) -> float:
        played = self.speaker.played_samples() - self._reply_base_samples
        return max(0, played) * 1000.0 / self.speaker.sample_rate_hz

    def stop(self) -> int:
        """Barge-in: drop queued audio now; return the ms of this reply that reached the speaker
        (wire time, floored, never more than was received) for `conversation.item.truncate`."""
        self.speaker.stop()
        heard_ms = math.floor(min(self.played_ms(), self.received_ms))
        if self._resampler is not None:
            self._resampler.reset()
        return int(heard_ms)

    def check_stream(self) -> None:
        self.speaker.check_stream()

    def stats(self) -> dict:
        return self.speaker.stats()

    def close(self) -> None:
        self.speaker.close()
