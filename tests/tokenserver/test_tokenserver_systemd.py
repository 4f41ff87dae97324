"""The token backend's systemd unit: `systemd-analyze verify` silent, offline exposure <= 1.5."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "pivoice-token-server.service"
INSTALLED_BIN = "/opt/pivoice/.venv/bin/pivoice"

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")


def test_unit_verifies_without_any_output(tmp_path):
    # verify fails ("Command ... is not executable") unless ExecStart exists, and it exits 0
    # on many mistakes, so: check a copy pointing at this checkout's binary and demand silence.
    text = UNIT.read_text()
    assert f"ExecStart={INSTALLED_BIN} token-server serve --config /etc/pivoice/token-server.yaml" in text
    local_bin = Path(sys.executable).parent / "pivoice"
    assert local_bin.exists()
    unit = tmp_path / UNIT.name
    unit.write_text(text.replace(INSTALLED_BIN, str(local_bin)))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_verify_would_catch_a_typo(tmp_path):
    """Guards the test above: a misspelt directive must produce output."""
    local_bin = Path(sys.executable).parent / "pivoice"
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace(INSTALLED_BIN, str(local_bin))
                    .replace("ProtectSystem=strict", "ProtectSystm=strict"))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert "ProtectSystm" in result.stdout + result.stderr


def test_unit_exposure_is_at_most_1_5():
    result = subprocess.run(["systemd-analyze", "security", "--offline=true", str(UNIT)],
                            capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout + result.stderr)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 1.5


def test_unit_hands_over_the_api_key_as_a_credential():
    text = UNIT.read_text()
    assert "LoadCredential=openai-api-key:/etc/pivoice/openai-api-key" in text
    assert "Environment=OPENAI_API_KEY" not in text  # never put the key in the unit
    example = (UNIT.parents[1] / "config" / "token-server.example.yaml").read_text()
    assert "/run/credentials/pivoice-token-server.service/openai-api-key" in example
