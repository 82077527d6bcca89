"""A simulated home's past, written at once, so its detectors have weeks of routine to learn from.

:func:`home_history` is pure: the readings a manifest home's gateway would have sent over the
``days`` before ``sim_start``, from the same generators the live runner uses, and continuous with
its run: the days before the runner's first midnight from a :class:`HomeSim` of their own, and the
hours from that midnight to ``sim_start`` exactly as the runner plans them (it fast-forwards over
those, so they would otherwise be missing). A couple's second resident is included.

:func:`write` stores them the way ingest stores telemetry: partitions made on demand
(:func:`eldercare.db.maintain.ensure_partitions`), then one ``COPY readings`` per home (the
simulators may not import ingest itself); and refreshes the hourly rollup over the period, so
activity charts show the past at once. Writing is idempotent per home: a home that already has readings in the
period is left alone (a demo started again on the same database does not double its past).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import psycopg

from eldercare.db import maintain
from eldercare.protocol import Reading
from eldercare.simulators.neighbourhood import profile_from
from eldercare.simulators.routine import DAY, HomeSim, ResidentProfile, SensorEvent
from eldercare.simulators.runner import METRIC, PARTNER_SEED

DEFAULT_DAYS = 21  # the inactivity detector's fit window
COPY_READINGS = "COPY readings (ts, gateway_id, sensor_id, metric, value) FROM STDIN"


def _events(
    seed: int, profile: ResidentProfile, site: str, day0: float, sim_start: float, days: int
) -> list[SensorEvent]:
    past = HomeSim(seed, start=day0 - days * DAY, profile=profile, end=day0, site=site)
    evs = past.pop_until(day0)
    today = HomeSim(seed, start=day0, profile=profile, site=site)
    return evs + today.pop_until(sim_start)


def home_history(home: dict[str, Any], sim_start: float, days: int = DEFAULT_DAYS) -> list[Reading]:
    """The readings of ``home`` (a manifest entry) over the ``days`` before ``sim_start``, in time order."""
    return [
        Reading(int(e.t * 1000), e.sensor, METRIC[e.kind], e.value)
        for e in home_events(home, sim_start, days)
    ]


def home_events(home: dict[str, Any], sim_start: float, days: int = DEFAULT_DAYS) -> list[SensorEvent]:
    """:func:`home_history` as the simulator's events (kind and room too: what a detector is fitted on)."""
    day0 = math.floor(sim_start / DAY) * DAY
    evs = _events(home["seed"], profile_from(home["profile"]), home["site"], day0, sim_start, days)
    partner = home.get("partner")
    if partner:
        evs += _events(
            home["seed"] ^ PARTNER_SEED, profile_from(partner["profile"]), home["site"], day0, sim_start, days
        )
        evs.sort(key=lambda e: e.t)
    return evs


def _has_readings(conn: psycopg.Connection[Any], gateway: str, lo_ms: int, hi_ms: int) -> bool:
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM readings WHERE gateway_id = %s AND ts >= %s AND ts <= %s)",
        (gateway, _dt(lo_ms), _dt(hi_ms)),
    ).fetchone()
    return bool(row and row[0])


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def write(conn: psycopg.Connection[Any], gateway: str, readings: list[Reading]) -> int:
    """Store one gateway's past readings as ingest would; returns how many were written (0: it had a past)."""
    if not readings:
        return 0
    lo, hi = readings[0].t, readings[-1].t
    if _has_readings(conn, gateway, lo, hi):
        return 0
    maintain.ensure_partitions(conn, _dt(lo), _dt(hi), tables=["readings"])
    with conn.transaction(), conn.cursor().copy(COPY_READINGS) as copy:
        for r in readings:
            copy.write_row((_dt(r.t), gateway, r.sensor, r.metric, r.value))
    return len(readings)


def backfill(
    conn: psycopg.Connection[Any], manifest: dict[str, Any], sim_start: float, days: int = DEFAULT_DAYS
) -> dict[str, int]:
    """Every manifest home's past, written and rolled up; returns readings written per site."""
    written: dict[str, int] = {}
    for home in manifest["homes"]:
        readings = home_history(home, sim_start, days)
        written[home["site"]] = write(conn, home["gateway"]["id"], readings)
    conn.commit()  # the past is stored whatever comes next
    if any(written.values()):
        day0 = math.floor(sim_start / DAY) * DAY  # the past begins at a midnight
        autocommit, conn.autocommit = conn.autocommit, True  # TimescaleDB refreshes outside a transaction
        try:
            maintain.refresh_rollup(conn, datetime.fromtimestamp(day0 - days * DAY, UTC))
        finally:
            conn.autocommit = autocommit
    return written
