"""The send path as pure DSP: mic frames -> speech gate -> resample to the wire rate -> encode ->
fixed-size chunks for `input_audio_buffer.append`.

Thread: controller thread only; no I/O.
"""

from __future__ import annotations

from typing import Union

from pivoice.audio import codec
from pivoice.audio.resample import DEFAULT_QUALITY, StreamResampler
from pivoice.audio.vad_gate import Audio, GateOutput, SpeechEnd, SpeechStart, VadGate
from pivoice.messages import Chunk, SpeechEnded, SpeechStarted

# What the uplink hands the controller: events from pivoice.messages.
UplinkItem = Union[SpeechStarted, Chunk, SpeechEnded]


class Uplink:
    def __init__(self, mic_rate_hz: int, frame_ms: int, gate: VadGate, wire_format: str, chunk_ms: int = 40,
                 *, resample_quality: str = DEFAULT_QUALITY) -> None:
        if wire_format not in codec.FORMATS:
            raise ValueError(f"unknown wire format {wire_format!r}; expected one of {', '.join(codec.FORMATS)}")
        self.mic_rate_hz, self.frame_ms, self.wire_format, self.chunk_ms = mic_rate_hz, frame_ms, wire_format, chunk_ms
        self.gate = gate
        self._bytes_per_ms = codec.bytes_per_ms(wire_format)
        self._chunk_bytes = int(round(chunk_ms * self._bytes_per_ms))
        self._resampler = StreamResampler(mic_rate_hz, codec.wire_rate_hz(wire_format), resample_quality)
        self._buf = bytearray()
        self._first_of_stretch = False
        self.raw_bytes = 0    # everything the mic captured (s16le at the mic rate)
        self.wire_bytes = 0   # everything handed out in Chunks
        self.chunks = 0

    def process(self, frame: bytes) -> list[UplinkItem]:
        return self.process_frames([frame])

    def process_frames(self, frames: list[bytes]) -> list[UplinkItem]:
        """Several consecutive frames at once: same items as `process` on each in turn."""
        gate_output: list[GateOutput] = []
        for frame in frames:
            self.raw_bytes += len(frame)
            gate_output += self.gate.process(frame)
        return self._run(gate_output)

    def open_now(self) -> list[UplinkItem]:
        """Start sending at once, before the gate hears speech (the button was pressed)."""
        return self._run(self.gate.open_now())

    def _run(self, gate_output: list[GateOutput]) -> list[UplinkItem]:
        out: list[UplinkItem] = []
        audio: list[bytes] = []   # consecutive frames go through the resampler in one call (cheaper)
        for item in gate_output:
            if isinstance(item, Audio):
                audio.append(item.frame)
                if self._first_of_stretch:   # it leaves at once, on its own
                    self._add_audio(audio, out)
                continue
            self._add_audio(audio, out)
            if isinstance(item, SpeechStart):
                # a new stretch is not continuous with the last one: no filter tail across the gap
                self._resampler.reset()
                self._buf.clear()
                self._first_of_stretch = True
                out.append(SpeechStarted())
            elif isinstance(item, SpeechEnd):
                self._add(self._resampler.flush(), out)
                if self._buf:
                    out.append(self._chunk(bytes(self._buf)))
                    self._buf.clear()
                out.append(SpeechEnded(item.voiced))
        self._add_audio(audio, out)
        return out

    def _add_audio(self, frames: list[bytes], out: list[UplinkItem]) -> None:
        if frames:
            self._add(self._resampler.process(frames[0] if len(frames) == 1 else b"".join(frames)), out)
            frames.clear()

    def reset(self) -> None:
        """Drop a half-sent stretch (conversation ended or the session was replaced)."""
        self.gate.reset()
        self._resampler.reset()
        self._buf.clear()

    def _add(self, pcm16: bytes, out: list[UplinkItem]) -> None:
        if not pcm16:
            return
        self._buf += codec.encode(self.wire_format, pcm16)
        if self._first_of_stretch:
            # the first audio of a stretch leaves at once: it is what press-to-first-audio waits for
            self._first_of_stretch = False
            first = bytes(self._buf[:self._chunk_bytes])
            del self._buf[:len(first)]
            out.append(self._chunk(first))
        while len(self._buf) >= self._chunk_bytes:
            out.append(self._chunk(bytes(self._buf[:self._chunk_bytes])))
            del self._buf[:self._chunk_bytes]

    def _chunk(self, payload: bytes) -> Chunk:
        self.wire_bytes += len(payload)
        self.chunks += 1
        return Chunk(payload, len(payload) / self._bytes_per_ms)
