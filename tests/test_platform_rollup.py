"""``activity_hourly`` kept fresh by the platform itself on plain PostgreSQL: the engine's rollup loop
fills it from readings (a simulated home's, hours ahead of the wall clock, included), and only one
replica refreshes at a time."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from platform_seed import World, seed_world

from eldercare.db.maintain import ensure_partitions, is_timescale
from eldercare.platform.engine import rollup


@pytest.fixture
def world(db_url: str) -> World:
    with psycopg.connect(db_url) as conn:
        if is_timescale(conn):
            pytest.skip("TimescaleDB refreshes its continuous aggregate itself")
        return seed_world(conn)


def _readings(db_url: str, times: list[float]) -> None:
    with psycopg.connect(db_url) as conn:
        ts = [datetime.fromtimestamp(t, UTC) for t in times]
        ensure_partitions(conn, min(ts), max(ts), ["readings"])
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO readings (ts, gateway_id, sensor_id, metric, value)"
                " VALUES (%s, 'gw-sim-1', 'pir-kitchen', 'motion', 1)",
                [(t,) for t in ts],
            )
        conn.commit()


def _hours(db_url: str) -> list[tuple[datetime, int]]:
    with psycopg.connect(db_url) as conn:
        return [
            (b, int(n))
            for b, n in conn.execute("SELECT bucket, n FROM activity_hourly ORDER BY bucket").fetchall()
        ]


def test_the_engine_loop_fills_the_rollup_including_simulated_hours_ahead(db_url: str, world: World) -> None:
    now = time.time()
    _readings(db_url, [now - 60, now - 30, now + 5 * 3600])  # the last: a 60x home, hours ahead

    async def one_round() -> list[tuple[datetime, int]]:
        task = asyncio.create_task(rollup.run(db_url, every_s=0.05))
        try:
            for _ in range(400):
                if got := await asyncio.to_thread(_hours, db_url):
                    return got
                await asyncio.sleep(0.05)
            return []
        finally:
            task.cancel()

    got = asyncio.run(one_round())
    assert sum(n for _, n in got) == 3
    assert max(b for b, _ in got) == datetime.fromtimestamp(now + 5 * 3600, UTC).replace(
        minute=0, second=0, microsecond=0
    )


def test_one_replica_refreshes_at_a_time_and_late_data_is_caught_up(db_url: str, world: World) -> None:
    now = datetime.now(UTC)
    _readings(db_url, [(now - timedelta(hours=30)).timestamp(), now.timestamp() - 10])
    with psycopg.connect(db_url, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (rollup.LOCK,))  # another replica is refreshing
        assert rollup.refresh_once(db_url, now=now) is None
        assert _hours(db_url) == []
    assert rollup.refresh_once(db_url, now=now) == 1  # the recent hours only
    assert rollup.refresh_once(db_url, now=now, late=True) == 2  # the long look back finds the late one
    assert sum(n for _, n in _hours(db_url)) == 2
