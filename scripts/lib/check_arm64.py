"""`scripts/check-arm64`: install, demo and tests on Debian bookworm arm64 under qemu-user.

Runs on the host (as root) in one thread. Every step is timed and bounded; the chroot is unmounted
and removed afterwards whatever happened (Ctrl-C and SIGTERM included). Prints a summary table and
writes it, with the venv's size and package list, the GPIO probe and the test counts, to
out/arm64-check.json; each step's full output is under out/arm64-check/.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import signal
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_arm64_chroot import ArmChroot, StepFailed  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SRC_IN_CHROOT = "/root/pivoice"
VENV = "/opt/pivoice/.venv"
SECRET_IN_CHROOT = "/root/check-arm64-device-secret"
APT_ARCHIVES = "/var/cache/apt/archives"
TESTS = ["tests/audio", "tests/daemon", "-q", "-m", "not pulse", "-p", "no:cacheprovider"]
# The README's "Running it on a Pi" steps before scripts/install existed: used only if it is absent.
MANUAL_INSTALL = (f"apt-get install -y portaudio19-dev python3-venv python3-dev gcc && "
                  f"python3 -m venv {VENV} && {VENV}/bin/pip install {SRC_IN_CHROOT}")


class Check:
    """The steps and their records; `chroot` is the one ArmChroot of this run. Main thread only."""

    def __init__(self, chroot: ArmChroot, log_dir: Path, src: Path) -> None:
        self.chroot, self.log_dir, self.src = chroot, log_dir, src
        self.steps: list[dict] = []
        self.facts: dict = {}
        self._debs_before: set[str] = set()

    def step(self, name: str, func, *, needs: tuple[str, ...] = ()) -> None:
        failed = [n for n in needs if not self.ok(n)]
        if failed:
            self.steps.append({"step": name, "status": "skipped", "seconds": 0.0,
                               "detail": f"needs {', '.join(failed)}"})
            return
        start = time.monotonic()
        try:
            detail = func() or ""
            status = "ok"
        except Exception as exc:   # a step's bug or surprise fails that step, not the clean-up
            detail, status = (str(exc) if isinstance(exc, StepFailed) else f"{type(exc).__name__}: {exc}"), "FAILED"
        except BaseException as exc:   # Ctrl-C or a signal: recorded, then the run stops and cleans up
            self.steps.append({"step": name, "status": "STOPPED", "seconds": round(time.monotonic() - start, 1),
                               "detail": str(exc) or type(exc).__name__})
            raise
        record = {"step": name, "status": status, "seconds": round(time.monotonic() - start, 1), "detail": detail}
        self.steps.append(record)
        print(f"[check-arm64] {name}: {status} in {record['seconds']:.1f} s  {detail}", flush=True)

    def ok(self, name: str) -> bool:
        return any(s["step"] == name and s["status"] == "ok" for s in self.steps)

    def in_chroot(self, name: str, argv: list[str], timeout_s: float, **kw) -> str:
        """Run argv in the chroot, its output to <log_dir>/<name>.log; the output, or StepFailed."""
        self.chroot.log_path = self.log_dir / f"{name}.log"
        status, _ = self.chroot.run(argv, timeout_s=timeout_s, **kw)
        text = self.chroot.log_path.read_text(errors="replace")
        if status:
            tail = " | ".join(text.strip().splitlines()[-3:])
            raise StepFailed(f"exit status {status}{' (timed out)' if status == 124 else ''}: {tail}")
        return text

    # -- the steps --------------------------------------------------------------------------
    def base(self) -> str:
        self.chroot.log_path = self.log_dir / "base.log"
        how = self.chroot.prepare_base(timeout_s=1800)
        self.facts["base_from"] = how
        return f"from {how} ({self.chroot.cache_tarball})"

    def setup(self) -> str:
        self.chroot.configure()
        count = self.chroot.copy_checkout(self.src, SRC_IN_CHROOT)
        secret = self.chroot.root / SECRET_IN_CHROOT.lstrip("/")
        secret.touch(mode=0o600)
        secret.write_text(secrets.token_hex(24) + "\n")   # a dummy: no token backend is asked for a key
        self.chroot.mount()
        return f"{count} files of the checkout copied to {SRC_IN_CHROOT}; root bound on itself, proc, sys, dev, tmp mounted"

    def apt_update(self) -> str:
        self.in_chroot("apt-update", ["apt-get", "update"], 600)
        self.facts["rootfs_bytes_before_install"] = self.du_bytes("/") - self.du_bytes(APT_ARCHIVES)
        self._debs_before = self.debian_packages()
        return "package lists fetched"

    def install(self) -> str:
        script = self.chroot.root / SRC_IN_CHROOT.lstrip("/") / "scripts/install"
        if script.exists():
            self.facts["install_method"] = "scripts/install"
            argv = ["bash", "-c", f"cd {SRC_IN_CHROOT} && scripts/install --no-start --secret-file {SECRET_IN_CHROOT}"]
        else:
            self.facts["install_method"] = "README manual steps (scripts/install absent)"
            argv = ["bash", "-c", MANUAL_INSTALL]
        text = self.in_chroot("install", argv, 1800)
        self.facts["install_last_lines"] = text.strip().splitlines()[-8:]
        return self.facts["install_method"]

    def measure(self) -> str:
        size = self.du_bytes(VENV)
        self.facts["venv_bytes"] = size
        self.facts["venv_du_h"] = self.chroot.output(["du", "-sh", VENV]).split()[0]
        # The downloaded .debs (apt-get clean removes them) are not counted as installed.
        self.facts["apt_archives_bytes"] = self.du_bytes(APT_ARCHIVES)
        after = self.du_bytes("/") - self.facts["apt_archives_bytes"]
        self.facts["rootfs_bytes_added_by_install"] = after - self.facts["rootfs_bytes_before_install"]
        self.facts["debian_packages_added"] = sorted(self.debian_packages() - self._debs_before)
        freeze = self.chroot.output([f"{VENV}/bin/python", "-m", "pip", "list", "--format=freeze"])
        self.facts["venv_packages"] = [line for line in freeze.splitlines() if "==" in line]
        if not self.facts["venv_packages"]:
            raise StepFailed(f"pip list in {VENV} printed no packages")
        self.facts["libasound2_plugins_installed"] = "ok installed" in self.chroot.output(
            ["dpkg-query", "-W", "-f=${Status}", "libasound2-plugins"])
        return (f"venv {self.facts['venv_du_h']} ({len(self.facts['venv_packages'])} packages); "
                f"{len(self.facts['debian_packages_added'])} Debian packages added, root fs +{self.facts['rootfs_bytes_added_by_install'] / 2**20:.0f} MiB (+ "
                f"{self.facts['apt_archives_bytes'] / 2**20:.0f} MiB of downloaded .debs)")

    def gpio(self) -> str:
        result = "/root/check-arm64-gpio.json"
        written = self.chroot.root / result.lstrip("/")
        try:
            self.in_chroot("gpio", [f"{VENV}/bin/python", f"{SRC_IN_CHROOT}/scripts/lib/check_arm64_gpio.py", result],
                           300)
        finally:   # the probe's findings matter most when it fails
            if written.exists():
                self.facts["gpio"] = json.loads(written.read_text())
        report = self.facts["gpio"]
        lg, factory = report["lgpio"], report["daemon_factory"]
        if not lg["imported"]:
            raise StepFailed(f"import lgpio in {VENV}: {lg['error']}")
        chosen = factory.get("class") or ", ".join(factory.get("constructing", [])) or "?"
        return (f"import lgpio ok ({lg['version']}); pin_factory lgpio -> {chosen}: "
                f"{factory.get('error', 'opened')}; lgpio chip 0: {report['lgpio_chip0'].get('error', 'opened')}")

    def demo(self) -> str:
        text = self.in_chroot("demo", ["bash", "-c", f"cd {SRC_IN_CHROOT} && scripts/demo"], 1500)
        lines = [re.sub(r"^\[\s*[\d.]+s\] ", "", line) for line in text.splitlines()]   # run_logged's times
        timeline = [line.strip() for line in lines if re.match(r"\s+\d+ ms  ", line)]
        reply = self.chroot.root / SRC_IN_CHROOT.lstrip("/") / "out/demo/reply.wav"
        self.facts["demo_timeline"] = timeline
        self.facts["demo_reply_bytes"] = reply.stat().st_size if reply.exists() else 0
        if not timeline or not reply.exists():
            raise StepFailed("the demo printed no timeline or wrote no reply.wav")
        return f"{len(timeline)} timeline lines; reply.wav {self.facts['demo_reply_bytes']} bytes"

    def tests(self) -> str:
        argv = ["bash", "-c", f"cd {SRC_IN_CHROOT} && .venv/bin/python -m pytest "
                + " ".join(f"'{a}'" for a in TESTS)]
        self.facts["tests_command"] = "pytest " + " ".join(TESTS)
        try:
            text = self.in_chroot("tests", argv, 1800)
        finally:
            log = (self.log_dir / "tests.log").read_text(errors="replace")
            counts = re.findall(r"(\d+) (passed|failed|skipped|deselected|errors?|xfailed)", log)
            self.facts["tests"] = {kind: int(n) for n, kind in counts}
        return ", ".join(f"{n} {k}" for k, n in self.facts["tests"].items()) or text.strip().splitlines()[-1]

    def alsa_rss(self) -> str:
        """Peak RSS on plain ALSA (no sound server; this chroot has no libasound2-plugins unless
        something pulled them in). Under qemu-user it is the emulator's RSS: guest memory plus
        qemu's translated-code cache, so an upper bound for a Pi, not the Pi's figure."""
        script = f"{SRC_IN_CHROOT}/scripts/lib/check_arm64_alsa_rss.py"
        self.in_chroot("alsa-rss", ["bash", "-c", f"cd {SRC_IN_CHROOT} && .venv/bin/python {script} --out out/alsa-rss"],
                       600)
        report = json.loads((self.chroot.root / SRC_IN_CHROOT.lstrip("/") / "out/alsa-rss/result.json").read_text())
        report.pop("libraries", None)
        self.facts["alsa_rss"] = report
        return (f"peak RSS {report['peak_rss_mib']} MiB (qemu-user process); ALSA plugin modules loaded: "
                f"{len(report['plugin_libraries'])}")

    def debian_packages(self) -> set[str]:
        return set(self.chroot.output(["dpkg-query", "-W", "-f=${Package}\\n"]).split())

    def du_bytes(self, path: str) -> int:
        out = self.chroot.output(["du", "-sxb", path], timeout_s=600)
        return int(out.split()[0])


def table(steps: list[dict]) -> str:
    lines = [f"{'step':<12} {'status':<8} {'seconds':>8}  detail", "-" * 100]
    lines += [f"{s['step']:<12} {s['status']:<8} {s['seconds']:>8.1f}  {s['detail']}" for s in steps]
    lines.append(f"{'total':<12} {'':<8} {sum(s['seconds'] for s in steps):>8.1f}")
    return "\n".join(lines)


def _stop(signum, _frame):
    raise SystemExit(f"check-arm64: stopped by signal {signum}; cleaning up")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="/var/tmp/pivoice-arm64/root", help="chroot directory (must not exist or be empty)")
    parser.add_argument("--keep", action="store_true", help="keep the chroot afterwards (still unmounted)")
    parser.add_argument("--cache", default="/var/cache/pivoice-arm64", help="where the base tarball is cached")
    parser.add_argument("--out", default=str(ROOT / "out"), help="arm64-check.json and the step logs go here")
    args = parser.parse_args()
    out = Path(args.out)
    log_dir = out / "arm64-check"
    log_dir.mkdir(parents=True, exist_ok=True)
    for old in log_dir.glob("*.log"):
        old.unlink()
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGHUP, _stop)

    chroot = ArmChroot(Path(args.root).resolve(), Path(args.cache), log_dir / "base.log")
    check = Check(chroot, log_dir, ROOT)
    started = datetime.now(timezone.utc)
    problems: list[str] = []
    try:
        check.step("base", check.base)
        check.step("setup", check.setup, needs=("base",))
        check.step("apt-update", check.apt_update, needs=("setup",))
        check.step("install", check.install, needs=("apt-update",))
        check.step("measure", check.measure, needs=("install",))
        check.step("gpio", check.gpio, needs=("install",))
        check.step("demo", check.demo, needs=("apt-update",))
        check.step("alsa-rss", check.alsa_rss, needs=("demo",))
        check.step("tests", check.tests, needs=("apt-update",))   # uses the .venv[dev] the demo built
    finally:
        problems = chroot.close(keep=args.keep)
        report = {"started_utc": started.isoformat(timespec="seconds"), "root": str(chroot.root),
                  "kept": args.keep, "steps": check.steps, "cleanup_problems": problems, **check.facts}
        (out / "arm64-check.json").write_text(json.dumps(report, indent=2) + "\n")
        print("\n" + table(check.steps))
        print(f"\nreport: {out / 'arm64-check.json'}; step logs: {log_dir}/")
        for problem in problems:
            print(f"[check-arm64] clean-up: {problem}", file=sys.stderr)
    failed = [s["step"] for s in check.steps if s["status"] != "ok"]
    if failed:
        print(f"check-arm64: FAILED or skipped: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed or problems else 0


if __name__ == "__main__":
    sys.exit(main())
