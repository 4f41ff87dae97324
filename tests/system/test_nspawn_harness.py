"""The booted-systemd harness's pure parts, checked without booting anything (fast, runs everywhere)."""

from __future__ import annotations

from pathlib import Path

import pytest

from booted_pi import sandbox_copy_of_daemon_unit
from support.nspawn import timespan_s
from support.rootfs import PI_OS_LITE_PACKAGES, base_stamp, checkout_files

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("text, seconds", [("15s", 15.0), ("1min 30s", 90.0), ("500ms", 0.5), ("2.5s", 2.5),
                                           ("0", 0.0), ("1h 2min", 3720.0), ("infinity", float("inf"))])
def test_timespan_s_reads_what_systemctl_show_prints(text, seconds):
    assert timespan_s(text) == seconds


def test_timespan_s_rejects_what_is_not_a_time_span():
    with pytest.raises(ValueError, match="15 parsecs"):
        timespan_s("15 parsecs")


def test_the_base_is_rebuilt_when_its_package_list_changes():
    assert base_stamp(["systemd", "sudo"]) == base_stamp(["sudo", "systemd"])
    assert base_stamp(["systemd", "sudo"]) != base_stamp(["systemd", "sudo", "gcc"])


def test_the_base_has_no_build_dependencies_installing_them_is_scripts_install_job():
    assert not {"python3-venv", "python3-dev", "gcc", "portaudio19-dev"} & set(PI_OS_LITE_PACKAGES)


def test_the_probe_unit_keeps_every_sandbox_line_of_the_daemon_unit():
    shipped = (REPO / "systemd" / "pivoice.service").read_text()
    probe = sandbox_copy_of_daemon_unit(shipped, "/usr/bin/python3 /probe.py")
    service_lines = shipped.split("[Service]", 1)[1].split("[Install]", 1)[0].splitlines()
    sandbox = [line for line in service_lines if line.startswith(("Protect", "Private", "Restrict", "Device",
                                                                   "SystemCall", "Capability", "ProcSubset",
                                                                   "User=", "Group=", "Supplementary",
                                                                   "RuntimeDirectory", "WorkingDirectory",
                                                                   "LoadCredential", "NoNewPrivileges"))]
    assert sandbox and all(line in probe.splitlines() for line in sandbox)
    lines = probe.splitlines()
    assert [line for line in lines if line.startswith("Type=")] == ["Type=oneshot"]
    assert [line for line in lines if line.startswith("ExecStart=")] == ["ExecStart=/usr/bin/python3 /probe.py"]
    assert not [line for line in lines if line.startswith(("WatchdogSec=", "Restart=", "ExecReload=", "NotifyAccess="))]
    assert "RuntimeDirectoryPreserve=yes" in lines   # stopping the probe must not empty the daemon's /run/pivoice


def test_the_checkout_copy_is_the_working_tree_without_build_products():
    files = checkout_files(REPO)
    assert "scripts/install" in files or "scripts/test" in files
    assert "tests/system/test_nspawn_harness.py" in files   # untracked work in progress is included
    assert not [f for f in files if f.startswith((".venv/", "out/")) or "__pycache__" in f]


def test_the_checkout_copy_works_without_git(tmp_path):
    tree = tmp_path / "tree"
    for rel in ("scripts/install", "daemon/pivoice/app.py", ".venv/bin/python", "out/x.json",
                "daemon/pivoice/__pycache__/app.cpython-311.pyc", "pivoice.egg-info/PKG-INFO", ".git/HEAD"):
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_text("x")
    assert checkout_files(tree) == ["daemon/pivoice/app.py", "scripts/install"]
