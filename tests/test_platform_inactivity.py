"""The inactivity detector driven by the engine: fitted from a simulated home's readings in the
database, fed the readings since the last tick and the clock; a collapse opens an explained alert."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import pytest
from platform_seed import World, seed_world
from psycopg_pool import AsyncConnectionPool

from eldercare.db.maintain import ensure_partitions
from eldercare.platform.engine import inactivity, service
from eldercare.simulators.routine import DAY, DEFAULT_START, HOUR, Incident, simulate_home

METRIC = {"pir": "motion", "door": "contact", "bed": "in_bed", "plug": "power", "sos": "press"}
COLLAPSE = DEFAULT_START + 14 * DAY + 10 * HOUR  # a Monday morning after two weeks of routine


@pytest.fixture
def world(db_url: str) -> World:
    with psycopg.connect(db_url) as conn:
        return seed_world(conn)


def with_pool(db_url: str, job: Callable[[AsyncConnectionPool[Any]], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        async with AsyncConnectionPool(db_url, min_size=1, max_size=4, kwargs={"autocommit": True}) as pool:
            return await job(pool)

    return asyncio.run(main())


def rows(db_url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(query, params).fetchall()


def load_home(db_url: str) -> float:
    """Fifteen simulated days of home-2 (Li Wei lives alone) with a collapse on the last morning,
    moved by whole days to end in the recent past; returns the shift in seconds."""
    run = simulate_home(3, 15, incidents=[Incident("collapse", COLLAPSE)])
    shift = math.floor((time.time() - COLLAPSE - 8 * HOUR) / DAY) * DAY
    sensors = {(sid, kind, room) for sid, (_, kind, room, _) in zip(run.sensor_ids, run.events, strict=True)}
    with psycopg.connect(db_url) as conn:
        ensure_partitions(conn, _ts(run.events[0][0] + shift), _ts(run.events[-1][0] + shift), ["readings"])
    with psycopg.connect(db_url) as conn, conn.cursor() as cur:
        cur.execute("UPDATE sites SET timezone = 'UTC' WHERE id = 'home-2'")  # the simulator lives in UTC
        cur.executemany(
            "INSERT INTO sensors (gateway_id, id, kind, room) VALUES ('gw-home-2', %s, %s, %s)"
            " ON CONFLICT DO NOTHING",
            sorted(sensors),
        )
        with cur.copy("COPY readings (ts, gateway_id, sensor_id, metric, value) FROM STDIN") as copy:
            for sid, (t, kind, _, value) in zip(run.sensor_ids, run.events, strict=True):
                copy.write_row((_ts(t + shift), "gw-home-2", sid, METRIC[kind], value))
    return shift


def _ts(t: float) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(t, UTC)


def test_collapse_opens_an_explained_inactivity_alert(db_url: str, world: World) -> None:
    shift = load_home(db_url)
    before, after = COLLAPSE + shift - HOUR, COLLAPSE + shift + 6 * HOUR

    async def ticks(pool: AsyncConnectionPool[Any]) -> list[int]:
        raised = [await service.drive_inactivity(pool, now_s=before)]  # fit on the two weeks before
        raised.append(await service.drive_inactivity(pool, now_s=before + 30))  # not due yet
        for t in range(int(before) + 600, int(after) + 1, 600):  # then every ten minutes
            raised.append(await service.drive_inactivity(pool, now_s=float(t)))
        return raised

    raised = with_pool(db_url, ticks)
    assert raised[0] == 0 and raised[1] == 0
    assert sum(raised) == 1  # one alert for one silence, however many ticks see it
    ((kind, state, resident, summary, tier),) = rows(
        db_url, "SELECT kind, state, resident_id, summary, tier FROM alerts"
    )
    assert (kind, state, resident, tier) == ("inactivity", "open", "res-2", 1)
    assert summary["en"] and summary["zh-CN"] and summary["en"] != summary["zh-CN"]
    assert summary["observed_s"] >= summary["threshold_s"] > 0 and summary["expected_s"] > 0
    (detected,) = rows(db_url, "SELECT extract(epoch FROM detected_at) FROM alerts")[0]
    assert COLLAPSE + shift < float(detected) <= after
    notified = rows(db_url, "SELECT u.username FROM notifications n JOIN users u ON u.id = n.user_id")
    assert [n[0] for n in notified] == ["family2"]  # tier 1: family (res-2 has no assigned worker)
    fitted = rows(
        db_url,
        "SELECT state ? 'detector', extract(epoch FROM fitted_at) FROM detector_settings"
        " WHERE resident_id = 'res-2' AND detector = 'inactivity'",
    )
    assert fitted == [(True, pytest.approx(before))]


def test_each_resident_is_driven_by_one_replica_at_a_time(db_url: str, world: World) -> None:
    shift = load_home(db_url)
    now = COLLAPSE + shift - HOUR

    async def two(pool: AsyncConnectionPool[Any]) -> None:
        async with AsyncConnectionPool(
            pool.conninfo, min_size=1, max_size=2, kwargs={"autocommit": True}
        ) as other:
            await asyncio.gather(
                service.drive_inactivity(pool, now_s=now, batch=1),
                service.drive_inactivity(other, now_s=now, batch=1),
            )

    with_pool(db_url, two)
    got = rows(db_url, "SELECT resident_id, (state ->> 'due_s')::float FROM detector_settings ORDER BY 1")
    assert got == [(r, now + inactivity.TICK_S) for r in ("res-1", "res-2", "sim-res-1")]


def test_an_unreadable_state_is_refitted(db_url: str, world: World) -> None:
    now = time.time()
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO detector_settings (resident_id, detector, state, fitted_at)"
            " VALUES ('res-1', 'inactivity', '{\"detector\": {\"version\": 99}, \"last_event_s\": 0}', now())"
        )
    assert with_pool(db_url, lambda pool: service.drive_inactivity(pool, now_s=now)) == 0
    ((version, fitted),) = rows(
        db_url,
        "SELECT (state -> 'detector' ->> 'version')::int, extract(epoch FROM fitted_at)"
        " FROM detector_settings WHERE resident_id = 'res-1'",
    )
    assert version == 1 and float(fitted) == pytest.approx(now)
