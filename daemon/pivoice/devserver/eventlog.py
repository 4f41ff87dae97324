"""`--event-log`: one JSON line per client event received, with its validation result.

Written from the ASGI event loop only; each line is flushed at once so a test can
read the file while the server runs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any


class EventLog:
    def __init__(self, path: Path | None) -> None:
        self._file = open(path, "a", encoding="utf-8") if path else None

    def record(self, session_id: str, event: Any, errors: list[str], unknown: list[str]) -> None:
        if self._file is None:
            return
        line = {"t": time.time(), "session_id": session_id, "event": event,
                "valid": not errors and not unknown, "errors": errors, "unknown_fields": unknown}
        self._file.write(json.dumps(line, separators=(",", ":")) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
