"""Config loading: the example loads, bad values name the file and key path."""

from pathlib import Path

import pytest
import yaml

from pivoice import config
from pivoice.settings import ConfigError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "pivoice.example.yaml"
MINIMAL = {"tokens": {"backend_url": "http://127.0.0.1:8780", "device_id": "kitchen", "secret_file": "/s"}}


def load_dict(tmp_path, data):
    path = tmp_path / "pivoice.yaml"
    path.write_text(yaml.safe_dump(data))
    return config.load(path)


def with_(path: str, value):
    """MINIMAL plus one value at a dotted path."""
    data = yaml.safe_load(yaml.safe_dump(MINIMAL))
    node = data
    *parents, last = path.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return data


def test_example_config_loads_with_documented_defaults():
    cfg = config.load(EXAMPLE)
    assert cfg.session.model == "gpt-realtime"
    assert cfg.session.payload()["audio"]["input"]["noise_reduction"] == {"type": "far_field"}
    assert cfg.session.turn_detection.type == "server_vad"
    assert cfg.trailing_ms == 500 + 300
    assert cfg.audio.input.frame_ms == 20 and cfg.conversation.max_duration_s == 3300


def test_example_documents_every_key_the_loader_reads(tmp_path):
    """Every default the loader fills in appears in the example with the same value."""
    assert config.load(EXAMPLE) == config.parse(yaml.safe_load(EXAMPLE.read_text()), str(EXAMPLE))
    minimal = load_dict(tmp_path, MINIMAL)
    example = config.load(EXAMPLE)
    for section in ("button", "control", "audio", "realtime", "conversation", "mcp", "transcripts"):
        assert getattr(minimal, section) == getattr(example, section), section
    assert minimal.session.payload() == example.session.payload()


def test_minimal_config_gets_voice_device_defaults(tmp_path):
    cfg = load_dict(tmp_path, MINIMAL)
    payload = cfg.session.payload()
    assert payload["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert payload["audio"]["output"]["voice"] == "marin"
    assert payload["audio"]["input"]["transcription"] is None


@pytest.mark.parametrize("path,value,where,reason", [
    ("audio.input.frame_ms", 25, "audio.input.frame_ms", "must be one of 10, 20, 30"),
    ("audio.input.block_ms", 90, "audio.input.block_ms", "90 is not a multiple of frame_ms (20)"),
    ("audio.input.period_ms", 2, "audio.input.period_ms", "must be >= 5"),
    ("audio.gate.aggressiveness", 4, "audio.gate.aggressiveness", "must be <= 3"),
    ("audio.input.device", "wav:", "audio.input.device", "wav: needs a file path"),
    ("audio.input.colour", "blue", "audio.input.colour", "unknown key"),
    ("button.pin", True, "button.pin", "BCM number"),
    ("conversation.max_duration_s", 4000, "conversation.max_duration_s", "must be <= 3600"),
    ("realtime.url", "https://api.openai.com/v1/realtime", "realtime.url", "must start with wss://"),
    ("tokens.backend_url", "ftp://x", "tokens.backend_url", "must start with https://"),
    ("session.output_modalities", ["audio", "text"], "session.output_modalities", "does not allow both"),
    ("session.modalities", ["video"], "session.modalities", "must be [audio, text] or [text]"),   # beta key
    ("session.colour", "blue", "session.colour", "unknown key"),
    ("audio.output.volume", 101, "audio.output.volume", "must be <= 100"),
    ("mcp.ask_timeout_s", 1, "mcp.ask_timeout_s", "must be >= 2"),
    ("mcp.approve", ["home:rm -rf"], "mcp.approve", "is not a tool name"),
    ("session.max_output_tokens", 5000, "session.max_output_tokens", "1..4096"),
    ("session.audio.input.format", {"type": "audio/pcm", "rate": 16000}, "session.audio.input.format.rate",
     "must be one of 24000"),
    ("session.audio.input.format", {"type": "pcm16"}, "session.audio.input.format.type", "must be one of"),
    ("session.audio.input.noise_reduction", {"type": "studio"}, "session.audio.input.noise_reduction.type",
     "near_field, far_field"),
    ("session.audio.input.turn_detection", {"type": "server_vad", "silence_ms": 3},
     "session.audio.input.turn_detection.silence_ms", "unknown key"),
    ("session.audio.input.turn_detection", {"type": "semantic_vad", "eagerness": "eager"},
     "session.audio.input.turn_detection.eagerness", "low, medium, high, auto"),
    ("session.audio.output.voice", "robot", "session.audio.output.voice", "must be one of alloy"),
    ("session.audio.output.speed", 2, "session.audio.output.speed", "must be <= 1.5"),
    ("logging.level", "loud", "logging.level", "must be one of debug"),
])
def test_bad_values_name_file_key_path_and_reason(tmp_path, path, value, where, reason):
    with pytest.raises(ConfigError) as exc:
        load_dict(tmp_path, with_(path, value))
    assert exc.value.key_path == where
    assert reason in exc.value.reason
    assert str(exc.value).startswith(f"{tmp_path / 'pivoice.yaml'}: {where}: ")


def test_missing_tokens_section_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="tokens: is required"):
        load_dict(tmp_path, {})
    bad = tmp_path / "bad.yaml"
    bad.write_text("tokens: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML: line"):
        config.load(bad)
    with pytest.raises(ConfigError, match="cannot read file"):
        config.load(tmp_path / "missing.yaml")


