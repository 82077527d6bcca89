"""The inactivity detector driven by the engine: fitted from a simulated home's readings in the
database, fed the readings since the last tick and the clock; a collapse opens an explained alert."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from platform_seed import World, seed_world

from eldercare.db.maintain import ensure_partitions
from eldercare.models.inactivity import InactivityAlert
from eldercare.platform.engine import inactivity, rules, service
from eldercare.platform.repo import detectors as detectors_repo
from eldercare.platform.repo.connections import Pool, open_pool
from eldercare.simulators.routine import DAY, DEFAULT_START, HOUR, Incident, simulate_home

METRIC = {"pir": "motion", "door": "contact", "bed": "in_bed", "plug": "power", "sos": "press"}
COLLAPSE = DEFAULT_START + 14 * DAY + 10 * HOUR  # a Monday morning after two weeks of routine


@pytest.fixture
def world(db_url: str) -> World:
    with psycopg.connect(db_url) as conn:
        return seed_world(conn)


def with_pool(db_url: str, job: Callable[[Pool], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        async with open_pool(db_url, min_size=1, max_size=4) as pool:
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

    async def ticks(pool: Pool) -> list[int]:
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
    assert "sim_detected_ms" not in summary  # a real home's alert is in the wall clock's time already
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
    assert [(ok, float(at)) for ok, at in fitted] == [
        (True, pytest.approx(before, abs=inactivity.SETTLE_WALL_S))
    ]


def test_the_daily_refit_does_not_raise_the_same_silence_again(db_url: str, world: World) -> None:
    shift = load_home(db_url)
    before = COLLAPSE + shift - HOUR

    async def ticks(pool: Pool) -> list[int]:
        raised = [await service.drive_inactivity(pool, now_s=before)]
        raised.append(await service.drive_inactivity(pool, now_s=before + 6 * HOUR))
        async with pool.connection() as conn:  # a care worker closes it; the silence goes on
            await conn.execute("UPDATE alerts SET state = 'resolved', resolved_at = now()")
        raised.append(await service.drive_inactivity(pool, now_s=before + inactivity.REFIT_S + 60))
        return raised

    assert with_pool(db_url, ticks) == [0, 1, 0]
    assert rows(db_url, "SELECT count(*) FROM alerts") == [(1,)]
    refitted = rows(
        db_url,
        "SELECT extract(epoch FROM fitted_at) FROM detector_settings"
        " WHERE resident_id = 'res-2' AND detector = 'inactivity'",
    )
    assert [float(at) for (at,) in refitted] == [pytest.approx(before + inactivity.REFIT_S + 60, abs=10)]


def test_each_resident_is_driven_by_one_replica_at_a_time(db_url: str, world: World) -> None:
    shift = load_home(db_url)
    now = COLLAPSE + shift - HOUR

    async def two(pool: Pool) -> None:
        async with open_pool(pool.conninfo, min_size=1, max_size=2) as other:
            await asyncio.gather(
                service.drive_inactivity(pool, now_s=now, batch=1),
                service.drive_inactivity(other, now_s=now, batch=1),
            )

    with_pool(db_url, two)
    got = rows(db_url, "SELECT resident_id, (state ->> 'due_s')::float FROM detector_settings ORDER BY 1")
    # judged a moment back (readings may still be on their way), due a tick later
    due = now - inactivity.SETTLE_WALL_S + inactivity.TICK_S
    assert got == [(r, due) for r in ("res-1", "res-2")] + [("sim-res-1", None)]  # its clock unknown yet


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


def test_confirmed_incidents_and_gateway_outages_are_left_out_of_the_fit(db_url: str, world: World) -> None:
    """A real collapse must not be learned as a long nap, nor an outage as a quiet home."""
    t0 = 1_770_000_000.0

    def alert(
        kind: str, *, resident: str | None, outcome: str | None, start: float, end: float, **kw: Any
    ) -> None:
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO alerts (kind, severity, state, resident_id, site_id, gateway_id, sensor_id,"
                " dedup_key, title, summary, detected_at, resolved_at, outcome)"
                " VALUES (%s, 'high', 'resolved', %s, 'home-2', %s, %s, %s, 't', %s::jsonb,"
                " to_timestamp(%s), to_timestamp(%s), %s)",
                (kind, resident, kw.get("gateway"), kw.get("sensor"), f"k{start}", kw.get("summary", "{}"),
                 start, end, outcome),
            )  # fmt: skip

    # the silence began at since_ms, an hour before the alert was raised
    alert("inactivity", resident="res-2", outcome="confirmed", start=t0 + 3600, end=t0 + 7200,
          summary=f'{{"since_ms": {int(t0 * 1000)}}}')  # fmt: skip
    alert("inactivity", resident="res-2", outcome="false_alarm", start=t0 + 9000, end=t0 + 9600)
    alert("fall", resident="res-1", outcome="confirmed", start=t0 + 9000, end=t0 + 9600)  # not her
    alert(
        "device_offline", resident=None, outcome=None, start=t0 + 20000, end=t0 + 23000, gateway="gw-home-2"
    )
    alert(
        "device_offline",
        resident=None,
        outcome=None,
        start=t0 + 30000,
        end=t0 + 31000,
        gateway="gw-home-2",
        sensor="pir-kitchen",
    )  # one sensor: the detector tells that itself

    async def query(pool: Pool) -> list[tuple[float, float]]:
        async with pool.connection() as conn:
            return await detectors_repo.detector_exclusions(
                conn, resident="res-2", site="home-2", after_s=t0 - 86400, until_s=t0 + 86400,
                kinds=inactivity.INCIDENT_KINDS,
            )  # fmt: skip

    got = with_pool(db_url, query)
    assert got == [
        (pytest.approx(t0), pytest.approx(t0 + 7200)),
        (pytest.approx(t0 + 20000), pytest.approx(t0 + 23000)),
    ]


def test_a_silent_sensor_becomes_a_device_alert_that_clears_when_it_reports() -> None:
    readings = [
        {
            "t": 1.0,
            "kind": "pir",
            "room": "Kitchen",
            "value": 1.0,
            "gateway_id": "gw-1",
            "sensor_id": "pir-k",
        },
        {
            "t": 2.0,
            "kind": "heartbeat",
            "room": None,
            "value": 1.0,
            "gateway_id": "gw-1",
            "sensor_id": "gw-1",
        },
    ]
    sensors = inactivity.sensor_keys(readings)
    assert sensors == {"pir:kitchen": ["gw-1", "pir-k"]}
    silent = InactivityAlert(
        7200.0, "device_silent", "kitchen", "low",
        {"en": "the motion sensor ...", "zh-CN": "厨房的人体感应器……"},
        3600.0, 6 * 3600.0, 6 * 3600.0, 0.0, "pir:kitchen",
    )  # fmt: skip
    gateway = InactivityAlert(
        7200.0,
        "device_silent",
        "",
        "medium",
        {"en": "gw", "zh-CN": "网关"},
        300.0,
        900.0,
        900.0,
        0.0,
        "gateway",
    )
    (d,) = inactivity.decisions([silent, gateway], resident="res-2", site="home-2", sensors=sensors)
    assert isinstance(d, rules.Open)
    assert (d.kind, d.resident_id, d.gateway_id, d.sensor_id) == ("device_offline", None, "gw-1", "pir-k")
    assert d.dedup_key == rules.dedup_key("device_offline", device="gw-1/pir-k")
    assert d.summary["en"] == silent.reason and d.summary["zh-CN"] == silent.reason_zh
    still = {"pir:kitchen": d.dedup_key}
    assert inactivity.cleared(still, [(3.0, "pir", "bathroom", 1.0)]) == ([], still)
    clears, left = inactivity.cleared(still, [(3.0, "pir", "kitchen", 1.0)])
    assert [c.dedup_key for c in clears] == [d.dedup_key] and left == {}


def test_in_a_home_of_two_each_detector_reads_its_own_bed_mat_and_knows_the_home_is_shared(
    db_url: str, world: World
) -> None:
    """A couple's home: the partner's bed mat would tell the resident's detector they had got up
    (a morning stuck in bed never alerted: 1 of 24 caught in the evaluation's couples), and the
    partner's movements are not the resident's. Each resident's detector gets its own mat (the
    sensor's ``resident_id``; an unassigned mat is everyone's) and is told the home is shared."""
    t0 = time.time() - HOUR
    with psycopg.connect(db_url) as conn:
        ensure_partitions(
            conn, datetime.fromtimestamp(t0 - DAY, UTC), datetime.fromtimestamp(t0 + DAY, UTC), ["readings"]
        )
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE residents SET home_site_id = 'home-1' WHERE id = 'res-2'")  # moved in
        for sid, owner in (("bed-a", "res-1"), ("bed-b", "res-2"), ("bed-c", None)):
            conn.execute(
                "INSERT INTO sensors (gateway_id, id, kind, room, resident_id)"
                " VALUES ('gw-home-1', %s, 'bed', 'bedroom', %s)",
                (sid, owner),
            )
            conn.execute(
                "INSERT INTO readings (ts, gateway_id, sensor_id, metric, value)"
                " VALUES (to_timestamp(%s), 'gw-home-1', %s, 'in_bed', 1)",
                (t0, sid),
            )

    async def read(pool: Pool) -> tuple[dict[str, list[str]], dict[str, bool]]:
        async with pool.connection() as conn:
            mats = {
                who: [
                    r["sensor_id"]
                    for r in await detectors_repo.home_readings(
                        conn, site="home-1", after_s=t0 - 1, until_s=t0 + 1, kinds=["bed"], resident=who
                    )
                ]
                for who in ("res-1", "res-2")
            }
            await detectors_repo.ensure_detectors(conn, detector=inactivity.DETECTOR)
            async with conn.transaction():
                due = await detectors_repo.claim_detectors(
                    conn, detector=inactivity.DETECTOR, now_s=time.time(), limit=10
                )
            return mats, {r["resident_id"]: r["shared"] for r in due}

    mats, shared = with_pool(db_url, read)
    assert sorted(mats["res-1"]) == ["bed-a", "bed-c"] and sorted(mats["res-2"]) == ["bed-b", "bed-c"]
    assert shared == {"res-1": True, "res-2": True}


def test_a_round_judges_the_homes_while_another_replica_adds_a_new_residents_detector(
    db_url: str, world: World
) -> None:
    """Every replica makes sure each resident has a detector row, every round. One that met
    another's uncommitted row for a new resident waited for it, under load past the engine's lock
    timeout (``LockNotAvailable`` on detector_settings), and that round judged nobody."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("INSERT INTO detector_settings (resident_id, detector) VALUES ('res-1', 'inactivity')")
    with psycopg.connect(db_url) as other:  # another replica, mid-transaction, adding res-2's row
        other.execute("INSERT INTO detector_settings (resident_id, detector) VALUES ('res-2', 'inactivity')")

        async def one_round() -> int:
            async with open_pool(db_url, min_size=1, max_size=2, options="-c lock_timeout=300") as pool:
                return await service.drive_inactivity(pool, now_s=time.time())

        asyncio.run(one_round())
        judged = rows(db_url, "SELECT resident_id FROM detector_settings WHERE state IS NOT NULL")
        other.rollback()
    assert ("res-1",) in judged  # the home already known was judged in that round


