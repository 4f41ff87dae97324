"""Kernel-visible thread names, so `top -H`, `ps -L` and /proc/PID/task/*/comm show which of the
daemon's threads uses the CPU (Python 3.11 leaves every thread named after the process, and a new
thread inherits its creator's name).

Called first thing on the thread being named; harmless where prctl is missing (not Linux).
"""

from __future__ import annotations

_PR_SET_NAME = 15
_prctl = None


def name_this_thread(name: str) -> None:
    """Name the calling thread `pv-<name>` (the kernel keeps 15 bytes)."""
    global _prctl
    try:
        if _prctl is None:
            import ctypes   # the process's own symbols include libc's prctl: no library search (ldconfig)
            _prctl = ctypes.CDLL(None).prctl
        _prctl(_PR_SET_NAME, f"pv-{name}"[:15].encode(), 0, 0, 0)
    except (OSError, AttributeError):
        pass
