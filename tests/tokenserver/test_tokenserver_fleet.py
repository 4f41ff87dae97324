"""Fleet status on a real uvicorn server on 127.0.0.1 (app built here, so its clock is ours): heartbeats
stored, rate-limited, size-capped and authenticated like mints; daily usage per UTC day; health;
the admin JSON API and the HTML page's escaping; `devices list`; the PostgreSQL store."""

from __future__ import annotations

import calendar
import concurrent.futures
import json
import logging

import httpx
import pytest
import yaml

from pivoice.tokenserver.app import create_app
from pivoice.tokenserver.auth import hash_secret
from pivoice.tokenserver.cli import main as cli_main
from pivoice.tokenserver.config import parse_config
from pivoice.tokenserver.fleet_store import FleetStore
from pivoice.tokenserver.registry import Registry
from support.asgi_server import serve_app
from support.tokenserver import postgres_cluster

STATUS = "/v1/devices/status"
ADMIN_TOKEN = "admin-token-0123456789abcdef-do-not-log"
SECRETS = {"kitchen": "kitchen-secret-abcdefghijklmnopqrstuvwxyz012345", "attic": "attic-secret-0987654321zyxw",
           "hall": "hall-secret-never-reports-123456789"}
DAY1_LATE_S = calendar.timegm((2026, 11, 30, 23, 59, 40, 0, 0, 0))


class Clock:
    def __init__(self, now_s: float):
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


def report(**overrides) -> dict:
    base = {"version": "0.1.0", "interval_s": 60, "uptime_s": 3600.5, "state": "idle",
            "last_end_reason": "ended by a press", "last_end_code": "user", "abnormal_ends": {},
            "token_state": "ok", "token_error": None, "xruns": 2, "cpu_percent": 1.5, "rss_mib": 48.2,
            "since_last": {"conversations": 2, "abnormal_ends": 0, "input_text_tokens": 10,
                           "input_audio_tokens": 300, "output_text_tokens": 40, "output_audio_tokens": 900,
                           "audio_sent_s": 12.5, "audio_received_s": 20.25},
            "last_conversation": {"duration_s": 14.2, "press_to_first_append_ms": 180.0, "end_code": "user"}}
    return {**base, **overrides}


def make_env(tmp_path, database_url=None, admin=True, **fleet):
    token_file = tmp_path / "admin-token"
    token_file.write_text(ADMIN_TOKEN + "\n")
    data = {"database_url": database_url or f"sqlite:///{tmp_path / 'd.db'}", "fleet": fleet}
    if admin:
        data["admin_token_file"] = str(token_file)
    config = parse_config(data, "t.yaml")
    registry = Registry(config.database_url)
    registry.init_schema()
    for name, secret in SECRETS.items():
        registry.add_device(name, hash_secret(secret), DAY1_LATE_S - 86400)
    return config, registry


@pytest.fixture
def fleet(tmp_path):
    config, registry = make_env(tmp_path)
    clock = Clock(DAY1_LATE_S)
    with serve_app(create_app(config, api_key="sk-unused", registry=registry, clock=clock)) as url:
        yield url, clock, registry


def post(url, device="kitchen", body=None, *, secret=None, raw=None):
    content = raw if raw is not None else json.dumps(report() if body is None else body)
    auth = (device, SECRETS.get(device, "x") if secret is None else secret) if device else None
    return httpx.post(url + STATUS, content=content, auth=auth, headers={"Content-Type": "application/json"})


def admin(url, path="/admin/devices", token=ADMIN_TOKEN, basic=False):
    if token is None:
        headers = {}
    else:
        headers = {} if basic else {"Authorization": f"Bearer {token}"}
    return httpx.get(url + path, headers=headers, auth=("anyone", token) if basic else None)


def rows(url) -> dict:
    r = admin(url)
    assert r.status_code == 200, r.text
    return {d["name"]: d for d in r.json()["devices"]}


def test_heartbeat_is_stored_and_shown_with_health_and_usage(fleet):
    url, clock, _ = fleet
    r = post(url, body={**report(), "future_field": {"ignored": True}})
    assert r.status_code == 200 and r.json()["stored"] is True and r.headers["cache-control"] == "no-store"
    got = rows(url)
    kitchen = got["kitchen"]
    assert kitchen["health"] == "ok" and kitchen["status"] == "active" and kitchen["last_seen"] == DAY1_LATE_S
    assert kitchen["report"]["version"] == "0.1.0" and kitchen["report"]["xruns"] == 2
    assert "future_field" not in kitchen["report"]   # unknown fields are ignored, not stored
    assert kitchen["today"] == {"conversations": 2, "abnormal_ends": 0, "input_text_tokens": 10,
                                "input_audio_tokens": 300, "output_text_tokens": 40, "output_audio_tokens": 900,
                                "audio_sent_s": 12.5, "audio_received_s": 20.25, "total_tokens": 1250}
    assert got["hall"]["health"] == "never_reported" and got["hall"]["report"] is None
    assert got["hall"]["today"]["total_tokens"] == 0


