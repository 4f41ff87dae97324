"""The `audio:` config section: devices, framing, the local gate, output volume. Typed and frozen;
read once at config load (main thread) by pivoice.config.
"""

from __future__ import annotations

from dataclasses import dataclass

from pivoice.settings import Section

WAV_PREFIX = "wav:"


@dataclass(frozen=True)
class InputConfig:
    device: str              # "default", a device-name substring, or "wav:PATH"
    sample_rate_hz: int | None
    frame_ms: int
    block_ms: int            # audio per read after the first frame: the mic thread wakes once per block
    period_ms: int | None = None   # the ALSA period the mic is opened with; None = block_ms


@dataclass(frozen=True)
class OutputConfig:
    device: str              # "default", a device-name substring, or "wav:PATH"
    sample_rate_hz: int | None
    prime_ms: int
    buffer_ms: int
    volume: int = 100        # 0-100, software gain in the downlink (audio/volume.py); 100 = as sent


@dataclass(frozen=True)
class GateConfig:
    aggressiveness: int
    preroll_ms: int
    start_ms: int
    trailing_margin_ms: int


@dataclass(frozen=True)
class AudioConfig:
    input: InputConfig
    output: OutputConfig
    gate: GateConfig
    chunk_ms: int


def _read_device(sec: Section, key: str) -> str:
    device = sec.str(key, "default")
    if device.startswith(WAV_PREFIX) and not device[len(WAV_PREFIX):].strip():
        raise sec.error(key, "wav: needs a file path, e.g. wav:/tmp/question.wav")
    return device


def read_audio(sec: Section) -> AudioConfig:
    inp = sec.section("input")
    input_cfg = InputConfig(
        device=_read_device(inp, "device"),
        sample_rate_hz=inp.int("sample_rate_hz", None, nullable=True, min=8000, max=192000),
        frame_ms=inp.int("frame_ms", 20, choices=(10, 20, 30)),
        block_ms=inp.int("block_ms", 100, min=10, max=500),
        period_ms=inp.int("period_ms", None, nullable=True, min=5, max=500),
    )
    if input_cfg.block_ms % input_cfg.frame_ms:
        raise inp.error("block_ms", f"{input_cfg.block_ms} is not a multiple of frame_ms ({input_cfg.frame_ms})")
    inp.done()
    out = sec.section("output")
    output_cfg = OutputConfig(
        device=_read_device(out, "device"),
        sample_rate_hz=out.int("sample_rate_hz", None, nullable=True, min=8000, max=192000),
        prime_ms=out.int("prime_ms", 60, min=0, max=1000),
        buffer_ms=out.int("buffer_ms", 40, min=5, max=200),
        volume=out.int("volume", 100, min=0, max=100),
    )
    out.done()
    gate = sec.section("gate")
    gate_cfg = GateConfig(
        aggressiveness=gate.int("aggressiveness", 2, min=0, max=3),
        preroll_ms=gate.int("preroll_ms", 500, min=0, max=5000),
        start_ms=gate.int("start_ms", 60, min=10, max=1000),
        trailing_margin_ms=gate.int("trailing_margin_ms", 300, min=0, max=5000),
    )
    gate.done()
    audio = AudioConfig(input_cfg, output_cfg, gate_cfg, chunk_ms=sec.int("chunk_ms", 100, min=10, max=1000))
    sec.done()
    return audio
