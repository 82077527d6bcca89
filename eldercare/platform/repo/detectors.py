"""The inactivity detector's state per resident (``detector_settings``) and what it reads.

Residents are claimed by their home's clock with ``FOR UPDATE SKIP LOCKED``, so each detector runs
on one replica at a time; its learned state is kept as JSON next to the resident's sensitivity.
"""

from __future__ import annotations

import json
from typing import Any

from eldercare.platform.repo.connections import Conn, Row

DETECTOR_METRICS = ["motion", "contact", "in_bed", "power", "press", "steps"]


async def ensure_detectors(conn: Conn, *, detector: str) -> None:
    """A settings row for every resident with a home, so each can be claimed.

    Inserts only the missing rows: every replica runs this every round, and an insert that meets
    another's uncommitted row for the same resident waits for it (under load past the engine's
    lock timeout: ``LockNotAvailable``, and that round judged nobody). In residents' id order, as
    every replica inserts them: two replicas adding the same new residents in different orders
    each waited for the other's row (a deadlock, seen in a repeated test run)."""
    await conn.execute(
        "INSERT INTO detector_settings (resident_id, detector) SELECT r.id, %(d)s FROM residents r"
        " WHERE r.home_site_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM detector_settings d"
        " WHERE d.resident_id = r.id AND d.detector = %(d)s) ORDER BY r.id ON CONFLICT DO NOTHING",
        {"d": detector},
    )


async def claim_detectors(conn: Conn, *, detector: str, now_s: float, limit: int = 20) -> list[Row]:
    """Residents whose detector is due by their home's clock, locked for the caller's transaction
    (other replicas skip).

    ``home_s`` is the home's clock: ``now_s`` (the wall clock) for a real home; for a simulated one
    the newest time its gateways stamped on a report (a status's ``t``, kept by ingest in
    ``gateways.reported_at``; a heartbeat), which is the simulator's clock; never
    ``gateway_status.ts``, which is ingest's arrival time. A
    simulated home none of whose gateways has reported yet is not due: its time is unknown (a run
    may start days behind or ahead of the wall clock).
    """
    cur = await conn.execute(
        """
        WITH clocks AS (
            SELECT g.site_id, max(x.t) AS t
            FROM gateways g JOIN sites gs ON gs.id = g.site_id AND gs.simulated
            CROSS JOIN LATERAL (
                SELECT g.reported_at AS t
                UNION ALL
                SELECT (SELECT max(ts) FROM readings WHERE gateway_id = g.id AND sensor_id = g.id)
            ) x
            GROUP BY g.site_id
        ), homes AS (
            SELECT s.id, s.timezone, s.simulated,
                   CASE WHEN s.simulated THEN extract(epoch FROM c.t)::double precision
                        ELSE %(now)s END AS home_s
            FROM sites s LEFT JOIN clocks c ON c.site_id = s.id
        )
        SELECT d.resident_id, d.sensitivity, d.limits, d.state, extract(epoch FROM d.fitted_at) AS fitted_s,
               r.home_site_id AS site_id, h.timezone, h.simulated, h.home_s,
               EXISTS (SELECT 1 FROM residents o WHERE o.home_site_id = r.home_site_id AND o.id <> r.id)
                   AS shared
        FROM detector_settings d
        JOIN residents r ON r.id = d.resident_id JOIN homes h ON h.id = r.home_site_id
        WHERE d.detector = %(d)s
          AND coalesce((d.state ->> 'due_s')::double precision, 0) <= h.home_s
        ORDER BY d.resident_id FOR UPDATE OF d SKIP LOCKED LIMIT %(limit)s
        """,
        {"d": detector, "now": now_s, "limit": limit},
    )
    return await cur.fetchall()


