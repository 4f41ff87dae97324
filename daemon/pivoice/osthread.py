"""Kernel-visible thread names, so `top -H`, `ps -L` and /proc/PID/task/*/comm show which of the
daemon's threads uses the CPU (Python 3.11 leaves every thread named after the process).

Called first thing on the thread being named; harmless where prctl is missing (not Linux).
"""

from __future__ import annotations

import ctypes
import ctypes.util

_PR_SET_NAME = 15
_libc = None


def name_this_thread(name: str) -> None:
    """Name the calling thread `pv-<name>` (the kernel keeps 15 bytes)."""
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        _libc.prctl(_PR_SET_NAME, f"pv-{name}"[:15].encode(), 0, 0, 0)
    except (OSError, AttributeError):
        pass
