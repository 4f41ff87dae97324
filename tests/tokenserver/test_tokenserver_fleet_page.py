"""The fleet page in headless Chromium: a fleet in every health state, rendered text checked, screenshot taken.

The screenshot goes to the test's tmp dir; with PIVOICE_DOCS_SCREENSHOTS=1 it is also written to
docs/fleet-page.png (the README's image), so a normal run leaves the tree clean.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from pivoice.tokenserver.app import create_app
from pivoice.tokenserver.auth import hash_secret
from pivoice.tokenserver.config import parse_config
from pivoice.tokenserver.registry import Registry
from support.asgi_server import serve_app
from support.chromium import chromium_binary, headless_chromium
from test_tokenserver_fleet import ADMIN_TOKEN, DAY1_LATE_S, Clock, report

pytestmark = pytest.mark.integration
DOCS_ENV = "PIVOICE_DOCS_SCREENSHOTS"
DOCS_PNG = Path(__file__).resolve().parents[2] / "docs" / "fleet-page.png"
EVIL = "<script>document.title='pwned'</script>"
FLEET = {   # name -> (seconds before "now" it reported, report overrides); None: never reported
    "kitchen": (20, {"uptime_s": 3 * 86400 + 7200.0}),
    "living-room": (45, {"state": "active", "xruns": 0, "cpu_percent": 9.8, "rss_mib": 51.0,
                         "uptime_s": 86400 + 600.0}),
    "attic": (1000, {"interval_s": 300, "version": "0.0.9", "uptime_s": 12 * 86400.0}),
    "garage": (70, {"token_state": "failed", "token_error": "unauthorized (device revoked or secret rotated)",
                    "uptime_s": 420.0}),
    "porch": (130, {"last_end_code": "stalled", "last_end_reason": f"reply stalled {EVIL}",
                    "abnormal_ends": {"stalled": 2},
                    "since_last": {"conversations": 3, "abnormal_ends": 2, "input_audio_tokens": 800,
                                   "output_audio_tokens": 2400, "audio_sent_s": 40.0, "audio_received_s": 75.0}}),
    "hall": None,
}


@pytest.mark.skipif(chromium_binary() is None, reason="chromium not installed (scripts/lib/setup.sh installs it)")
def test_fleet_page_in_headless_chromium(tmp_path):
    token_file = tmp_path / "admin-token"
    token_file.write_text(ADMIN_TOKEN)
    config = parse_config({"database_url": f"sqlite:///{tmp_path / 'd.db'}", "admin_token_file": str(token_file),
                           "fleet": {"status_burst": 5}}, "t.yaml")
    registry = Registry(config.database_url)
    registry.init_schema()
    secrets = {name: f"{name}-secret-0123456789abcdefghij" for name in FLEET}
    for name, secret in secrets.items():
        registry.add_device(name, hash_secret(secret), DAY1_LATE_S - 5 * 86400)
    clock = Clock(DAY1_LATE_S - 3600)
    with serve_app(create_app(config, api_key="sk-unused", registry=registry, clock=clock)) as url:
        for name, spec in FLEET.items():
            if spec is None:
                continue
            ago_s, overrides = spec
            clock.now_s = DAY1_LATE_S - ago_s
            r = httpx.post(url + "/v1/devices/status", json=report(**overrides), auth=(name, secrets[name]))
            assert r.status_code == 200, r.text
        clock.now_s = DAY1_LATE_S

        with headless_chromium(tmp_path) as browser:
            assert browser.open(url + "/admin/fleet") == 401   # no token: refused (a person would be prompted)
            status = browser.open(url + "/admin/fleet", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
            assert status == 200
            text = browser.evaluate("document.body.innerText")
            health = browser.evaluate("Object.fromEntries([...document.querySelectorAll('tbody tr')]"
                                      ".map(r => [r.cells[0].innerText, r.dataset.health]))")
            scripts = browser.evaluate("document.scripts.length")
            title = browser.evaluate("document.title")
            png = browser.screenshot(width=1560)
    registry.close()

    assert health == {"attic": "stale", "garage": "no_key", "hall": "never_reported", "kitchen": "ok",
                      "living-room": "ok", "porch": "abnormal"}
    assert "6 devices" in text and "stale" in text and "16m ago" in text and "20s ago" in text
    assert EVIL in text and scripts == 0 and title == "pivoice fleet"   # shown as text, never run
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    (tmp_path / "fleet-page.png").write_bytes(png)
    if os.environ.get(DOCS_ENV) == "1":
        DOCS_PNG.parent.mkdir(exist_ok=True)
        DOCS_PNG.write_bytes(png)
