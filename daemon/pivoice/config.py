"""The daemon's YAML config, validated once at load into frozen, typed objects.

`load(path)` either returns a complete `Config` or raises `ConfigError` naming
the file, the key path and the reason. `config/pivoice.example.yaml` documents
every key. The `session:` block mirrors the API's GA session object (see
`session_schema.py`) so users can copy from the API docs; the older beta shape is
mapped to it first (`session_beta.py`).

Main thread, at start-up only.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from pivoice.audio import codec
from pivoice.session_beta import read_any_session
from pivoice.session_schema import TurnDetection
from pivoice.settings import ConfigError, Section, load_yaml_mapping

WAV_PREFIX = "wav:"
# The API closes every session at 60 minutes; ending ours earlier avoids a mid-sentence cut.
API_MAX_SESSION_S = 3600


@dataclass(frozen=True)
class ButtonConfig:
    pin: str
    pull_up: bool
    bounce_time_s: float | None
    pin_factory: str | None


@dataclass(frozen=True)
class ControlConfig:
    socket_path: str


@dataclass(frozen=True)
class InputConfig:
    device: str              # "default", a device-name substring, or "wav:PATH"
    sample_rate_hz: int | None
    frame_ms: int
    block_ms: int            # audio per read after the first frame: the mic thread wakes once per block


@dataclass(frozen=True)
class OutputConfig:
    device: str              # "default", a device-name substring, or "wav:PATH"
    sample_rate_hz: int | None
    prime_ms: int
    buffer_ms: int


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


@dataclass(frozen=True)
class RealtimeConfig:
    url: str
    connect_timeout_s: float
    reply_stall_s: float = 10.0   # a reply in flight with no server event for this long has stalled


@dataclass(frozen=True)
class TokensConfig:
    backend_url: str
    device_id: str
    secret_file: str
    timeout_s: float
    refresh_margin_s: float
    ca_bundle: str | None
    allow_insecure_http: bool


@dataclass(frozen=True)
class ConversationConfig:
    idle_timeout_s: float
    max_duration_s: float
    half_duplex: bool


@dataclass(frozen=True)
class SessionConfig:
    """The GA session as configured; `payload()` gives a fresh dict for each `session.update`."""

    json_text: str
    model: str
    input_format: str
    output_format: str
    turn_detection: TurnDetection | None
    output_audio: bool
    beta_mapped: tuple[tuple[str, str], ...] = ()   # (beta key, GA path) moved at load (session_beta.py)

    def payload(self) -> dict:
        return json.loads(self.json_text)


@dataclass(frozen=True)
class Config:
    file: str
    button: ButtonConfig
    control: ControlConfig
    audio: AudioConfig
    realtime: RealtimeConfig
    tokens: TokensConfig
    conversation: ConversationConfig
    session: SessionConfig
    log_level: str

    @property
    def trailing_ms(self) -> int:
        """Audio the local gate keeps sending after speech ends, so the server's VAD can close the turn."""
        td = self.session.turn_detection
        wait_ms = td.end_of_turn_ms if td else 0
        return wait_ms + self.audio.gate.trailing_margin_ms


def _read_device(sec: Section, key: str) -> str:
    device = sec.str(key, "default")
    if device.startswith(WAV_PREFIX) and not device[len(WAV_PREFIX):].strip():
        raise sec.error(key, "wav: needs a file path, e.g. wav:/tmp/question.wav")
    return device


