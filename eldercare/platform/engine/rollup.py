"""Keeping ``activity_hourly`` fresh from inside ``eldercare serve``, so charts need no cron job.

On TimescaleDB the continuous aggregate's own policy does this; on plain PostgreSQL the rollup is a
table that only :func:`eldercare.db.maintain.refresh_rollup` fills. Every :data:`TICK_S` one
replica (whichever takes the advisory lock; the others skip the round) recomputes the hours from
:data:`RECENT` ago onwards, which also covers a simulated home's readings hours ahead of the wall
clock; every :data:`LATE_EVERY` rounds it goes back :data:`eldercare.db.maintain.ROLLUP_LOOKBACK`,
for gateways that replayed their outbox late. ``eldercare db maintain`` stays safe to run as well:
both replace whole buckets, so the result is the same whoever ran last.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import psycopg

from eldercare.db import maintain

log = logging.getLogger(__name__)

LOCK = 7_305_117_022  # advisory lock key: one refresher at a time across replicas
TICK_S = 60.0
RECENT = timedelta(hours=2)
LATE_EVERY = 60  # rounds: the long look back once an hour


def refresh_once(conninfo: str, *, now: datetime | None = None, late: bool = False) -> int | None:
    """One round; returns the rows written, or None when another replica holds the lock (or TimescaleDB)."""
    now = now or datetime.now(UTC)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        if maintain.is_timescale(conn):
            return None  # the continuous aggregate's policy refreshes it
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK,)).fetchone()
        if not (row and row[0]):
            return None
        try:
            since = now - (maintain.ROLLUP_LOOKBACK if late else RECENT)
            return maintain.refresh_rollup(conn, since)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK,))


async def run(conninfo: str, *, every_s: float = TICK_S) -> None:
    """The loop started with the engine's; a failed round (database restart) is retried next time."""
    rounds = 0
    while True:
        try:
            await asyncio.to_thread(refresh_once, conninfo, late=rounds % LATE_EVERY == 0)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("activity rollup refresh failed; retrying")
        rounds += 1
        await asyncio.sleep(every_s)
