"""The fleet tables: each device's latest status report and its usage per UTC day.

Runs on the registry's connections and transactions (`Registry.transaction`/`query`), so SQLite
and PostgreSQL take the same code path. A report is rate-checked, stored and added to the day's
usage in one transaction holding the device's status row (SQLite: the write lock; PostgreSQL:
`FOR UPDATE`), so two workers cannot both accept the same burst token or lose an addition.

Thread-safe as the registry is: called from the ASGI thread pool and from the CLI.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from pivoice.tokenserver.fleet import USAGE_KEYS, take_report
from pivoice.tokenserver.limits import utc_day

FLEET_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS device_status (
        device TEXT PRIMARY KEY REFERENCES devices(name) ON DELETE CASCADE,
        received_at DOUBLE PRECISION,
        report TEXT,
        rl_tokens DOUBLE PRECISION NOT NULL,
        rl_at DOUBLE PRECISION NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS device_usage (
        device TEXT NOT NULL REFERENCES devices(name) ON DELETE CASCADE,
        day TEXT NOT NULL,
        conversations BIGINT NOT NULL DEFAULT 0,
        abnormal_ends BIGINT NOT NULL DEFAULT 0,
        input_text_tokens BIGINT NOT NULL DEFAULT 0,
        input_audio_tokens BIGINT NOT NULL DEFAULT 0,
        output_text_tokens BIGINT NOT NULL DEFAULT 0,
        output_audio_tokens BIGINT NOT NULL DEFAULT 0,
        audio_sent_s DOUBLE PRECISION NOT NULL DEFAULT 0,
        audio_received_s DOUBLE PRECISION NOT NULL DEFAULT 0,
        PRIMARY KEY (device, day))""",
)
_COLS = ", ".join(USAGE_KEYS)
_UPSERT = (f"INSERT INTO device_usage (device, day, {_COLS}) VALUES (?, ?, {', '.join('?' * len(USAGE_KEYS))}) "
           "ON CONFLICT (device, day) DO UPDATE SET "
           + ", ".join(f"{k} = device_usage.{k} + excluded.{k}" for k in USAGE_KEYS))


@dataclass(frozen=True)
class ReportDecision:
    stored: bool
    retry_after_s: int = 0


class FleetStore:
    def __init__(self, registry):
        self._registry = registry

    def record(self, name: str, now_s: float, report: dict, min_interval_s: float, burst: int) -> ReportDecision:
        """Rate-check one report from an existing device; if allowed, store it and add its usage."""
        with self._registry.transaction() as run:
            run("INSERT INTO device_status (device, rl_tokens, rl_at) VALUES (?, ?, ?) "
                "ON CONFLICT (device) DO NOTHING", name, float(burst), now_s)
            row = run(f"SELECT rl_tokens, rl_at FROM device_status WHERE device = ?{self._registry.lock_row_sql}",
                      name).fetchone()
            allowed, tokens, retry_after_s = take_report(float(row[0]), float(row[1]), now_s, min_interval_s, burst)
            if not allowed:
                run("UPDATE device_status SET rl_tokens = ?, rl_at = ? WHERE device = ?", tokens, now_s, name)
                return ReportDecision(False, retry_after_s)
            run("UPDATE device_status SET rl_tokens = ?, rl_at = ?, received_at = ?, report = ? WHERE device = ?",
                tokens, now_s, now_s, json.dumps(report, sort_keys=True), name)
            since = report.get("since_last") or {}
            run(_UPSERT, name, utc_day(now_s), *(since.get(k, 0) for k in USAGE_KEYS))
        return ReportDecision(True)

    def statuses(self) -> dict[str, tuple[float | None, dict | None]]:
        """device -> (received_at, report) for every device that ever reported."""
        rows = self._registry.query("SELECT device, received_at, report FROM device_status")
        return {r[0]: (r[1], json.loads(r[2]) if r[2] else None) for r in rows}

    def usage(self, day: str) -> dict[str, dict]:
        """device -> that UTC day's summed usage."""
        rows = self._registry.query(f"SELECT device, {_COLS} FROM device_usage WHERE day = ?", day)
        return {r[0]: {k: (float(v) if k.endswith("_s") else int(v)) for k, v in zip(USAGE_KEYS, r[1:])}
                for r in rows}
