"""The root file systems the booted-systemd tests boot: a cached debootstrap of Debian bookworm with what
a Raspberry Pi OS Lite image has, and a pristine copy of it per run.

The base is built once into CACHE_DIR (about 2 min) and rebuilt only when the package list or the
recipe changes; each run copies it (about 2 s on ext4) so nothing leaks from one run to the next.
Called from the test's main thread.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import Sequence

MIRROR = "http://deb.debian.org/debian"
SUITE = "bookworm"
# What a Raspberry Pi OS Lite image has that scripts/install relies on; NOT the project's build
# dependencies (python3-venv, python3-dev, gcc, portaudio19-dev): installing those is install's job.
PI_OS_LITE_PACKAGES = ("systemd", "systemd-sysv", "dbus", "sudo", "python3", "udev", "ca-certificates",
                       "libpam-systemd")
# Test tooling only: the dev server speaks its replies with espeak-ng (else it answers with a tone).
TEST_TOOL_PACKAGES = ("espeak-ng",)
# Bump when the way the base is built changes, so cached bases are rebuilt.
BASE_RECIPE_VERSION = 1

CACHE_DIR = Path(os.environ.get("PIVOICE_TEST_CACHE", "/var/cache/pivoice-tests"))
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
STAMP_NAME = ".pivoice-base-stamp"
DEBOOTSTRAP_TIMEOUT_S = 900.0


def base_stamp(packages: Sequence[str]) -> str:
    text = f"{BASE_RECIPE_VERSION}\n{SUITE}\n{MIRROR}\n" + ",".join(sorted(packages))
    return hashlib.sha256(text.encode()).hexdigest()


def ensure_base_rootfs(packages: Sequence[str] = PI_OS_LITE_PACKAGES + TEST_TOOL_PACKAGES,
                       cache_dir: Path = CACHE_DIR, log_path: Path | None = None) -> tuple[Path, bool]:
    """The debootstrapped base under cache_dir, built when absent, incomplete or built from another
    package list. Returns (path, built_now). A lock keeps concurrent test runs from building twice."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    base = cache_dir / f"{SUITE}-base"
    stamp = base_stamp(packages)
    with open(cache_dir / f"{SUITE}-base.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (base / STAMP_NAME).is_file() and (base / STAMP_NAME).read_text().strip() == stamp:
            return base, False
        partial = cache_dir / f"{SUITE}-base.partial"
        shutil.rmtree(partial, ignore_errors=True)
        log = open(log_path or cache_dir / "debootstrap.log", "w")
        with log:
            result = subprocess.run(["debootstrap", "--include=" + ",".join(packages), SUITE, str(partial), MIRROR],
                                    stdout=log, stderr=subprocess.STDOUT, timeout=DEBOOTSTRAP_TIMEOUT_S)
        if result.returncode != 0:
            tail = Path(log.name).read_text(errors="replace").splitlines()[-15:]
            raise RuntimeError(f"debootstrap {SUITE} from {MIRROR} failed (exit {result.returncode}); "
                               f"see {log.name}:\n" + "\n".join(tail))
        # keep the base small: the package cache is re-downloadable
        subprocess.run(["chroot", str(partial), "apt-get", "clean"], check=True, timeout=60)
        (partial / STAMP_NAME).write_text(stamp + "\n")
        shutil.rmtree(base, ignore_errors=True)
        partial.rename(base)   # only a complete base ever carries the name
        return base, True


def copy_tree_into(src_root: Path, files: Sequence[str], dest: Path) -> None:
    """Copy the listed files (relative to src_root) into dest, keeping modes."""
    dest.mkdir(parents=True, exist_ok=True)
    for rel in files:
        src = src_root / rel
        if not src.exists() and not src.is_symlink():
            continue   # deleted in the working tree but still tracked
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target, follow_symlinks=False)


def checkout_files(src_root: Path) -> list[str]:
    """The working tree as a user's clone would have it: tracked plus untracked-but-not-ignored files
    (the tree may be uncommitted, so `git archive HEAD` would miss work in progress)."""
    try:
        out = subprocess.run(["git", "-C", str(src_root), "ls-files", "-co", "--exclude-standard", "-z"],
                             check=True, capture_output=True, timeout=60).stdout
        return sorted({name for name in out.decode().split("\0") if name})
    except (OSError, subprocess.CalledProcessError):
        pass   # not a git checkout (e.g. an unpacked tarball in CI): everything but build products
    skip_dirs = {".git", ".venv", "out", "build", "__pycache__", ".pytest_cache"}
    files = []
    for dirpath, dirnames, filenames in os.walk(src_root):
        dirnames[:] = [d for d in dirnames if d not in skip_dirs and not d.endswith(".egg-info")]
        files += [os.path.relpath(os.path.join(dirpath, f), src_root) for f in filenames if not f.endswith(".pyc")]
    return sorted(files)


def prepare_root(base: Path, root: Path, hostname: str) -> None:
    """A pristine copy of the base with this host's name and CA bundle (pip through a TLS-inspecting
    egress proxy needs it; harmless otherwise)."""
    shutil.rmtree(root, ignore_errors=True)
    root.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", "--reflink=auto", str(base), str(root)], check=True, timeout=600)
    (root / "etc/hostname").write_text(hostname + "\n")
    with open(root / "etc/hosts", "a") as hosts:
        hosts.write(f"127.0.1.1 {hostname}\n")   # else sudo prints "unable to resolve host"
    # apt's daily timers are overdue in a fresh root and would race scripts/install for apt's locks
    for timer in ("apt-daily.timer", "apt-daily-upgrade.timer"):
        (root / "etc/systemd/system" / timer).unlink(missing_ok=True)
        (root / "etc/systemd/system" / timer).symlink_to("/dev/null")
    if HOST_CA_BUNDLE.is_file():
        shutil.copy(HOST_CA_BUNDLE, root / "etc/ssl/certs/host-egress-bundle.crt")
        (root / "etc/pip.conf").write_text("[global]\ncert = /etc/ssl/certs/host-egress-bundle.crt\n")
