"""sd_notify(3) and sd_watchdog_enabled(3) without a dependency.

systemd hands a `Type=notify` service the path of a datagram socket in $NOTIFY_SOCKET
and, with `WatchdogSec=`, the watchdog period in $WATCHDOG_USEC (plus $WATCHDOG_PID, the
process meant to ping). Outside systemd neither is set and every call here is a no-op,
so `pivoice run` and `pivoice token-server serve` behave the same in a terminal.

`SystemdNotifier.notify` may be called from any thread: each call is one datagram on
its own socket, with no shared state.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Mapping, Protocol

log = logging.getLogger(__name__)


class Notifier(Protocol):
    def notify(self, state: str) -> None: ...


class SystemdNotifier:
    """Sends `KEY=VALUE` lines to the service manager's notify socket. Thread: any."""

    def __init__(self, socket_path: str | None):
        self.socket_path = socket_path or None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "SystemdNotifier":
        return cls((os.environ if environ is None else environ).get("NOTIFY_SOCKET"))

    @property
    def enabled(self) -> bool:
        return self.socket_path is not None

    def notify(self, state: str) -> None:
        if self.socket_path is None:
            return
        # "@name" is a socket in the abstract namespace (systemd uses one in containers)
        address = "\0" + self.socket_path[1:] if self.socket_path.startswith("@") else self.socket_path
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(state.encode(), address)
        except OSError as exc:   # a dead manager must not take the service down with it
            log.warning("cannot notify systemd at %s (%s): %s", self.socket_path, state.split("=")[0], exc)


def reloading_state() -> str:
    """RELOADING=1 with the timestamp systemd >= 253 wants beside it (older versions ignore it)."""
    return f"RELOADING=1\nMONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}"


def watchdog_interval_s(environ: Mapping[str, str] | None = None, pid: int | None = None) -> float | None:
    """How often to send WATCHDOG=1, or None when no watchdog is armed for this process.

    As sd_watchdog_enabled(3): $WATCHDOG_USEC must be a positive integer, and when
    $WATCHDOG_PID is set it must name this process (a child that inherited the variables
    must not ping for its parent). systemd's advice is to ping at half the period; a third
    leaves room for one late wakeup on a loaded Pi.
    """
    env = os.environ if environ is None else environ
    raw_usec = env.get("WATCHDOG_USEC")
    if not raw_usec:
        return None
    raw_pid = env.get("WATCHDOG_PID")
    try:
        usec = int(raw_usec)
        watchdog_pid = int(raw_pid) if raw_pid else None
    except ValueError:
        log.warning("ignoring the watchdog: WATCHDOG_USEC=%r WATCHDOG_PID=%r are not integers", raw_usec, raw_pid)
        return None
    if usec <= 0:
        return None
    if watchdog_pid is not None and watchdog_pid != (os.getpid() if pid is None else pid):
        return None
    return usec / 1e6 / 3
