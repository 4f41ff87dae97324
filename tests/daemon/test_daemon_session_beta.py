"""A `session:` block in the older beta shape (seed 000) is mapped to the GA shape, named in one warning,
and validated as GA; beta keys with no GA field are refused with the reason; errors keep the key the user
wrote; `pivoice check-config --print-session` shows the GA session the daemon will send."""

from __future__ import annotations

import copy
import json
import logging
import subprocess
import sys

import pytest
import yaml

from pivoice import check_config, config
from pivoice.session_beta import BETA_TO_GA, REFUSED, SAME_IN_BOTH, map_beta
from pivoice.settings import ConfigError

MINIMAL = {"tokens": {"backend_url": "http://127.0.0.1:8780", "device_id": "kitchen", "secret_file": "/s"}}
# Every key of the beta session objects in seed 000 (RealtimeSession, ...CreateRequest, ...CreateResponse).
SEED_000_KEYS = ("id", "modalities", "model", "instructions", "voice", "input_audio_format", "output_audio_format",
                 "input_audio_transcription", "turn_detection", "tools", "tool_choice", "temperature",
                 "max_response_output_tokens", "client_secret")
TOOL = {"type": "function", "name": "get_time", "description": "Return the current local time.",
        "parameters": {"type": "object", "properties": {}, "required": []}}
# Every beta key that has a GA place, written as a beta-era config would have it.
FULL_BETA = {
    "model": "gpt-realtime",
    "instructions": "Be brief.",
    "modalities": ["audio", "text"],
    "voice": "alloy",
    "speed": 1.1,
    "input_audio_format": "pcm16",
    "output_audio_format": "g711_ulaw",
    "input_audio_transcription": {"model": "whisper-1", "language": "en", "prompt": "kitchen words"},
    "input_audio_noise_reduction": {"type": "near_field"},
    "turn_detection": {"type": "server_vad", "threshold": 0.6, "prefix_padding_ms": 200, "silence_duration_ms": 400,
                       "create_response": True, "interrupt_response": False},
    "max_response_output_tokens": 1024,
    "tools": [TOOL],
    "tool_choice": "auto",
    "tracing": "auto",
}
FULL_GA = {
    "type": "realtime",
    "model": "gpt-realtime",
    "instructions": "Be brief.",
    "output_modalities": ["audio"],
    "max_output_tokens": 1024,
    "audio": {
        "input": {"format": {"type": "audio/pcm", "rate": 24000},
                  "noise_reduction": {"type": "near_field"},
                  "transcription": {"model": "whisper-1", "language": "en", "prompt": "kitchen words"},
                  "turn_detection": {"type": "server_vad", "threshold": 0.6, "prefix_padding_ms": 200,
                                     "silence_duration_ms": 400, "create_response": True,
                                     "interrupt_response": False}},
        "output": {"format": {"type": "audio/pcmu"}, "voice": "alloy", "speed": 1.1},
    },
    "tools": [TOOL],
    "tool_choice": "auto",
    "tracing": "auto",
}


