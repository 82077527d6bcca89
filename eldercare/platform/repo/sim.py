"""SQL of the tester endpoints: incidents triggered through the API and the alerts they should raise."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from eldercare.platform.repo.connections import Conn


async def record_incident(
    conn: Conn,
    *,
    user_id: int,
    resident_id: str,
    kind: str,
    request: dict[str, Any],
    truth: dict[str, Any] | None,
    clock: dict[str, Any] | None,
) -> dict[str, Any]:
    cur = await conn.execute(
        "INSERT INTO sim_incidents (requested_by, resident_id, site_id, kind, request, truth, clock)"
        " SELECT %(u)s, r.id, r.home_site_id, %(k)s, %(req)s, %(truth)s, %(clock)s FROM residents r"
        " WHERE r.id = %(r)s RETURNING id, resident_id, site_id, kind, requested_at, truth",
        {
            "u": user_id,
            "r": resident_id,
            "k": kind,
            "req": Jsonb(request),
            "truth": Jsonb(truth) if truth is not None else None,
            "clock": Jsonb(clock) if clock else None,
        },
    )
    rows = await cur.fetchall()
    return rows[0]


async def incidents(conn: Conn, *, since: datetime | None) -> list[dict[str, Any]]:
    cur = await conn.execute(
        "SELECT i.id, i.resident_id, i.site_id, i.kind, i.requested_at, i.truth, i.clock FROM sim_incidents i"
        " JOIN sites s ON s.id = i.site_id WHERE s.simulated"
        " AND (%(since)s::timestamptz IS NULL OR i.requested_at >= %(since)s) ORDER BY i.requested_at",
        {"since": since},
    )
    return await cur.fetchall()


async def simulated_residents(conn: Conn) -> int:
    cur = await conn.execute("SELECT count(*) AS n FROM residents WHERE simulated", {})
    rows = await cur.fetchall()
    return int(rows[0]["n"])


async def alerts_of_sites(
    conn: Conn, *, sites: list[str], since: datetime | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Alerts of the sites (or their residents) and their trail, times as epoch seconds."""
    cur = await conn.execute(
        "SELECT a.id, a.kind, a.resident_id, coalesce(a.site_id, r.home_site_id) AS site, a.sensor_id,"
        " extract(epoch FROM a.detected_at)::float8 AS detected_at,"
        " extract(epoch FROM a.opened_at)::float8 AS opened_at,"
        " extract(epoch FROM a.acknowledged_at)::float8 AS acknowledged_at, a.outcome,"
        " (a.summary ->> 'sim_detected_ms')::float8 / 1000 AS sim_at"
        " FROM alerts a LEFT JOIN residents r ON r.id = a.resident_id"
        " WHERE (a.site_id = ANY(%(sites)s) OR r.home_site_id = ANY(%(sites)s))"
        " AND (%(since)s::timestamptz IS NULL OR a.opened_at >= %(since)s) ORDER BY a.opened_at",
        {"sites": sites, "since": since},
    )
    alerts = await cur.fetchall()
    cur = await conn.execute(
        "SELECT alert_id, extract(epoch FROM at)::float8 AS at, action, tier,"
        " (detail ->> 'sim_detected_ms')::float8 / 1000 AS sim_at FROM alert_trail"
        " WHERE alert_id = ANY(%(ids)s) ORDER BY alert_id, at",
        {"ids": [a["id"] for a in alerts]},
    )
    trail = await cur.fetchall()
    return alerts, trail


async def simulated_sites(conn: Conn) -> list[str]:
    cur = await conn.execute("SELECT id FROM sites WHERE simulated ORDER BY id")
    return [r["id"] for r in await cur.fetchall()]
