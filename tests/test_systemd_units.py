"""Both shipped systemd units: `systemd-analyze verify` silent, offline security exposure within its
bound (the daemon 1.6: it needs /proc/cpuinfo and the device tree for gpiozero; the backend 1.5),
and `Documentation=` naming files that scripts/install puts there."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SYSTEMD = Path(__file__).resolve().parents[1] / "systemd"
UNITS = sorted(SYSTEMD.glob("*.service"))
INSTALLED_BIN = "/opt/pivoice/.venv/bin/pivoice"

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")


def verify(unit: Path, tmp_path: Path, edit=lambda text: text) -> subprocess.CompletedProcess:
    # verify insists that ExecStart exists and exits 0 on many mistakes, so check a copy pointing
    # at this checkout's binary and demand silence
    text = unit.read_text()
    assert INSTALLED_BIN in text
    copy = tmp_path / unit.name
    copy.write_text(edit(text.replace(INSTALLED_BIN, str(Path(sys.executable).parent / "pivoice"))))
    return subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60)


def test_both_units_are_shipped():
    assert {u.name for u in UNITS} == {"pivoice.service", "pivoice-token-server.service"}


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_unit_verifies_without_any_output(unit, tmp_path):
    result = verify(unit, tmp_path)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_verify_would_catch_a_typo(unit, tmp_path):
    """Guards the test above: a misspelt directive must produce output."""
    result = verify(unit, tmp_path, lambda text: text.replace("ProtectSystem=strict", "ProtectSystm=strict"))
    assert "ProtectSystm" in result.stdout + result.stderr


EXPOSURE_BOUND = {"pivoice.service": 1.6, "pivoice-token-server.service": 1.5}


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_unit_exposure_is_within_its_bound(unit):
    result = subprocess.run(["systemd-analyze", "security", "--offline=true", str(unit)],
                            capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout + result.stderr)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= EXPOSURE_BOUND[unit.name]


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_documentation_names_files_the_install_puts_there(unit):
    """scripts/install copies README.md and config/*.example.yaml to /opt/pivoice/share/."""
    docs = [d for line in unit.read_text().splitlines() if line.startswith("Documentation=")
            for d in line.split("=", 1)[1].split()]
    assert docs
    install_lib = (SYSTEMD.parent / "scripts" / "lib" / "install.sh").read_text()
    for doc in docs:
        assert doc.startswith("file:///opt/pivoice/share/"), doc
        name = doc.rsplit("/", 1)[1]
        source = SYSTEMD.parent / ("README.md" if name == "README.md" else f"config/{name}")
        assert source.is_file(), doc
        assert f'"$SHARE_DIR/{name}"' in install_lib, f"scripts/install does not copy {name}"


def test_daemon_unit_gets_the_device_secret_as_a_credential():
    text = (SYSTEMD / "pivoice.service").read_text()
    assert "LoadCredential=device-secret:/etc/pivoice/device-secret" in text
    example = (SYSTEMD.parent / "config" / "pivoice.example.yaml").read_text()
    assert "secret_file: /run/credentials/pivoice.service/device-secret" in example