def write(tmp_path, session, name="pivoice.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump({**MINIMAL, "session": session}, sort_keys=False))
    return path


def load_session(tmp_path, session):
    return config.load(write(tmp_path, session))


def refused(tmp_path, session) -> ConfigError:
    path = write(tmp_path, session)
    with pytest.raises(ConfigError) as err:
        config.load(path)
    assert str(err.value).startswith(f"{path}: {err.value.key_path}: ")
    return err.value


def test_a_full_beta_session_becomes_the_ga_session_and_validates_against_the_sdk(tmp_path):
    cfg = load_session(tmp_path, FULL_BETA)
    payload = cfg.session.payload()
    assert payload == FULL_GA
    assert (cfg.session.input_format, cfg.session.output_format) == ("audio/pcm", "audio/pcmu")
    assert cfg.session.turn_detection.prefix_padding_ms == 200 and cfg.trailing_ms == 400 + 300
    sdk = pytest.importorskip("openai.types.realtime")
    from pydantic import TypeAdapter
    model = TypeAdapter(sdk.RealtimeSessionCreateRequest).validate_python(payload, strict=True)
    assert model.audio.output.voice == "alloy" and model.max_output_tokens == 1024
    # strict validation ignores extra keys, so compare what the SDK kept with what we send
    assert model.model_dump(exclude_unset=True, mode="json") == payload
    event = TypeAdapter(sdk.SessionUpdateEvent).validate_python({"type": "session.update", "session": payload},
                                                               strict=True)
    assert event.session.audio.input.turn_detection.threshold == 0.6


def test_every_beta_key_is_mapped_refused_or_the_same_never_dropped(tmp_path):
    beta_sdk = pytest.importorskip("openai.types.beta.realtime")
    from openai.types.beta.realtime.session_update_event import Session as BetaUpdateSession
    from openai.types.realtime import RealtimeSessionCreateRequest
    beta_keys = set(SEED_000_KEYS) | set(BetaUpdateSession.model_fields) | set(beta_sdk.Session.model_fields)
    handled = set(BETA_TO_GA) | set(REFUSED) | set(SAME_IN_BOTH)
    assert beta_keys - handled == set()
    assert not set(BETA_TO_GA) & set(REFUSED) and not set(BETA_TO_GA) & set(SAME_IN_BOTH)
    ga_top = set(RealtimeSessionCreateRequest.model_fields)
    assert {target.split(".")[0] for target in BETA_TO_GA.values()} <= ga_top
    assert set(SAME_IN_BOTH) <= ga_top and not set(REFUSED) & ga_top
    # FULL_BETA uses every mapped key, and each one's value arrived at its GA path
    assert set(BETA_TO_GA) <= set(FULL_BETA)
    cfg = load_session(tmp_path, FULL_BETA)
    assert [beta for beta, _ in cfg.session.beta_mapped] == [k for k in FULL_BETA if k in BETA_TO_GA]
    payload = cfg.session.payload()
    for beta, target in cfg.session.beta_mapped:
        node = payload
        for key in target.split("."):
            node = node[key]
        assert node is not None, (beta, target)
        if beta not in ("modalities", "input_audio_format", "output_audio_format"):   # the converted ones
            assert node == FULL_BETA[beta], (beta, target)


def test_one_warning_names_every_mapped_key_with_its_ga_path(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="pivoice.session_beta")
    cfg = load_session(tmp_path, FULL_BETA)
    records = [r for r in caplog.records if r.name == "pivoice.session_beta"]
    assert len(records) == 1 and records[0].levelno == logging.WARNING
    assert records[0].getMessage() == (
        "session: beta-shaped keys mapped to the GA session: modalities -> output_modalities, "
        "voice -> audio.output.voice, speed -> audio.output.speed, input_audio_format -> audio.input.format, "
        "output_audio_format -> audio.output.format, input_audio_transcription -> audio.input.transcription, "
        "input_audio_noise_reduction -> audio.input.noise_reduction, "
        "turn_detection -> audio.input.turn_detection, max_response_output_tokens -> max_output_tokens")
    assert cfg.session.beta_mapped[1] == ("voice", "audio.output.voice")
    caplog.clear()
    ga = load_session(tmp_path, FULL_GA)
    assert ga.session.beta_mapped == () and not [r for r in caplog.records if r.name == "pivoice.session_beta"]
    assert ga.session.payload() == cfg.session.payload()


@pytest.mark.parametrize("beta,ga_type", [("pcm16", "audio/pcm"), ("g711_ulaw", "audio/pcmu"),
                                          ("g711_alaw", "audio/pcma")])
def test_beta_audio_formats(tmp_path, beta, ga_type):
    cfg = load_session(tmp_path, {"input_audio_format": beta, "output_audio_format": beta})
    assert (cfg.session.input_format, cfg.session.output_format) == (ga_type, ga_type)
    fmt = cfg.session.payload()["audio"]["input"]["format"]
    assert fmt == ({"type": ga_type, "rate": 24000} if beta == "pcm16" else {"type": ga_type})


@pytest.mark.parametrize("modalities,ga,spoken", [(["audio", "text"], ["audio"], True),
                                                  (["text", "audio"], ["audio"], True),
                                                  (["audio"], ["audio"], True), (["text"], ["text"], False)])
def test_beta_modalities(tmp_path, modalities, ga, spoken):
    cfg = load_session(tmp_path, {"modalities": modalities})
    assert cfg.session.payload()["output_modalities"] == ga and cfg.session.output_audio is spoken


def test_null_beta_blocks_keep_their_meaning(tmp_path):
    cfg = load_session(tmp_path, {"turn_detection": None, "input_audio_noise_reduction": None,
                                  "input_audio_transcription": None})
    audio_in = cfg.session.payload()["audio"]["input"]
    assert audio_in["turn_detection"] is None and cfg.session.turn_detection is None
    assert audio_in["noise_reduction"] is None and audio_in["transcription"] is None


def test_beta_and_ga_keys_that_are_not_twins_mix(tmp_path):
    cfg = load_session(tmp_path, {"voice": "verse", "audio": {"output": {"speed": 0.8},
                                                              "input": {"format": {"type": "audio/pcma"}}}})
    payload = cfg.session.payload()
    assert payload["audio"]["output"]["voice"] == "verse" and payload["audio"]["output"]["speed"] == 0.8
    assert payload["audio"]["input"]["format"] == {"type": "audio/pcma"}
    assert cfg.session.beta_mapped == (("voice", "audio.output.voice"),)


@pytest.mark.parametrize("key,value", [("temperature", 0.8), ("client_secret", {"expires_after": {
    "anchor": "created_at", "seconds": 600}}), ("id", "sess_001")])
def test_beta_keys_without_a_ga_field_are_refused_with_the_reason(tmp_path, key, value):
    err = refused(tmp_path, {**FULL_BETA, key: value})
    assert err.key_path == f"session.{key}" and err.reason == REFUSED[key]
    err = refused(tmp_path, {**FULL_GA, key: value})   # in a GA-shaped block too
    assert err.key_path == f"session.{key}"


def test_temperature_reason_says_what_to_do(tmp_path):
    err = refused(tmp_path, {"voice": "alloy", "temperature": 0.7})
    assert err.reason == "removed in the GA API: the model's sampling is not configurable; delete the key"


@pytest.mark.parametrize("beta,value,twin", [
    ("voice", "alloy", {"audio": {"output": {"voice": "marin"}}}),
    ("modalities", ["text"], {"output_modalities": ["text"]}),
    ("turn_detection", {"type": "semantic_vad"}, {"audio": {"input": {"turn_detection": None}}}),
    ("max_response_output_tokens", 100, {"max_output_tokens": "inf"}),
    ("input_audio_format", "pcm16", {"audio": {"input": {"format": {"type": "audio/pcm"}}}}),
])
def test_a_beta_key_with_its_ga_twin_is_an_error_naming_both(tmp_path, beta, value, twin):
    err = refused(tmp_path, {beta: value, **twin})
    assert err.key_path == f"session.{beta}"
    assert f"session.{BETA_TO_GA[beta]}" in err.reason and "keep one" in err.reason


@pytest.mark.parametrize("session,where,reason", [
    ({"turn_detection": {"type": "server_vad", "threshold": 2}}, "session.turn_detection.threshold",
     "must be <= 1.0"),
    ({"turn_detection": {"silence_ms": 3}}, "session.turn_detection.silence_ms", "unknown key"),
    ({"turn_detection": {"type": "none"}}, "session.turn_detection.type", "must be one of server_vad"),
    ({"turn_detection": "server_vad"}, "session.turn_detection", "must be a mapping"),
    ({"turn_detection": {"type": "semantic_vad", "threshold": 0.5}}, "session.turn_detection.threshold",
     "not allowed with type semantic_vad"),
    ({"turn_detection": {"type": "server_vad", "eagerness": "low"}}, "session.turn_detection.eagerness",
     "not allowed with type server_vad"),
    ({"voice": "nova"}, "session.voice", "must be one of alloy"),
    ({"speed": 3}, "session.speed", "must be <= 1.5"),
    ({"max_response_output_tokens": 5000}, "session.max_response_output_tokens", "1..4096"),
    ({"input_audio_transcription": {"model": 1}}, "session.input_audio_transcription.model", "must be a string"),
    ({"input_audio_noise_reduction": {"type": "studio"}}, "session.input_audio_noise_reduction.type",
     "near_field, far_field"),
    ({"input_audio_format": "mp3"}, "session.input_audio_format", "must be one of pcm16, g711_ulaw, g711_alaw"),
    ({"output_audio_format": {"type": "audio/pcm"}}, "session.output_audio_format", "must be one of pcm16"),
    ({"modalities": []}, "session.modalities", "must be [audio, text] or [text]"),
    ({"modalities": "audio"}, "session.modalities", "must be [audio, text] or [text]"),
    # a GA key next to a beta one keeps its own path
    ({"voice": "alloy", "audio": {"output": {"speed": 9}}}, "session.audio.output.speed", "must be <= 1.5"),
    ({"voice": "alloy", "audio": "loud"}, "session.audio", "must be a mapping"),
    ({"voice": "alloy", "audio": {"output": {"colour": "red"}}}, "session.audio.output.colour", "unknown key"),
])
def test_errors_inside_mapped_values_name_the_key_as_written(tmp_path, session, where, reason):
    err = refused(tmp_path, session)
    assert err.key_path == where
    assert reason in err.reason


def test_mapping_leaves_the_callers_data_alone():
    raw = copy.deepcopy({**FULL_BETA, "audio": {"output": {"format": {"type": "audio/pcm"}}}})
    raw.pop("output_audio_format")
    before = copy.deepcopy(raw)
    ga, mapped = map_beta(raw, "f.yaml")
    assert raw == before
    assert ga["audio"]["output"] == {"format": {"type": "audio/pcm"}, "voice": "alloy", "speed": 1.1}
    assert ("voice", "audio.output.voice") in mapped and not set(BETA_TO_GA) & set(ga)
    assert map_beta(None, "f.yaml") == ({}, [])
    with pytest.raises(ConfigError, match="session: must be a mapping"):
        map_beta(["voice"], "f.yaml")


def test_a_hand_written_beta_file_with_comments_loads(tmp_path):
    path = tmp_path / "beta.yaml"
    path.write_text(
        "tokens: {backend_url: 'http://127.0.0.1:8780', device_id: kitchen, secret_file: /s}\n"
        "session:                      # copied from a beta-era guide\n"
        "  modalities: [text, audio]\n"
        "  voice: shimmer\n"
        "  input_audio_format: g711_alaw\n"
        "  output_audio_format: g711_alaw\n"
        "  turn_detection:\n"
        "    type: semantic_vad\n"
        "    eagerness: high\n"
        "  max_response_output_tokens: inf\n")
    cfg = config.load(path)
    assert cfg.session.turn_detection.type == "semantic_vad" and cfg.trailing_ms == 2000 + 300
    assert cfg.session.payload()["max_output_tokens"] == "inf"
    assert cfg.session.input_format == "audio/pcma"
    assert len(cfg.session.beta_mapped) == 6


def test_check_config_prints_the_session_update_it_will_send(tmp_path, capsys):
    path = write(tmp_path, FULL_BETA)
    assert check_config.main(["--file-only", "--print-session", str(path)]) == 0
    out = capsys.readouterr().out
    summary, _, rest = out.partition("\n")
    assert summary.startswith(f"{path}: ok (model gpt-realtime")
    note, _, printed = rest.partition("\n")
    assert note == ("  note: beta-shaped session keys mapped to the GA session: modalities -> output_modalities, "
                    "voice -> audio.output.voice, speed -> audio.output.speed, "
                    "input_audio_format -> audio.input.format, output_audio_format -> audio.output.format, "
                    "input_audio_transcription -> audio.input.transcription, "
                    "input_audio_noise_reduction -> audio.input.noise_reduction, "
                    "turn_detection -> audio.input.turn_detection, max_response_output_tokens -> max_output_tokens")
    event = json.loads(printed)
    assert event == {"type": "session.update", "session": FULL_GA}
    assert printed.startswith("{\n  \"type\"") or printed.startswith("{\n  \"session\"")   # pretty, not one line
    sdk = pytest.importorskip("openai.types.realtime")
    from pydantic import TypeAdapter
    TypeAdapter(sdk.SessionUpdateEvent).validate_python(event, strict=True)
    # without the flag: the summary only; a GA file has no note
    assert check_config.main(["--file-only", str(write(tmp_path, FULL_GA, "ga.yaml"))]) == 0
    assert capsys.readouterr().out.count("\n") == 1


def test_check_config_print_session_with_the_secret(tmp_path, capsys):
    secret = tmp_path / "device-secret"
    secret.write_text("dsec-0123456789abcdef\n")
    secret.chmod(0o600)
    path = tmp_path / "pivoice.yaml"
    path.write_text(yaml.safe_dump({"tokens": {**MINIMAL["tokens"], "secret_file": str(secret)},
                                    "session": {"voice": "ash"}}))
    assert check_config.main(["--print-session", str(path)]) == 0
    out = capsys.readouterr().out
    event = json.loads(out[out.index("\n{") + 1:])
    assert event["session"]["audio"]["output"]["voice"] == "ash"
    assert "dsec-0123456789abcdef" not in out


def test_the_command_line_refuses_temperature_and_prints_the_mapped_session(tmp_path):
    def pivoice(*args):
        return subprocess.run([sys.executable, "-m", "pivoice", "check-config", "--file-only", *args],
                              capture_output=True, text=True, timeout=60)
    bad = pivoice(str(write(tmp_path, {"voice": "alloy", "temperature": 0.8}, "bad.yaml")))
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.strip() == (f"pivoice: config error: {tmp_path / 'bad.yaml'}: session.temperature: "
                                  f"{REFUSED['temperature']}")
    good = pivoice("--print-session", str(write(tmp_path, {"voice": "alloy", "modalities": ["text"]})))
    assert good.returncode == 0, good.stderr
    # the load-time warning goes to stderr, the session to stdout
    assert "beta-shaped keys mapped to the GA session: voice -> audio.output.voice, modalities -> " \
           "output_modalities" in good.stderr
    session = json.loads(good.stdout[good.stdout.index("\n{") + 1:])["session"]
    assert session["output_modalities"] == ["text"] and session["audio"]["output"]["voice"] == "alloy"



@pytest.mark.integration
def test_the_daemon_sends_the_mapped_session_to_the_dev_server(tmp_path):
    """The real daemon with a beta-shaped config: the key request and session.update carry the GA shape,
    which the dev server checks against the SDK types (no unknown fields)."""
    from support.fixtures_audio import make_speech_wav
    from support.stack import offline_stack, running
    mic = make_speech_wav(tmp_path / "question.wav", "What time is it?", rate_hz=16000, lead_silence_s=0.1,
                          tail_silence_s=1.0)
    beta = {"modalities": ["audio", "text"], "voice": "alloy", "speed": 1.2, "input_audio_format": "pcm16",
            "output_audio_format": "pcm16", "input_audio_noise_reduction": {"type": "far_field"},
            "input_audio_transcription": {"model": "gpt-4o-mini-transcribe"},
            "turn_detection": {"type": "server_vad", "silence_duration_ms": 500}}
    with offline_stack(tmp_path / "stack") as stack:
        cfg = stack.config(mic=f"wav:{mic}", speaker=f"wav:{tmp_path / 'reply.wav'}")
        cfg["session"] = beta
        with running(stack.daemon(cfg)) as daemon:
            assert daemon.ctl("press") == {"ok": True}
            daemon.wait_for("session", timeout_s=30)
            stderr = daemon.stderr_text()
        records = stack.client_events()
    updates = [r for r in records if r["event"]["type"] == "session.update"]
    assert updates and all(r["valid"] and not r["unknown_fields"] for r in updates), updates
    session = updates[0]["event"]["session"]
    assert session["output_modalities"] == ["audio"]
    assert session["audio"]["output"] == {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "alloy",
                                          "speed": 1.2}
    assert session["audio"]["input"]["transcription"] == {"model": "gpt-4o-mini-transcribe"}
    assert not set(BETA_TO_GA) & set(session)
    assert stderr.count("beta-shaped keys mapped to the GA session") == 1
    assert "voice -> audio.output.voice" in stderr and "turn_detection -> audio.input.turn_detection" in stderr
