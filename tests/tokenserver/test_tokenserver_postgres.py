"""The token server on a real PostgreSQL: limits and revocation across workers, DB outage and recovery."""

import concurrent.futures
import time

import httpx
import pytest

from support.devserver import run_dev_server
from support.tokenserver import postgres_cluster, run_token_server

pytestmark = [pytest.mark.postgres, pytest.mark.integration]
API_KEY = "sk-pg-integration-key-123"
MINT = "/v1/realtime/client_secrets"


def mint(ts, device, secret=None):
    with httpx.Client(timeout=30) as client:
        return client.post(ts.url + MINT, auth=(device, secret or ts.device_secrets[device]), json={})


def test_token_server_on_postgres(tmp_path):
    with postgres_cluster() as pg, run_dev_server(tmp_path / "dev", "--api-key", API_KEY) as dev, \
            run_token_server(tmp_path, dev.url, API_KEY, devices=["kitchen", "attic"], workers=3,
                             database_url=pg.url, mint_rate_per_min=100, daily_budget=4) as ts:
        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            results = list(pool.map(lambda _: mint(ts, "kitchen"), range(12)))
        assert sorted(r.status_code for r in results) == [200] * 4 + [429] * 8
        assert {r.json()["error"]["code"] for r in results if r.status_code == 429} == {"daily_budget_exhausted"}

        ts.cli("devices", "revoke", "attic")
        assert mint(ts, "attic").status_code == 401
        assert "attic" in ts.cli("devices", "list").stdout

        pg.stop()
        assert httpx.get(ts.url + "/healthz").status_code == 503
        r = mint(ts, "kitchen")
        assert r.status_code == 503 and r.json()["error"]["code"] == "database_unavailable"
        pg.start()
        deadline = time.monotonic() + 20
        while httpx.get(ts.url + "/healthz").status_code != 200:  # broken pooled connections are replaced
            assert time.monotonic() < deadline
            time.sleep(0.2)
        r = mint(ts, "kitchen")  # still refused: the day's count lives in the DB, not in a worker
        assert r.status_code == 429 and r.json()["error"]["code"] == "daily_budget_exhausted"
        assert "Traceback" not in ts.log_text()
