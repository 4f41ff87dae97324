"""Small real-enough parts for tool tests: an in-memory speaker volume and a clock the test moves."""

import threading


class MemoryVolume:
    """The VolumeControl the built-ins talk to, kept in memory (the daemon's real one drives the mixer)."""

    def __init__(self, percent: int = 40):
        self.percent = percent
        self.calls: list[tuple[str, int | None]] = []

    def volume_percent(self) -> int:
        self.calls.append(("get", None))
        return self.percent

    def set_volume_percent(self, percent: int) -> int:
        self.calls.append(("set", percent))
        self.percent = max(0, min(100, percent))
        return self.percent


class FakeClock:
    """A monotonic clock that only moves when told; counts how often it is read."""

    def __init__(self, start_s: float = 1000.0):
        self._now_s = start_s
        self._lock = threading.Lock()
        self.reads = 0

    def __call__(self) -> float:
        with self._lock:
            self.reads += 1
            return self._now_s

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now_s += seconds
