"""Where dictation transcripts and text-only replies go: the log, `ctl status`, a JSONL file, a webhook.

`TranscriptSink.record()` is called from the controller thread and never blocks on the network
nor raises: it logs one INFO line, appends one JSON line to the file (created 0640, flushed per
line, reopened when logrotate moves it), keeps the last RECENT_RECORDS for `ctl status` and
hands the record to the webhook sender (webhook.py: its own `pv-webhook` thread, started only
when a webhook is configured; retries, drop-oldest queue, token read at send time and never
logged). `recent()` and `stats()` may be called from any thread; `close()` from the thread
that owns the sink, and returns within about 1 s.

`read_transcripts()` reads the config's top-level `transcripts:` section.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from pivoice.settings import Section
from pivoice.loopback import url_problem

log = logging.getLogger(__name__)

KINDS = ("dictation", "user_transcript", "reply_text")
RECENT_RECORDS = 20
LOG_TEXT_CHARS = 200
CLOSE_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class TranscriptsConfig:
    jsonl_path: Path | None
    webhook_url: str | None
    webhook_bearer_token_file: Path | None
    webhook_timeout_s: float


def read_transcripts(sec: Section) -> TranscriptsConfig:
    """The `transcripts:` section; ConfigError names the key path."""
    jsonl = sec.str("jsonl_path", None, nullable=True)
    if jsonl is not None and not Path(jsonl).is_absolute():
        raise sec.error("jsonl_path", f"must be an absolute path, got {jsonl!r}")
    hook = sec.section("webhook")
    url = hook.str("url", None, nullable=True)
    if url is not None and url_problem(url):
        raise hook.error("url", url_problem(url))
    token_file = hook.str("bearer_token_file", None, nullable=True)
    if token_file is not None and not Path(token_file).is_absolute():
        raise hook.error("bearer_token_file", f"must be an absolute path, got {token_file!r}")
    timeout_s = hook.float("timeout_s", 5.0, min=0.5, max=60.0)
    hook.done()
    sec.done()
    return TranscriptsConfig(Path(jsonl) if jsonl else None, url, Path(token_file) if token_file else None, timeout_s)


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= LOG_TEXT_CHARS else flat[:LOG_TEXT_CHARS] + "..."


class TranscriptSink:
    def __init__(self, jsonl_path: Path | None, webhook_url: str | None, *, webhook_timeout_s: float = 5.0,
                 webhook_bearer_token_file: Path | None = None, clock: Callable[[], float] = time.time,
                 max_queue: int = 100, retry_delays_s: tuple[float, ...] | None = None) -> None:
        self._jsonl_path = Path(jsonl_path) if jsonl_path is not None else None
        self._clock = clock
        self._file = None
        self._file_failing = False
        self._lock = threading.Lock()
        self._recent: collections.deque[dict] = collections.deque(maxlen=RECENT_RECORDS)
        self._stats = dict.fromkeys(("recorded", "jsonl_written", "jsonl_errors"), 0)
        # ValueError here (bad URL) is a config error; read_transcripts() reports it with its key path
        self._webhook = None
        if webhook_url is not None:
            from pivoice.webhook import WebhookSender   # only with a webhook: http.client and ssl stay unloaded
            self._webhook = WebhookSender(
                webhook_url, timeout_s=webhook_timeout_s, bearer_token_file=webhook_bearer_token_file,
                max_queue=max_queue, what="transcripts webhook",
                **({} if retry_delays_s is None else {"retry_delays_s": retry_delays_s}))

    # ---- controller thread
    def record(self, kind: str, text: str, **fields) -> None:
        """Log, append to the JSONL file, remember and queue one transcript; never raises."""
        try:
            self._record(kind, text, fields)
        except Exception:  # a sink must never take the controller down
            log.exception("could not record a %s transcript", kind)

    def _record(self, kind: str, text: str, fields: dict) -> None:
        if kind not in KINDS:
            log.warning("transcript kind %r is not one of %s; recorded anyway", kind, ", ".join(KINDS))
        text = text if isinstance(text, str) else str(text)
        ts = datetime.fromtimestamp(self._clock(), timezone.utc).isoformat(timespec="milliseconds")
        entry = {"ts": ts, "kind": kind, "text": text,
                 **{k: v for k, v in fields.items() if k not in ("ts", "kind", "text")}}
        where = f" (conversation {fields['conversation']})" if "conversation" in fields else ""
        log.info("%s%s: %s", kind, where, _one_line(text))
        line = json.dumps(entry, ensure_ascii=False, default=str)
        entry = json.loads(line)  # what the file and the webhook get: plain JSON values only
        self._append(line)
        with self._lock:
            self._stats["recorded"] += 1
            self._recent.append(entry)
        if self._webhook is not None:
            self._webhook.submit(entry)

    def _append(self, line: str) -> None:
        if self._jsonl_path is None:
            return
        try:
            if self._file is not None and self._moved():
                self._close_file()  # logrotate (or a person) moved it: start a new file at the path
            if self._file is None:
                # transcripts are private speech: not world-readable
                fd = os.open(self._jsonl_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
                self._file = os.fdopen(fd, "a", encoding="utf-8")
            self._file.write(line + "\n")
            self._file.flush()
        except OSError as exc:
            with self._lock:
                self._stats["jsonl_errors"] += 1
            if not self._file_failing:
                log.warning("cannot append to transcripts file %s: %s (further errors are not logged)",
                            self._jsonl_path, exc.strerror or exc)
            self._file_failing = True
            self._close_file()
            return
        with self._lock:
            self._stats["jsonl_written"] += 1
        if self._file_failing:
            log.info("transcripts file %s is writable again", self._jsonl_path)
            self._file_failing = False

    def _moved(self) -> bool:
        try:
            return os.stat(self._jsonl_path).st_ino != os.fstat(self._file.fileno()).st_ino
        except OSError:
            return True

    def _close_file(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None

    # ---- any thread
    def recent(self) -> list[dict]:
        """The last RECENT_RECORDS records, oldest first (copies)."""
        with self._lock:
            return [dict(entry) for entry in self._recent]

    def stats(self) -> dict:
        """Counters: recorded, jsonl_written, jsonl_errors and webhook_{sent,retries,failed,
        dropped_queue_full,dropped_on_close,queued} (all 0 without a webhook)."""
        with self._lock:
            stats = dict(self._stats)
        hook = self._webhook.stats() if self._webhook is not None else dict.fromkeys(
            ("sent", "retries", "failed", "dropped_queue_full", "dropped_on_close", "queued"), 0)
        return {**stats, **{f"webhook_{k}": v for k, v in hook.items()}}

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Stop the webhook worker (an in-flight POST is cut off) and close the file."""
        if self._webhook is not None:
            self._webhook.close(timeout_s)
        self._close_file()
