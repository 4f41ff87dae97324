"""The `mqtt:` config section: the example's block loads, defaults follow the device id, errors name key paths,
and the password comes from its file (or systemd credential) at each read."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from pivoice import config
from pivoice.settings import ConfigError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "pivoice.example.yaml"
MINIMAL = {"tokens": {"backend_url": "http://127.0.0.1:8780", "device_id": "kitchen", "secret_file": "/s"}}


def load_with_mqtt(tmp_path, mqtt):
    path = tmp_path / "pivoice.yaml"
    path.write_text(yaml.safe_dump({**MINIMAL, "mqtt": mqtt}))
    return config.load(path)


def uncommented_example_mqtt() -> str:
    """The example file with its commented-out `mqtt:` block switched on (the `# ` removed)."""
    lines = EXAMPLE.read_text().splitlines()
    start = lines.index("# mqtt:")
    out = lines[:start]
    for line in lines[start:]:
        if not line.startswith("#"):
            break
        out.append(re.sub(r"^# ?", "", line))
    return "\n".join(out + lines[len(out):]) + "\n"


def test_the_examples_mqtt_block_loads_when_uncommented(tmp_path):
    assert config.load(EXAMPLE).mqtt is None   # commented out: MQTT off
    path = tmp_path / "pivoice.yaml"
    path.write_text(uncommented_example_mqtt())
    mqtt = config.load(path).mqtt
    assert mqtt.host == "homeassistant.local" and mqtt.port == 8883
    assert mqtt.base_topic == "pivoice/kitchen" and mqtt.client_id == "pivoice-kitchen"
    assert mqtt.discovery_prefix == "homeassistant" and mqtt.device_name == "Kitchen speaker"
    assert mqtt.username == "pivoice" and mqtt.password_credential == "mqtt-password"
    assert mqtt.tls is not None and mqtt.tls.ca_file is None
    assert (mqtt.keepalive_s, mqtt.reconnect_min_s, mqtt.reconnect_max_s) == (60, 1.0, 120.0)


def test_defaults_follow_the_device_id(tmp_path):
    mqtt = load_with_mqtt(tmp_path, {"host": "127.0.0.1"}).mqtt
    assert (mqtt.port, mqtt.tls, mqtt.username) == (1883, None, None)
    assert mqtt.base_topic == "pivoice/kitchen" and mqtt.availability_topic == "pivoice/kitchen/availability"
    assert mqtt.device_name == "pivoice kitchen" and mqtt.device_id == "kitchen"
    assert load_with_mqtt(tmp_path, {"host": "b", "tls": {}}).mqtt.port == 8883
    assert load_with_mqtt(tmp_path, None).mqtt is None


@pytest.mark.parametrize("mqtt,where,reason", [
    ({}, "mqtt.host", "is required"),
    ({"host": "b", "port": 0}, "mqtt.port", ">= 1"),
    ({"host": "b", "base_topic": "pivoice/#"}, "mqtt.base_topic", "no wildcards"),
    ({"host": "b", "base_topic": "/pivoice"}, "mqtt.base_topic", "leading or trailing"),
    ({"host": "b", "keepalive_s": 1}, "mqtt.keepalive_s", ">= 5"),
    ({"host": "b", "reconnect_min_s": 10, "reconnect_max_s": 5}, "mqtt.reconnect_max_s", ">= reconnect_min_s"),
    ({"host": "b", "username": "u", "password_file": "relative"}, "mqtt.password_file", "absolute path"),
    ({"host": "b", "password_file": "/p"}, "mqtt.username", "required with a password"),
    ({"host": "b", "username": "u", "password_file": "/p", "password_credential": "c"},
     "mqtt.password_credential", "not both"),
    ({"host": "b", "username": "u", "password_credential": "../x"}, "mqtt.password_credential", "credential name"),
    ({"host": "b", "tls": {"cert_file": "/c.pem"}}, "mqtt.tls.key_file", "go together"),
    ({"host": "b", "tls": {"ca": "/c.pem"}}, "mqtt.tls.ca", "unknown key"),
    ({"host": "b", "qos": 1}, "mqtt.qos", "unknown key"),
])
def test_bad_values_name_the_key_path(tmp_path, mqtt, where, reason):
    with pytest.raises(ConfigError) as err:
        load_with_mqtt(tmp_path, mqtt)
    assert err.value.key_path == where and reason in err.value.reason, str(err.value)


def test_the_password_is_read_from_its_file_each_time(tmp_path):
    secret = tmp_path / "mqtt-password"
    secret.write_text("first\n")
    mqtt = load_with_mqtt(tmp_path, {"host": "b", "username": "u", "password_file": str(secret)}).mqtt
    assert mqtt.password() == "first"
    secret.write_text("rotated\n")
    assert mqtt.password() == "rotated"
    secret.unlink()
    with pytest.raises(ValueError, match=r"mqtt.password_file: .*cannot read"):
        mqtt.password()


def test_the_password_from_a_systemd_credential(tmp_path):
    (tmp_path / "mqtt-password").write_text("from-credential")
    mqtt = load_with_mqtt(tmp_path, {"host": "b", "username": "u", "password_credential": "mqtt-password"}).mqtt
    assert mqtt.password({"CREDENTIALS_DIRECTORY": str(tmp_path)}) == "from-credential"
    with pytest.raises(ValueError, match=r"mqtt.password_credential: \$CREDENTIALS_DIRECTORY is not set"):
        mqtt.password({})