def test_rate_limit_429_with_retry_after_then_accepted(tmp_path):
    config, registry = make_env(tmp_path, status_min_interval_s=10, status_burst=2)
    clock = Clock(DAY1_LATE_S - 1000)
    with serve_app(create_app(config, api_key="sk-unused", registry=registry, clock=clock)) as url:
        assert [post(url).status_code for _ in range(2)] == [200, 200]
        r = post(url)
        assert r.status_code == 429 and r.headers["retry-after"] == "10"
        assert r.json()["error"]["code"] == "rate_limited"
        assert post(url, "attic").status_code == 200   # per device
        clock.now_s += 4
        assert post(url).headers["retry-after"] == "6"   # a refused report spends nothing
        clock.now_s += 6
        assert post(url).status_code == 200
        assert rows(url)["kitchen"]["today"]["conversations"] == 2 * 3   # only stored reports count


def test_size_cap_and_bad_shapes_name_the_field(fleet):
    url, _, _ = fleet
    big = report(last_conversation={f"k{i}": "x" * 190 for i in range(22)})
    r = post(url, body=big)
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"
    for body, needle in ((report(version=7), "'version' must be a string"),
                         ({"state": "idle", "uptime_s": 1}, "'version' is required"),
                         (report(since_last={"conversations": -1}), "since_last.conversations"),
                         (report(xruns=1.5), "'xruns' must be an integer"),
                         (report(state="x" * 21), "'state' is longer than 20"),
                         (report(abnormal_ends={"stalled": "2"}), "abnormal_ends.stalled"),
                         ([1, 2], "must be a JSON object")):
        r = post(url, body=body)
        assert r.status_code == 400 and needle in r.json()["error"]["message"], (body, r.text)
    r = post(url, raw=b'{"version": NaN}')
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]
    assert rows(url)["kitchen"]["health"] == "never_reported"   # nothing was stored


def test_device_auth_like_the_mint(fleet):
    url, _, registry = fleet
    r = post(url, device=None)
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
    assert post(url, secret="wrong").status_code == 401
    assert post(url, device="ghost").status_code == 401
    registry.revoke("attic", DAY1_LATE_S)
    r = post(url, "attic")
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    got = rows(url)
    assert got["attic"]["status"] == "revoked" and got["attic"]["health"] == "never_reported"


def test_daily_usage_is_summed_and_split_by_utc_day(fleet):
    url, clock, registry = fleet
    assert post(url).status_code == 200                      # 23:59:40 on Nov 30
    clock.now_s += 15
    assert post(url).status_code == 200                      # 23:59:55
    clock.now_s += 10
    assert post(url, body=report(since_last={"conversations": 1, "input_audio_tokens": 5,
                                             "audio_sent_s": 1.0})).status_code == 200   # 00:00:05 on Dec 1
    store = FleetStore(registry)
    day1, day2 = store.usage("2026-11-30")["kitchen"], store.usage("2026-12-01")["kitchen"]
    assert (day1["conversations"], day1["input_audio_tokens"], day1["audio_sent_s"]) == (4, 600, 25.0)
    assert (day2["conversations"], day2["input_audio_tokens"], day2["audio_sent_s"]) == (1, 5, 1.0)
    r = admin(url)
    assert r.json()["day"] == "2026-12-01"
    assert rows(url)["kitchen"]["today"]["total_tokens"] == 5


def test_health_stale_after_three_intervals_no_key_and_abnormal(fleet):
    url, clock, _ = fleet
    post(url)                                                              # kitchen: interval 60 s
    post(url, "attic", report(token_state="failed", token_error="unauthorized"))
    clock.now_s += 179
    got = rows(url)
    assert got["kitchen"]["health"] == "ok" and got["attic"]["health"] == "no_key"
    clock.now_s += 2
    got = rows(url)
    assert got["kitchen"]["health"] == "stale" and "silent for 181 s" in got["kitchen"]["health_reasons"][0]
    post(url, body=report(last_end_code="stalled", abnormal_ends={"stalled": 1},
                          since_last={"conversations": 1, "abnormal_ends": 1}))
    got = rows(url)
    assert got["kitchen"]["health"] == "abnormal" and "last: stalled" in got["kitchen"]["health_reasons"][0]
    assert got["kitchen"]["today"]["abnormal_ends"] == 1


