"""Transcription (dictation) client secrets: policy parsing, and a real `pivoice token-server` in front
of the real `pivoice dev-server`, whose secret then opens a transcription session that transcribes."""

import base64

import httpx
import numpy as np
import pytest
from openai.types.realtime import ClientSecretCreateResponse

from pivoice.devserver.transcription import DEFAULT_TRANSCRIPT
from pivoice.devserver.validation import check_client_secret_response
from pivoice.settings import ConfigError
from pivoice.tokenserver.config import parse_config
from pivoice.tokenserver.policy import PolicyViolation, device_policy, merge_session
from support.devserver import RealtimeTestClient, run_dev_server
from support.tokenserver import run_token_server

API_KEY = "sk-transcription-KEY-must-not-leak-1717"
MINT = "/v1/realtime/client_secrets"
DICTATION = {"model": "gpt-4o-transcribe", "language": "en"}
DEVICE_SESSION = {"type": "transcription",
                  "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000},
                                      "noise_reduction": {"type": "near_field"},
                                      "transcription": {"model": "gpt-4o-transcribe", "language": "en",
                                                        "prompt": "a shopping list"},
                                      "turn_detection": None}}}


def policy(**transcription_and_more):
    return parse_config({"policy": {"model": "gpt-realtime", **transcription_and_more}}, "t.yaml").policy


def noise_pcm24(seconds: float) -> bytes:
    rng = np.random.default_rng(7)
    return rng.integers(-3000, 3000, int(24000 * seconds), dtype=np.int16).tobytes()


# ---- policy (pure functions)

def test_transcription_session_is_pinned_and_merged():
    pol = policy(transcription={**DICTATION, "session": {"audio": {"input": {"transcription": {"prompt": "lists"}}}}})
    merged = merge_session(pol, {"type": "transcription", "audio": {"input": {"turn_detection": None}}})
    assert merged == {"type": "transcription",
                      "audio": {"input": {"transcription": {"prompt": "lists", "model": "gpt-4o-transcribe",
                                                            "language": "en"},
                                          "turn_detection": None}}}
    assert merge_session(pol, {"type": "transcription"})["audio"]["input"]["transcription"]["model"] == \
        "gpt-4o-transcribe"
    assert merge_session(pol, {})["type"] == "realtime"  # no type: the realtime session as before


@pytest.mark.parametrize("session, field", [
    ({"audio": {"input": {"transcription": {"model": "whisper-1"}}}}, "session.audio.input.transcription.model"),
    ({"audio": {"input": {"transcription": {"language": "de"}}}}, "session.audio.input.transcription.language"),
    ({"model": "gpt-realtime"}, "session.model"),
    ({"instructions": "x"}, "session.instructions"),
    ({"audio": {"output": {"voice": "ash"}}}, "session.audio.output.voice"),
])
def test_transcription_fields_outside_the_policy_are_named(session, field):
    pol = policy(transcription=DICTATION)
    with pytest.raises(PolicyViolation) as err:
        merge_session(pol, {"type": "transcription", **session})
    assert (err.value.field, err.value.code) == (field, "forbidden_override")


def test_no_transcription_section_refuses_with_the_reason():
    with pytest.raises(PolicyViolation) as err:
        merge_session(policy(), DEVICE_SESSION)
    assert (err.value.field, err.value.code) == ("session.type", "transcription_not_allowed")
    assert "policy.transcription is null" in str(err.value)


def test_unpinned_language_is_not_settable_unless_allowed():
    pol = policy(transcription={"model": "whisper-1"})
    assert pol.transcription.language is None
    with pytest.raises(PolicyViolation):
        merge_session(pol, {"type": "transcription", "audio": {"input": {"transcription": {"language": "fr"}}}})
    pol = policy(transcription={"model": "whisper-1", "allowed_overrides": ["audio.input.transcription.language"]})
    merged = merge_session(pol, {"type": "transcription", "audio": {"input": {"transcription": {"language": "fr"}}}})
    assert merged["audio"]["input"]["transcription"] == {"model": "whisper-1", "language": "fr"}


@pytest.mark.parametrize("transcription, where, reason", [
    ({"allowed_overrides": ["audio.input.transcription"]}, "policy.transcription.allowed_overrides[0]",
     "pinned audio.input.transcription.model"),
    ({"language": "en", "allowed_overrides": ["audio.input.transcription.language"]},
     "policy.transcription.allowed_overrides[0]", "pinned audio.input.transcription.language"),
    ({"allowed_overrides": ["type"]}, "policy.transcription.allowed_overrides[0]", "pinned type"),
    ({"session": {"type": "transcription"}}, "policy.transcription.session.type", "always transcription"),
    ({"session": {"audio": {"input": {"transcription": {"model": "x"}}}}},
     "policy.transcription.session.audio.input.transcription.model", "use model"),
    ({"modle": "whisper-1"}, "policy.transcription.modle", "unknown key"),
    ({"model": ""}, "policy.transcription.model", "must not be empty"),
    ("yes", "policy.transcription", "must be a mapping"),
])
def test_transcription_policy_errors_name_the_key(transcription, where, reason):
    with pytest.raises(ConfigError) as err:
        policy(transcription=transcription)
    assert where in str(err.value) and reason in str(err.value)


def test_device_overrides_enable_or_disable_transcription():
    base = policy()
    assert base.transcription is None and base.as_dict()["transcription"] is None
    enabled = device_policy(base, {"transcription": {"model": "whisper-1"}}, "attic")
    assert enabled.transcription.model == "whisper-1"
    assert "include" in enabled.transcription.allowed_overrides  # built-in defaults fill the rest
    on = policy(transcription=DICTATION)
    assert device_policy(on, {"transcription": None}, "attic").transcription is None
    assert device_policy(on, {"transcription": {"language": "de"}}, "attic").transcription.model == \
        "gpt-4o-transcribe"  # the other keys default to the base's
    with pytest.raises(ConfigError, match="device attic: policy.transcription.model"):
        device_policy(on, {"transcription": {"model": 3}}, "attic")


