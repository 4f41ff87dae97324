"""The fleet page: one server-rendered HTML table, a row per device, no JavaScript.

Every string a device sent (version, state, end reason, token error, ...) is untrusted and goes
through `html.escape`; the route also sends a Content-Security-Policy that forbids scripts. The page
reloads itself every 60 s with a meta refresh.

Pure function: called on a worker's thread pool.
"""

from __future__ import annotations

import html
import time

from pivoice.tokenserver.fleet import ago

_COLOURS = {"ok": "#2e7d32", "stale": "#b26a00", "abnormal": "#c62828", "no_key": "#6a1b9a",
            "never_reported": "#616161"}
_CSS = """
body{font:14px system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.3em;margin:0 0 .2em}
p.meta{color:#666;margin:0 0 1em}
table{border-collapse:collapse;background:#fff;box-shadow:0 1px 3px #0002}
th,td{padding:.35em .7em;border-bottom:1px solid #e4e4e4;text-align:left;white-space:nowrap}
th{background:#37474f;color:#fff;font-weight:600;white-space:normal;vertical-align:bottom;max-width:6.5em}
td.num{text-align:right;font-variant-numeric:tabular-nums}
span.health{display:inline-block;padding:.1em .6em;border-radius:1em;color:#fff;font-weight:600}
tr.revoked td{color:#999;text-decoration:line-through}
td.reason{white-space:normal;max-width:22em;color:#555}
"""
_HEADERS = ("Device", "State", "Health", "Last seen", "Version", "Uptime", "Last end", "Abnormal ends today",
            "Token", "Xruns", "CPU %", "RSS MiB", "Tokens today", "Audio min today")


def _e(value) -> str:
    return html.escape("-" if value is None or value == "" else str(value), quote=True)


def _num(value, fmt: str = "{:.1f}") -> str:
    return "-" if value is None else _e(fmt.format(value))


def _duration(seconds) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    return _e(f"{days}d {hours}h" if days else f"{hours}h {rest // 60}m")


def _row(d: dict) -> str:
    r = d.get("report") or {}
    today = d["today"]
    health = d["health"]
    last_end = r.get("last_end_code")
    if r.get("last_end_reason"):
        last_end = f"{last_end or '?'}: {r['last_end_reason']}"
    audio_min = (today["audio_sent_s"] + today["audio_received_s"]) / 60.0
    cells = [
        f"<td>{_e(d['name'])}</td>",
        f"<td>{_e('revoked' if d['status'] == 'revoked' else r.get('state'))}</td>",
        f"<td><span class=\"health\" style=\"background:{_COLOURS.get(health, '#616161')}\" "
        f"title=\"{_e('; '.join(d['health_reasons']))}\">{_e(health.replace('_', ' '))}</span></td>",
        f"<td>{_e(ago(d['last_seen_ago_s']) + (' ago' if d['last_seen_ago_s'] is not None else ''))}</td>",
        f"<td>{_e(r.get('version'))}</td>",
        f"<td class=\"num\">{_duration(r.get('uptime_s'))}</td>",
        f"<td class=\"reason\">{_e(last_end)}</td>",
        f"<td class=\"num\">{today['abnormal_ends']}</td>",
        f"<td>{_e(r.get('token_state'))}</td>",
        f"<td class=\"num\">{_num(r.get('xruns'), '{:d}')}</td>",
        f"<td class=\"num\">{_num(r.get('cpu_percent'))}</td>",
        f"<td class=\"num\">{_num(r.get('rss_mib'))}</td>",
        f"<td class=\"num\">{today['total_tokens']}</td>",
        f"<td class=\"num\">{audio_min:.1f}</td>",
    ]
    cls = ' class="revoked"' if d["status"] == "revoked" else ""
    return f"<tr{cls} data-health=\"{_e(health)}\">{''.join(cells)}</tr>"


def render_fleet_page(rows: list[dict], now_s: float) -> str:
    counts: dict[str, int] = {}
    for d in rows:
        counts[d["health"]] = counts.get(d["health"], 0) + 1
    summary = ", ".join(f"{n} {h.replace('_', ' ')}" for h, n in sorted(counts.items())) or "no devices"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now_s))
    body = "".join(_row(d) for d in rows) or f"<tr><td colspan=\"{len(_HEADERS)}\">No devices registered.</td></tr>"
    head = "".join(f"<th>{_e(h)}</th>" for h in _HEADERS)
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta http-equiv=\"refresh\" content=\"60\"><title>pivoice fleet</title><style>{_CSS}</style></head>"
            f"<body><h1>pivoice fleet</h1><p class=\"meta\">{len(rows)} devices: {_e(summary)} &middot; {_e(stamp)}"
            f"</p><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></body></html>")
