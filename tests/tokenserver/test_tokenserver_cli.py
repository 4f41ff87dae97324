"""`pivoice token-server` CLI: device administration and start-up errors (no stack traces)."""

import json
import subprocess
import sys

import pytest
import yaml

from pivoice.tokenserver.cli import main
from pivoice.tokenserver.registry import Registry


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "ts.yaml"
    path.write_text(yaml.safe_dump({"database_url": f"sqlite:///{tmp_path / 'db' / 'd.db'}",
                                    "limits": {"mint_rate_per_min": 6}}))
    return str(path)


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_add_prints_secret_once_and_stores_only_a_hash(capsys, config, tmp_path):
    code, out, err = run(capsys, "devices", "add", "kitchen", "--config", config)
    secret = out.strip()
    assert code == 0 and len(secret) >= 43 and "\n" not in secret and "shown only this once" in err
    db = (tmp_path / "db" / "d.db").read_bytes()
    assert secret.encode() not in db
    code, _, err = run(capsys, "devices", "add", "kitchen", "--config", config)
    assert code == 1 and "already exists" in err
    code, _, err = run(capsys, "devices", "add", "bad name", "--config", config)
    assert code == 1 and "invalid device name 'bad name'" in err


def test_list_revoke_rotate(capsys, config):
    run(capsys, "devices", "add", "kitchen", "--config", config)
    run(capsys, "devices", "add", "attic", "--config", config)
    assert run(capsys, "devices", "revoke", "attic", "--config", config)[0] == 0
    code, _, err = run(capsys, "devices", "revoke", "attic", "--config", config)
    assert code == 1 and "already revoked" in err
    code, out, _ = run(capsys, "devices", "list", "--config", config)
    rows = [line.split() for line in out.splitlines()[1:]]
    assert [(r[0], r[1]) for r in rows] == [("attic", "revoked"), ("kitchen", "active")]
    code, out, _ = run(capsys, "devices", "rotate", "attic", "--config", config)
    assert code == 0 and len(out.strip()) >= 43
    assert run(capsys, "devices", "list", "--config", config)[1].count("active") == 2
    for action in ("rotate", "revoke", "policy"):
        code, _, err = run(capsys, "devices", action, "ghost", "--config", config)
        assert code == 1 and "no device named 'ghost'" in err


def test_policy_set_show_unset_and_validation(capsys, config, tmp_path):
    run(capsys, "devices", "add", "kitchen", "--config", config)
    code, out, _ = run(capsys, "devices", "policy", "kitchen", "--config", config,
                       "--set", "mint_rate_per_min=20", "--set", "allowed_overrides=[audio.output.voice]", "--show")
    doc = json.loads(out)
    assert code == 0 and doc["overrides"] == {"mint_rate_per_min": 20, "allowed_overrides": ["audio.output.voice"]}
    assert doc["effective"]["mint_rate_per_min"] == 20 and doc["effective"]["daily_budget"] == 1000
    registry = Registry(f"sqlite:///{tmp_path / 'db' / 'd.db'}")
    assert registry.get_device("kitchen").policy["mint_rate_per_min"] == 20
    code, _, err = run(capsys, "devices", "policy", "kitchen", "--config", config, "--set", "daily_budget=-3")
    assert code == 1 and "device kitchen: policy.daily_budget: must be >= 1" in err
    assert "daily_budget" not in registry.get_device("kitchen").policy  # nothing stored on error
    code, _, err = run(capsys, "devices", "policy", "kitchen", "--config", config, "--set", "colour=red")
    assert code == 1 and "KEY one of" in err
    run(capsys, "devices", "policy", "kitchen", "--config", config, "--unset", "mint_rate_per_min")
    assert registry.get_device("kitchen").policy == {"allowed_overrides": ["audio.output.voice"]}
    registry.close()


def test_config_errors_are_one_line_without_traceback(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("limits:\n  mint_rate_per_mn: 3\n")
    code, _, err = run(capsys, "devices", "list", "--config", str(bad))
    assert code == 1 and err.strip() == f"pivoice token-server: {bad}: limits.mint_rate_per_mn: unknown key"


@pytest.mark.parametrize("yaml_text, env, expected", [
    ("port: 99999\n", {"OPENAI_API_KEY": "sk-x"}, "port: must be <= 65535"),
    ("api_key_env: PV_NO_SUCH_VAR\n", {}, "api_key_env: environment variable PV_NO_SUCH_VAR is not set"),
])
def test_serve_refuses_to_start_with_a_clear_message(tmp_path, yaml_text, env, expected):
    path = tmp_path / "ts.yaml"
    path.write_text(f"database_url: sqlite:///{tmp_path / 'd.db'}\n" + yaml_text)
    result = subprocess.run([sys.executable, "-m", "pivoice", "token-server", "serve", "--config", str(path),
                             "--port", "0"], env={"PATH": "/usr/bin:/bin", **env}, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1 and expected in result.stderr and "Traceback" not in result.stderr


def test_check_config(capsys, config, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-check-config-secret")
    code, out, _ = run(capsys, "check-config", "--config", config)
    assert code == 0 and "OK" in out and "sk-check" not in out
    monkeypatch.delenv("OPENAI_API_KEY")
    code, _, err = run(capsys, "check-config", "--config", config)
    assert code == 1 and "OPENAI_API_KEY is not set" in err
