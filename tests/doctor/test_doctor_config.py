"""check-config and doctor's config check share one "runnable config" check: the file, the device
secret (or the credential source behind /run/credentials/...), the backend URL rules and CA bundle."""

from __future__ import annotations

import json
import wave

import pytest
import yaml

from pivoice import config, preflight
from pivoice.doctor import cli as doctor_cli
from pivoice.doctor.configcheck import ConfigCheck
from pivoice.settings import ConfigError

CRED_UNIT = "pivoice-doctor-test.service"   # never a real unit: its credential dir cannot exist here
CRED_PATH = f"/run/credentials/{CRED_UNIT}/device-secret"


def write_config(tmp_path, secret_file, **tokens):
    mic = tmp_path / "question.wav"   # wav: devices are checked too: the mic must be a real 16-bit WAV
    with wave.open(str(mic), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000), w.writeframes(bytes(320))
    data = {"tokens": {"backend_url": "http://127.0.0.1:9", "device_id": "kitchen", "secret_file": str(secret_file),
                       **tokens},
            "audio": {"input": {"device": f"wav:{mic}"}, "output": {"device": "wav:/tmp/out.wav"}}}
    path = tmp_path / "pivoice.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def write_secret(path, text="dsec-0123456789abcdef"):
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


def no_systemd(unit):
    return None


def test_check_config_fails_on_a_missing_secret_file_naming_the_key(tmp_path, capsys):
    path = write_config(tmp_path, tmp_path / "absent-secret")
    assert config.main([str(path)]) == 2
    err = capsys.readouterr().err
    assert "tokens.secret_file" in err and str(tmp_path / "absent-secret") in err and "does not exist" in err
    # the file alone is still fine, for a machine without the secret
    assert config.main(["--file-only", str(path)]) == 0


