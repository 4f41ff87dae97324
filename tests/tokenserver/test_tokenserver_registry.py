"""Device registry and atomic mint counters, on SQLite and (marker `postgres`) a real PostgreSQL."""

import threading

import pytest

from support.tokenserver import postgres_cluster

from pivoice.tokenserver.auth import hash_secret, new_secret, verify_secret
from pivoice.tokenserver.registry import Registry

NOW_S = 1_900_000_000.0  # 2030-03-17T17:46:40Z


@pytest.fixture(scope="module")
def pg_url():
    with postgres_cluster() as cluster:
        yield cluster.url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'reg.db'}"
    url = request.getfixturevalue("pg_url")
    # fresh tables per test on the shared cluster
    import psycopg
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS device_usage; DROP TABLE IF EXISTS device_status; "
                     "DROP TABLE IF EXISTS mint_limits; DROP TABLE IF EXISTS devices")
    return url


@pytest.fixture
def registry(db_url):
    reg = Registry(db_url, pool_size=2)
    reg.init_schema()
    reg.init_schema()  # idempotent
    yield reg
    reg.close()


def test_add_get_list_and_duplicate(registry):
    secret = new_secret()
    assert registry.add_device("kitchen", hash_secret(secret), NOW_S)
    assert not registry.add_device("kitchen", hash_secret("other"), NOW_S)
    device = registry.get_device("kitchen")
    assert device.name == "kitchen" and not device.revoked and device.policy == {}
    assert device.secret_hash != secret and verify_secret(secret, device.secret_hash)
    assert registry.get_device("nope") is None
    registry.add_device("attic", hash_secret("x"), NOW_S)
    assert [d.name for d in registry.list_devices()] == ["attic", "kitchen"]
    assert registry.backend in ("sqlite", "postgresql")


def test_revoke_rotate_and_policy(registry):
    old = new_secret()
    registry.add_device("kitchen", hash_secret(old), NOW_S)
    assert registry.revoke("kitchen", NOW_S + 1)
    assert not registry.revoke("kitchen", NOW_S + 2)  # already revoked
    assert registry.get_device("kitchen").revoked_at == NOW_S + 1
    new = new_secret()
    assert registry.rotate("kitchen", hash_secret(new), NOW_S + 3)
    device = registry.get_device("kitchen")
    assert not device.revoked and device.rotated_at == NOW_S + 3
    assert verify_secret(new, device.secret_hash) and not verify_secret(old, device.secret_hash)
    assert not registry.rotate("ghost", hash_secret(new), NOW_S)
    assert registry.set_policy("kitchen", {"mint_rate_per_min": 2, "tools": [{"type": "function"}]})
    assert registry.get_device("kitchen").policy == {"mint_rate_per_min": 2, "tools": [{"type": "function"}]}
    assert not registry.set_policy("ghost", {})


def test_take_mint_rate_and_daily_budget(registry):
    registry.add_device("kitchen", hash_secret("s"), NOW_S)
    decisions = [registry.take_mint("kitchen", NOW_S, 3, 5) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert decisions[3].code == "rate_limited" and decisions[3].retry_after_s == 20
    assert registry.take_mint("kitchen", NOW_S + 20, 3, 5).allowed  # one token refilled
    assert registry.take_mint("kitchen", NOW_S + 40, 3, 5).allowed  # 5th of the day
    refused = registry.take_mint("kitchen", NOW_S + 200, 3, 5)
    assert refused.code == "daily_budget_exhausted"
    assert refused.retry_after_s == 86400 - int((NOW_S + 200) % 86400)
    next_day = NOW_S - NOW_S % 86400 + 86400
    assert registry.take_mint("kitchen", next_day, 3, 5).allowed
    assert registry.mint_counts("kitchen") == ("2030-03-18", 1)


def test_take_mint_is_atomic_across_connections(db_url):
    """Eight 'workers' (own Registry, own connections) race for a bucket of 5: exactly 5 win."""
    setup = Registry(db_url)
    setup.init_schema()
    setup.add_device("kitchen", hash_secret("s"), NOW_S)
    setup.close()
    workers = [Registry(db_url, pool_size=2) for _ in range(8)]
    results, barrier = [], threading.Barrier(16)

    def race(reg):
        barrier.wait()
        results.append(reg.take_mint("kitchen", NOW_S, 5, 1000).allowed)

    threads = [threading.Thread(target=race, args=(w,)) for w in workers for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for w in workers:
        w.close()
    assert len(results) == 16 and results.count(True) == 5
