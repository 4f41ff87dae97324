"""The daemon unit's sandbox against what its libraries open (the list in tests/system/sandbox_probe.py).

Offline: the unit's settings are read and every listed path is checked against the rule each
setting applies (ProcSubset=, ProtectHome=, PrivateTmp=, ProtectSystem=, InaccessiblePaths=,
PrivateDevices=, DevicePolicy=/DeviceAllow=, WorkingDirectory=). Real: the probe itself run
under a procfs mounted with subset=pid (what ProcSubset=pid does) and as a user whose working
directory is read-only (what lgpio meets under ProtectSystem=strict without WorkingDirectory=).
The booted-systemd test runs the same probe under a transient copy of the unit.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "systemd" / "pivoice.service"
PROBE_FILE = ROOT / "tests" / "system" / "sandbox_probe.py"

_spec = importlib.util.spec_from_file_location("sandbox_probe", PROBE_FILE)
probe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(probe)

# /dev nodes by the DeviceAllow= class that grants them (major names in /proc/devices)
DEVICE_CLASS = {"/dev/snd/": "char-alsa", "/dev/gpiochip": "char-gpiochip"}


def service_settings(text: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    section = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]" and "=" in line:
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


def _under(path: str, prefixes) -> bool:
    return any(path == p.rstrip("/") or path.startswith(p.rstrip("/") + "/") for p in prefixes)


def _words(settings, key) -> list[str]:
    return [w.lstrip("-+") for v in settings.get(key, []) for w in v.split()]


def writable_roots(s: dict[str, list[str]]) -> list[str]:
    roots = ["/dev", "/proc", "/sys"] + _words(s, "ReadWritePaths")
    for key, base in (("RuntimeDirectory", "/run"), ("StateDirectory", "/var/lib"),
                      ("CacheDirectory", "/var/cache"), ("LogsDirectory", "/var/log")):
        roots += [f"{base}/{d}" for d in _words(s, key)]
    if s.get("PrivateTmp", ["no"])[-1] == "yes":
        roots += ["/tmp", "/var/tmp"]
    protect = s.get("ProtectSystem", ["no"])[-1]
    if protect in ("no", "false"):
        roots.append("/")
    elif protect != "strict":
        roots += ["/var", "/run", "/tmp", "/home", "/root", "/srv", "/opt", "/mnt", "/media"]
    return roots


def problems(text: str, paths=probe.PATHS) -> list[str]:
    """Every listed path the unit's settings would hide, make read-only or deny."""
    s = service_settings(text)
    found: list[str] = []
    hidden = _words(s, "InaccessiblePaths") + [w.split(":")[0] for w in _words(s, "TemporaryFileSystem")]
    if s.get("ProtectHome", ["no"])[-1] in ("yes", "tmpfs", "true"):
        hidden += ["/home", "/root", "/run/user"]
    allowed = {v.split()[0]: (v.split() + [""])[1] for v in s.get("DeviceAllow", [])}
    for pattern, need, kind, origin in paths:
        path = pattern.split("*")[0].rstrip("/") or pattern
        why = f"{pattern} ({origin})"
        if _under(path, hidden):
            found.append(f"{why}: hidden by InaccessiblePaths=/TemporaryFileSystem=/ProtectHome=")
        if (s.get("ProcSubset", ["all"])[-1] == "pid" and path.startswith("/proc/")
                and not path.startswith(("/proc/self", "/proc/thread-self"))):
            found.append(f"{why}: hidden by ProcSubset=pid")
        if need == probe.WRITE and not _under(path, writable_roots(s)):
            found.append(f"{why}: read-only under ProtectSystem={s.get('ProtectSystem', ['no'])[-1]}")
        if need == probe.DEVICE:
            if s.get("PrivateDevices", ["no"])[-1] == "yes":
                found.append(f"{why}: hidden by PrivateDevices=yes")
            cls = next((c for prefix, c in DEVICE_CLASS.items() if path.startswith(prefix)), None)
            if s.get("DevicePolicy", ["auto"])[-1] in ("closed", "strict") and "rw" not in allowed.get(cls, ""):
                found.append(f"{why}: DevicePolicy={s['DevicePolicy'][-1]} without DeviceAllow={cls} rw")
    # lgpio's import makes its FIFO in the working directory (or $LG_WD): "/" unless set
    env = " ".join(s.get("Environment", []))
    workdir = next((w.split("=", 1)[1] for w in env.split() if w.startswith("LG_WD=")), None) \
        or s.get("WorkingDirectory", ["/"])[-1].lstrip("-")
    if not _under(workdir, writable_roots(s)):
        found.append(f"working directory {workdir}: read-only, lgpio cannot make its notification FIFO")
    return found


