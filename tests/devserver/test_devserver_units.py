"""Unit tests of the dev server's parts: secret expiry with an injected clock, config merging,
turn detection on synthetic and espeak audio, validation helpers, WAV parsing."""

from __future__ import annotations

import numpy as np
import pytest
from starlette.testclient import TestClient, WebSocketDenialResponse

from pivoice.devserver import sessionconfig
from pivoice.devserver.app import DevServerConfig, create_app
from pivoice.devserver.secrets import SecretStore
from pivoice.devserver.validation import check_client_event, check_server_event
from pivoice.devserver.vad import TurnDetector
from pivoice.devserver.voice import VoiceSource, parse_wav


class FakeClock:
    def __init__(self, now_s: float = 1_800_000_000.0) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


def test_secret_store_expiry_and_reuse():
    clock = FakeClock()
    store = SecretStore(clock)
    secret = store.issue({"model": "gpt-realtime"}, ttl_s=10)
    assert secret.expires_at_s == int(clock.now_s) + 10
    assert store.lookup(secret.value) is secret and store.lookup(secret.value) is secret  # reusable
    clock.now_s += 9.9
    assert store.lookup(secret.value) is secret
    clock.now_s += 0.1
    assert store.lookup(secret.value) is None
    assert store.lookup("ek_unknown") is None
    with pytest.raises(ValueError):
        store.issue({}, ttl_s=9)
    store.issue({}, ttl_s=10)
    assert len(store) == 1  # the expired one was purged


def test_expired_ephemeral_key_is_refused_at_the_handshake():
    clock = FakeClock()
    app = create_app(DevServerConfig(api_key="sk-unit", voice=VoiceSource("tone"), audio_pace=0), clock_s=clock)
    with TestClient(app) as http:
        resp = http.post("/v1/realtime/client_secrets", headers={"Authorization": "Bearer sk-unit"},
                         json={"expires_after": {"anchor": "created_at", "seconds": 10}})
        ek = resp.json()["value"]
        with http.websocket_connect("/v1/realtime", headers={"Authorization": f"Bearer {ek}"}) as ws:
            assert ws.receive_json()["type"] == "session.created"
        clock.now_s += 10
        with pytest.raises(WebSocketDenialResponse) as info:
            with http.websocket_connect("/v1/realtime", headers={"Authorization": f"Bearer {ek}"}):
                pass
        assert info.value.status_code == 401
        assert info.value.json()["error"]["code"] == "invalid_api_key"


def test_session_update_merge_rules():
    base = sessionconfig.default_session()
    new = sessionconfig.merge(base, {"type": "realtime", "audio": {"input": {
        "noise_reduction": {"type": "far_field"}, "turn_detection": {"type": "server_vad", "threshold": 0.7}}}},
        audio_was_output=False)
    assert new["audio"]["input"]["noise_reduction"] == {"type": "far_field"}
    assert new["audio"]["input"]["turn_detection"]["threshold"] == 0.7
    assert new["audio"]["input"]["turn_detection"]["silence_duration_ms"] == 200
    assert new["instructions"] == base["instructions"]  # absent keys keep their value
    off = sessionconfig.merge(new, {"type": "realtime", "audio": {"input": {"noise_reduction": None,
                                                                            "turn_detection": None}}}, True)
    assert off["audio"]["input"]["noise_reduction"] is None and off["audio"]["input"]["turn_detection"] is None
    semantic = sessionconfig.merge(base, {"type": "realtime", "audio": {"input": {
        "turn_detection": {"type": "semantic_vad"}}}}, False)["audio"]["input"]["turn_detection"]
    assert semantic == {"type": "semantic_vad", "eagerness": "auto", "create_response": True,
                        "interrupt_response": True}
    with pytest.raises(sessionconfig.ConfigRejected) as info:
        sessionconfig.merge(base, {"type": "realtime", "model": "gpt-realtime-mini"}, False)
    assert info.value.param == "session.model"
    with pytest.raises(sessionconfig.ConfigRejected) as info:
        sessionconfig.merge(base, {"type": "realtime", "audio": {"output": {"voice": "cedar"}}}, True)
    assert info.value.code == "cannot_update_voice"
    assert sessionconfig.merge(base, {"type": "realtime", "audio": {"output": {"voice": "alloy"}}}, True)
    with pytest.raises(sessionconfig.ConfigRejected):
        sessionconfig.merge(base, {"type": "realtime", "audio": {"output": {"speed": 2.0}}}, False)


