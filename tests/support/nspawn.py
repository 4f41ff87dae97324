"""A booted Debian bookworm under systemd-nspawn, for tests that need a real systemd as PID 1.

    base, _ = ensure_base_rootfs()                    # support.rootfs: debootstrap once, cached
    with booted_container(base, "pvtest", Path("boot.log")) as ct:
        ct.run(["systemctl", "is-active", "dbus"])    # -> CompletedProcess

Our hosts' PID 1 is not systemd, so nspawn runs unregistered (--register=no --keep-unit: no
machined, no scope) and commands enter the container with nsenter (machinectl needs machined).
The unified cgroup layout plus --system-call-filter=bpf is the only combination in which
DevicePolicy= is enforced, and the one Raspberry Pi OS uses (see
shared/reference/real-systemd-and-arm64.md, section 1a).

Every run boots a fresh copy of the cached base, so each starts pristine; the container is powered
off and its root removed on exit, also when the body raises or on KeyboardInterrupt (and at
interpreter exit as a last resort). Everything here is called from the test's main thread.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Iterator, Sequence

from support.rootfs import copy_tree_into, prepare_root

MACHINES_DIR = Path(os.environ.get("PIVOICE_TEST_MACHINES", "/var/lib/machines"))
CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BOOT_TIMEOUT_S = 90.0
POWEROFF_TIMEOUT_S = 30.0


def cannot_boot_reason() -> str | None:
    """Why this host cannot boot a container at all (then tests skip), else None.

    Only root with CAP_SYS_ADMIN is a true precondition; missing tools are installed by
    scripts/test, so their absence is a failure, not a skip."""
    if os.geteuid() != 0:
        return "needs root (systemd-nspawn, debootstrap, nsenter)"
    cap_eff = 0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            cap_eff = int(line.split()[1], 16)
    if not cap_eff & (1 << 21):   # CAP_SYS_ADMIN
        return "needs CAP_SYS_ADMIN (mounts and namespaces for systemd-nspawn)"
    return None


class Container:
    """One booted container. `run` enters it with nsenter; `close` powers it off and removes its root."""

    def __init__(self, root: Path, name: str, boot_log: Path, binds: Sequence[tuple[Path, str]] = ()) -> None:
        self.root, self.name, self.boot_log = root, name, boot_log
        self.binds = list(binds)
        self.nspawn: subprocess.Popen | None = None
        self.leader_pid: int | None = None
        self.keep_root = os.environ.get("PIVOICE_TEST_KEEP_ROOT") == "1"
        self.shutdown: dict = {}   # how the container went down: {"by": "poweroff"|"SIGTERM"|"SIGKILL", "s": ...}
        self.system_state = ""    # `systemctl is-system-running` once booted: running, degraded, ...
        self._closed = False

    # --- lifecycle ---
    def boot(self, timeout_s: float = BOOT_TIMEOUT_S) -> str:
        """Boot and wait until systemd reports the system up; returns is-system-running's verdict."""
        _ensure_nspawn_run_dir()
        env = dict(os.environ, SYSTEMD_NSPAWN_UNIFIED_HIERARCHY="1")
        cmd = ["systemd-nspawn", "-b", "-D", str(self.root), "-M", self.name, "--register=no", "--keep-unit",
               "--system-call-filter=bpf", "--console=pipe"]
        cmd += [f"--bind={host}:{inside}" for host, inside in self.binds]
        with open(self.boot_log, "wb") as log:
            self.nspawn = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                           env=env, start_new_session=True, preexec_fn=_terminate_with_parent)
        atexit.register(self.close)
        deadline = time.monotonic() + timeout_s
        while self.leader_pid is None:
            self._check_nspawn_alive()
            self.leader_pid = _child_named(self.nspawn.pid, "systemd")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no systemd inside the container after {timeout_s:.0f} s; see {self.boot_log}")
            time.sleep(0.1)
        bus = Path(f"/proc/{self.leader_pid}/root/run/systemd/private")
        while not bus.is_socket():   # systemctl fails at once until this socket exists
            self._check_nspawn_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"systemd's private bus never appeared; see {self.boot_log}")
            time.sleep(0.2)
        result = self.run(["systemctl", "is-system-running", "--wait"],
                          timeout_s=max(5.0, deadline - time.monotonic()))
        self.system_state = result.stdout.strip()
        return self.system_state

    def close(self) -> None:
        """Power off (systemctl poweroff, then nspawn's own SIGTERM shutdown, then SIGKILL) and remove
        the root. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self.nspawn is not None and self.nspawn.poll() is None:
            t0 = time.monotonic()
            with contextlib.suppress(Exception):
                self.run(["systemctl", "--no-block", "poweroff"], timeout_s=10)
            for sig, wait_s in ((None, POWEROFF_TIMEOUT_S), (signal.SIGTERM, 15.0), (signal.SIGKILL, 10.0)):
                if sig is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self.nspawn.pid, sig)   # our own session: nspawn and its children
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.nspawn.wait(timeout=wait_s)
                    self.shutdown = {"by": sig.name if sig else "poweroff", "s": round(time.monotonic() - t0, 2)}
                    break
        if not self.keep_root:
            remove_root(self.root)

    def _check_nspawn_alive(self) -> None:
        assert self.nspawn is not None
        if self.nspawn.poll() is not None:
            tail = self.boot_log.read_text(errors="replace").splitlines()[-20:]
            raise RuntimeError(f"systemd-nspawn exited with {self.nspawn.returncode}:\n" + "\n".join(tail))

    # --- working inside ---
    def run(self, cmd: Sequence[str], user: str | None = None, *, input: str | bytes | None = None,
            cwd: str = "/", timeout_s: float = 120.0, check: bool = False,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """Run cmd inside (as root, or as `user` through runuser) with a clean environment."""
        if self.leader_pid is None:
            raise RuntimeError("container not booted")
        home = "/root" if user in (None, "root") else f"/home/{user}"
        variables = {"PATH": CONTAINER_PATH, "HOME": home, "TERM": "dumb", "LANG": "C.UTF-8", **(env or {})}
        full = ["nsenter", "-t", str(self.leader_pid), "-a", "env", "-i", "-C", cwd]
        full += [f"{k}={v}" for k, v in variables.items()]
        if user not in (None, "root"):
            full += ["runuser", "-u", user, "--"]
        full += list(cmd)
        text = not isinstance(input, bytes)
        result = subprocess.run(full, input=input, capture_output=True, text=text, timeout=timeout_s)
        if check and result.returncode != 0:
            raise AssertionError(f"inside {self.name}: {' '.join(cmd)} -> exit {result.returncode}\n"
                                 f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}")
        return result

    def read_file(self, inside: str) -> bytes:
        """A file as the container sees it (also on its own tmpfs mounts, e.g. /run, which the host's
        view of the root directory does not show)."""
        result = self.run(["cat", "--", inside], input=b"", timeout_s=30)
        if result.returncode != 0:
            raise FileNotFoundError(f"inside {self.name}: {inside}: {result.stderr.decode(errors='replace').strip()}")
        return result.stdout

    def sh(self, script: str, user: str | None = None, **kwargs) -> subprocess.CompletedProcess:
        return self.run(["bash", "-euo", "pipefail", "-c", script], user, **kwargs)

    def path(self, inside: str) -> Path:
        """Host path of a container path (the root is a plain directory on the host)."""
        return self.root / inside.lstrip("/")

    def put_file(self, inside: str, data: bytes | str, mode: int = 0o644, owner: str | None = None) -> None:
        target = self.path(inside)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data.encode() if isinstance(data, str) else data)
        target.chmod(mode)
        if owner:
            self.run(["chown", owner, inside], check=True)

    def put_tree(self, src_root: Path, files: Sequence[str], inside: str, owner: str | None = None) -> None:
        copy_tree_into(src_root, files, self.path(inside))
        if owner:
            self.run(["chown", "-R", owner, inside], check=True)

    # --- systemd inside ---
    def unit_property(self, unit: str, prop: str) -> str:
        return self.run(["systemctl", "show", "-p", prop, "--value", unit], check=True, timeout_s=30).stdout.strip()

    def unit_timespan_s(self, unit: str, prop: str) -> float:
        """A time property (WatchdogUSec, TimeoutStopUSec, ...) in seconds; systemctl prints e.g. "1min 30s"."""
        return timespan_s(self.unit_property(unit, prop))

    def wait_until(self, what: str, predicate, timeout_s: float, interval_s: float = 0.2):
        """Poll predicate() until it returns something truthy; TimeoutError naming `what` otherwise."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: not within {timeout_s:.0f} s")
            time.sleep(interval_s)

    def wait_active(self, unit: str, timeout_s: float = 60.0, not_pid: str | None = None) -> str:
        """Wait until `unit` is active with a main PID (other than not_pid); returns that PID."""
        def active_pid():
            if self.run(["systemctl", "is-active", "-q", unit], timeout_s=30).returncode != 0:
                return None
            pid = self.unit_property(unit, "MainPID")
            return pid if pid not in ("", "0", not_pid) else None
        try:
            return self.wait_until(f"{unit} active" + (f" with a PID other than {not_pid}" if not_pid else ""),
                                   active_pid, timeout_s)
        except TimeoutError as exc:
            status = self.run(["systemctl", "status", "--no-pager", "-l", "-n", "30", unit], timeout_s=30)
            raise TimeoutError(f"{exc}\n{status.stdout}{status.stderr}") from None

    def journal_cursor(self) -> str:
        """Cursor of the newest journal entry: pass it to `journal` to see only what comes after."""
        out = self.run(["journalctl", "-n", "1", "-o", "json", "-q"], check=True, timeout_s=30).stdout
        return json.loads(out)["__CURSOR"]

    def journal(self, unit: str | None = None, after_cursor: str | None = None, fmt: str = "cat") -> str:
        cmd = ["journalctl", "--no-pager", "-o", fmt]
        cmd += ["-u", unit] if unit else []
        cmd += [f"--after-cursor={after_cursor}"] if after_cursor else []
        return self.run(cmd, check=True, timeout_s=60).stdout