# ---- the real token server in front of the real dev server

@pytest.fixture(scope="module")
def dev(tmp_path_factory):
    with run_dev_server(tmp_path_factory.mktemp("dev"), "--api-key", API_KEY) as server:
        yield server


def mint(ts, device, body, secret=None):
    with httpx.Client(timeout=30) as client:
        return client.post(ts.url + MINT, auth=(device, secret or ts.device_secrets[device]), json=body)


@pytest.mark.integration
def test_a_transcription_secret_is_minted_under_policy_and_transcribes(dev, tmp_path):
    with run_token_server(tmp_path, dev.url, API_KEY, devices=["kitchen"], workers=2,
                          transcription=DICTATION) as ts:
        r = mint(ts, "kitchen", {"session": DEVICE_SESSION, "expires_after": {"anchor": "created_at", "seconds": 30}})
        assert r.status_code == 200, r.text
        doc = r.json()
        data = {k: doc[k] for k in ("value", "expires_at", "session")}
        check = check_client_secret_response(data)
        assert check.ok, check.messages()
        secret = ClientSecretCreateResponse.model_validate(data)
        assert secret.session.type == "transcription" and secret.session.object == "realtime.transcription_session"
        assert secret.session.audio.input.transcription.model == "gpt-4o-transcribe"
        assert secret.session.audio.input.transcription.prompt == "a shopping list"
        assert doc["expires_at"] - doc["server_time"] == pytest.approx(30, abs=2)
        with RealtimeTestClient(dev.ws_url, secret.value) as client:
            created = client.wait_for("session.created")["session"]
            assert created["type"] == "transcription" and created["audio"]["input"]["turn_detection"] is None
            audio = noise_pcm24(1.0)
            for i in range(0, len(audio), 9600):
                client.send({"type": "input_audio_buffer.append",
                             "audio": base64.b64encode(audio[i:i + 9600]).decode()})
            client.send({"type": "input_audio_buffer.commit"})
            done = client.wait_for("conversation.item.input_audio_transcription.completed")
            assert done["transcript"] == DEFAULT_TRANSCRIPT
            assert client.invalid == []
        # a realtime session from the same device is unchanged
        realtime = mint(ts, "kitchen", {"session": {"type": "realtime", "model": "gpt-realtime"}})
        assert realtime.status_code == 200 and realtime.json()["session"]["type"] == "realtime"
        audit = ts.audit_lines()
        assert "outcome=minted" in audit[0] and audit[0].rstrip().split()[-2] == "session=transcription"
        assert "session=realtime" in audit[1]
        log = ts.log_text()
        for needle in (API_KEY, ts.device_secrets["kitchen"], secret.value, "ek_"):
            assert needle not in log


@pytest.mark.integration
def test_refusals_are_403s_naming_why_and_limits_are_shared(dev, tmp_path):
    with run_token_server(tmp_path, dev.url, API_KEY, devices=["kitchen", "attic"], workers=2,
                          mint_rate_per_min=3) as ts:
        r = mint(ts, "kitchen", {"session": DEVICE_SESSION})
        assert r.status_code == 403, r.text
        error = r.json()["error"]
        assert (error["code"], error["field"]) == ("transcription_not_allowed", "session.type")
        assert "not allowed for this device" in error["message"] and "policy.transcription" in error["message"]
        assert "code=transcription_not_allowed field=session.type" in ts.audit_lines()[-1]
        # the operator enables dictation for one device only; the running server sees it at once
        ts.cli("devices", "policy", "attic", "--set", "transcription={model: gpt-4o-transcribe, language: en}")
        assert mint(ts, "kitchen", {"session": DEVICE_SESSION}).status_code == 403
        r = mint(ts, "attic", {"session": DEVICE_SESSION})
        assert r.status_code == 200, r.text
        wrong = {**DEVICE_SESSION, "audio": {"input": {"transcription": {"model": "gpt-4o-transcribe",
                                                                         "language": "de"}}}}
        r = mint(ts, "attic", {"session": wrong})
        assert r.status_code == 403 and r.json()["error"] == {
            "code": "forbidden_override", "field": "session.audio.input.transcription.language",
            "message": "session.audio.input.transcription.language may not be set by this device to a value "
                       "other than the pinned one"}
        r = mint(ts, "attic", {"session": DEVICE_SESSION, "expires_after": {"seconds": 3600}})
        assert r.status_code == 403 and r.json()["error"]["field"] == "expires_after.seconds"
        # one rate limit for both session types: attic has minted once; one realtime and one more fit
        assert mint(ts, "attic", {"session": {"type": "realtime"}}).status_code == 200
        assert mint(ts, "attic", {"session": DEVICE_SESSION}).status_code == 200
        limited = mint(ts, "attic", {"session": DEVICE_SESSION})
        assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limited"


def test_the_example_configs_transcription_block_parses_when_uncommented():
    import yaml
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "config" / "token-server.example.yaml"
    lines = example.read_text().splitlines()
    start = lines.index("  #   transcription:")
    block = []
    for line in lines[start:]:
        if not line.startswith("  #  "):
            break
        block.append(line[len("  # "):].split("#")[0].rstrip())
    data = yaml.safe_load("\n".join(block))
    pol = policy(**data)
    assert (pol.transcription.model, pol.transcription.language) == ("gpt-4o-mini-transcribe", "en")
    assert parse_config(yaml.safe_load(example.read_text()), str(example)).policy.transcription is None