def _tone(ms: int, rate_hz: int = 24000, amplitude: float = 0.0) -> bytes:
    t = np.arange(rate_hz * ms // 1000) / rate_hz
    return (amplitude * 32767 * np.sin(2 * np.pi * 220 * t)).astype("<i2").tobytes()


def _feed(detector: TurnDetector, pcm: bytes, chunk_ms: int = 20, rate_hz: int = 24000):
    size = rate_hz * 2 * chunk_ms // 1000
    return [e for i in range(0, len(pcm), size) for e in detector.feed(pcm[i:i + size])]


def test_server_vad_offsets_on_espeak_speech(speech_pcm24):
    td = dict(sessionconfig.SERVER_VAD_DEFAULTS, silence_duration_ms=500, prefix_padding_ms=300)
    events = _feed(TurnDetector(td, 24000), _tone(1000) + speech_pcm24 + _tone(1000))
    kinds = [k for k, _ in events]
    assert kinds == ["speech_started", "speech_stopped"]
    speech_ms = len(speech_pcm24) / 48
    assert 600 <= events[0][1] <= 800  # speech at ~1000 ms minus 300 ms padding (espeak starts softly)
    assert 1000 + speech_ms <= events[1][1] + 300 <= 1000 + speech_ms + 800


def test_silence_and_faint_noise_never_start_speech():
    rng = np.random.default_rng(1)
    hiss = (rng.normal(0, 30, 24000 * 2)).astype("<i2").tobytes()  # about -60 dBFS
    assert _feed(TurnDetector(sessionconfig.SERVER_VAD_DEFAULTS, 24000), _tone(2000) + hiss) == []


def test_semantic_vad_waits_longer_on_noise_than_on_clear_silence(speech_pcm24):
    td = {"type": "semantic_vad", "eagerness": "high"}
    quiet = _feed(TurnDetector(td, 24000), speech_pcm24 + _tone(3000))
    rng = np.random.default_rng(2)
    noise = (rng.normal(0, 200, 24000 * 3)).astype("<i2").tobytes()  # about -44 dBFS: not clear silence
    noisy = _feed(TurnDetector(td, 24000), speech_pcm24 + noise)
    speech_ms = len(speech_pcm24) / 48
    assert quiet[-1][0] == "speech_stopped" and quiet[-1][1] - speech_ms < 1000  # ~400 ms clear silence
    assert noisy[-1][0] == "speech_stopped" and noisy[-1][1] - speech_ms >= 1900  # the 2 s maximum timeout


def test_validation_reports_paths_and_allow_list():
    check = check_client_event({"type": "session.update", "session": {"type": "realtime",
                                                                      "input_audio_format": "pcm16"}})
    assert check.unknown == ["session.input_audio_format"]
    approval = {"type": "conversation.item.create", "item": {"type": "mcp_approval_response",
                                                              "approval_request_id": "mcpr_1", "approve": True}}
    assert check_client_event(approval).ok  # official clients omit the id the SDK type requires
    session = dict(sessionconfig.wire_session(sessionconfig.default_session(), "sess_1", 5))
    assert check_server_event({"type": "session.created", "event_id": "e", "session": session}).ok
    session["bogus"] = 1
    assert check_server_event({"type": "session.created", "event_id": "e", "session": session}).unknown == [
        "session.bogus"]


def test_parse_wav_of_a_pipe_stream():
    header = (b"RIFF\xff\xff\xff\xffWAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x22\x56\x00\x00"
              b"\x44\xac\x00\x00\x02\x00\x10\x00data\xff\xff\xff\xff")
    samples, rate_hz = parse_wav(header + b"\x01\x00\x02\x00\x03")
    assert (samples, rate_hz) == (b"\x01\x00\x02\x00", 22050)
    with pytest.raises(ValueError):
        parse_wav(b"not a wav")


def test_speak_mode_falls_back_to_a_tone_without_espeak():
    import asyncio

    voice = VoiceSource("speak", "Heard {seconds:.1f} s.", espeak_path="")
    assert voice.mode == "tone"
    text, pcm16, rate_hz = asyncio.run(voice.reply(1.25, b"", 24000, 1.0))
    assert text == "Heard 1.2 s." and rate_hz == 24000 and len(pcm16) == 48000  # 1 s of 24 kHz s16le
    assert VoiceSource("tone", "No {placeholder} here").text_for(1.0) == "No {placeholder} here"
