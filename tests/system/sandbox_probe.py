"""What the daemon's libraries open, checked from inside a sandbox: prints JSON {path: status}.

Run it the way the daemon runs, e.g. as a transient copy of pivoice.service's [Service] settings
with ExecStart replaced by `/opt/pivoice/.venv/bin/python /some/visible/dir/sandbox_probe.py`
(copy this file out of /root or /home first: the unit hides both). While pivoice.service runs, give
the copy `RuntimeDirectoryPreserve=yes`: the copy has the same RuntimeDirectory=pivoice, and when it
stops systemd removes /run/pivoice, control socket included, under the running daemon (seen in a
booted container). Status per path:
`readable`, `writable`, `missing` (ENOENT: absent here, or hidden by ProcSubset=/ProtectHome=),
`denied` (EACCES/EPERM, e.g. InaccessiblePaths= or DevicePolicy=). Extra keys: `cwd` (the working
directory lgpio makes its FIFO in), `import lgpio` (ok / not installed / the error) and, when lgpio
imports, `gpiozero LGPIOFactory()` (ok, or how far it got: off a Pi it stops at the board revision, or
with a revision faked through BindReadOnlyPaths=FILE:/proc/cpuinfo, at opening /dev/gpiochip0).
Exit status 1 if anything REQUIRED below is not as needed; hardware paths that only a Pi has
(the device tree, /dev/snd/*, /dev/gpiochip*) may be `missing` but never `denied`.

Where each path comes from (verified by reading the sources and by
`strace -f -e trace=%file,chdir` of `pivoice devices` and of PortAudio/gpiozero start-up on the
PulseAudio rig; tests/test_sandbox_paths.py checks the unit's settings against this list offline):
"""

from __future__ import annotations

import errno
import glob
import json
import os
import sys

READ, WRITE, DEVICE = "read", "write", "device"
REQUIRED, HARDWARE, OPTIONAL = "required", "hardware", "optional"

# (path or glob, need, kind, where it comes from)
PATHS = [
    # gpiozero 2.0 pins/local.py get_pi_revision(): LGPIOFactory() raises PinUnknownPi without one of these
    ("/proc/device-tree/system/linux,revision", READ, HARDWARE, "gpiozero get_pi_revision(), first choice"),
    ("/proc/cpuinfo", READ, REQUIRED, "gpiozero get_pi_revision() fallback; alsa-lib dmix on x86 (cpu flags)"),
    # gpiozero pins/lgpio.py: os.path.exists('/dev/gpiochip4') on a Pi 5, then lgpio.gpiochip_open()
    # -> lgGpio.c open("/dev/gpiochip%d", O_RDWR)
    ("/dev/gpiochip*", DEVICE, HARDWARE, "lgpio gpiochip_open (DeviceAllow=char-gpiochip rw, group gpio)"),
    # alsa-lib 1.2.8: its configuration (strace: opened on snd_config_update at PortAudio init)
    ("/usr/share/alsa/alsa.conf", READ, REQUIRED, "alsa-lib top-level configuration"),
    ("/usr/share/alsa/pcm/default.conf", READ, REQUIRED, "alsa-lib: the default PCM"),
    ("/usr/share/alsa/cards/aliases.conf", READ, REQUIRED, "alsa-lib: card driver aliases"),
    ("/etc/asound.conf", READ, OPTIONAL, "alsa-lib system configuration (a user's USB card choice)"),
    ("/etc/alsa/conf.d", READ, OPTIONAL, "alsa-lib configuration snippets (plugins)"),
    # alsa-lib device nodes (strings libasound.so.2; strace: /dev/snd/controlC0..31 probed by PortAudio)
    ("/dev/snd/controlC*", DEVICE, HARDWARE, "alsa-lib snd_card_next / snd_ctl_hw_open"),
    ("/dev/snd/pcmC*D*c", DEVICE, HARDWARE, "alsa-lib snd_pcm_hw_open (capture: the mic)"),
    ("/dev/snd/pcmC*D*p", DEVICE, HARDWARE, "alsa-lib snd_pcm_hw_open (playback: the speaker)"),
    ("/dev/snd/timer", DEVICE, HARDWARE, "alsa-lib timers (dmix/dsnoop)"),
    # alsa-lib dmix/dsnoop (the default on USB cards) bind /tmp/alsa-dmix-* sockets: PrivateTmp is fine
    ("/tmp", WRITE, REQUIRED, "alsa-lib dmix/dsnoop IPC sockets"),
    # libjack (PortAudio's JACK host API, linked by Debian's libportaudio2) keeps /dev/shm/jack_db-UID
    ("/dev/shm", WRITE, OPTIONAL, "libjack metadata database (JACK is not used; failure is harmless)"),
    # Python / numpy / OpenBLAS thread sizing
    ("/sys/devices/system/cpu/online", READ, REQUIRED, "OpenBLAS/numpy and os.cpu_count()"),
    # TLS to the token backend and the Realtime API
    ("/etc/ssl/certs/ca-certificates.crt", READ, REQUIRED, "system CA bundle (websocket-client, urllib)"),
    # the daemon itself
    ("/etc/pivoice/pivoice.yaml", READ, REQUIRED, "the config, read at start and on SIGHUP"),
    ("/run/pivoice", WRITE, REQUIRED, "RuntimeDirectory: control socket, wav: outputs"),
]


