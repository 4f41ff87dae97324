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
from pivoice.audio.settings import WAV_PREFIX, AudioConfig, read_audio
from pivoice.button_config import ButtonConfig, fit_session, read_button
from pivoice.feedback_config import FeedbackConfig, read_feedback
from pivoice.mcp_policy import McpPolicy, read_mcp
from pivoice.mqtt.config import MqttConfig, read_mqtt
from pivoice.tools.config import ToolsConfig, read_tools
from pivoice.transcripts import TranscriptsConfig, read_transcripts
from pivoice.session_beta import read_any_session
from pivoice.session_schema import TurnDetection
from pivoice.settings import ConfigError, Section, load_yaml_mapping

# The API closes every session at 60 minutes; ending ours earlier avoids a mid-sentence cut.
API_MAX_SESSION_S = 3600


@dataclass(frozen=True)
class ControlConfig:
    socket_path: str


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
    status_interval_s: float | None = 300.0   # fleet heartbeat to the backend (heartbeat.py); None: off


@dataclass(frozen=True)
class ConversationConfig:
    idle_timeout_s: float
    max_duration_s: float
    half_duplex: bool
    rollover: bool = True          # past max_duration_s a new session carries on (controller_rollover.py)
    carry_turns: int = 6
    max_conversation_s: float | None = None


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
    tools: ToolsConfig = ToolsConfig()
    mcp: McpPolicy = McpPolicy()
    transcripts: TranscriptsConfig | None = None
    mqtt: MqttConfig | None = None   # None: no MQTT (mqtt/)
    feedback: FeedbackConfig = FeedbackConfig()   # earcons and the status light (feedback_config.py)

    @property
    def trailing_ms(self) -> int:
        """Audio the local gate keeps sending after speech ends, so the server's VAD can close the turn."""
        td = self.session.turn_detection
        wait_ms = td.end_of_turn_ms if td else 0
        return wait_ms + self.audio.gate.trailing_margin_ms


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
        status_interval_s=sec.float("status_interval_s", 300.0, min=10, max=86400, nullable=True),
    )
    sec.done()
    return tokens


def parse(data: dict, file: str) -> Config:
    root = Section(data, file)
    button = read_button(root.section("button"))   # button_config.py: mode, long press, second button

    ctl = root.section("control")
    control = ControlConfig(socket_path=ctl.str("socket_path", "/run/pivoice/control.sock"))
    ctl.done()

    audio = read_audio(root.section("audio"))

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
        rollover=conv.bool("rollover", True),
        carry_turns=conv.int("carry_turns", 6, min=0, max=50),
        max_conversation_s=conv.float("max_conversation_s", None, nullable=True, min=10, max=7 * 24 * 3600),
    )
    conv.done()

    payload, td, beta_mapped = read_any_session(root.raw("session", None), file)
    payload, td = fit_session(button, data.get("session"), payload, td, beta_mapped, file)   # push_to_talk
    audio_in = payload["audio"]["input"]["format"]["type"]
    # a transcription session has no output: the input format stands in (nothing is ever played)
    audio_out = payload["audio"].get("output", {"format": {"type": audio_in}})["format"]["type"]
    session = SessionConfig(
        json_text=json.dumps(payload, sort_keys=True),
        model=payload.get("model") or payload["audio"]["input"]["transcription"]["model"],
        input_format=audio_in,
        output_format=audio_out,
        turn_detection=td,
        output_audio=payload.get("output_modalities") == ["audio"],
        beta_mapped=beta_mapped,
    )
    for fmt in (audio_in, audio_out):
        assert fmt in codec.FORMATS  # read_session only admits these

    log = root.section("logging")
    log_level = log.str("level", "info", choices=("debug", "info", "warning", "error"))
    log.done()
    tools = read_tools(root.section("tools"))
    _check_tool_names(root, payload, tools)
    mcp = read_mcp(root.section("mcp"))
    transcripts = read_transcripts(root.section("transcripts"))
    mqtt = read_mqtt(root, tokens.device_id)
    feedback = read_feedback(root.section("feedback"))
    root.done()
    return Config(file, button, control, audio, realtime, tokens, conversation, session, log_level,
                  tools, mcp, transcripts, feedback=feedback, mqtt=mqtt)


def _check_tool_names(root: Section, payload: dict, tools: ToolsConfig) -> None:
    """A function declared in `session.tools` and run here too would be answered twice (or by the
    wrong one): the names must not meet."""
    local = set(tools.names())
    for i, tool in enumerate(payload.get("tools") or ()):
        if isinstance(tool, dict) and tool.get("type") == "function" and tool.get("name") in local:
            raise root.error(f"session.tools[{i}].name", f"{tool['name']!r} is also a local tool (tools:); "
                                                         "declare it in one place")


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