def _read_audio(sec: Section) -> AudioConfig:
    inp = sec.section("input")
    input_cfg = InputConfig(
        device=_read_device(inp, "device"),
        sample_rate_hz=inp.int("sample_rate_hz", None, nullable=True, min=8000, max=192000),
        frame_ms=inp.int("frame_ms", 20, choices=(10, 20, 30)),
        block_ms=inp.int("block_ms", 100, min=10, max=500),
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


def _read_tokens(sec: Section) -> TokensConfig:
    url = sec.str("backend_url")
    if not url.startswith(("http://", "https://")):
        raise sec.error("backend_url", f"must start with https:// (or http:// for loopback); got {url!r}")
    tokens = TokensConfig(
        backend_url=url.rstrip("/"),
        device_id=sec.str("device_id"),
        secret_file=sec.str("secret_file"),
        timeout_s=sec.float("timeout_s", 5.0, min=0.5, max=60),
        refresh_margin_s=sec.float("refresh_margin_s", 20.0, min=1, max=3600),
        ca_bundle=sec.str("ca_bundle", None, nullable=True),
        allow_insecure_http=sec.bool("allow_insecure_http", False),
    )
    sec.done()
    return tokens


def parse(data: dict, file: str) -> Config:
    root = Section(data, file)
    btn = root.section("button")
    pin = btn.raw("pin", "GPIO17")
    if isinstance(pin, bool) or not isinstance(pin, (int, str)):
        raise btn.error("pin", "must be a BCM number (17) or a gpiozero pin name (\"GPIO17\", \"BOARD11\")")
    button = ButtonConfig(
        pin=str(pin),
        pull_up=btn.bool("pull_up", True),
        bounce_time_s=btn.float("bounce_time_s", 0.05, nullable=True, min=0, max=1),
        pin_factory=btn.str("pin_factory", None, nullable=True),
    )
    btn.done()

    ctl = root.section("control")
    control = ControlConfig(socket_path=ctl.str("socket_path", "/run/pivoice/control.sock"))
    ctl.done()

    audio = _read_audio(root.section("audio"))

    rt = root.section("realtime")
    url = rt.str("url", "wss://api.openai.com/v1/realtime")
    if not url.startswith(("ws://", "wss://")):
        raise rt.error("url", f"must start with wss:// (or ws:// for a local server); got {url!r}")
    realtime = RealtimeConfig(url=url, connect_timeout_s=rt.float("connect_timeout_s", 10.0, min=0.5, max=120),
                              reply_stall_s=rt.float("reply_stall_s", 10.0, min=1, max=600))
    rt.done()

    tokens = _read_tokens(root.section("tokens", required=True))

    conv = root.section("conversation")
    conversation = ConversationConfig(
        idle_timeout_s=conv.float("idle_timeout_s", 10.0, min=1, max=600),
        max_duration_s=conv.float("max_duration_s", 3300.0, min=10, max=API_MAX_SESSION_S),
        half_duplex=conv.bool("half_duplex", True),
    )
    conv.done()

    payload, td, beta_mapped = read_any_session(root.raw("session", None), file)
    audio_in = payload["audio"]["input"]["format"]["type"]
    audio_out = payload["audio"]["output"]["format"]["type"]
    session = SessionConfig(
        json_text=json.dumps(payload, sort_keys=True),
        model=payload["model"],
        input_format=audio_in,
        output_format=audio_out,
        turn_detection=td,
        output_audio=payload["output_modalities"] == ["audio"],
        beta_mapped=beta_mapped,
    )
    for fmt in (audio_in, audio_out):
        assert fmt in codec.FORMATS  # read_session only admits these

    log = root.section("logging")
    log_level = log.str("level", "info", choices=("debug", "info", "warning", "error"))
    log.done()
    root.done()
    return Config(file, button, control, audio, realtime, tokens, conversation, session, log_level)


def load(path: str | Path) -> Config:
    return parse(load_yaml_mapping(path), str(path))


def load_or_report(path: str | Path) -> Config | None:
    """For the commands: the config, or None after printing what is wrong and where."""
    try:
        return load(path)
    except ConfigError as exc:
        print(f"pivoice: config error: {exc}", file=sys.stderr)
        return None


def main(argv: list[str]) -> int:
    """`pivoice check-config`: lives in check_config.py; kept here for callers of `config.main`."""
    from pivoice import check_config
    return check_config.main(argv)
