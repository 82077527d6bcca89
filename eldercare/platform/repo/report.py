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

from psycopg import sql

from eldercare.platform.repo import resident_scope, scope_params
from eldercare.platform.repo import thresholds as detector_repo
from eldercare.platform.repo.connections import Conn

if TYPE_CHECKING:
    from eldercare.platform.access import Principal

FALSE_ALARM_FACTOR = 0.85
CONFIRMED_FACTOR = 1.05
MIN_SENSITIVITY = 0.25
MAX_SENSITIVITY = 1.5
# alert kinds raised by a detector of another name: the inactivity detector also raises night
# wandering and "left bed, not back" (eldercare.platform.engine.inactivity.ALERT_KIND), and its
# false alarms must make that detector less sensitive, not a row nothing reads
DETECTOR_OF_KIND = {"night_wandering": "inactivity", "bed_exit_no_return": "inactivity"}


async def care_quality(
    conn: Conn,
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
    # One pass over the period's alerts: every grouping at once (GROUPING SETS), each aggregate
    # ignoring the alerts it does not apply to (NULL durations).
    query = base + sql.SQL(
        """
        , b AS (
            SELECT *, extract(epoch FROM acknowledged_at - tier_at) AS ack_s,
                   extract(epoch FROM resolved_at - opened_at) AS res_s
            FROM a
        )
        SELECT GROUPING(ack_tier, tier, ack_provider, res_provider, kind, resident_id) AS g,
               ack_tier::text AS ack_tier, tier::text AS tier, ack_provider, res_provider, kind, resident_id,
               count(ack_s) AS ack_n,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY ack_s) AS ack_median,
               percentile_cont(0.9) WITHIN GROUP (ORDER BY ack_s) AS ack_p90,
               avg(ack_s) AS ack_mean,
               count(res_s) AS res_n,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY res_s) AS res_median,
               percentile_cont(0.9) WITHIN GROUP (ORDER BY res_s) AS res_p90,
               avg(res_s) AS res_mean,
               count(*) FILTER (WHERE outcome IS NOT NULL) AS resolved,
               count(*) FILTER (WHERE outcome = 'false_alarm') AS false_alarms,
               count(*) AS n
        FROM b
        GROUP BY GROUPING SETS ((ack_tier), (tier), (ack_provider), (res_provider), (kind), (resident_id), ())
        """
    )
    async with conn.transaction():
        await conn.execute("SET LOCAL jit = off")  # a short query; compiling it costs more than it saves
        cur = await conn.execute(query, params)
        rows = await cur.fetchall()
    # GROUPING() sets a bit for each argument left out of the row's set; ack_tier is the high bit
    sets = {31: "ack_tier", 47: "tier", 55: "ack_provider", 59: "res_provider", 61: "kind", 62: "resident_id"}
    by: dict[str, list[dict[str, Any]]] = {name: [] for name in sets.values()}
    total = 0
    for r in rows:
        if r["g"] == 63:
            total = int(r["n"])
        elif r["g"] in sets:
            by[sets[r["g"]]].append(r)

    def stats(rows: list[dict[str, Any]], key: str, p: str) -> dict[str, dict[str, Any]]:
        return {
            str(r[key]): {
                "count": r[f"{p}_n"],
                "median_s": r[f"{p}_median"],
                "p90_s": r[f"{p}_p90"],
                "mean_s": float(r[f"{p}_mean"]) if r[f"{p}_mean"] is not None else None,
            }
            for r in sorted(rows, key=lambda r: str(r[key]))
            if r[key] is not None and r[f"{p}_n"]
        }

    def share(rows: list[dict[str, Any]], key: str) -> dict[str, dict[str, float]]:
        return {
            str(r[key]): {
                "resolved": r["resolved"],
                "false_alarms": r["false_alarms"],
                "share": (r["false_alarms"] / r["resolved"]) if r["resolved"] else 0.0,
            }
            for r in sorted(rows, key=lambda r: str(r[key]))
            if r[key] is not None
        }

    return {
        "alerts": total,
        "ack_by_tier": stats(by["ack_tier"], "ack_tier", "ack"),
        "resolve_by_tier": stats(by["tier"], "tier", "res"),
        "ack_by_provider": stats(by["ack_provider"], "ack_provider", "ack"),
        "resolve_by_provider": stats(by["res_provider"], "res_provider", "res"),
        "false_alarm_by_kind": share(by["kind"], "kind"),
        "false_alarm_by_resident": share(by["resident_id"], "resident_id"),
    }


async def record_outcome_feedback(
    conn: Conn,
    *,
    resident_id: str,
    kind: str,
    outcome: str,
    alert_id: int | None = None,
    actor: int | None = None,
) -> float | None:
    """Nudge the resident's sensitivity for the detector of alert ``kind`` by one outcome; returns it.

    The change is recorded in the resident's threshold history (with the alert and who resolved
    it), where a care worker sees it and may undo it. Called by :func:`apply_feedback` for every
    resolved alert exactly once; call it directly only for outcomes that do not come from a
    resolved alert row (or they are counted twice).
    """
    factor = {"false_alarm": FALSE_ALARM_FACTOR, "confirmed": CONFIRMED_FACTOR}.get(outcome)
    if factor is None:
        return None
    return await detector_repo.nudge_sensitivity(
        conn, resident=resident_id, detector=DETECTOR_OF_KIND.get(kind, kind), factor=factor,
        lo=MIN_SENSITIVITY, hi=MAX_SENSITIVITY, alert_id=alert_id, outcome=outcome, actor=actor,
    )  # fmt: skip


async def apply_feedback(conn: Conn, *, limit: int = 1000) -> int:
    """Feed back the outcomes of resolved alerts not fed back yet; returns how many were applied.

    Each alert is claimed by inserting its id into ``outcome_feedback`` (primary key) in the same
    transaction as the update, so concurrent replicas never count an outcome twice.
    """
    async with conn.transaction():
        cur = await conn.execute(
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
            SELECT a.id, a.resident_id, a.kind, a.outcome, a.resolved_by
            FROM alerts a JOIN ins ON ins.alert_id = a.id
            ORDER BY a.id
            """,
            {"limit": limit},
        )
        claimed = await cur.fetchall()
        for r in claimed:
            await record_outcome_feedback(
                conn, resident_id=r["resident_id"], kind=r["kind"], outcome=r["outcome"], alert_id=r["id"],
                actor=r["resolved_by"],
            )  # fmt: skip
    return len(claimed)
