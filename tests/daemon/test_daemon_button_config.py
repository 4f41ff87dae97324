"""The `button:` block (button_config.py): modes, long press, the second button, and the session
push_to_talk needs; every error names its key path."""

from __future__ import annotations

import pytest
import yaml

from pivoice import app, config
from pivoice.button_config import SecondButtonConfig
from pivoice.settings import ConfigError

MINIMAL = {"tokens": {"backend_url": "http://127.0.0.1:8780", "device_id": "kitchen", "secret_file": "/s"}}


def load(tmp_path, button=None, session=None):
    data = dict(MINIMAL)
    if button is not None:
        data["button"] = button
    if session is not None:
        data["session"] = session
    path = tmp_path / "pivoice.yaml"
    path.write_text(yaml.safe_dump(data))
    return config.load(path)


def test_defaults_are_toggle_with_a_one_second_long_press_and_no_second_button(tmp_path):
    b = load(tmp_path).button
    assert (b.mode, b.long_press_s, b.hold_time_s, b.second) == ("toggle", 1.0, 1.0, None)
    assert load(tmp_path, {"long_press_s": None}).button.hold_time_s is None


@pytest.mark.parametrize("button,where,reason", [
    ({"mode": "hold"}, "button.mode", "must be one of toggle, push_to_talk, one_shot; got 'hold'"),
    ({"long_press_s": 0.05}, "button.long_press_s", "must be >= 0.2"),
    ({"second": {"pin": 27, "action": "louder"}}, "button.second.action",
     "must be one of cancel, volume_up, volume_down; got 'louder'"),
    ({"second": {"action": "cancel"}}, "button.second.pin", "is required"),
    ({"pin": 17, "second": {"pin": "17"}}, "button.second.pin", "17 is already the button's pin"),
    ({"second": {"pin": 27, "step": 0}}, "button.second.step", "must be >= 1"),
    ({"second": {"pin": 27, "colour": "red"}}, "button.second.colour", "unknown key"),
    ({"second": "GPIO27"}, "button.second", "must be a mapping"),
])
def test_bad_button_values_name_the_key_path(tmp_path, button, where, reason):
    with pytest.raises(ConfigError) as err:
        load(tmp_path, button)
    assert err.value.key_path == where and reason in err.value.reason, err.value


def test_a_second_button_with_its_defaults(tmp_path):
    b = load(tmp_path, {"second": {"pin": "GPIO27", "action": "volume_down"}}).button
    assert b.second == SecondButtonConfig(pin="GPIO27", pull_up=True, bounce_time_s=0.05, action="volume_down", step=10)


def test_push_to_talk_gets_manual_turns_when_the_session_leaves_turn_detection_out(tmp_path):
    cfg = load(tmp_path, {"mode": "push_to_talk"})
    assert cfg.button.hold_time_s is None   # holding is talking: no long press in push_to_talk
    assert cfg.session.turn_detection is None
    assert cfg.session.payload()["audio"]["input"]["turn_detection"] is None   # minted and sent as such
    settings = app.controller_settings(cfg)
    assert settings.manual_turns and settings.button_mode == "push_to_talk"
    assert settings.session["audio"]["input"]["turn_detection"] is None
    assert cfg.trailing_ms == cfg.audio.gate.trailing_margin_ms
    explicit_null = load(tmp_path, {"mode": "push_to_talk"}, {"audio": {"input": {"turn_detection": None}}})
    assert explicit_null.session.turn_detection is None


@pytest.mark.parametrize("session", [
    {"audio": {"input": {"turn_detection": {"type": "server_vad"}}}},
    {"audio": {"input": {"turn_detection": {"type": "semantic_vad"}}}},
    {"turn_detection": {"type": "server_vad"}},    # the beta shape, moved to its GA place first
])
def test_push_to_talk_refuses_a_session_that_sets_a_vad(tmp_path, session):
    with pytest.raises(ConfigError) as err:
        load(tmp_path, {"mode": "push_to_talk"}, session)
    assert err.value.key_path == "session.audio.input.turn_detection"
    assert "must be null with button.mode push_to_talk" in err.value.reason


def test_other_modes_keep_the_sessions_turn_detection(tmp_path):
    for mode in ("toggle", "one_shot"):
        cfg = load(tmp_path, {"mode": mode})
        assert cfg.session.turn_detection.type == "server_vad" and cfg.button.hold_time_s == 1.0