def _status_of(path: str, need: str) -> str:
    try:
        if need == DEVICE:
            os.close(os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_NOCTTY))
            return "writable"
        if os.path.isdir(path):
            os.listdir(path)
            if need == WRITE:
                return "writable" if _can_create_in(path) else "readable"
            return "readable"
        with open(path, "rb") as f:
            f.read(1)
        return "readable"
    except OSError as exc:
        return "missing" if exc.errno == errno.ENOENT else "denied"


def _can_create_in(directory: str) -> bool:
    """What lgpio does there: mkfifo, open, unlink."""
    name = os.path.join(directory, f".pivoice-probe-{os.getpid()}")
    try:
        os.mkfifo(name, 0o600)
    except OSError:
        return False
    os.unlink(name)
    return True


def probe(paths=PATHS) -> tuple[dict[str, str], list[str]]:
    """Return ({path: status}, [problems])."""
    result: dict[str, str] = {}
    problems: list[str] = []
    for pattern, need, kind, origin in paths:
        matches = sorted(glob.glob(pattern)) if any(c in pattern for c in "*?[") else [pattern]
        for path in matches or [pattern]:
            status = _status_of(path, need) if matches else "missing"
            result[path] = status
            wanted = "writable" if need in (WRITE, DEVICE) else "readable"
            ok = status in (wanted, "writable") or (kind != REQUIRED and status == "missing")
            if not ok and kind != OPTIONAL:
                problems.append(f"{path}: {status}, needs {wanted} ({origin})")
    cwd = os.getcwd()
    result["cwd"] = cwd
    result[cwd] = "writable" if _can_create_in(cwd) else _status_of(cwd, READ)
    if result[cwd] != "writable":
        problems.append(f"working directory {cwd}: {result[cwd]}, lgpio makes its notification FIFO there")
    result["import lgpio"] = _try_lgpio()
    if result["import lgpio"] not in ("ok", "not installed"):
        problems.append(f"import lgpio: {result['import lgpio']}")
    elif result["import lgpio"] == "ok":
        # informational: off a Pi this fails at the revision or at opening the chip, never earlier
        result["gpiozero LGPIOFactory()"] = _try_factory()
    return result, problems


def _try_lgpio() -> str:
    try:
        import lgpio  # noqa: F401  (its import makes the FIFO .lgd-nfy0 in the working directory)
    except ModuleNotFoundError:
        return "not installed"
    except Exception as exc:   # lgpio raises whatever its FIFO open raised
        return f"{type(exc).__name__}: {exc}"
    return "ok"


def _try_factory() -> str:
    try:
        from gpiozero.pins.lgpio import LGPIOFactory
        LGPIOFactory().close()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return "ok"


def main() -> int:
    result, problems = probe()
    json.dump(result, sys.stdout, indent=2)
    print()
    for problem in problems:
        print(f"sandbox_probe: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
