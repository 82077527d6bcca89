"""What the engine reads and keeps of gateways while it handles their work: presence, clock
skew, last heartbeats, and which resident a sensor or a site stands for.
"""

from __future__ import annotations

from datetime import datetime

from eldercare.platform.repo.connections import Conn, Row


async def resident_at_site(conn: Conn, *, resident: str, gateway: str) -> str | None:
    """``resident`` if registered and living at (or attending) the gateway's site, else None."""
    cur = await conn.execute(
        """
        SELECT r.id FROM residents r JOIN gateways g ON g.id = %(gw)s
        WHERE r.id = %(r)s AND g.site_id IN (r.home_site_id, r.station_site_id)
        """,
        {"r": resident, "gw": gateway},
    )
    row = await cur.fetchone()
    return str(row["id"]) if row else None


async def resident_of_sensor(conn: Conn, *, gateway: str, sensor: str) -> str | None:
    """The resident a wearable or SOS button belongs to; else the only resident of the home."""
    cur = await conn.execute(
        """
        SELECT coalesce(
            (SELECT resident_id FROM sensors WHERE gateway_id = %(gw)s AND id = %(sensor)s),
            (SELECT min(r.id) FROM residents r JOIN gateways g ON g.site_id = r.home_site_id
             WHERE g.id = %(gw)s HAVING count(*) = 1)
        ) AS resident
        """,
        {"gw": gateway, "sensor": sensor},
    )
    row = await cur.fetchone()
    return row["resident"] if row else None


async def site_is_simulated(conn: Conn, *, site: str) -> bool:
    cur = await conn.execute("SELECT simulated FROM sites WHERE id = %(site)s", {"site": site})
    row = await cur.fetchone()
    return bool(row and row["simulated"])


async def gateway_presence(conn: Conn, *, gateway: str) -> Row | None:
    """The registry's view of a gateway: state and the arrival time of the status that set it.

    Not locked: ingest updates it in its own batch transaction, which must never wait for the
    engine. A work item exists only once ingest committed its status, so the row read here already
    reflects every status whose work could be handled concurrently."""
    cur = await conn.execute("SELECT state, state_at FROM gateways WHERE id = %(gw)s", {"gw": gateway})
    return await cur.fetchone()


async def set_clock_skew(conn: Conn, *, gateway: str, skew_ms: int) -> None:
    """Kept in ``gateway_clocks``, not ``gateways``: ingest's batch must never wait for this row."""
    await conn.execute(
        "INSERT INTO gateway_clocks (gateway_id, skew_ms) VALUES (%(gw)s, %(skew)s)"
        " ON CONFLICT (gateway_id) DO UPDATE SET skew_ms = EXCLUDED.skew_ms, checked_at = now()",
        {"skew": skew_ms, "gw": gateway},
    )


async def gateways_for_heartbeat_check(conn: Conn, *, since: datetime) -> list[Row]:
    """Each gateway's presence, the heartbeat period of its config (``heartbeat_s``, null when it
    says none) and the time of its last heartbeat reading in the database."""
    cur = await conn.execute(
        """
        SELECT g.id, g.site_id, g.state, g.state_at, g.disabled_at IS NOT NULL AS disabled,
               CASE WHEN jsonb_typeof(g.config -> 'heartbeat_s') = 'number'
                    THEN (g.config ->> 'heartbeat_s')::float8 END AS heartbeat_s,
               (SELECT max(ts) FROM readings r
                WHERE r.gateway_id = g.id AND r.sensor_id = g.id AND r.metric = 'heartbeat'
                  AND r.ts >= %(since)s) AS last_heartbeat
        FROM gateways g
        """,
        {"since": since},
    )
    return await cur.fetchall()


async def ingest_workers_seen(conn: Conn) -> list[Row]:
    """Each ingest worker's client id and when it last recorded itself alive (``ingest_workers``)."""
    cur = await conn.execute("SELECT client_id, seen_at FROM ingest_workers")
    return await cur.fetchall()


async def site_has_sensor(conn: Conn, *, site: str, kind: str) -> bool:
    """Whether any gateway of the site has a sensor of this kind (a home with PIRs can vouch for
    silence; one without cannot)."""
    cur = await conn.execute(
        "SELECT EXISTS (SELECT 1 FROM sensors s JOIN gateways g ON g.id = s.gateway_id"
        " WHERE g.site_id = %(site)s AND s.kind = %(kind)s) AS found",
        {"site": site, "kind": kind},
    )
    row = await cur.fetchone()
    return bool(row and row["found"])