def test_in_a_home_of_two_each_detector_reads_its_own_wearables_steps(db_url: str, world: World) -> None:
    """The wearable's steps are the one signal a resident does not share with the partner: a
    shared home's detector reads its resident's own wearable (``steps`` only, not the heart rate),
    never the partner's nor one nobody is assigned to; a home of one does not ask for it."""
    t0 = time.time() - HOUR
    with psycopg.connect(db_url) as conn:
        ensure_partitions(
            conn, datetime.fromtimestamp(t0 - DAY, UTC), datetime.fromtimestamp(t0 + DAY, UTC), ["readings"]
        )
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE residents SET home_site_id = 'home-1' WHERE id = 'res-2'")
        for sid, owner in (("watch-a", "res-1"), ("watch-b", "res-2"), ("watch-c", None)):
            conn.execute(
                "INSERT INTO sensors (gateway_id, id, kind, room, resident_id)"
                " VALUES ('gw-home-1', %s, 'wearable', NULL, %s)",
                (sid, owner),
            )
            for metric, value in (("steps", 12), ("heart_rate", 70)):
                conn.execute(
                    "INSERT INTO readings (ts, gateway_id, sensor_id, metric, value)"
                    " VALUES (to_timestamp(%s), 'gw-home-1', %s, %s, %s)",
                    (t0, sid, metric, value),
                )

    async def read(pool: Pool) -> dict[str, list[tuple[str, str, float]]]:
        async with pool.connection() as conn:
            return {
                who: [
                    (r["sensor_id"], r["kind"], float(r["value"]))
                    for r in await detectors_repo.home_readings(
                        conn,
                        site="home-1",
                        after_s=t0 - 1,
                        until_s=t0 + 1,
                        kinds=list(inactivity.SHARED_SENSOR_KINDS),
                        resident=who,
                    )
                ]
                for who in ("res-1", "res-2")
            }

    got = with_pool(db_url, read)
    assert got == {"res-1": [("watch-a", "wearable", 12.0)], "res-2": [("watch-b", "wearable", 12.0)]}
    assert "wearable" not in inactivity.SENSOR_KINDS  # a home of one: a reading a minute not needed
    assert inactivity.events([{"t": t0, "kind": "wearable", "room": None, "value": 12}]) == [
        (t0, "wearable", "", 12.0)
    ]
