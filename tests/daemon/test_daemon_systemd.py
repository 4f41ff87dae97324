"""The daemon's systemd unit: `systemd-analyze verify` silent, offline security exposure <= 1.5."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "pivoice.service"
INSTALLED_BIN = "/opt/pivoice/.venv/bin/pivoice"

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")


def test_unit_verifies_without_any_output(tmp_path):
    # verify insists that ExecStart exists, so check a copy pointing at this checkout's binary
    text = UNIT.read_text()
    assert INSTALLED_BIN in text
    local_bin = Path(sys.executable).parent / "pivoice"
    unit = tmp_path / "pivoice.service"
    unit.write_text(text.replace(INSTALLED_BIN, str(local_bin)))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_unit_exposure_is_at_most_1_5():
    result = subprocess.run(["systemd-analyze", "security", "--offline=true", str(UNIT)],
                            capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout + result.stderr)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 1.5
