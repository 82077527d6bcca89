"""SQL of the care-quality report and of the outcome feedback into detector sensitivity.

Feedback: each resolved alert's outcome nudges ``detector_settings.sensitivity`` of that resident
and detector (the alert kind): a false alarm lowers it, a confirmed one raises it back, within
bounds. Detectors scale their thresholds by it. It runs as a periodic job (:func:`apply_feedback`)
that any replica may run: each resolved alert is claimed in ``outcome_feedback`` so it is counted
exactly once, whoever resolved it and however many replicas run.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row

from eldercare.platform.repo import resident_scope, scope_params

if TYPE_CHECKING:
    from eldercare.platform.access import Principal

FALSE_ALARM_FACTOR = 0.85
CONFIRMED_FACTOR = 1.05
MIN_SENSITIVITY = 0.25
MAX_SENSITIVITY = 1.5


async def _all(conn: AsyncConnection[Any], query: Any, params: dict[str, Any]) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        return await cur.fetchall()


_STATS = """count(*) AS count,
    percentile_cont(0.5) WITHIN GROUP (ORDER BY {x}) AS median_s,
    percentile_cont(0.9) WITHIN GROUP (ORDER BY {x}) AS p90_s,
    avg({x}) AS mean_s"""


async def care_quality(
    conn: AsyncConnection[Any],
    *,
    user: Principal,
    since: datetime,
    until: datetime,
    provider_id: str | None = None,
) -> dict[str, Any]:
    """Times to acknowledge and resolve per tier and per provider; false-alarm shares.

    Time to acknowledge per tier is measured from when that tier was reached (opened for tier 1,
    escalated for later tiers) to the acknowledgement; per provider, by the acknowledging person's
    provider ('family' for family members).
    """
    base = sql.SQL(
        """
        WITH a AS (
            SELECT al.*, coalesce(ack.tier, al.tier) AS ack_tier,
                   coalesce((SELECT min(t.at) FROM alert_trail t WHERE t.alert_id = al.id
                             AND t.tier = coalesce(ack.tier, al.tier)
                             AND t.action IN ('opened', 'escalated', 'notified')), al.opened_at) AS tier_at,
                   coalesce(au.provider_id, CASE WHEN au.role = 'family' THEN 'family' END,
                            'other') AS ack_provider,
                   coalesce(ru.provider_id, CASE WHEN ru.role = 'family' THEN 'family' END,
                            CASE WHEN al.resolved_by IS NULL THEN 'automatic' END, 'other') AS res_provider
            FROM alerts al
            LEFT JOIN residents r ON r.id = al.resident_id
            LEFT JOIN LATERAL (SELECT t.tier FROM alert_trail t WHERE t.alert_id = al.id
                               AND t.action = 'acknowledged' ORDER BY t.at LIMIT 1) ack ON true
            LEFT JOIN users au ON au.id = al.acknowledged_by
            LEFT JOIN users ru ON ru.id = al.resolved_by
            WHERE al.opened_at >= %(since)s AND al.opened_at < %(until)s AND NOT al.simulated
              AND (al.resident_id IS NULL AND %(admin)s OR r.id IS NOT NULL AND {scope})
              AND (%(provider)s::text IS NULL OR r.home_care_provider_id = %(provider)s
                   OR r.institution_provider_id = %(provider)s
                   OR EXISTS (SELECT 1 FROM sites st WHERE st.id = r.station_site_id
                              AND st.provider_id = %(provider)s))
        )
        """
    ).format(scope=resident_scope(user))
    params = {
        **scope_params(user),
        "since": since,
        "until": until,
        "provider": provider_id,
        "admin": user.role == "admin",
    }
    ack = sql.SQL(_STATS.format(x="extract(epoch FROM acknowledged_at - tier_at)"))
    res = sql.SQL(_STATS.format(x="extract(epoch FROM resolved_at - opened_at)"))

    async def grouped(stats: sql.Composable, key: str, cond: str) -> dict[str, dict[str, Any]]:
        q = base + sql.SQL("SELECT {k}::text AS key, {s} FROM a WHERE {c} GROUP BY 1 ORDER BY 1").format(
            k=sql.SQL(key), s=stats, c=sql.SQL(cond)
        )
        return {r.pop("key"): r for r in await _all(conn, q, params)}

    out: dict[str, Any] = {
        "ack_by_tier": await grouped(ack, "ack_tier", "acknowledged_at IS NOT NULL"),
        "resolve_by_tier": await grouped(res, "tier", "resolved_at IS NOT NULL"),
        "ack_by_provider": await grouped(ack, "ack_provider", "acknowledged_at IS NOT NULL"),
        "resolve_by_provider": await grouped(res, "res_provider", "resolved_at IS NOT NULL"),
    }
    share = sql.SQL(
        "count(*) FILTER (WHERE outcome IS NOT NULL) AS resolved,"
        " count(*) FILTER (WHERE outcome = 'false_alarm') AS false_alarms"
    )
    for name, key in (("false_alarm_by_kind", "kind"), ("false_alarm_by_resident", "resident_id")):
        q = base + sql.SQL(
            "SELECT {k} AS key, {s} FROM a WHERE {k} IS NOT NULL GROUP BY 1 ORDER BY 1"
        ).format(k=sql.Identifier(key), s=share)
        out[name] = {
            r["key"]: {
                "resolved": r["resolved"],
                "false_alarms": r["false_alarms"],
                "share": (r["false_alarms"] / r["resolved"]) if r["resolved"] else 0.0,
            }
            for r in await _all(conn, q, params)
        }
    total = await _all(conn, base + sql.SQL("SELECT count(*) AS n FROM a"), params)
    out["alerts"] = int(total[0]["n"])
    return out


async def record_outcome_feedback(
    conn: AsyncConnection[Any], *, resident_id: str, kind: str, outcome: str
) -> float | None:
    """Nudge the resident's sensitivity for detector ``kind`` by one outcome; returns the new value.

    Called by :func:`apply_feedback` for every resolved alert exactly once; call it directly only
    for outcomes that do not come from a resolved alert row (or they are counted twice).
    """
    factor = {"false_alarm": FALSE_ALARM_FACTOR, "confirmed": CONFIRMED_FACTOR}.get(outcome)
    if factor is None:
        return None
    async with conn.cursor() as cur:
        await cur.execute(
            "INSERT INTO detector_settings (resident_id, detector, sensitivity)"
            " VALUES (%(r)s, %(k)s, least(greatest(%(f)s, %(lo)s), %(hi)s))"
            " ON CONFLICT (resident_id, detector) DO UPDATE SET sensitivity ="
            " least(greatest(detector_settings.sensitivity * %(f)s, %(lo)s), %(hi)s)"
            " RETURNING sensitivity",
            {"r": resident_id, "k": kind, "f": factor, "lo": MIN_SENSITIVITY, "hi": MAX_SENSITIVITY},
        )
        row = await cur.fetchone()
    return float(row[0]) if row else None


async def apply_feedback(conn: AsyncConnection[Any], *, limit: int = 1000) -> int:
    """Feed back the outcomes of resolved alerts not fed back yet; returns how many were applied.

    Each alert is claimed by inserting its id into ``outcome_feedback`` (primary key) in the same
    transaction as the update, so concurrent replicas never count an outcome twice.
    """
    async with conn.transaction():
        claimed = await _all(
            conn,
            """
            WITH todo AS (
                SELECT a.id FROM alerts a
                WHERE a.state = 'resolved' AND a.outcome IS NOT NULL AND a.resident_id IS NOT NULL
                  AND NOT EXISTS (SELECT 1 FROM outcome_feedback f WHERE f.alert_id = a.id)
                ORDER BY a.id LIMIT %(limit)s
            ), ins AS (
                INSERT INTO outcome_feedback (alert_id) SELECT id FROM todo
                ON CONFLICT DO NOTHING RETURNING alert_id
            )
            SELECT a.resident_id, a.kind, a.outcome FROM alerts a JOIN ins ON ins.alert_id = a.id
            ORDER BY a.id
            """,
            {"limit": limit},
        )
        for r in claimed:
            await record_outcome_feedback(
                conn, resident_id=r["resident_id"], kind=r["kind"], outcome=r["outcome"]
            )
    return len(claimed)