def test_turn_detection_variants_set_trailing_audio(tmp_path):
    semantic = load_dict(tmp_path, with_("session.audio.input.turn_detection",
                                         {"type": "semantic_vad", "eagerness": "high"}))
    assert semantic.trailing_ms == 2000 + 300
    manual = load_dict(tmp_path, with_("session.audio.input.turn_detection", None))
    assert manual.session.turn_detection is None
    assert manual.session.payload()["audio"]["input"]["turn_detection"] is None
    assert manual.trailing_ms == 300


def test_noise_reduction_null_turns_it_off_and_g711_formats(tmp_path):
    data = with_("session.audio.input", {"noise_reduction": None, "format": {"type": "audio/pcmu"}})
    cfg = load_dict(tmp_path, data)
    assert cfg.session.payload()["audio"]["input"]["noise_reduction"] is None
    assert cfg.session.input_format == "audio/pcmu"


def test_check_config_cli(tmp_path, capsys):
    assert config.main(["--file-only", str(EXAMPLE)]) == 0   # the secret: tests/doctor/test_doctor_config.py
    assert "ok" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(with_("audio.input.frame_ms", 7)))
    assert config.main([str(bad)]) == 2
    assert "audio.input.frame_ms" in capsys.readouterr().err


def test_session_payload_validates_against_the_sdk_session_type():
    sdk = pytest.importorskip("openai.types.realtime")
    from pydantic import TypeAdapter
    payload = config.load(EXAMPLE).session.payload()
    model = TypeAdapter(sdk.RealtimeSessionCreateRequest).validate_python(payload, strict=True)
    assert model.audio.input.noise_reduction.type == "far_field"


@pytest.mark.parametrize("text,where,reason", [
    (b"tokens:\n  device_id: a\n  device_id: b\n", "tokens.device_id", "given twice (lines 2 and 3)"),
    (b"logging: {level: info}\nlogging: {level: debug}\n", "logging", "given twice (lines 1 and 2)"),
    (b"audio:\n  input:\n    frame_ms: 20\n    device: a\n    frame_ms: 30\n", "audio.input.frame_ms",
     "given twice (lines 3 and 5)"),
])
def test_a_key_given_twice_is_refused_with_its_path_and_lines(tmp_path, text, where, reason):
    path = tmp_path / "pivoice.yaml"
    path.write_bytes(text)
    with pytest.raises(ConfigError) as err:
        config.load(path)
    assert err.value.key_path == where
    assert reason in err.value.reason