def test_admin_api_token_checks_and_never_logs_it(fleet, caplog):
    url, _, _ = fleet
    caplog.set_level(logging.DEBUG)
    for token in (None, "wrong-token", ADMIN_TOKEN + "x", ADMIN_TOKEN[:-1]):
        r = admin(url, token=token)
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer"), token
    assert admin(url, token="wrong-token", basic=True).status_code == 401
    assert admin(url, basic=True).status_code == 200   # a browser's Basic: any user, the token as password
    r = admin(url, "/admin/fleet", token=None)
    assert r.status_code == 401 and r.headers["www-authenticate"] == 'Basic realm="pivoice fleet"'
    assert admin(url, "/admin/fleet", basic=True).status_code == 200
    assert ADMIN_TOKEN not in caplog.text


def test_admin_api_is_off_without_a_token_file(tmp_path):
    config, registry = make_env(tmp_path, admin=False)
    with serve_app(create_app(config, api_key="sk-unused", registry=registry)) as url:
        for path in ("/admin/devices", "/admin/fleet"):
            assert admin(url, path).status_code == 404
        assert post(url).status_code == 200   # heartbeats do not need the admin API


def test_fleet_page_escapes_every_device_string(fleet):
    url, _, _ = fleet
    evil = "<script>alert('pwned')</script>"
    post(url, body=report(version=evil[:40], last_end_reason=f'"><img src=x onerror=alert(1)>{evil}',
                          state="<b>idle</b>", token_state="<i>ok</i>"))
    r = admin(url, "/admin/fleet")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "script-src" not in r.headers["content-security-policy"]   # default-src 'none': no script at all
    page = r.text
    assert "<script" not in page and "<img" not in page and "<b>idle" not in page and "<i>ok" not in page
    assert "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt;" in page
    assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in page
    assert page.count('data-health="') == 3 and 'data-health="never_reported"' in page


def test_devices_list_shows_last_seen_health_and_today(tmp_path, capsys):
    config, registry = make_env(tmp_path)
    cfg_file = tmp_path / "ts.yaml"
    cfg_file.write_text(yaml.safe_dump({"database_url": config.database_url}))
    with serve_app(create_app(config, api_key="sk-unused", registry=registry)) as url:   # the real clock
        assert post(url).status_code == 200
        assert post(url, "attic", report(token_state="backing_off")).status_code == 200
    assert cli_main(["devices", "list", "--config", str(cfg_file)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["NAME", "STATUS", "CREATED", "ROTATED"] and "HEALTH" in lines[0]
    table = {line.split()[0]: line.split() for line in lines[1:]}
    # name status created(date time) rotated(-) mints last-seen health conv tokens audio-min overrides
    assert table["kitchen"][1] == "active" and table["kitchen"][6].endswith("s")
    assert table["kitchen"][7:11] == ["ok", "2", "1250", "0.5"]
    assert table["attic"][7] == "no_key" and table["hall"][6:8] == ["never", "never_reported"]
    assert cli_main(["devices", "list", "--json", "--config", str(cfg_file)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [d["name"] for d in doc["devices"]] == ["attic", "hall", "kitchen"]
    assert doc["devices"][2]["today"]["conversations"] == 2


@pytest.mark.postgres
@pytest.mark.integration
def test_fleet_store_on_postgres(tmp_path):
    with postgres_cluster() as pg:
        config, registry = make_env(tmp_path, database_url=pg.url, status_min_interval_s=10, status_burst=2)
        clock = Clock(DAY1_LATE_S)
        with serve_app(create_app(config, api_key="sk-unused", registry=registry, clock=clock)) as url:
            assert [post(url).status_code for _ in range(3)] == [200, 200, 429]
            with concurrent.futures.ThreadPoolExecutor(6) as pool:   # one row lock: never more than the burst
                codes = sorted(pool.map(lambda _: post(url, "attic").status_code, range(6)))
            assert codes == [200, 200, 429, 429, 429, 429]
            clock.now_s += 30   # into Dec 1
            assert post(url, body=report(since_last={"conversations": 1})).status_code == 200
            store = FleetStore(registry)
            assert store.usage("2026-11-30")["kitchen"]["conversations"] == 4
            assert store.usage("2026-12-01")["kitchen"]["conversations"] == 1
            assert rows(url)["kitchen"]["health"] == "ok"
        registry.close()


def test_admin_token_file_errors_name_the_key_and_never_the_token(tmp_path):
    from pivoice.settings import ConfigError
    from pivoice.tokenserver.config import read_admin_token

    short = tmp_path / "short"
    short.write_text("tooshort-secret")
    for path, needle in ((tmp_path / "missing", "cannot read"), (short, "at least 16 characters")):
        config = parse_config({"admin_token_file": str(path)}, "t.yaml")
        with pytest.raises(ConfigError, match="admin_token_file") as exc:
            read_admin_token(config)
        assert needle in str(exc.value) and "tooshort-secret" not in str(exc.value)
    with pytest.raises(ConfigError, match="fleet.status_burst"):
        parse_config({"fleet": {"status_burst": 0}}, "t.yaml")
