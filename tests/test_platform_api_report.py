"""Care-quality report from alerts and their trail, and outcome feedback into detector sensitivity."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from platform_seed import World

from eldercare.platform.repo import report
from eldercare.platform.repo.connections import connect

if TYPE_CHECKING:
    from platform_api_support import Api

pytest_plugins = ["platform_api_support"]


def _alert(
    conn: psycopg.Connection[Any], world: World, *, resident: str, kind: str, t0: datetime,
    ack: tuple[str, int, float] | None, resolve: tuple[str, float, str] | None, escalations: list[float] = (),  # type: ignore[assignment]
) -> int:  # fmt: skip
    """An alert as the engine would have written it: opened at t0, escalated, acked, resolved."""
    tier = 1 + len(escalations)
    ack_by = world.user_id(ack[0]) if ack else None
    ack_at = t0 + timedelta(seconds=ack[2]) if ack else None
    res_at = t0 + timedelta(seconds=resolve[1]) if resolve else None
    row = conn.execute(
        "INSERT INTO alerts (kind, severity, state, resident_id, dedup_key, title, detected_at, opened_at,"
        " tier, acknowledged_at, acknowledged_by, resolved_at, resolved_by, outcome)"
        " VALUES (%s, 'high', %s, %s, %s, 't', %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (kind, "resolved" if resolve else ("acknowledged" if ack else "open"), resident,
         f"{resident}:{kind}:{t0.timestamp()}", t0, t0, tier, ack_at, ack_by, res_at,
         world.user_id(resolve[0]) if resolve else None, resolve[2] if resolve else None),
    ).fetchone()  # fmt: skip
    assert row is not None
    aid = int(row[0])
    conn.execute(
        "INSERT INTO alert_trail (alert_id, at, action, tier) VALUES (%s, %s, 'opened', 1)", (aid, t0)
    )
    for i, s in enumerate(escalations, start=2):
        conn.execute(
            "INSERT INTO alert_trail (alert_id, at, action, tier) VALUES (%s, %s, 'escalated', %s)",
            (aid, t0 + timedelta(seconds=s), i),
        )
    if ack:
        conn.execute(
            "INSERT INTO alert_trail (alert_id, at, action, tier, actor_user_id)"
            " VALUES (%s, %s, 'acknowledged', %s, %s)",
            (aid, ack_at, ack[1], ack_by),
        )
    return aid


@pytest.fixture
def history(db_url: str, world: World) -> None:
    t0 = datetime.now(UTC) - timedelta(days=2)
    with psycopg.connect(db_url, autocommit=True) as conn:
        _alert(
            conn,
            world,
            resident="res-1",
            kind="fall",
            t0=t0,
            ack=("family1", 1, 60),
            resolve=("worker1", 600, "confirmed"),
        )
        _alert(
            conn,
            world,
            resident="res-1",
            kind="inactivity",
            t0=t0 + timedelta(hours=1),
            ack=("station1", 2, 400),
            resolve=("station1", 900, "false_alarm"),
            escalations=[300],
        )
        _alert(
            conn,
            world,
            resident="res-1",
            kind="inactivity",
            t0=t0 + timedelta(hours=2),
            ack=("nurse1", 3, 1000),
            resolve=("nurse1", 1200, "false_alarm"),
            escalations=[300, 900],
        )
        _alert(
            conn,
            world,
            resident="res-2",
            kind="inactivity",
            t0=t0 + timedelta(hours=3),
            ack=("worker2", 1, 30),
            resolve=("worker2", 100, "no_action_needed"),
        )
        _alert(conn, world, resident="res-2", kind="fall", t0=t0 + timedelta(hours=4), ack=None, resolve=None)


def test_care_quality_report(api: Api, history: None) -> None:
    r = api.get("admin", "/api/v1/reports/care-quality")
    assert r.status_code == 200, r.text
    rep = r.json()
    assert rep["alerts"] == 5
    ack = rep["ack_by_tier"]
    assert ack["1"]["count"] == 2 and ack["1"]["median_s"] == pytest.approx(45)
    assert ack["2"]["count"] == 1 and ack["2"]["median_s"] == pytest.approx(100)  # from the escalation
    assert ack["3"]["median_s"] == pytest.approx(100)
    assert rep["ack_by_provider"]["family"]["count"] == 1
    assert rep["ack_by_provider"]["st-1"]["median_s"] == pytest.approx(100)
    assert rep["resolve_by_provider"]["inst-1"]["median_s"] == pytest.approx(1200)
    assert rep["resolve_by_tier"]["1"]["count"] == 2
    fa = rep["false_alarm_by_kind"]["inactivity"]
    assert fa == {"resolved": 3, "false_alarms": 2, "share": pytest.approx(2 / 3)}
    assert rep["false_alarm_by_resident"]["res-1"]["share"] == pytest.approx(2 / 3)
    assert rep["false_alarm_by_resident"]["res-2"]["false_alarms"] == 0
    # a care worker sees only their provider's residents
    mine = api.get("worker2", "/api/v1/reports/care-quality").json()
    assert mine["alerts"] == 2 and set(mine["false_alarm_by_resident"]) == {"res-2"}
    assert api.get("family1", "/api/v1/reports/care-quality").status_code == 403


def test_a_period_backwards_is_refused_in_the_reports_own_words(api: Api) -> None:
    """It said "'start' must be before 'end' and the range at most 3660 days": neither name is a
    parameter of the report, and no such limit is kept."""
    q = {"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}
    r = api.get("admin", "/api/v1/reports/care-quality", params=q)
    said = "Invalid request: since: 'since' must be before 'until'."
    assert (r.status_code, r.json()["detail"]) == (422, said)


def test_false_alarms_lower_the_residents_sensitivity_exactly_once(history: None, db_url: str) -> None:
    async def run() -> list[int]:
        async with await connect(db_url) as a, \
                await connect(db_url) as b:  # fmt: skip
            return list(await asyncio.gather(report.apply_feedback(a), report.apply_feedback(b)))

    applied = asyncio.run(run())
    assert sorted(applied) == [0, 4]  # two replicas: the four resolved outcomes counted once
    with psycopg.connect(db_url) as conn:
        rows = dict(
            ((r, d), s)
            for r, d, s in conn.execute(
                "SELECT resident_id, detector, sensitivity FROM detector_settings"
            ).fetchall()
        )
    assert rows[("res-1", "inactivity")] == pytest.approx(0.85 * 0.85, rel=1e-5)
    assert rows[("res-1", "fall")] == pytest.approx(1.05, rel=1e-5)
    assert ("res-2", "inactivity") not in rows  # no_action_needed changes nothing
    assert asyncio.run(_again(db_url)) == 0


async def _again(db_url: str) -> int:
    async with await connect(db_url) as conn:
        return await report.apply_feedback(conn)


def test_a_false_night_wandering_alarm_makes_the_inactivity_detector_less_sensitive(
    db_url: str, world: World
) -> None:
    from eldercare.platform.engine.inactivity import ALERT_KIND

    t0 = datetime.now(UTC) - timedelta(days=1)
    with psycopg.connect(db_url, autocommit=True) as conn:
        _alert(
            conn, world, resident="res-1", kind="night_wandering", t0=t0,
            ack=("family1", 1, 60), resolve=("worker1", 600, "false_alarm"),
        )  # fmt: skip
    assert asyncio.run(_again(db_url)) == 1
    with psycopg.connect(db_url) as conn:
        got = conn.execute("SELECT detector, sensitivity FROM detector_settings WHERE resident_id = 'res-1'")
        assert got.fetchall() == [("inactivity", pytest.approx(0.85, rel=1e-5))]
    # every kind the inactivity detector raises feeds back into it
    assert {report.DETECTOR_OF_KIND.get(k, k) for k in ALERT_KIND.values()} == {"inactivity"}