def test_check_config_passes_with_a_readable_secret(tmp_path, capsys):
    path = write_config(tmp_path, write_secret(tmp_path / "secret"))
    assert config.main([str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{path}: ok") and "dsec-" not in out


@pytest.mark.parametrize("content,reason", [("", "is empty"), ("two\nlines", "single line")])
def test_check_config_rejects_an_unusable_secret(tmp_path, capsys, content, reason):
    secret = tmp_path / "secret"
    secret.write_text(content)
    assert config.main([str(write_config(tmp_path, secret))]) == 2
    err = capsys.readouterr().err
    assert "tokens.secret_file" in err and reason in err


def test_check_config_applies_the_token_clients_url_and_ca_rules(tmp_path, capsys):
    secret = write_secret(tmp_path / "secret")
    assert config.main([str(write_config(tmp_path, secret, backend_url="http://tokens.example.com"))]) == 2
    assert "tokens: token backend URL 'http://tokens.example.com:80': https is required" in capsys.readouterr().err
    path = write_config(tmp_path, secret, backend_url="https://tokens.example.com", ca_bundle=str(tmp_path / "ca.pem"))
    assert config.main([str(path)]) == 2
    assert "CA bundle" in capsys.readouterr().err


def test_credential_source_is_read_from_the_units_load_credential(tmp_path, capsys):
    source = write_secret(tmp_path / "device-secret")
    unit = tmp_path / "pivoice.service"
    unit.write_text(f"[Service]\nExecStart=/bin/true\nLoadCredential=device-secret:{source}\n")
    path = write_config(tmp_path, CRED_PATH)
    assert config.main([str(path), "--unit-file", str(unit)]) == 0
    out = capsys.readouterr().out
    assert "ok" in out and f"checked its source {source}" in out and f"LoadCredential=device-secret:{source}" in out

    source.unlink()   # the source the unit names is gone: the daemon would loop on start
    assert config.main([str(path), "--unit-file", str(unit)]) == 2
    err = capsys.readouterr().err
    assert "tokens.secret_file" in err and f"secret file {source}: does not exist" in err and CRED_PATH in err


def test_a_unit_without_the_credential_is_named(tmp_path, capsys):
    unit = tmp_path / "pivoice.service"
    unit.write_text("[Service]\nLoadCredential=other:/etc/other\n")
    assert config.main([str(write_config(tmp_path, CRED_PATH)), "--unit-file", str(unit)]) == 2
    err = capsys.readouterr().err
    assert "has no LoadCredential=device-secret:PATH" in err and "tokens.secret_file" in err


def test_systemctl_cat_is_asked_first_and_its_drop_ins_win(tmp_path):
    old, new = write_secret(tmp_path / "old", "old-secret"), write_secret(tmp_path / "new", "new-secret")
    asked = []

    def systemctl(unit):
        asked.append(unit)
        return (f"# /etc/systemd/system/{unit}\n[Service]\nLoadCredential=device-secret:{old}\n"
                f"# /etc/systemd/system/{unit}.d/override.conf\n[Service]\nLoadCredential=\n"
                f"LoadCredential=device-secret:{new}\n")
    runnable = preflight.check_runnable(write_config(tmp_path, CRED_PATH), read_unit=systemctl)
    assert asked == [CRED_UNIT]
    assert runnable.secret.reveal() == "new-secret" and runnable.secret_from == str(new)
    assert "`systemctl cat pivoice-doctor-test.service`" in runnable.notes[0]


def test_without_an_installed_unit_the_default_source_is_assumed_and_said(tmp_path):
    with pytest.raises(ConfigError) as err:
        preflight.check_runnable(write_config(tmp_path, CRED_PATH), read_unit=no_systemd)
    assert err.value.key_path == "tokens.secret_file"
    if not preflight.DEFAULT_CREDENTIAL_SOURCE.exists():
        assert f"no installed {CRED_UNIT} found; assumed the default" in err.value.reason
        assert str(preflight.DEFAULT_CREDENTIAL_SOURCE) in err.value.reason


def test_doctor_config_check_reports_ok_and_fail_with_remedies(tmp_path, capsys):
    source = write_secret(tmp_path / "device-secret")
    unit = tmp_path / "pivoice.service"
    unit.write_text(f"[Service]\nLoadCredential=device-secret:{source}\n")
    path = write_config(tmp_path, CRED_PATH)
    good = doctor_cli.run_checks(str(path), [ConfigCheck(unit_file=str(unit))])
    assert [(r.check, r.status) for r in good] == [("config", "ok")]
    assert good[0].data["secret_from"] == str(source)

    source.unlink()
    code = doctor_cli.main(["--config", str(path), "--json"], checks=[ConfigCheck(unit_file=str(unit))])
    assert code == 1
    (result,) = json.loads(capsys.readouterr().out)
    assert set(result) == {"check", "status", "detail", "remedy", "data"}
    assert result["status"] == "fail" and result["data"]["key"] == "tokens.secret_file"
    assert "devices add" in result["remedy"] and "/etc/pivoice/device-secret" in result["remedy"]


def test_doctor_skips_everything_after_a_config_that_does_not_parse(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("tokens: {backend_url: ftp://x, device_id: k, secret_file: /s}\n")
    code = doctor_cli.main(["--config", str(bad), "--no-button"], stdin_isatty=False)
    lines = capsys.readouterr().out.splitlines()
    assert code == 1 and lines[0].startswith("FAIL    config") and "tokens.backend_url" in lines[0]
    assert "-> fix: edit tokens.backend_url" in lines[0]
    assert [ln.split()[0:2] for ln in lines[1:]] == [["skipped", name] for name in doctor_cli.CHECK_NAMES[1:]]
    assert all("the config did not load" in ln for ln in lines[1:])


def test_a_secret_readable_by_others_is_a_warning_with_chmod(tmp_path):
    secret = write_secret(tmp_path / "secret")
    secret.chmod(0o644)
    (result,) = doctor_cli.run_checks(str(write_config(tmp_path, secret)), [ConfigCheck(read_unit=no_systemd)])
    assert result.status == "warn" and "mode 644" in result.detail and result.remedy == f"sudo chmod 600 {secret}"


def test_a_crashing_check_is_a_fail_and_the_others_still_run(tmp_path):
    class Broken:
        name = "mic"

        def run(self, ctx):
            raise RuntimeError("boom")

    class After:
        name = "speaker"

        def run(self, ctx):
            return doctor_cli.Result("speaker", "ok", "fine")

    path = write_config(tmp_path, write_secret(tmp_path / "secret"))
    results = doctor_cli.run_checks(str(path), [ConfigCheck(read_unit=no_systemd), Broken(), After()])
    assert [r.status for r in results] == ["ok", "fail", "ok"]
    assert results[1].detail == "the check itself crashed: RuntimeError: boom"
    assert doctor_cli.exit_status(results) == 1
