"""Config loading: the shipped example, defaults, and errors that name the key path."""

from pathlib import Path

import pytest

from pivoice.settings import ConfigError
from pivoice.tokenserver.config import load_config, parse_config, resolve_api_key
from pivoice.tokenserver.policy import DEFAULT_ALLOWED_OVERRIDES

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "token-server.example.yaml"


def test_example_config_loads_with_documented_defaults():
    config = load_config(EXAMPLE)
    assert config.port == 8443 and config.workers == 2 and config.host == "127.0.0.1"
    assert config.database_url.startswith("sqlite:///")
    assert config.upstream.base_url == "https://api.openai.com"
    assert config.upstream.api_key_env == "OPENAI_API_KEY" and config.upstream.api_key_file is None
    assert config.policy.default_expires_after_s == 60
    assert set(config.policy.allowed_overrides) == set(DEFAULT_ALLOWED_OVERRIDES)
    # the example spells out every key, so it must equal the built-in defaults
    assert parse_config({}, "empty.yaml").policy == config.policy
    assert parse_config({}, "empty.yaml").upstream == config.upstream


@pytest.mark.parametrize("data, key_path, reason", [
    ({"port": 70000}, "port", "must be <= 65535"),
    ({"workers": "two"}, "workers", "must be an integer"),
    ({"database_url": "mysql://x"}, "database_url", "sqlite:///"),
    ({"openai_base_url": "ftp://x"}, "openai_base_url", "http(s) URL"),
    ({"tls": {"cert_file": "/c.pem"}}, "tls.key_file", "set together"),
    ({"tls": {"cert": "/c.pem"}}, "tls.cert", "unknown key"),
    ({"upstream": {"timeout_s": -1}}, "upstream.timeout_s", "must be >="),
    ({"upstream": {"retries": 1.5}}, "upstream.retries", "must be an integer"),
    ({"policy": {"max_expires_after_s": 9000}}, "policy.max_expires_after_s", "<= 7200"),
    ({"policy": {"default_expires_after_s": 600, "max_expires_after_s": 300}},
     "policy.default_expires_after_s", "max_expires_after_s"),
    ({"policy": {"session": {"model": "x"}}}, "policy.session.model", "policy.model"),
    ({"policy": {"tools": [{"name": "t"}]}}, "policy.tools", "type"),
    ({"policy": {"allowed_overrides": ["audio..voice"]}}, "policy.allowed_overrides[0]", "dotted"),
    ({"policy": {"instruction": "x"}}, "policy.instruction", "unknown key"),
    ({"limits": {"mint_rate_per_min": 0}}, "limits.mint_rate_per_min", ">= 1"),
    ({"limits": {"daily_budget": "lots"}}, "limits.daily_budget", "integer"),
    ({"log_level": "loud"}, "log_level", "one of"),
    ({"wokers": 2}, "wokers", "unknown key"),
])
def test_config_errors_name_the_key_path(data, key_path, reason):
    with pytest.raises(ConfigError) as err:
        parse_config(data, "ts.yaml")
    assert err.value.key_path == key_path
    assert reason in err.value.reason
    assert str(err.value).startswith(f"ts.yaml: {key_path}: ")


def test_unreadable_and_invalid_files_are_named(tmp_path):
    with pytest.raises(ConfigError, match="missing.yaml: cannot read file"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("port: [1,\n")
    with pytest.raises(ConfigError, match="invalid YAML: line"):
        load_config(bad)


def test_api_key_from_env_or_file_and_errors_never_show_it(tmp_path):
    config = parse_config({"api_key_env": "PV_TEST_KEY"}, "ts.yaml")
    assert resolve_api_key(config, {"PV_TEST_KEY": " sk-from-env \n"}) == "sk-from-env"
    with pytest.raises(ConfigError) as err:
        resolve_api_key(config, {})
    assert err.value.key_path == "api_key_env" and "PV_TEST_KEY" in err.value.reason

    key_file = tmp_path / "key"
    key_file.write_text("sk-from-file\n")
    config = parse_config({"api_key_file": str(key_file)}, "ts.yaml")
    # the file wins over the environment
    assert resolve_api_key(config, {"OPENAI_API_KEY": "sk-other"}) == "sk-from-file"
    key_file.write_text("   \n")
    with pytest.raises(ConfigError, match="is empty") as err:
        resolve_api_key(config, {})
    assert err.value.key_path == "api_key_file"
    key_file.write_bytes(b"sk-\xff-secret")
    with pytest.raises(ConfigError) as err:
        resolve_api_key(config, {})
    assert "secret" not in str(err.value) and err.value.key_path == "api_key_file"
    missing = parse_config({"api_key_file": str(tmp_path / "nope")}, "ts.yaml")
    with pytest.raises(ConfigError, match="cannot read"):
        resolve_api_key(missing, {})
