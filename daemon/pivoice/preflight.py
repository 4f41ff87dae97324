"""Is this config runnable? The checks `pivoice run` makes before it starts, without starting anything.

Shared by `pivoice check-config` and `pivoice doctor`, so a config that passes them does not end
in a restart loop: the file parses (`config.load`), the device secret is readable and non-empty,
the token client accepts the backend URL (https off loopback), device id and CA bundle, and a
`wav:` mic is a readable 16-bit WAV and a `wav:` speaker's file can be written.

A `tokens.secret_file` under /run/credentials/UNIT/ exists only inside that unit. Run from a
shell, we check the credential's source instead: the `LoadCredential=ID:PATH` of the installed
unit (`systemctl cat UNIT`, else the unit file), falling back to /etc/pivoice/device-secret.

Main thread, at start-up or from the CLI only.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from pivoice.config import WAV_PREFIX, Config, load
from pivoice.settings import ConfigError

CREDENTIALS_ROOT = Path("/run/credentials")
DEFAULT_CREDENTIAL_SOURCE = Path("/etc/pivoice/device-secret")
UNIT_DIRS = (Path("/etc/systemd/system"), Path("/usr/local/lib/systemd/system"), Path("/lib/systemd/system"))
# systemd's search path for `LoadCredential=ID` without a path, or with a relative one
CREDSTORE_DIRS = (Path("/etc/credstore"), Path("/run/credstore"), Path("/usr/lib/credstore"))
SECRET_KEY = "tokens.secret_file"
DAEMON_UNIT = "pivoice.service"


@dataclass
class Runnable:
    """A config `pivoice run` would start with; `secret_from` is the file the secret was read from."""

    cfg: Config
    secret: object          # pivoice.tokens.Secret
    secret_from: str
    notes: list[str] = field(default_factory=list)


def systemctl_cat(unit: str, timeout_s: float = 5.0) -> str | None:
    """The installed unit's text as systemd sees it (drop-ins included), or None without systemd."""
    try:
        result = subprocess.run(["systemctl", "cat", "--no-pager", unit], capture_output=True, text=True,
                                timeout=timeout_s, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout if result.returncode == 0 and result.stdout.strip() else None


def check_runnable(path: str | Path, *, unit_file: str | Path | None = None,
                   read_unit: Callable[[str], str | None] = systemctl_cat) -> Runnable:
    """`config.load` plus what `pivoice run` checks next; raises ConfigError naming the key."""
    cfg = load(path)
    return check_loaded(cfg, unit_file=unit_file, read_unit=read_unit)


def check_loaded(cfg: Config, *, unit_file: str | Path | None = None,
                 read_unit: Callable[[str], str | None] = systemctl_cat) -> Runnable:
    secret, secret_from, notes = read_device_secret(cfg, unit_file=unit_file, read_unit=read_unit)
    check_token_client(cfg, secret)
    notes += check_wav_devices(cfg, unit_file=unit_file, read_unit=read_unit)
    return Runnable(cfg, secret, secret_from, notes)


def check_token_client(cfg: Config, secret) -> None:
    """The token client's own rules (URL scheme/host, device id, CA bundle), exactly as `run` builds it."""
    from pivoice.tokens import TokenProvider
    t = cfg.tokens
    try:
        TokenProvider(t.backend_url, t.device_id, secret, cfg.session.payload(), timeout_s=t.timeout_s,
                      refresh_margin_s=t.refresh_margin_s, ca_bundle=t.ca_bundle,
                      allow_insecure_http=t.allow_insecure_http)
    except ValueError as exc:
        raise ConfigError(cfg.file, "tokens", str(exc)) from None


def check_wav_devices(cfg: Config, *, unit_file: str | Path | None = None,
                      read_unit: Callable[[str], str | None] = systemctl_cat) -> list[str]:
    """The checks WavMic/WavSpeaker make when `run` builds them; ConfigError naming the key, or notes.

    Two answers depend on where this runs, so they are notes, not errors: a file this (non-root)
    user may not read or write, which the daemon's user may; and a missing directory that is the
    unit's RuntimeDirectory= (systemd creates /run/pivoice when it starts the daemon)."""
    from pivoice.audio.ports import WavDeviceError
    from pivoice.audio.wavfile import INPUT_KEY, OUTPUT_KEY, check_wav_output, read_wav_input
    notes: list[str] = []
    checks = ((INPUT_KEY, cfg.audio.input.device, lambda path: read_wav_input(path, INPUT_KEY, header_only=True)),
              (OUTPUT_KEY, cfg.audio.output.device, lambda path: check_wav_output(path, OUTPUT_KEY)))
    for key, device, check in checks:
        if not device.startswith(WAV_PREFIX):
            continue
        path = device[len(WAV_PREFIX):]
        try:
            check(path)
        except WavDeviceError as exc:
            if exc.permission and os.geteuid() != 0:
                notes.append(f"{exc}; fine if the daemon's user may")
                continue
            made_by = _runtime_directory(Path(path).parent, unit_file, read_unit) if key == OUTPUT_KEY else None
            if made_by is None:
                raise ConfigError(cfg.file, key, f"wav:{path}: {exc.problem}") from None
            notes.append(f"{key} wav:{path}: {Path(path).parent} does not exist yet; systemd creates it "
                         f"when it starts the daemon ({made_by})")
    return notes


def _runtime_directory(directory: Path, unit_file: str | Path | None,
                       read_unit: Callable[[str], str | None]) -> str | None:
    """`RuntimeDirectory=NAME in WHERE` if the installed daemon unit makes `directory` (/run/NAME)."""
    if directory.exists() or directory.parent != Path("/run"):
        return None
    text, where = _unit_text(DAEMON_UNIT, unit_file, read_unit)
    for raw in (text or "").splitlines():
        line = raw.strip()
        if line.startswith("RuntimeDirectory=") and directory.name in line[len("RuntimeDirectory="):].split():
            return f"{line} in {where}"
    return None


def read_device_secret(cfg: Config, *, unit_file: str | Path | None = None,
                       read_unit: Callable[[str], str | None] = systemctl_cat) -> tuple[object, str, list[str]]:
    """(secret, file read, notes). The configured file if readable; for a systemd credential that is
    not there (we are outside the unit), its source as the installed unit names it."""
    from pivoice.tokens import read_secret_file
    configured = Path(cfg.tokens.secret_file)
    credential = _credential_parts(configured)
    if credential is None or _exists(configured):
        try:
            return read_secret_file(configured), str(configured), []
        except ValueError as exc:
            raise ConfigError(cfg.file, SECRET_KEY, f"{exc}{_root_hint(exc)}") from None
    unit, cred_id = credential
    source, how = credential_source(unit, cred_id, unit_file=unit_file, read_unit=read_unit, cfg_file=cfg.file)
    note = (f"{SECRET_KEY} {configured} is a systemd credential that exists only inside {unit}; "
            f"checked its source {source} ({how})")
    try:
        return read_secret_file(source), str(source), [note]
    except ValueError as exc:
        raise ConfigError(cfg.file, SECRET_KEY, f"credential source of {configured} ({how}): "
                                                f"{exc}{_root_hint(exc)}") from None


def credential_source(unit: str, cred_id: str, *, unit_file: str | Path | None,
                      read_unit: Callable[[str], str | None], cfg_file: str) -> tuple[Path, str]:
    """(path, how it was found) of the file systemd loads as credential `cred_id` of `unit`."""
    text, where = _unit_text(unit, unit_file, read_unit)
    if text is None:
        return DEFAULT_CREDENTIAL_SOURCE, f"no installed {unit} found; assumed the default"
    loads = parse_load_credentials(text)
    if cred_id not in loads:
        raise ConfigError(cfg_file, SECRET_KEY,
                          f"{where} has no LoadCredential={cred_id}:PATH, so the daemon will find no "
                          f"{CREDENTIALS_ROOT / unit / cred_id}; add "
                          f"`LoadCredential={cred_id}:{DEFAULT_CREDENTIAL_SOURCE}` to its [Service] section")
    value = loads[cred_id]
    if value and Path(value).is_absolute():
        return Path(value), f"LoadCredential={cred_id}:{value} in {where}"
    name = value or cred_id
    for directory in CREDSTORE_DIRS:
        if (directory / name).exists():
            return directory / name, f"LoadCredential={cred_id}{':' + value if value else ''} in {where}"
    return CREDSTORE_DIRS[0] / name, f"LoadCredential={cred_id} in {where}, searched {', '.join(map(str, CREDSTORE_DIRS))}"


def parse_load_credentials(unit_text: str) -> dict[str, str]:
    """ID -> path ('' for none) of every `LoadCredential=` in a unit (and its drop-ins, in order).
    An empty assignment resets the list, as systemd does."""
    loads: dict[str, str] = {}
    for raw in unit_text.splitlines():
        line = raw.strip()
        if not line.startswith("LoadCredential="):
            continue
        value = line[len("LoadCredential="):].strip()
        if not value:
            loads.clear()
            continue
        cred_id, _, path = value.partition(":")
        loads[cred_id.strip()] = path.strip()
    return loads


def _credential_parts(path: Path) -> tuple[str, str] | None:
    try:
        rel = path.relative_to(CREDENTIALS_ROOT)
    except ValueError:
        return None
    return (rel.parts[0], "/".join(rel.parts[1:])) if len(rel.parts) >= 2 else None


def _unit_text(unit: str, unit_file: str | Path | None,
               read_unit: Callable[[str], str | None]) -> tuple[str | None, str]:
    if unit_file is not None:
        try:
            return Path(unit_file).read_text(encoding="utf-8"), str(unit_file)
        except OSError as exc:
            raise ConfigError(str(unit_file), "", f"cannot read unit file: {exc.strerror or exc}") from None
    text = read_unit(unit)
    if text is not None:
        return text, f"`systemctl cat {unit}`"
    for directory in UNIT_DIRS:
        candidate = directory / unit
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8", errors="replace"), str(candidate)
    return None, ""


def _exists(path: Path) -> bool:
    """True also when it exists but we may not look at it: reading it then says why."""
    try:
        path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        return True
    return True


def _root_hint(exc: Exception) -> str:
    return (" (the secret is root-only: run this as root, e.g. with sudo)"
            if "permission denied" in str(exc).lower() else "")
