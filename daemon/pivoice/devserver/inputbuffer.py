"""The input audio buffer of one session, in wire bytes, with positions in session-stream ms.

Used from the ASGI event loop only.
"""

from __future__ import annotations

from pivoice.audio import codec


class InputBuffer:
    def __init__(self, fmt: str) -> None:
        self.format = fmt
        self._data = bytearray()
        self.start_ms = 0.0  # stream position of the first byte held
        self.total_ms = 0.0  # stream position after the last byte appended (all audio this session)

    def set_format(self, fmt: str) -> None:
        # bytes of two formats cannot share one buffer; a format change starts a fresh one
        self.clear()
        self.format = fmt

    @property
    def held_ms(self) -> float:
        return len(self._data) / codec.bytes_per_ms(self.format)

    def append(self, wire: bytes) -> bytes:
        """Add wire bytes; returns them decoded to s16le at the format's wire rate."""
        sample_bytes = 2 if self.format == codec.PCM else 1
        wire = wire[:len(wire) // sample_bytes * sample_bytes]
        self._data += wire
        self.total_ms += len(wire) / codec.bytes_per_ms(self.format)
        return codec.decode(self.format, wire)

    def _offset(self, stream_ms: float) -> int:
        sample_bytes = 2 if self.format == codec.PCM else 1
        samples = int(round((stream_ms - self.start_ms) * codec.wire_rate_hz(self.format) / 1000))
        return max(0, min(len(self._data), samples * sample_bytes))

    def take(self, up_to_ms: float | None = None, from_ms: float | None = None) -> bytes:
        """Remove and return the audio up to `up_to_ms` (default: all), dropping what lies before `from_ms`."""
        end = len(self._data) if up_to_ms is None else self._offset(up_to_ms)
        begin = 0 if from_ms is None else min(end, self._offset(from_ms))
        taken = bytes(self._data[begin:end])
        del self._data[:end]
        self.start_ms += end / codec.bytes_per_ms(self.format)
        return taken

    def clear(self) -> None:
        self.take()
