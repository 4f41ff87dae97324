"""`pivoice token-server devices list`: the registry's columns, then each device's fleet status.

LAST SEEN is relative (42s, 7m, 3h, 2d, never); HEALTH is ok, stale (silent for 3 of its status
intervals), no_key (its token fetches fail), abnormal (abnormal conversation ends today) or
never_reported. TODAY columns are the current UTC day's sums of the device's heartbeats.

Main thread (the CLI).
"""

from __future__ import annotations

import time

from pivoice.tokenserver.fleet import ago
from pivoice.tokenserver.fleet_http import dumps_rows, fleet_rows
from pivoice.tokenserver.fleet_store import FleetStore


def _fmt_time(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(ts))


def device_table(rows: list[dict]) -> list[str]:
    lines = [f"{'NAME':<24} {'STATUS':<8} {'CREATED':<21} {'ROTATED':<21} {'MINTS TODAY':>11}  "
             f"{'LAST SEEN':>9} {'HEALTH':<14} {'CONV':>5} {'TOKENS':>9} {'AUDIO MIN':>9}  OVERRIDES"]
    for d in rows:
        t = d["today"]
        audio_min = (t["audio_sent_s"] + t["audio_received_s"]) / 60.0
        lines.append(f"{d['name']:<24} {d['status']:<8} {_fmt_time(d['created_at']):<21} "
                     f"{_fmt_time(d['rotated_at']):<21} {d['mints_today']:>11}  {ago(d['last_seen_ago_s']):>9} "
                     f"{d['health']:<14} {t['conversations']:>5} {t['total_tokens']:>9} {audio_min:>9.1f}  "
                     f"{','.join(d['overrides']) or '-'}")
    return lines


def print_device_list(registry, config, now_s: float, *, as_json: bool = False) -> int:
    rows = fleet_rows(registry, FleetStore(registry), now_s, config.fleet.default_status_interval_s)
    print(dumps_rows(rows, now_s) if as_json else "\n".join(device_table(rows)))
    return 0
