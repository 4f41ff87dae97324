"""scripts/install without a booted systemd: its refusals, the --dry-run plan, and the helpers
that make a second run change nothing. The real install runs in tests/system (booted nspawn)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import wave
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INSTALL = ROOT / "scripts" / "install"
LIB = ROOT / "scripts" / "lib" / "install.sh"
ROLES = ROOT / "scripts" / "lib" / "install_roles.sh"
SECRET = "s3cr3t-DEVICE-value-never-echoed"


def run(*args: str, stdin: str = "", env: dict | None = None, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, str(INSTALL), *args], input=stdin, capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


def lib(script: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess:
    """Run bash with the install helpers sourced (as scripts/install does)."""
    return subprocess.run(["bash", "-c", f'set -euo pipefail; SRC="{ROOT}"; source "{LIB}"; source "{ROLES}"\n{script}'],
                          input=stdin, capture_output=True, text=True, timeout=60, env={**os.environ, **env})


def fake_bin(tmp_path: Path, name: str, body: str) -> dict:
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    tool = bindir / name
    tool.write_text("#!/bin/sh\n" + body)
    tool.chmod(0o755)
    return {"PATH": f"{bindir}:{os.environ['PATH']}"}


def test_help_names_every_mode():
    result = run("--help")
    assert result.returncode == 0
    for option in ("--secret-file", "--secret-stdin", "--token-server", "--api-key-stdin", "--upgrade",
                   "--uninstall", "--purge", "--no-start", "--admin", "--dry-run"):
        assert option in result.stdout


@pytest.mark.parametrize("args, message", [
    (["--bogus"], "unknown option: --bogus"),
    (["--secret-file"], "--secret-file needs a value"),
    (["--secret-file", "/nonexistent/secret"], "--secret-file /nonexistent/secret: no such readable file"),
    (["--config", "/nonexistent/pivoice.yaml"], "--config /nonexistent/pivoice.yaml: no such readable file"),
    (["--token-server", "--secret-stdin"], "are for the device"),
    (["--api-key-stdin"], "go with --token-server"),
    (["--token-server", "--admin", "pi"], "--admin is for the device"),
    (["--purge"], "--purge goes with --uninstall"),
    (["--upgrade", "--uninstall"], "exclude each other"),
    (["--uninstall", "--secret-stdin"], "--uninstall takes no secret"),
    (["--token-server", "--api-key-stdin", "--api-key-stdin", "--secret-stdin"], "only one of"),
])
def test_argument_errors_exit_2_naming_the_option(args, message):
    result = run(*args, "--dry-run")
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert result.stdout == ""


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv")
def test_refuses_without_root():
    result = run("--secret-stdin", prefix=("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"))
    assert result.returncode == 1
    assert "must run as root: sudo scripts/install --secret-stdin" in result.stderr


@pytest.mark.parametrize("arch", ["armhf", "armel", "i386"])
def test_refuses_a_32_bit_userland(tmp_path, arch):
    # dpkg's architecture, not uname -m: 32-bit Pi OS runs a 64-bit kernel on a Pi 4/5
    env = fake_bin(tmp_path, "dpkg", f'[ "$1" = --print-architecture ] && echo {arch}\n')
    result = run("--dry-run", "--secret-stdin", stdin=SECRET, env=env)
    assert result.returncode == 1
    assert f"64-bit OS only: this is a 32-bit ({arch}) userland" in result.stderr
    assert "numpy, soxr" in result.stderr and "Raspberry Pi OS Lite (64-bit)" in result.stderr


def test_refuses_an_unknown_architecture(tmp_path):
    env = fake_bin(tmp_path, "dpkg", '[ "$1" = --print-architecture ] && echo riscv64\n')
    result = run("--dry-run", "--secret-stdin", stdin=SECRET, env=env)
    assert result.returncode == 1
    assert "unsupported architecture riscv64" in result.stderr


def test_refuses_python_older_than_3_11(tmp_path):
    env = fake_bin(tmp_path, "python3", '[ "$1" = --version ] && { echo "Python 3.9.2"; exit 0; }\nexit 1\n')
    result = run("--dry-run", "--secret-stdin", stdin=SECRET, env=env)
    assert result.returncode == 1
    assert "Python 3.11 or newer is needed (found Python 3.9.2)" in result.stderr


needs_clean_host = pytest.mark.skipif(
    any(Path(p).exists() for p in ("/etc/pivoice", "/opt/pivoice", "/etc/systemd/system/pivoice.service")),
    reason="pivoice is installed on this host")


@needs_clean_host
def test_first_install_without_a_secret_says_where_to_get_one():
    result = run("--dry-run")
    assert result.returncode == 1
    assert "no device secret: pass --secret-file FILE or --secret-stdin" in result.stderr
    assert "pivoice token-server devices add NAME" in result.stderr
    token = run("--dry-run", "--token-server")
    assert token.returncode == 1 and "no OpenAI API key: pass --api-key-file FILE or --api-key-stdin" in token.stderr


@needs_clean_host
def test_upgrade_needs_an_installed_unit():
    result = run("--dry-run", "--upgrade")
    assert result.returncode == 1
    assert "--upgrade: pivoice.service is not installed here" in result.stderr


@needs_clean_host
def test_dry_run_plans_the_device_install_and_changes_nothing():
    result = run("--dry-run", "--secret-stdin", stdin=SECRET + "\n")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "pivoice install: dry run: nothing will be changed"
    for step in ("would: create system user pivoice (no home, nologin, groups audio,gpio)",
                 "would: install /etc/udev/rules.d/60-pivoice-gpio.rules (mode 0644, root:root)",
                 "would: create venv /opt/pivoice/.venv",
                 f"would: install pivoice from {ROOT} into /opt/pivoice/.venv",
                 "would: install lgpio>=0.2.2.0 into /opt/pivoice/.venv",
                 "would: link /usr/local/bin/pivoice -> /opt/pivoice/.venv/bin/pivoice",
                 "would: install /opt/pivoice/share/README.md (mode 0644, root:root)",
                 "would: install /etc/pivoice/pivoice.yaml (mode 0640, root:pivoice)",
                 "would: install /etc/pivoice/device-secret (mode 0600, root:root)",
                 "would: install /etc/systemd/system/pivoice.service (mode 0644, root:root)",
                 "would: enable pivoice.service"):
        assert any(step in line for line in lines), step
    assert lines[-1].startswith("pivoice install: dry run: ") and lines[-1].endswith("change(s) would be made")
    assert SECRET not in result.stdout + result.stderr
    for path in ("/etc/pivoice", "/opt/pivoice", "/etc/systemd/system/pivoice.service", "/usr/local/bin/pivoice"):
        assert not Path(path).exists(), path
    assert subprocess.run(["getent", "passwd", "pivoice"], capture_output=True).returncode == 2


@needs_clean_host
def test_dry_run_plans_the_token_backend_install(tmp_path):
    key = tmp_path / "key"
    key.write_text("sk-not-a-real-key\n")
    result = run("--dry-run", "--token-server", "--api-key-file", str(key))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for step in ("would: create system user pivoice-token (no home, nologin)",
                 f"would: install pivoice[server] from {ROOT}",
                 "would: install /etc/pivoice/token-server.yaml (mode 0640, root:pivoice-token)",
                 "would: install /etc/pivoice/openai-api-key (mode 0600, root:root)",
                 "would: install /etc/systemd/system/pivoice-token-server.service",
                 "would: enable pivoice-token-server.service",
                 "runuser -u pivoice-token -- pivoice token-server devices add NAME"):
        assert step in out, step
    assert "sk-not-a-real-key" not in out + result.stderr
    assert "udev" not in out and "lgpio" not in out   # the backend host needs no GPIO


def test_install_file_changes_only_what_differs(tmp_path):
    src, dest = tmp_path / "src", tmp_path / "dest"
    src.write_text("content\n")
    me = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
    grp = subprocess.run(["id", "-gn"], capture_output=True, text=True).stdout.strip()
    once = f'install_file "{src}" "{dest}" 0640 {me} {grp} && echo CHANGED || echo SAME; echo "n=$CHANGES"'
    first = lib(once)
    assert first.returncode == 0, first.stderr
    assert f"pivoice install: done: install {dest} (mode 0640, {me}:{grp})" in first.stdout
    assert first.stdout.splitlines()[-2:] == ["CHANGED", "n=1"]
    assert stat.S_IMODE(dest.stat().st_mode) == 0o640
    assert lib(once).stdout.splitlines() == ["SAME", "n=0"]          # a second run changes nothing
    dest.chmod(0o644)
    assert lib(once).stdout.splitlines()[-2:] == ["CHANGED", "n=1"]  # mode drift is repaired
    dest.write_text("edited\n")
    assert lib(once).stdout.splitlines()[-2:] == ["CHANGED", "n=1"]  # so is content


def test_symlink_and_directory_steps_are_idempotent(tmp_path):
    script = (f'ensure_symlink /opt/pivoice/.venv/bin/pivoice "{tmp_path}/pivoice"; '
              f'ensure_dir "{tmp_path}/d" 0750 "$(id -un)" "$(id -gn)"; echo "n=$CHANGES"')
    assert lib(script).stdout.splitlines()[-1] == "n=2"
    assert lib(script).stdout.splitlines() == ["n=0"]
    assert os.readlink(tmp_path / "pivoice") == "/opt/pivoice/.venv/bin/pivoice"


def test_install_secret_from_stdin_is_0600_and_never_echoed(tmp_path):
    dest = tmp_path / "device-secret"
    script = f'install_secret - "{dest}"; echo "changed=$SECRET_CHANGED"'
    result = lib(f'SECRET_CHANGED=0; {script}', stdin=SECRET + "\n")
    assert result.returncode == 0, result.stderr
    assert dest.read_text() == SECRET + "\n"
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    assert SECRET not in result.stdout + result.stderr
    assert lib(f'SECRET_CHANGED=0; {script}', stdin=SECRET).stdout.splitlines() == ["changed=0"]


@pytest.mark.parametrize("value, error", [("", "is empty"), ("two words", "contains whitespace"),
                                          ("line1\nline2", "contains whitespace or several lines")])
def test_install_secret_rejects_a_malformed_secret(tmp_path, value, error):
    result = lib(f'install_secret - "{tmp_path}/s"', stdin=value)
    assert result.returncode == 1
    assert error in result.stderr
    assert not (tmp_path / "s").exists()
    if value:
        assert value not in result.stderr


def test_token_config_reads_the_api_key_from_the_credential(tmp_path):
    from pivoice.tokenserver.config import load_config
    credential = "/run/credentials/pivoice-token-server.service/openai-api-key"
    out = tmp_path / "token-server.yaml"
    assert lib(f'token_config_from "{ROOT}/config/token-server.example.yaml" "{out}"').returncode == 0
    assert load_config(str(out)).upstream.api_key_file == credential
    bare = tmp_path / "bare.yaml"
    bare.write_text("port: 8443\n")
    assert lib(f'token_config_from "{bare}" "{out}"').returncode == 0
    assert load_config(str(out)).upstream.api_key_file == credential


def test_source_id_follows_the_package_sources_only(tmp_path):
    src = tmp_path / "src"
    (src / "daemon" / "pivoice" / "__pycache__").mkdir(parents=True)
    (src / "pyproject.toml").write_text("[project]\n")
    (src / "README.md").write_text("readme\n")
    module = src / "daemon" / "pivoice" / "app.py"
    module.write_text("x = 1\n")
    ident = lambda: lib(f'SRC="{src}"; source_id').stdout.strip()   # noqa: E731
    first = ident()
    assert len(first) == 64
    (src / "daemon" / "pivoice" / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\0")
    (src / "tests").mkdir()
    (src / "daemon" / "pivoice.egg-info").mkdir()                  # left by `pip install -e` on a dev machine
    (src / "daemon" / "pivoice.egg-info" / "PKG-INFO").write_text("x\n")
    assert ident() == first
    module.write_text("x = 2\n")
    assert ident() != first


def test_apt_failure_stops_the_install_with_apts_words(tmp_path):
    env = fake_bin(tmp_path, "apt-get", 'echo "E: Unable to locate package $9" >&2; exit 100\n')
    result = lib("ensure_packages pivoice-no-such-package; echo UNREACHED", **env)
    assert result.returncode == 1
    assert "apt-get could not install: pivoice-no-such-package" in result.stderr
    assert "E: Unable to locate package" in result.stderr
    assert "UNREACHED" not in result.stdout


def _device_config(tmp_path: Path, extra: str = "") -> Path:
    secret = tmp_path / "device-secret"
    secret.write_text(SECRET + "\n")
    text = (ROOT / "config" / "pivoice.example.yaml").read_text()
    text = text.replace("secret_file: /run/credentials/pivoice.service/device-secret", f"secret_file: {secret}")
    text = text.replace("    device: default ", f"    device: wav:{tmp_path}/q.wav ", 1)
    with wave.open(str(tmp_path / "q.wav"), "wb") as mic:   # the wav: mic must exist (check-config reads it)
        mic.setnchannels(1), mic.setsampwidth(2), mic.setframerate(16000), mic.writeframes(b"\0\0" * 1600)
    config = tmp_path / "pivoice.yaml"
    config.write_text(text + extra)
    (tmp_path / "pivoice.service").write_text((ROOT / "systemd" / "pivoice.service").read_text())
    return config


def _check(tmp_path: Path, config: Path) -> subprocess.CompletedProcess:
    venv = ROOT / ".venv"
    return lib(f'VENV_DIR="{venv}"; DEVICE_CONFIG="{config}"; UNIT_DIR="{tmp_path}"; check_device_config; echo PASSED')


@pytest.mark.skipif(not (ROOT / ".venv" / "bin" / "pivoice").exists(), reason="needs the project venv")
def test_check_config_runs_before_start_and_notes_wav_devices(tmp_path):
    result = _check(tmp_path, _device_config(tmp_path))
    assert result.returncode == 0, result.stderr
    assert f"pivoice install: check-config: {tmp_path}/pivoice.yaml: ok" in result.stdout
    assert "a wav: output must be under /run/pivoice" in result.stdout
    assert "check-config: warning: secret file" in result.stdout    # its stderr (here: mode 644) is shown too
    assert result.stdout.splitlines()[-1] == "PASSED"


@pytest.mark.skipif(not (ROOT / ".venv" / "bin" / "pivoice").exists(), reason="needs the project venv")
def test_a_failing_check_config_stops_the_install_with_its_output(tmp_path):
    result = _check(tmp_path, _device_config(tmp_path, extra="\nbogus_key: 1\n"))
    assert result.returncode == 1
    assert "bogus_key" in result.stderr                      # check-config's own words
    assert "check-config" in result.stderr and "failed (above): not starting" in result.stderr
    assert "PASSED" not in result.stdout
