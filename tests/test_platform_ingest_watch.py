"""The operators' alert for a silent ingest worker (issue 20 item 2): its persistent session holds
its share of telemetry and status while it is away, so the engine raises an alert when a worker
has not recorded itself alive for 3 heartbeats, and clears it when it is back or retired.

Real PostgreSQL; the engine's clock is injected (``now``), the rows' ``seen_at`` set by hand.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import psycopg

from eldercare.platform.engine import rules, service
from eldercare.platform.repo.connections import open_pool


def check(db_url: str, at: datetime, limit_s: float = 15.0) -> int:
    async def main() -> int:
        async with open_pool(db_url, min_size=1, max_size=2) as p:
            return await service.check_ingest_workers(p, limit_s=limit_s, now=at)

    return asyncio.run(main())


def rows(db_url: str, q: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(q, args).fetchall()


def alerts(db_url: str) -> list[tuple[str, str, str]]:
    return rows(
        db_url,
        "SELECT dedup_key, kind, state FROM alerts WHERE starts_with(dedup_key, %s) ORDER BY 1",
        rules.INGEST_WORKER_KEY,
    )


def test_a_silent_ingest_worker_raises_the_operators_alert_until_it_is_back_or_retired(db_url: str) -> None:
    t0 = datetime.fromisoformat("2026-12-01T12:00:00+00:00")
    with psycopg.connect(db_url, autocommit=True) as conn:
        for cid in ("ingest-0", "ingest-1", "ingest-2"):
            conn.execute("INSERT INTO ingest_workers (client_id, seen_at) VALUES (%s, %s)", (cid, t0))
    assert check(db_url, t0 + timedelta(seconds=10)) == 0  # within 3 heartbeats: nothing
    assert alerts(db_url) == []
    with psycopg.connect(db_url, autocommit=True) as conn:  # 0 and 2 go on beating, 1 is dead
        conn.execute(
            "UPDATE ingest_workers SET seen_at = %s WHERE client_id <> 'ingest-1'",
            (t0 + timedelta(seconds=19),),
        )
    assert check(db_url, t0 + timedelta(seconds=20)) == 1
    key = rules.INGEST_WORKER_KEY + "ingest-1"
    assert alerts(db_url) == [(key, "work_failed", "open")]
    summary = rows(db_url, "SELECT summary FROM alerts WHERE dedup_key = %s", key)[0][0]
    assert "ingest-1" in summary["en"] and summary["silent_s"] == 20.0
    assert check(db_url, t0 + timedelta(seconds=40)) == 3  # all silent now: one alert each
    assert len(alerts(db_url)) == 3
    assert rows(db_url, "SELECT detections FROM alerts WHERE dedup_key = %s", key) == [(2,)]  # joined
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE ingest_workers SET seen_at = %s", (t0 + timedelta(seconds=49),))
        conn.execute("DELETE FROM ingest_workers WHERE client_id = 'ingest-2'")  # retired
        conn.execute(
            "UPDATE ingest_workers SET seen_at = %s WHERE client_id = 'ingest-0'",
            (t0 + timedelta(seconds=5),),
        )
    assert check(db_url, t0 + timedelta(seconds=50)) == 1  # 0 still silent, 1 back, 2 retired
    assert alerts(db_url) == [
        (rules.INGEST_WORKER_KEY + "ingest-0", "work_failed", "open"),
        (key, "work_failed", "resolved"),
        (rules.INGEST_WORKER_KEY + "ingest-2", "work_failed", "resolved"),
    ]