def test_every_listed_path_says_where_it_comes_from():
    assert len(probe.PATHS) >= 15
    for pattern, need, kind, origin in probe.PATHS:
        assert pattern.startswith("/") and need in (probe.READ, probe.WRITE, probe.DEVICE)
        assert kind in (probe.REQUIRED, probe.HARDWARE, probe.OPTIONAL) and len(origin) > 10


def test_the_daemon_unit_hides_nothing_the_libraries_need():
    assert problems(UNIT.read_text()) == []


@pytest.mark.parametrize("mutation, expected", [
    (lambda t: t.replace("ProtectProc=invisible\n", "ProtectProc=invisible\nProcSubset=pid\n"),
     "/proc/cpuinfo (gpiozero get_pi_revision() fallback"),
    (lambda t: t.replace("WorkingDirectory=/run/pivoice\n", ""), "working directory /: read-only, lgpio"),
    (lambda t: t.replace("DeviceAllow=char-gpiochip rw\n", ""), "/dev/gpiochip* (lgpio gpiochip_open"),
    (lambda t: t.replace("DevicePolicy=closed\n", "DevicePolicy=closed\nPrivateDevices=yes\n"),
     "/dev/snd/controlC*"),
    (lambda t: t.replace("RuntimeDirectory=pivoice\n", ""), "/run/pivoice (RuntimeDirectory"),
    (lambda t: t.replace("ProtectProc=invisible\n", "ProtectProc=invisible\nInaccessiblePaths=/usr/share/alsa\n"),
     "/usr/share/alsa/alsa.conf"),
])
def test_the_check_would_catch_a_setting_that_hides_a_path(mutation, expected):
    """Guards the test above: each of these edits to the unit must be reported."""
    mutated = mutation(UNIT.read_text())
    assert mutated != UNIT.read_text()
    assert any(expected in p for p in problems(mutated)), problems(mutated)


def run_probe(prefix: list[str], cwd: Path, python: str = "/usr/bin/python3") -> tuple[dict, str, int]:
    result = subprocess.run([*prefix, python, str(cwd / "sandbox_probe.py")], cwd=cwd, capture_output=True,
                            text=True, timeout=60)
    return json.loads(result.stdout), result.stderr, result.returncode


@pytest.fixture
def probe_dir():
    # not under pytest's tmp_path: its parents are 0700, and one test runs the probe as nobody
    directory = Path(tempfile.mkdtemp(prefix="pivoice-probe-"))
    directory.chmod(0o755)
    shutil.copy(PROBE_FILE, directory / "sandbox_probe.py")
    yield directory
    shutil.rmtree(directory)


needs_root = pytest.mark.skipif(os.geteuid() != 0 or not Path("/usr/bin/python3").exists(),
                                reason="needs root (namespaces, setpriv) and /usr/bin/python3")


@needs_root
def test_probe_sees_what_proc_subset_pid_hides(probe_dir):
    plain, _, _ = run_probe([], probe_dir)
    assert plain["/proc/cpuinfo"] == "readable"
    # ProcSubset=pid is a procfs mounted with subset=pid: reproduce it in a private mount namespace
    inner, stderr, rc = run_probe(["unshare", "--mount", "--pid", "--fork", "sh", "-c",
                                   'mount -t proc -o subset=pid proc /proc && exec "$@"', "sh"], probe_dir)
    assert inner["/proc/cpuinfo"] == "missing"
    assert rc == 1 and "/proc/cpuinfo: missing, needs readable (gpiozero get_pi_revision()" in stderr


@needs_root
def test_probe_sees_a_working_directory_lgpio_cannot_use(probe_dir):
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    result, stderr, rc = run_probe(as_nobody, probe_dir)          # root-owned 0755: read-only for nobody
    assert result["cwd"] == str(probe_dir) and result[str(probe_dir)] == "readable"
    assert rc == 1 and "lgpio makes its notification FIFO there" in stderr
    probe_dir.chmod(0o777)
    result, stderr, _ = run_probe(as_nobody, probe_dir)
    assert result[str(probe_dir)] == "writable"
    assert "working directory" not in stderr
