"""Check 1: the config, with the same validation as `pivoice run` (see pivoice.preflight).

Main thread.
"""

from __future__ import annotations

import os
import stat
from typing import Callable

from pivoice import preflight
from pivoice.doctor.report import FAIL, OK, WARN, Context, Result
from pivoice.settings import ConfigError


class ConfigCheck:
    """Loads the file, then the secret (or its credential source) and the token client's rules.
    A parse error stops every later check; a secret error stops only the backend checks."""

    name = "config"

    def __init__(self, *, unit_file: str | None = None,
                 read_unit: Callable[[str], str | None] = preflight.systemctl_cat):
        self._unit_file = unit_file
        self._read_unit = read_unit

    def run(self, ctx: Context) -> Result:
        from pivoice.config import load
        try:
            cfg = load(ctx.config_path)
        except ConfigError as exc:
            return Result(self.name, FAIL, str(exc), _remedy(exc), {"key": exc.key_path})
        ctx.cfg = cfg
        try:
            runnable = preflight.check_loaded(cfg, unit_file=self._unit_file, read_unit=self._read_unit)
        except ConfigError as exc:
            return Result(self.name, FAIL, str(exc), _remedy(exc), {"key": exc.key_path})
        ctx.secret = runnable.secret
        detail = (f"{cfg.file} valid; device {cfg.tokens.device_id!r}, secret read from {runnable.secret_from}; "
                  f"backend {cfg.tokens.backend_url}; realtime {cfg.realtime.url}")
        if runnable.notes:
            detail += f" ({'; '.join(runnable.notes)})"
        data = {"file": cfg.file, "secret_from": runnable.secret_from, "notes": runnable.notes}
        mode = _mode(runnable.secret_from)
        if mode is not None and mode & 0o077:
            return Result(self.name, WARN, f"{detail}; but {runnable.secret_from} has mode {mode:03o}, "
                                           "readable by group/others", f"sudo chmod 600 {runnable.secret_from}", data)
        return Result(self.name, OK, detail, data=data)


def _mode(path: str) -> int | None:
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return None


def _remedy(exc: ConfigError) -> str:
    if exc.key_path == preflight.SECRET_KEY:
        if "permission denied" in exc.reason.lower():
            return "run `sudo pivoice doctor` (the device secret is root-only)"
        return ("install the device secret printed by `pivoice token-server devices add NAME` on the backend: "
                f"sudo install -m 600 /dev/stdin {preflight.DEFAULT_CREDENTIAL_SOURCE} (paste it, then Ctrl-D), "
                "or point tokens.secret_file at it")
    if exc.key_path:
        return f"edit {exc.key_path} in {exc.file} (config/pivoice.example.yaml documents every key)"
    return f"fix {exc.file} (see config/pivoice.example.yaml), then `pivoice check-config {exc.file}`"