async def home_readings(
    conn: Conn, *, site: str, after_s: float, until_s: float, kinds: list[str], resident: str | None = None
) -> list[Row]:
    """The home's sensor readings (and gateway heartbeats) in ``(after_s, until_s]``, in time order.

    With ``resident``, of the bed mats only theirs (or one nobody is assigned to): in a home of
    two, the partner's mat would tell the resident's detector they had got up; of the wearables
    (when ``kinds`` asks for them) only theirs, never an unassigned one (the partner's steps).

    Read sensor by sensor (the ``(gateway_id, sensor_id, ts)`` index), only the detector's: a daily
    refit reads three weeks, and scanning the home's readings for them read the wearable's and the
    environment's too, some 75 times as many (a refit took 3 s against 0.13 s on a busy machine, and
    the engine fell hours behind 20 homes at 720x).
    """
    cur = await conn.execute(
        """
        WITH s AS MATERIALIZED (
            SELECT s.gateway_id, s.id, s.kind, s.room
            FROM sensors s JOIN gateways g ON g.id = s.gateway_id
            WHERE g.site_id = %(site)s AND s.kind = ANY(%(kinds)s)
              AND (s.kind <> 'bed' OR s.resident_id IS NULL OR s.resident_id = %(resident)s
                   OR %(resident)s::text IS NULL)
              AND (s.kind <> 'wearable' OR s.resident_id = %(resident)s OR %(resident)s::text IS NULL)
            UNION ALL
            SELECT g.id, g.id, 'heartbeat', NULL FROM gateways g WHERE g.site_id = %(site)s
        )
        SELECT extract(epoch FROM r.ts) AS t, s.kind, s.room, r.value, r.gateway_id, r.sensor_id
        FROM s CROSS JOIN LATERAL (
            SELECT r.ts, r.value, r.gateway_id, r.sensor_id FROM readings r
            WHERE r.gateway_id = s.gateway_id AND r.sensor_id = s.id
              AND r.ts > to_timestamp(%(after)s) AND r.ts <= to_timestamp(%(until)s)
              AND r.metric = ANY(CASE WHEN s.kind = 'heartbeat' THEN ARRAY['heartbeat']
                                      ELSE %(metrics)s::text[] END)
        ) r
        ORDER BY r.ts
        """,
        {
            "site": site,
            "after": after_s,
            "until": until_s,
            "kinds": kinds,
            "metrics": DETECTOR_METRICS,
            "resident": resident,
        },
    )
    return await cur.fetchall()


async def detector_exclusions(
    conn: Conn, *, resident: str, site: str, after_s: float, until_s: float, kinds: list[str]
) -> list[tuple[float, float]]:
    """Periods a detector must not learn as normal: the resident's confirmed incidents of ``kinds``
    (from when the condition began to when it was resolved) and the home's gateway outages, in the
    home's clock (a simulated home's alerts carry ``sim_offset_s``, its clock minus the wall's)."""
    cur = await conn.execute(
        """
        SELECT extract(epoch FROM coalesce(
                   to_timestamp((a.summary ->> 'since_ms')::double precision / 1000), a.detected_at))
                 + coalesce((a.summary ->> 'sim_offset_s')::double precision, 0) AS a_s,
               extract(epoch FROM coalesce(a.resolved_at, to_timestamp(%(until)s)))
                 + coalesce((a.summary ->> 'sim_offset_s')::double precision, 0) AS b_s
        FROM alerts a
        WHERE ((a.resident_id = %(r)s AND a.outcome = 'confirmed' AND a.kind = ANY(%(kinds)s))
               OR (a.site_id = %(site)s AND a.kind IN ('device_offline', 'pipeline_stalled')
                   AND a.sensor_id IS NULL))
          AND a.detected_at <= to_timestamp(%(until)s)
          AND coalesce(a.resolved_at, to_timestamp(%(until)s)) > to_timestamp(%(after)s)
        ORDER BY 1
        """,
        {"r": resident, "site": site, "after": after_s, "until": until_s, "kinds": kinds},
    )
    rows = await cur.fetchall()
    return [(float(r["a_s"]), float(r["b_s"])) for r in rows]


async def save_detector(
    conn: Conn, *, resident: str, detector: str, state: dict[str, Any], fitted_s: float | None
) -> None:
    await conn.execute(
        """
        UPDATE detector_settings SET state = %(state)s::jsonb,
            fitted_at = coalesce(to_timestamp(%(fitted)s), fitted_at)
        WHERE resident_id = %(r)s AND detector = %(d)s
        """,
        {"state": json.dumps(state), "fitted": fitted_s, "r": resident, "d": detector},
    )
