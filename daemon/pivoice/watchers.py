"""Who hears of a change in the daemon's state: the status light, MQTT, the fleet heartbeat.

The runtime calls the fan-out on the controller thread each time the controller's published
state changes (not for the conversation clock alone), with the whole `Runtime.status()`. Each
watcher must only copy what it needs and enqueue (or set a pin): it runs on the controller
thread, so a slow watcher would hold up the conversation. A watcher that raises is logged and
kept; the others still hear.

Thread: `add`/`remove` from the main thread (building and stopping edges); `__call__` from the
controller thread.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

log = logging.getLogger(__name__)
Watcher = Callable[[dict], None]


def is_news(before: dict, after: dict) -> bool:
    """A change of the controller's snapshot watchers hear of: the conversation's clock alone moving is not one."""
    return {**before, "conversation_s": None} != {**after, "conversation_s": None}


class StatusFanout:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watchers: tuple[Watcher, ...] = ()
        self.last: dict | None = None   # the newest status, for a watcher added later (an edge after a reload)

    def add(self, watcher: Watcher) -> None:
        with self._lock:
            self._watchers = (*self._watchers, watcher)

    def remove(self, watcher: Watcher) -> None:
        with self._lock:
            self._watchers = tuple(w for w in self._watchers if w != watcher)   # == : a bound method is new each time

    def __call__(self, status: dict) -> None:
        self.last = status
        for watcher in self._watchers:
            try:
                watcher(status)
            except Exception:   # one broken watcher (a dead LED, a bad MQTT payload) must not stop the others
                log.exception("status watcher %r failed", watcher)