_TIMESPAN_UNITS_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


def timespan_s(text: str) -> float:
    """systemd's formatted time span ("15s", "1min 30s", "500ms", "0", "infinity") in seconds."""
    text = text.strip()
    if text in ("", "0"):
        return 0.0
    if text == "infinity":
        return float("inf")
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*(us|ms|min|s|h|d)\b", text)
    if not parts:
        raise ValueError(f"not a systemd time span: {text!r}")
    return sum(float(n) * _TIMESPAN_UNITS_S[u] for n, u in parts)


@contextlib.contextmanager
def booted_container(base: Path, name: str, boot_log: Path,
                     binds: Sequence[tuple[Path, str]] = ()) -> Iterator[Container]:
    """Copy `base` to a fresh root under MACHINES_DIR, boot it, yield it; always power off and clean up.
    `name` is the container's host name; the machine (and its root) is NAME-PID, so concurrent test
    runs on one host do not share nspawn's per-machine state."""
    _remove_stale_roots(name)
    machine = f"{name}-{os.getpid()}"
    root = MACHINES_DIR / machine
    prepare_root(base, root, name)
    container = Container(root, machine, boot_log, binds)
    try:
        container.boot()
        yield container
    finally:
        container.close()


def remove_root(root: Path) -> None:
    # rm is several times faster than shutil.rmtree on the ~40k files of two venvs, and
    # --one-file-system never follows a mount that might still be inside the root
    subprocess.run(["rm", "-rf", "--one-file-system", "--", str(root)], timeout=300)


def _remove_stale_roots(name: str) -> None:
    """Roots left by a run that was killed before it could clean up (its pid no longer exists)."""
    for old in MACHINES_DIR.glob(f"{name}-*"):
        pid = old.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            remove_root(old)


def _ensure_nspawn_run_dir() -> None:
    # nspawn's host-side run dir must be on a tmpfs, else it reports a cleanup error at exit
    run_dir = Path("/run/systemd/nspawn")
    run_dir.mkdir(parents=True, exist_ok=True)
    if subprocess.run(["mountpoint", "-q", str(run_dir)]).returncode != 0:
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(run_dir)], check=True, timeout=30)


def _terminate_with_parent() -> None:
    # If the test process dies without cleaning up (SIGKILL, a CI timeout), nspawn gets SIGTERM, which
    # it turns into an orderly shutdown of the container; its own session keeps it out of Ctrl-C's way.
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _child_named(parent_pid: int, comm: str) -> int | None:
    for child in Path(f"/proc/{parent_pid}/task/{parent_pid}/children").read_text().split():
        with contextlib.suppress(OSError):
            if Path(f"/proc/{child}/comm").read_text().strip() == comm:
                return int(child)
    return None