def test_a_yaml_merge_key_may_still_be_overridden(tmp_path):
    path = tmp_path / "pivoice.yaml"
    from pivoice.settings import load_yaml_mapping
    path.write_text("base: &base {a: 1, b: 2}\nother:\n  <<: *base\n  b: 3\n")
    assert load_yaml_mapping(path)["other"] == {"a": 1, "b": 3}


def test_a_file_that_is_not_utf8_is_one_clear_line(tmp_path, capsys):
    path = tmp_path / "pivoice.yaml"
    path.write_bytes(b"tokens:\n  device_id: caf\xe9\n")
    assert config.main([str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    assert f"{path}: not UTF-8 text: byte 0xe9 at line 2" in err


def test_a_session_function_may_not_share_a_name_with_an_enabled_local_tool(tmp_path):
    session_tool = [{"type": "function", "name": "get_time", "parameters": {"type": "object"}}]
    data = with_("session.tools", session_tool)
    assert load_dict(tmp_path, data).session.payload()["tools"] == session_tool   # get_time is off: fine
    data["tools"] = {"builtin": {"time": True}}
    with pytest.raises(ConfigError) as exc:
        load_dict(tmp_path, data)
    assert exc.value.key_path == "session.tools[0].name"
    assert "'get_time' is also a local tool (tools:); declare it in one place" in exc.value.reason


def test_a_transcription_session_is_the_ga_transcription_request(tmp_path):
    from openai.types.realtime import RealtimeTranscriptionSessionCreateRequest
    from pydantic import TypeAdapter
    data = with_("session", {"type": "transcription", "audio": {"input": {
        "transcription": {"model": "gpt-4o-mini-transcribe", "language": "en"},
        "turn_detection": {"type": "server_vad", "silence_duration_ms": 700}}},
        "include": ["item.input_audio_transcription.logprobs"]})
    cfg = load_dict(tmp_path, data)
    payload = cfg.session.payload()
    assert payload["type"] == "transcription" and "model" not in payload and "output_modalities" not in payload
    model = TypeAdapter(RealtimeTranscriptionSessionCreateRequest).validate_python(payload, strict=True)
    assert model.model_dump(exclude_unset=True) == payload   # nothing unknown, nothing dropped
    assert cfg.session.model == "gpt-4o-mini-transcribe" and not cfg.session.output_audio
    with pytest.raises(ConfigError) as exc:
        load_dict(tmp_path, with_("session", {"type": "transcription", "voice": "marin"}))
    assert "has no audio output (it only transcribes)" in exc.value.reason   # the beta `voice`, mapped
    with pytest.raises(ConfigError) as exc:
        load_dict(tmp_path, with_("session", {"type": "transcription", "instructions": "Be brief."}))
    assert exc.value.key_path == "session.instructions" and "not part of a transcription session" in exc.value.reason
    with pytest.raises(ConfigError) as exc:
        load_dict(tmp_path, with_("session", {"type": "transcription", "audio": {"input": {"transcription": None}}}))
    assert exc.value.key_path == "session.audio.input.transcription" and "needs a transcription model" in exc.value.reason


def test_print_session_shows_the_local_tools_the_daemon_will_declare(tmp_path, capsys):
    import json as _json

    from pivoice import check_config
    data = with_("tools", {"builtin": {"time": {"enabled": True}}, "functions": [
        {"name": "say_back", "description": "Echo.", "parameters": {
            "type": "object", "required": ["word"], "properties": {"word": {"type": "string"}}},
         "command": {"argv": ["/bin/echo", "{word}"]}}]})
    path = tmp_path / "pivoice.yaml"
    path.write_text(yaml.safe_dump(data))
    assert check_config.main(["--file-only", "--print-session", str(path)]) == 0
    out = capsys.readouterr().out
    event = _json.loads(out[out.index("{"):])
    assert [t["name"] for t in event["session"]["tools"]] == ["get_time", "say_back"]
    assert all(t["type"] == "function" and t["parameters"]["type"] == "object" for t in event["session"]["tools"])
