"""What the bench reads about a process from outside: /proc figures and the arithmetic on them.

Pure functions over /proc text (parsers take the text, so the tests feed them generated files) plus
thin readers, called from the bench's main thread; `SwitchSampler` polls on a thread of its own.
"""

from __future__ import annotations

import os
import statistics
import threading
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")   # utime/stime resolution (10 ms on Linux x86_64)


# ---- CPU and memory -------------------------------------------------------------------------

def parse_stat_cpu_ticks(stat_text: str) -> int:
    """utime + stime from a /proc/PID/stat line. The comm field may hold spaces or ')', so the
    fields are counted from the last ')'."""
    fields = stat_text.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def cpu_seconds(pid: int) -> float:
    return parse_stat_cpu_ticks(Path(f"/proc/{pid}/stat").read_text()) * CLOCK_TICK_S


def parse_status_kib(status_text: str, key: str) -> int | None:
    """A `Key:   1234 kB` field of /proc/PID/status, in KiB; None when absent."""
    for line in status_text.splitlines():
        name, _, value = line.partition(":")
        if name == key:
            return int(value.split()[0])
    return None


def peak_rss_mib(pid: int) -> float:
    kib = parse_status_kib(Path(f"/proc/{pid}/status").read_text(), "VmHWM")
    return float("nan") if kib is None else kib / 1024


# ---- wakeups (context switches per thread) ----------------------------------------------------

@dataclass(frozen=True)
class ThreadSwitches:
    tid: int
    name: str
    switches: int     # voluntary + nonvoluntary: each one is the thread waking up (or being preempted)


def parse_thread_status(tid: int, status_text: str) -> ThreadSwitches:
    name, total = "?", 0
    for line in status_text.splitlines():
        key, _, value = line.partition(":")
        if key == "Name":
            name = value.strip()
        elif key in ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"):
            total += int(value)
    return ThreadSwitches(tid, name, total)


def thread_switches(pid: int) -> dict[int, ThreadSwitches]:
    """Every live thread of `pid`; a thread that ends while we read is skipped."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out[int(task.name)] = parse_thread_status(int(task.name), (task / "status").read_text())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return out


def switches_between(before: dict[int, ThreadSwitches], after: dict[int, ThreadSwitches]) -> list[ThreadSwitches]:
    """Per-thread wakeups in a window, busiest first; a thread born inside the window counts from 0."""
    woke = []
    for tid, now in after.items():
        delta = now.switches - (before[tid].switches if tid in before else 0)
        if delta > 0:
            woke.append(ThreadSwitches(tid, now.name, delta))
    return sorted(woke, key=lambda t: (-t.switches, t.tid))


def merge_seen(seen: dict[int, ThreadSwitches], snapshot: dict[int, ThreadSwitches]) -> None:
    """Keep the latest count of every thread ever seen: a thread that has exited keeps its last one."""
    seen.update(snapshot)


class SwitchSampler:
    """Per-thread wakeups of `pid` over a window, threads that exit inside it included.

    /proc shows live threads only, and an audio stream's threads end when it closes, so a before /
    after pair would miss them: a thread of the bench's own polls every `period_s` and keeps each
    thread's last count (what a dying thread did after its last poll is lost: at most period_s).
    """

    def __init__(self, pid: int, period_s: float = 0.1) -> None:
        self._pid, self._period_s = pid, period_s
        self._stop = threading.Event()
        self._first: dict[int, ThreadSwitches] = {}
        self._seen: dict[int, ThreadSwitches] = {}
        self._thread = threading.Thread(target=self._poll, name="switch-sampler", daemon=True)

    def start(self) -> "SwitchSampler":
        self._first = thread_switches(self._pid)
        self._seen = dict(self._first)
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.wait(self._period_s):
            try:
                merge_seen(self._seen, thread_switches(self._pid))
            except FileNotFoundError:   # the process is gone
                return

    def stop(self) -> list[ThreadSwitches]:
        self._stop.set()
        self._thread.join(5)
        try:
            merge_seen(self._seen, thread_switches(self._pid))
        except FileNotFoundError:
            pass
        return switches_between(self._first, self._seen)


# ---- figures --------------------------------------------------------------------------------

def pct_of_core(cpu_s: float, window_s: float) -> float:
    """CPU seconds over a wall-clock window as % of one core."""
    if window_s <= 0:
        raise ValueError(f"window must be positive, got {window_s} s")
    return 100.0 * cpu_s / window_s


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, nan when the denominator is 0 (a process that used no measurable CPU)."""
    return numerator / denominator if denominator else float("nan")


def median_max(values: list[float]) -> tuple[float, float]:
    vals = [v for v in values if v == v]   # drop nan
    if not vals:
        return float("nan"), float("nan")
    return statistics.median(vals), max(vals)
