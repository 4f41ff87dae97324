"""The Debian bookworm arm64 chroot behind `scripts/check-arm64` (qemu-user through binfmt_misc).

Called from the check's main thread only. The debootstrapped base is cached as a tarball so a
second run unpacks it in seconds instead of debootstrapping for minutes under emulation.
Everything mounted is recorded and unmounted by `close()`; the tree is deleted only once nothing
is mounted under it any more (a bind-mounted /dev must never be reached by the delete).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

MIRROR = "http://deb.debian.org/debian"
SUITE = "bookworm"
CHROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# A name the chroot's own ca-certificates package never rewrites.
CHROOT_CA_BUNDLE = "/etc/ssl/certs/host-egress-bundle.crt"


class StepFailed(RuntimeError):
    pass


def run_logged(cmd: list[str], log_path: Path, *, timeout_s: float, cwd: str | None = None,
               stdin_path: str | None = None) -> tuple[int, float]:
    """Run cmd in its own process group, each output line appended to log_path with the seconds
    since the start (so a step's phases can be timed afterwards); (exit status, seconds).

    On timeout the whole group is killed and the status is 124, like coreutils' timeout.
    """
    start = time.monotonic()
    with open(log_path, "ab") as log, open(stdin_path or os.devnull, "rb") as stdin:
        log.write(f"\n$ {' '.join(cmd)}\n".encode())
        log.flush()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=stdin, cwd=cwd,
                                start_new_session=True)

        def copy() -> None:   # the log writer thread: the main thread only waits and times out
            for line in proc.stdout:
                log.write(f"[{time.monotonic() - start:7.1f}s] ".encode() + line)
                log.flush()

        writer = threading.Thread(target=copy, daemon=True)
        writer.start()
        try:
            status = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            status = 124
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        writer.join(timeout=10)   # a daemon left holding the pipe open must not hang us
        if status == 124:
            log.write(f"\n[check-arm64] timed out after {timeout_s:.0f} s\n".encode())
    return status, time.monotonic() - start


class ArmChroot:
    """One chroot root directory: base from cache or debootstrap, mounts, commands, clean-up."""

    def __init__(self, root: Path, cache_dir: Path, log_path: Path) -> None:
        self.root = root
        self.cache_tarball = cache_dir / f"debian-{SUITE}-arm64-base.tar.gz"
        self.log_path = log_path
        self._mounted: list[Path] = []
        self._ours = False   # only a tree this run populated is ever deleted

    # -- base system ------------------------------------------------------------------------
    def prepare_base(self, timeout_s: float) -> str:
        """Unpack the cached base, or debootstrap and cache it; returns "cache" or "debootstrap"."""
        if self.root.exists() and any(self.root.iterdir()):
            raise StepFailed(f"--root {self.root} exists and is not empty (remove it or pick another)")
        self.root.mkdir(parents=True, exist_ok=True)
        self._ours = True
        if self.cache_tarball.exists():
            self._must(["tar", "-C", str(self.root), "--numeric-owner", "-xpzf", str(self.cache_tarball)],
                       timeout_s, "unpacking the cached base")
            return "cache"
        self._must(["debootstrap", "--arch=arm64", SUITE, str(self.root), MIRROR], timeout_s,
                   f"debootstrap --arch=arm64 {SUITE} ({MIRROR})")
        self.cache_tarball.parent.mkdir(parents=True, exist_ok=True)
        partial = self.cache_tarball.with_suffix(".partial")
        # The downloaded .debs are not part of a system (an SD-card image has none): not cached.
        self._must(["tar", "-C", str(self.root), "--numeric-owner", "--exclude=./var/cache/apt/archives/*.deb",
                    "-czpf", str(partial), "."], timeout_s,
                   f"caching the base as {self.cache_tarball}")
        partial.rename(self.cache_tarball)
        return "debootstrap"

    def configure(self) -> None:
        """Name resolution, the host's CA bundle for pip, and no service starts from apt."""
        etc = self.root / "etc"
        shutil.copyfile("/etc/resolv.conf", etc / "resolv.conf")
        if HOST_CA_BUNDLE.exists():   # HTTPS may go through a TLS-inspecting proxy
            bundle = self.root / CHROOT_CA_BUNDLE.lstrip("/")
            bundle.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(HOST_CA_BUNDLE, bundle)
            (etc / "pip.conf").write_text(f"[global]\ncert = {CHROOT_CA_BUNDLE}\n")
        # A package's maintainer script must not start a daemon inside the chroot that outlives us.
        policy = self.root / "usr/sbin/policy-rc.d"
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)

    def copy_checkout(self, src: Path, dest: str) -> int:
        """Tracked and untracked-but-not-ignored files (the tree may be uncommitted); returns the count."""
        listing = subprocess.run(["git", "-c", f"safe.directory={src}", "-C", str(src), "ls-files", "-z", "-co",
                                  "--exclude-standard"], check=True, capture_output=True).stdout
        files = [f for f in listing.decode().split("\0") if f and (src / f).is_file()]
        target = self.root / dest.lstrip("/")
        target.mkdir(parents=True, exist_ok=True)
        names = "\0".join(files).encode()
        pack = subprocess.Popen(["tar", "-C", str(src), "--null", "-T", "-", "-cf", "-"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        unpack = subprocess.Popen(["tar", "-C", str(target), "-xf", "-"], stdin=pack.stdout)
        pack.stdout.close()
        pack.communicate(names)
        if unpack.wait() or pack.returncode:
            raise StepFailed(f"copying the checkout {src} into {target} failed")
        return len(files)

    # -- mounts ---------------------------------------------------------------------------
    def mount(self) -> None:
        # The root bound onto itself first, so that it is a mount point as on a real system (the tests'
        # `unshare --mount` fails with "cannot change root filesystem propagation" otherwise).
        for args, where in ((["--bind", str(self.root)], ""), (["-t", "proc", "proc"], "proc"),
                            (["-t", "sysfs", "sys"], "sys"), (["--bind", "/dev"], "dev"),
                            (["-t", "tmpfs", "tmpfs"], "tmp")):
            point = self.root / where
            point.mkdir(exist_ok=True)
            subprocess.run(["mount", *args, str(point)], check=True)
            self._mounted.append(point)
            if point == self.root:   # before anything is mounted on it: nothing may propagate to the host
                subprocess.run(["mount", "--make-private", str(point)], check=True)

    def mounts_below(self) -> list[str]:
        prefix = str(self.root.resolve()).rstrip("/") + "/"
        with open("/proc/mounts") as f:
            points = [line.split()[1] for line in f]
        return [p for p in points if p.startswith(prefix) or p == prefix.rstrip("/")]

    # -- commands -------------------------------------------------------------------------
    def run(self, argv: list[str], *, timeout_s: float, env: dict[str, str] | None = None,
            stdin_path: str | None = None) -> tuple[int, float]:
        """argv inside the chroot with a clean environment (host PIP_*/SSL_* must not leak in)."""
        base = {"PATH": CHROOT_PATH, "HOME": "/root", "TERM": "dumb", "LANG": "C.UTF-8",
                "DEBIAN_FRONTEND": "noninteractive"}
        base.update(env or {})
        cmd = ["chroot", str(self.root), "/usr/bin/env", "-i", *(f"{k}={v}" for k, v in base.items()), *argv]
        return run_logged(cmd, self.log_path, timeout_s=timeout_s, stdin_path=stdin_path)

    def output(self, argv: list[str], *, timeout_s: float = 120) -> str:
        cmd = ["chroot", str(self.root), "/usr/bin/env", "-i", f"PATH={CHROOT_PATH}", "HOME=/root",
               "LANG=C.UTF-8", *argv]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s).stdout

    # -- clean-up -------------------------------------------------------------------------
    def leftover_pids(self) -> list[int]:
        """Processes (daemons our steps started) whose root directory is inside the chroot."""
        mine = str(self.root.resolve())
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if os.readlink(entry / "root") == mine:
                        pids.append(int(entry.name))
                except OSError:
                    pass
        return pids

    def close(self, keep: bool) -> list[str]:
        """Kill leftovers, unmount, and delete the tree unless keep; returns problems (empty if clean)."""
        problems = []
        for pid in self.leftover_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.5)
        for point in reversed(self._mounted):
            done = subprocess.run(["umount", str(point)], capture_output=True, text=True)
            if done.returncode:
                lazy = subprocess.run(["umount", "-l", str(point)], capture_output=True, text=True)
                if lazy.returncode:
                    problems.append(f"umount {point}: {done.stderr.strip()}")
        self._mounted.clear()
        still = self.mounts_below()
        if still:
            problems.append(f"still mounted, tree not deleted: {', '.join(still)}")
        elif not keep and self._ours and self.root.exists():
            shutil.rmtree(self.root, ignore_errors=True)
        return problems

    def _must(self, cmd: list[str], timeout_s: float, what: str) -> None:
        status, _ = run_logged(cmd, self.log_path, timeout_s=timeout_s)
        if status:
            raise StepFailed(f"{what}: exit status {status} (see {self.log_path})")
