"""SQL of resident timelines (hourly rollup per room) and daily summaries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from eldercare.platform.repo.connections import Conn

# Which consent stream a rollup row belongs to (design.md: raw bathroom and bed data need consent).
STREAM_CASE = """
CASE WHEN a.room = 'bathroom' THEN 'bathroom'
     WHEN a.sensor_kind = 'bed' THEN 'bed'
     WHEN a.sensor_kind IN ('vitals', 'wearable', 'env') THEN 'vitals'
     ELSE 'activity' END
"""


async def timeline(
    conn: Conn,
    *,
    resident_id: str,
    start: datetime,
    end: datetime,
    streams: list[str],
    room: str | None = None,
) -> list[dict[str, Any]]:
    """Hourly cells per room, sensor kind and metric at the resident's home (and their wearables).

    The same rows as ``activity_hourly_room`` restricted to the resident, written sensor-first:
    the resident's few sensors are found, then each one's hours are read through the rollup's
    primary key, so the cost follows the range asked for, not the size of the neighbourhood.
    """
    cur = await conn.execute(
        f"""
        WITH s AS (
            SELECT sn.gateway_id, sn.id, sn.room, sn.kind AS sensor_kind
            FROM residents r
            JOIN gateways g ON g.site_id = r.home_site_id
            JOIN sensors sn ON sn.gateway_id = g.id AND (sn.resident_id IS NULL OR sn.resident_id = r.id)
            WHERE r.id = %(rid)s
            UNION
            SELECT sn.gateway_id, sn.id, sn.room, sn.kind FROM sensors sn WHERE sn.resident_id = %(rid)s
        )
        SELECT a.bucket, s.room, s.sensor_kind, a.metric,
               sum(a.n)::bigint AS n, sum(a.total) AS total, max(a.max_value) AS max_value
        FROM s
        JOIN activity_hourly a ON a.gateway_id = s.gateway_id AND a.sensor_id = s.id
        WHERE a.bucket >= %(start)s AND a.bucket < %(end)s
          AND ({STREAM_CASE.replace("a.room", "s.room").replace("a.sensor_kind", "s.sensor_kind")})
              = ANY(%(streams)s)
          AND (%(room)s::text IS NULL OR s.room = %(room)s)
        GROUP BY 1, 2, 3, 4
        ORDER BY 1, 2, 3, 4
        """,
        {"rid": resident_id, "start": start, "end": end, "streams": streams, "room": room},
    )
    return await cur.fetchall()


async def home_of(conn: Conn, *, resident_id: str) -> dict[str, Any] | None:
    cur = await conn.execute(
        "SELECT r.id, r.name, r.home_site_id, s.timezone FROM residents r"
        " JOIN sites s ON s.id = r.home_site_id"
        " WHERE r.id = %(rid)s",
        {"rid": resident_id},
    )
    rows = await cur.fetchall()
    return rows[0] if rows else None


async def last_sensor_activity(conn: Conn, *, site_id: str, since: datetime) -> list[dict[str, Any]]:
    """Per sensor of the home: the latest 'something happened' reading (motion, door opened, ...)."""
    cur = await conn.execute(
        """
        SELECT s.kind, s.room, s.id AS sensor_id, last.ts
        FROM gateways g
        JOIN sensors s ON s.gateway_id = g.id AND s.kind IN ('pir', 'door', 'plug', 'bed')
        CROSS JOIN LATERAL (
            SELECT rd.ts FROM readings rd
            WHERE rd.gateway_id = s.gateway_id AND rd.sensor_id = s.id AND rd.ts >= %(since)s
              AND rd.value > CASE WHEN s.kind = 'plug' THEN 10 ELSE 0 END
            ORDER BY rd.ts DESC LIMIT 1
        ) last
        WHERE g.site_id = %(site)s
        """,
        {"site": site_id, "since": since},
    )
    return await cur.fetchall()


async def bed_samples(
    conn: Conn, *, site_id: str, resident_id: str, start: datetime, end: datetime
) -> list[tuple[datetime, float]]:
    cur = await conn.execute(
        """
        SELECT rd.ts, rd.value FROM gateways g
        JOIN sensors s ON s.gateway_id = g.id AND s.kind = 'bed'
             AND (s.resident_id IS NULL OR s.resident_id = %(rid)s)
        JOIN readings rd ON rd.gateway_id = s.gateway_id AND rd.sensor_id = s.id
        WHERE g.site_id = %(site)s AND rd.ts >= %(start)s AND rd.ts < %(end)s
        ORDER BY rd.ts
        """,
        {"site": site_id, "rid": resident_id, "start": start, "end": end},
    )
    rows = await cur.fetchall()
    return [(r["ts"], float(r["value"])) for r in rows]


async def active_hours(conn: Conn, *, site_id: str, start: datetime, end: datetime) -> int:
    cur = await conn.execute(
        "SELECT count(DISTINCT a.bucket) AS n FROM activity_hourly_room a"
        " WHERE a.site_id = %(site)s AND a.sensor_kind = 'pir'"
        " AND a.bucket >= %(start)s AND a.bucket < %(end)s",
        {"site": site_id, "start": start, "end": end},
    )
    rows = await cur.fetchall()
    return int(rows[0]["n"]) if rows else 0


async def open_alerts(conn: Conn, *, resident_id: str) -> list[dict[str, Any]]:
    cur = await conn.execute(
        "SELECT id, kind, severity, state, title, tier, opened_at, acknowledged_at FROM alerts"
        " WHERE resident_id = %(rid)s AND state <> 'resolved' ORDER BY opened_at DESC LIMIT 50",
        {"rid": resident_id},
    )
    return await cur.fetchall()
