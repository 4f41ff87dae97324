"""`realtime.reply_stall_s`: documented in the example, defaulted, range-checked with its key path."""

from pathlib import Path

import pytest
import yaml

from pivoice import config
from pivoice.settings import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "pivoice.example.yaml"
MINIMAL = {"tokens": {"backend_url": "http://127.0.0.1:8780", "device_id": "kitchen", "secret_file": "/s"}}


def load(tmp_path, realtime: dict):
    path = tmp_path / "pivoice.yaml"
    path.write_text(yaml.safe_dump({**MINIMAL, "realtime": realtime}))
    return config.load(path)


def test_example_documents_the_key_and_default_is_10_s(tmp_path):
    assert config.load(EXAMPLE).realtime.reply_stall_s == 10
    assert "reply_stall_s:" in EXAMPLE.read_text()
    assert load(tmp_path, {}).realtime.reply_stall_s == 10
    assert load(tmp_path, {"reply_stall_s": 2.5}).realtime.reply_stall_s == 2.5


@pytest.mark.parametrize("value", [0, -1, 601, "soon", True])
def test_bad_values_name_the_key(tmp_path, value):
    with pytest.raises(ConfigError, match=r"realtime\.reply_stall_s"):
        load(tmp_path, {"reply_stall_s": value})


def test_the_configured_value_reaches_the_controller(tmp_path):
    from pivoice.app import controller_settings
    assert controller_settings(load(tmp_path, {"reply_stall_s": 2.5})).reply_stall_s == 2.5
