"""This process's CPU and memory for the fleet heartbeat, from /proc (Linux; None where unreadable).

Thread: the heartbeat thread (one sampler per heartbeat; each sample measures since the previous one).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable


class ProcessSampler:
    """CPU % since the previous sample, RSS MiB and process uptime, from /proc (None where unreadable)."""

    def __init__(self, proc: str = "/proc", clock: Callable[[], float] = time.monotonic):
        self._proc = Path(proc)
        self._clock = clock
        self._last = (clock(), self._cpu_s())

    @staticmethod
    def _cpu_s() -> float:
        t = os.times()
        return t.user + t.system

    def sample(self) -> dict:
        now, cpu = self._clock(), self._cpu_s()
        then, cpu_then = self._last
        self._last = (now, cpu)
        cpu_percent = round(100.0 * (cpu - cpu_then) / (now - then), 1) if now - then > 0.05 else None
        return {"cpu_percent": cpu_percent, "rss_mib": self._rss_mib(), "uptime_s": self._uptime_s()}

    def _rss_mib(self) -> float | None:
        try:
            for line in (self._proc / "self" / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024.0, 1)
        except (OSError, ValueError, IndexError):
            pass
        return None

    def _uptime_s(self) -> float | None:
        try:
            stat = (self._proc / "self" / "stat").read_text()
            start_ticks = int(stat.rsplit(")", 1)[1].split()[19])   # field 22; the name may hold spaces
            system_up_s = float((self._proc / "uptime").read_text().split()[0])
            return round(max(0.0, system_up_s - start_ticks / os.sysconf("SC_CLK_TCK")), 1)
        except (OSError, ValueError, IndexError):
            return None
