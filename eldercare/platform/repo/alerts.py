"""All alert SQL: claiming work, opening or joining alerts, escalation, acknowledgement, the trail.

Every function takes an open connection and runs inside the caller's transaction, so the engine
can claim work and write its consequences atomically: a crash between the two loses nothing and
does nothing twice. Work and due escalations are claimed with ``FOR UPDATE SKIP LOCKED``, so any
number of replicas can run the engine side by side.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from psycopg import sql

from eldercare.kinds import DEVICE_ALERT_KINDS, OPERATOR_ALERT_KINDS
from eldercare.platform.decisions import DEFAULT_POLICY, DEVICE_POLICY, OPERATOR_POLICY, Open, Tier
from eldercare.platform.repo.connections import Conn, Row

ALERT_COLUMNS = """
    a.id, a.kind, a.severity, a.state, a.resident_id, a.site_id, a.gateway_id, a.sensor_id, a.title,
    a.summary, a.detected_at, a.opened_at, a.last_detected_at, a.detections, a.tier,
    a.next_escalation_at, a.acknowledged_at, a.acknowledged_by, a.resolved_at, a.resolved_by,
    a.outcome, a.simulated, a.updated_at
"""


_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def jsonb(value: Any) -> str:
    """JSON text PostgreSQL's jsonb accepts, whatever a gateway sent as evidence.

    jsonb refuses NUL characters, lone surrogates and non-finite numbers; deep nesting stops
    Python's encoder. Rather than lose the alert, the odd value is replaced by a note saying why.
    """
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
        text.encode("utf-8")
    except (ValueError, TypeError, RecursionError, UnicodeEncodeError) as exc:
        return json.dumps({"unreadable": f"{type(exc).__name__}: {str(exc)[:200]}"})
    return _NUL.sub(r"\1\\\\0", text)  # an escaped NUL becomes the two characters \0


# Work -----------------------------------------------------------------------------------------


async def claim_work(conn: Conn, *, limit: int = 100) -> list[Row]:
    """Lock at most ``limit`` due work rows for the caller's transaction, oldest first.

    The ids are picked in a ``MATERIALIZED`` CTE: as a plain ``IN (subquery)`` the planner may run
    the ``LIMIT`` subquery once per row and the window slides through the whole queue (a 500-item
    storm was claimed, and made to wait, in one transaction). The payload comes back as text, and its
    evidence apart, so an item too odd to parse fails (or loses only its evidence) on its own.
    """
    cur = await conn.execute(
        """
        WITH picked AS MATERIALIZED (
            SELECT id FROM alert_work WHERE failed_at IS NULL AND next_attempt_at <= now()
            ORDER BY id FOR UPDATE SKIP LOCKED LIMIT %(limit)s
        )
        SELECT w.id, w.kind, w.gateway_id, w.site_id, w.attempts,
               (w.payload - 'evidence')::text AS payload, (w.payload -> 'evidence')::text AS evidence
        FROM alert_work w JOIN picked USING (id) ORDER BY w.id
        """,
        {"limit": limit},
    )
    return await cur.fetchall()


async def finish_work(conn: Conn, *, work_id: int) -> None:
    await conn.execute("DELETE FROM alert_work WHERE id = %(id)s", {"id": work_id})


async def fail_work(conn: Conn, *, work_id: int, error: str, retry_in_s: float, max_attempts: int) -> bool:
    """Count a failed attempt: retried after ``retry_in_s``, or set aside after ``max_attempts``.

    Returns True when the item was set aside (it is then never claimed again, and kept for admins).
    """
    cur = await conn.execute(
        """
        UPDATE alert_work SET attempts = attempts + 1, last_error = %(error)s,
            next_attempt_at = now() + make_interval(secs => %(retry)s),
            failed_at = CASE WHEN attempts + 1 >= %(max)s THEN now() END
        WHERE id = %(id)s RETURNING failed_at IS NOT NULL AS set_aside
        """,
        {"id": work_id, "error": error, "retry": retry_in_s, "max": max_attempts},
    )
    row = await cur.fetchone()
    return bool(row and row["set_aside"])


async def failed_work(conn: Conn, *, limit: int, before_id: int | None) -> list[Row]:
    """Work items set aside, newest first (keyset pages by id)."""
    cur = await conn.execute(
        """
        SELECT id, created_at, kind, gateway_id, site_id, payload, attempts, last_error, failed_at
        FROM alert_work WHERE failed_at IS NOT NULL AND (%(before)s::bigint IS NULL OR id < %(before)s)
        ORDER BY id DESC LIMIT %(limit)s
        """,
        {"limit": limit, "before": before_id},
    )
    return await cur.fetchall()


async def retry_failed_work(conn: Conn, *, work_id: int) -> bool:
    """Put a set-aside item back on the queue (after a fix), with a fresh count of attempts."""
    cur = await conn.execute(
        "UPDATE alert_work SET failed_at = NULL, attempts = 0, next_attempt_at = now()"
        " WHERE id = %(id)s AND failed_at IS NOT NULL RETURNING id",
        {"id": work_id},
    )
    row = await cur.fetchone()
    if row is not None:
        await conn.execute("SELECT pg_notify('alert_work', %(id)s)", {"id": str(work_id)})
    return row is not None


async def engine_counts(conn: Conn) -> Row:
    """What ``/metrics`` reports from the database: queue depth, items set aside, deliveries."""
    cur = await conn.execute(
        """
        SELECT (SELECT count(*) FROM alert_work WHERE failed_at IS NULL) AS work_queued,
               (SELECT count(*) FROM alert_work WHERE failed_at IS NOT NULL) AS work_failed,
               (SELECT count(*) FROM alert_work WHERE failed_at IS NULL AND attempts > 0)
                   AS work_retrying,
               (SELECT count(*) FROM notifications WHERE status = 'gave_up') AS deliveries_gave_up,
               (SELECT count(*) FROM notifications WHERE status = 'failed') AS deliveries_retrying,
               (SELECT count(*) FROM alerts WHERE state = 'open' AND next_escalation_at <= now())
                   AS escalations_due
        """,
        {},
    )
    row = await cur.fetchone()
    assert row is not None
    return row


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


# Opening and joining --------------------------------------------------------------------------


async def open_or_join(conn: Conn, *, decision: Open, simulated: bool) -> tuple[int, bool]:
    """Insert the alert, or count one more detection on the live one; returns (id, opened)."""
    cur = await conn.execute(
        """
        INSERT INTO alerts (kind, severity, resident_id, site_id, gateway_id, sensor_id, dedup_key, title,
                            summary, evidence, detected_at, simulated)
        VALUES (%(kind)s, %(severity)s, %(resident)s, %(site)s, %(gateway)s, %(sensor)s, %(key)s,
                %(title)s, %(summary)s::jsonb, %(evidence)s::jsonb,
                to_timestamp(%(detected_ms)s / 1000.0), %(simulated)s)
        ON CONFLICT (dedup_key) WHERE state <> 'resolved' DO UPDATE
            SET detections = alerts.detections + 1, last_detected_at = now(), updated_at = now()
        RETURNING id, (xmax = 0) AS opened
        """,
        {
            "kind": decision.kind,
            "severity": decision.severity,
            "resident": decision.resident_id,
            "site": decision.site_id,
            "gateway": decision.gateway_id,
            "sensor": decision.sensor_id,
            "key": decision.dedup_key,
            "title": decision.title,
            "summary": jsonb(decision.summary),
            "evidence": jsonb(decision.evidence),
            "detected_ms": decision.detected_ms,
            "simulated": simulated,
        },
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row["id"]), bool(row["opened"])


async def site_is_simulated(conn: Conn, *, site: str) -> bool:
    cur = await conn.execute("SELECT simulated FROM sites WHERE id = %(site)s", {"site": site})
    row = await cur.fetchone()
    return bool(row and row["simulated"])


async def live_alert_id(conn: Conn, *, dedup_key: str) -> int | None:
    cur = await conn.execute(
        "SELECT id FROM alerts WHERE dedup_key = %(k)s AND state <> 'resolved'", {"k": dedup_key}
    )
    row = await cur.fetchone()
    return int(row["id"]) if row else None


async def auto_resolve(conn: Conn, *, dedup_key: str, reason: str) -> int | None:
    """Resolve a device problem whose condition cleared; returns the alert id if there was one."""
    cur = await conn.execute(
        """
        UPDATE alerts SET state = 'resolved', resolved_at = now(), outcome = 'no_action_needed',
                          next_escalation_at = NULL, updated_at = now()
        WHERE dedup_key = %(k)s AND state <> 'resolved' RETURNING id
        """,
        {"k": dedup_key},
    )
    row = await cur.fetchone()
    if row is None:
        return None
    await trail(conn, alert_id=row["id"], action="auto_resolved", detail={"reason": reason})
    return int(row["id"])


async def trail(
    conn: Conn,
    *,
    alert_id: int,
    action: str,
    tier: int | None = None,
    actor: int | None = None,
    detail: dict[str, Any] | None = None,
    note: str | None = None,
) -> None:
    await conn.execute(
        """
        INSERT INTO alert_trail (alert_id, action, tier, actor_user_id, detail, note)
        VALUES (%(a)s, %(action)s, %(tier)s, %(actor)s, %(detail)s::jsonb, %(note)s)
        """,
        {
            "a": alert_id,
            "action": action,
            "tier": tier,
            "actor": actor,
            "detail": json.dumps(detail or {}, ensure_ascii=False),
            "note": note,
        },
    )


# Escalation -----------------------------------------------------------------------------------


async def policy_for(conn: Conn, *, kind: str, resident: str | None) -> tuple[Tier, ...]:
    """The resident's escalation tiers (or the defaults); device problems use the device policy."""
    if kind in DEVICE_ALERT_KINDS:
        return DEVICE_POLICY
    if kind in OPERATOR_ALERT_KINDS:
        return OPERATOR_POLICY
    if resident is None:
        return DEFAULT_POLICY
    cur = await conn.execute(
        """
        SELECT t.tier, t.name, t.targets, t.ack_timeout_s FROM escalation_tiers t
        JOIN residents r ON r.escalation_policy_id = t.policy_id
        WHERE r.id = %(r)s ORDER BY t.tier
        """,
        {"r": resident},
    )
    rows = await cur.fetchall()
    if not rows:
        return DEFAULT_POLICY
    return tuple(Tier(r["tier"], r["name"], tuple(r["targets"]), r["ack_timeout_s"]) for r in rows)


async def recipients(
    conn: Conn, *, targets: tuple[str, ...], resident: str | None, site: str | None
) -> list[Row]:
    """Users a tier's targets name right now: family, assigned workers, whoever is on duty."""
    providers = [t.removeprefix("provider:") for t in targets if t.startswith("provider:")]
    cur = await conn.execute(
        """
        WITH r AS (
            SELECT res.id, res.home_care_provider_id, res.institution_provider_id,
                   st.provider_id AS station_provider
            FROM residents res LEFT JOIN sites st ON st.id = res.station_site_id
            WHERE res.id = %(resident)s
               OR (%(resident)s::text IS NULL AND res.home_site_id = %(site)s)
        ),
        on_duty AS (
            SELECT s.provider_id, s.user_id FROM oncall_shifts s
            WHERE now() >= s.starts_at AND now() < s.ends_at
        ),
        picked AS (
            SELECT f.user_id, 'family' AS target FROM family_links f JOIN r ON r.id = f.resident_id
            WHERE 'family' = ANY(%(targets)s)
            UNION SELECT c.user_id, 'assigned_worker' FROM care_assignments c JOIN r ON r.id = c.resident_id
            WHERE 'assigned_worker' = ANY(%(targets)s)
            UNION SELECT d.user_id, 'station_on_duty' FROM on_duty d
            JOIN r ON d.provider_id = r.station_provider
            WHERE 'station_on_duty' = ANY(%(targets)s)
            UNION SELECT d.user_id, 'institution_on_duty' FROM on_duty d
            JOIN r ON d.provider_id = r.institution_provider_id
            WHERE 'institution_on_duty' = ANY(%(targets)s)
            UNION SELECT d.user_id, 'home_care_on_duty' FROM on_duty d
            JOIN r ON d.provider_id = r.home_care_provider_id
            WHERE 'home_care_on_duty' = ANY(%(targets)s)
            UNION SELECT d.user_id, 'provider:' || d.provider_id FROM on_duty d
            WHERE d.provider_id = ANY(%(providers)s)
            UNION SELECT a.id, 'admins' FROM users a WHERE a.role = 'admin' AND 'admins' = ANY(%(targets)s)
        )
        SELECT DISTINCT ON (u.id) u.id AS user_id, u.username, u.display_name, u.email, u.phone,
               u.provider_id, p.target
        FROM picked p JOIN users u ON u.id = p.user_id WHERE u.active
        ORDER BY u.id, p.target
        """,
        {"resident": resident, "site": site, "targets": list(targets), "providers": providers},
    )
    return await cur.fetchall()


async def notify_tier(
    conn: Conn,
    *,
    alert_id: int,
    tier: Tier,
    resident: str | None,
    site: str | None,
    email: bool = False,
) -> list[int]:
    """Record a notification for each person of the tier and tell every replica (NOTIFY).

    Also queues a signed webhook for each provider (with a ``webhook_url``) whose people are in the
    tier, and with ``email`` an e-mail to each person with an address; the delivery worker sends them.
    """
    people = await recipients(conn, targets=tier.targets, resident=resident, site=site)
    users = [p["user_id"] for p in people]
    if users:
        async with conn.cursor() as cur:
            await cur.executemany(
                """
                INSERT INTO notifications (alert_id, user_id, tier, channel, target, status, attempts)
                VALUES (%(a)s, %(u)s, %(tier)s, 'websocket', %(target)s, 'sent', 1)
                """,
                [
                    {"a": alert_id, "u": p["user_id"], "tier": tier.tier, "target": p["target"]}
                    for p in people
                ],
            )
    await enqueue_deliveries(conn, alert_id=alert_id, tier=tier.tier, users=users, email=email)
    await trail(
        conn,
        alert_id=alert_id,
        action="notified",
        tier=tier.tier,
        detail={
            "tier_name": tier.name,
            "targets": list(tier.targets),
            "users": [p["username"] for p in people],
        },
    )
    await publish(conn, alert_id=alert_id, event="notified", users=users)
    return users


async def publish(conn: Conn, *, alert_id: int, event: str, users: list[int] | None = None) -> None:
    """``NOTIFY alerts``: delivered at commit to every replica's WebSocket hub."""
    payload = json.dumps({"alert": alert_id, "event": event, "users": users or []})
    await conn.execute("SELECT pg_notify('alerts', %(p)s)", {"p": payload})


async def set_escalation(conn: Conn, *, alert_id: int, tier: int, due: datetime | None) -> None:
    await conn.execute(
        "UPDATE alerts SET tier = %(tier)s, next_escalation_at = %(due)s, updated_at = now() "
        "WHERE id = %(a)s",
        {"tier": tier, "due": due, "a": alert_id},
    )


async def claim_due_escalations(conn: Conn, *, now: datetime | None = None, limit: int = 100) -> list[Row]:
    """Open alerts whose acknowledgement deadline passed by ``now``, locked for this transaction."""
    cur = await conn.execute(
        """
        SELECT id, kind, tier, resident_id, site_id, next_escalation_at FROM alerts
        WHERE state = 'open' AND next_escalation_at <= coalesce(%(now)s, now())
        ORDER BY next_escalation_at FOR UPDATE SKIP LOCKED LIMIT %(limit)s
        """,
        {"limit": limit, "now": now},
    )
    return await cur.fetchall()


async def next_escalation_at(conn: Conn) -> datetime | None:
    """The earliest pending deadline (the escalation loop sleeps until then)."""
    cur = await conn.execute("SELECT min(next_escalation_at) AS due FROM alerts WHERE state = 'open'", {})
    row = await cur.fetchone()
    return row["due"] if row else None


# People acting on alerts ----------------------------------------------------------------------


async def acknowledge(conn: Conn, *, alert_id: int, user_id: int) -> Row | None:
    """Open -> acknowledged; stops the climb. None if the alert is not open."""
    cur = await conn.execute(
        """
        UPDATE alerts SET state = 'acknowledged', acknowledged_at = now(), acknowledged_by = %(u)s,
                          next_escalation_at = NULL, updated_at = now()
        WHERE id = %(a)s AND state = 'open' RETURNING id, tier
        """,
        {"a": alert_id, "u": user_id},
    )
    row = await cur.fetchone()
    if row is not None:
        await trail(conn, alert_id=alert_id, action="acknowledged", tier=row["tier"], actor=user_id)
        await publish(conn, alert_id=alert_id, event="acknowledged")
    return row


async def mark_seen(
    conn: Conn, *, alert_id: int, user_id: int, on_my_way: bool, note: str | None
) -> Row | None:
    """A family member has seen the alert (and may be on their way): recorded in the trail and
    pushed, but the alert stays ``open`` and keeps its escalation deadline, so professionals are
    still called until a care worker acknowledges. None if the alert is resolved."""
    cur = await conn.execute(
        "SELECT id, tier FROM alerts WHERE id = %(a)s AND state <> 'resolved' FOR UPDATE",
        {"a": alert_id},
    )
    row = await cur.fetchone()
    if row is not None:
        await trail(
            conn, alert_id=alert_id, action="family_seen", tier=row["tier"], actor=user_id,
            detail={"on_my_way": on_my_way}, note=note,
        )  # fmt: skip
        await publish(conn, alert_id=alert_id, event="family_seen")
    return row


async def family_ack_stops(conn: Conn, *, alert_id: int) -> bool:
    """Whether the alert's resident's policy lets a family acknowledgement stop escalation."""
    cur = await conn.execute(
        "SELECT p.family_ack_stops FROM alerts a JOIN residents r ON r.id = a.resident_id"
        " JOIN escalation_policies p ON p.id = r.escalation_policy_id WHERE a.id = %(a)s",
        {"a": alert_id},
    )
    row = await cur.fetchone()
    return bool(row and row["family_ack_stops"])


async def resolve(conn: Conn, *, alert_id: int, user_id: int, outcome: str, note: str | None) -> Row | None:
    """Open or acknowledged -> resolved with an outcome. None if already resolved."""
    cur = await conn.execute(
        """
        UPDATE alerts SET state = 'resolved', resolved_at = now(), resolved_by = %(u)s, outcome = %(o)s,
                          acknowledged_at = coalesce(acknowledged_at, now()),
                          acknowledged_by = coalesce(acknowledged_by, %(u)s),
                          next_escalation_at = NULL, updated_at = now()
        WHERE id = %(a)s AND state <> 'resolved' RETURNING id, tier
        """,
        {"a": alert_id, "u": user_id, "o": outcome},
    )
    row = await cur.fetchone()
    if row is not None:
        await trail(
            conn, alert_id=alert_id, action="resolved", tier=row["tier"], actor=user_id,
            detail={"outcome": outcome}, note=note,
        )  # fmt: skip
        await publish(conn, alert_id=alert_id, event="resolved")
    return row


async def add_note(conn: Conn, *, alert_id: int, user_id: int, note: str) -> None:
    await trail(conn, alert_id=alert_id, action="note", actor=user_id, note=note)
    await publish(conn, alert_id=alert_id, event="note")


# Reading --------------------------------------------------------------------------------------


async def get(conn: Conn, *, alert_id: int) -> Row | None:
    query = (
        f"SELECT {ALERT_COLUMNS}, a.evidence, r.name AS resident_name FROM alerts a "
        "LEFT JOIN residents r ON r.id = a.resident_id WHERE a.id = %(a)s"
    )
    cur = await conn.execute(query, {"a": alert_id})
    return await cur.fetchone()


async def trail_of(conn: Conn, *, alert_id: int) -> list[Row]:
    cur = await conn.execute(
        """
        SELECT t.at, t.action, t.tier, t.detail, t.note, u.username AS actor
        FROM alert_trail t LEFT JOIN users u ON u.id = t.actor_user_id
        WHERE t.alert_id = %(a)s ORDER BY t.at, t.id
        """,
        {"a": alert_id},
    )
    return await cur.fetchall()


async def notifications_of(conn: Conn, *, alert_id: int) -> list[Row]:
    cur = await conn.execute(
        """
        SELECT n.tier, n.channel, n.target, n.status, n.attempts, n.created_at, n.delivered_at,
               u.username, u.display_name
        FROM notifications n LEFT JOIN users u ON u.id = n.user_id
        WHERE n.alert_id = %(a)s ORDER BY n.created_at, n.id
        """,
        {"a": alert_id},
    )
    return await cur.fetchall()


async def list_visible(
    conn: Conn,
    *,
    user_id: int,
    role: str,
    provider_id: str | None,
    state: str | None,
    kind: str | None,
    site: str | None,
    resident: str | None,
    tier: int | None,
    limit: int,
    offset: int,
) -> list[Row]:
    """Alerts the user may see (same scope rules as ``eldercare.platform.access``), newest first."""
    filters: list[sql.Composable] = [sql.SQL("TRUE")]
    params: dict[str, Any] = {"uid": user_id, "prov": provider_id, "limit": limit, "offset": offset}
    for name, value in (("state", state), ("kind", kind), ("site_id", site), ("resident_id", resident),
                        ("tier", tier)):  # fmt: skip
        if value is not None:
            filters.append(sql.SQL("a.{} = {}").format(sql.Identifier(name), sql.Placeholder(name)))
            params[name] = value
    scope = {
        "admin": "TRUE",
        "tester": "a.simulated",
        "family": """a.resident_id IN (SELECT resident_id FROM family_links WHERE user_id = %(uid)s)""",
        "care_worker": """(
            a.resident_id IN (
                SELECT r.id FROM residents r LEFT JOIN sites st ON st.id = r.station_site_id
                WHERE r.home_care_provider_id = %(prov)s OR r.institution_provider_id = %(prov)s
                   OR st.provider_id = %(prov)s
                   OR r.id IN (SELECT resident_id FROM care_assignments WHERE user_id = %(uid)s))
            OR (a.resident_id IS NULL AND a.site_id IN (
                SELECT r.home_site_id FROM residents r
                WHERE r.home_care_provider_id = %(prov)s
                   OR r.id IN (SELECT resident_id FROM care_assignments WHERE user_id = %(uid)s)))
        )""",
    }[role]
    query = sql.SQL(
        "SELECT " + ALERT_COLUMNS + ", r.name AS resident_name FROM alerts a "
        "LEFT JOIN residents r ON r.id = a.resident_id "
        "WHERE " + scope + " AND {} ORDER BY a.opened_at DESC, a.id DESC LIMIT %(limit)s OFFSET %(offset)s"
    ).format(sql.SQL(" AND ").join(filters))
    cur = await conn.execute(query, params)
    return await cur.fetchall()


async def gateways_for_heartbeat_check(conn: Conn, *, since: datetime) -> list[Row]:
    """Each gateway's presence and the time of its last heartbeat reading in the database."""
    cur = await conn.execute(
        """
        SELECT g.id, g.site_id, g.state, g.state_at,
               (SELECT max(ts) FROM readings r
                WHERE r.gateway_id = g.id AND r.sensor_id = g.id AND r.metric = 'heartbeat'
                  AND r.ts >= %(since)s) AS last_heartbeat
        FROM gateways g
        """,
        {"since": since},
    )
    return await cur.fetchall()


def now() -> datetime:
    return datetime.now(UTC)


# Live pushes ----------------------------------------------------------------------------------


async def push_summary(conn: Conn, *, alert_id: int) -> Row | None:
    """What a console needs to show an alert without another request."""
    cur = await conn.execute(
        f"SELECT {ALERT_COLUMNS}, r.name AS resident_name FROM alerts a"
        " LEFT JOIN residents r ON r.id = a.resident_id WHERE a.id = %(a)s",
        {"a": alert_id},
    )
    return await cur.fetchone()


async def audience(conn: Conn, *, alert_id: int, users: list[int]) -> list[int]:
    """Those of ``users`` who may see this alert (the scope of :func:`list_visible`, per user)."""
    if not users:
        return []
    cur = await conn.execute(
        """
        SELECT u.id FROM users u
        CROSS JOIN alerts a
        LEFT JOIN residents r ON r.id = a.resident_id
        LEFT JOIN sites st ON st.id = r.station_site_id
        WHERE a.id = %(a)s AND u.id = ANY(%(users)s) AND u.active AND (
            u.role = 'admin'
            OR (u.role = 'tester' AND a.simulated)
            OR (u.role = 'family' AND EXISTS (
                SELECT 1 FROM family_links f WHERE f.user_id = u.id AND f.resident_id = a.resident_id))
            OR (u.role = 'care_worker' AND (
                r.home_care_provider_id = u.provider_id OR r.institution_provider_id = u.provider_id
                OR st.provider_id = u.provider_id
                OR EXISTS (SELECT 1 FROM care_assignments c
                           WHERE c.user_id = u.id AND c.resident_id = a.resident_id)
                OR (a.resident_id IS NULL AND EXISTS (
                    SELECT 1 FROM residents r2 WHERE r2.home_site_id = a.site_id
                      AND (r2.home_care_provider_id = u.provider_id
                           OR EXISTS (SELECT 1 FROM care_assignments c2
                                      WHERE c2.user_id = u.id AND c2.resident_id = r2.id))))
            ))
        )
        """,
        {"a": alert_id, "users": users},
    )
    rows = await cur.fetchall()
    return [int(r["id"]) for r in rows]


# Webhooks and e-mail --------------------------------------------------------------------------


async def enqueue_deliveries(conn: Conn, *, alert_id: int, tier: int, users: list[int], email: bool) -> None:
    """Pending rows for the delivery worker: one webhook per provider, one e-mail per person."""
    if not users:
        return
    await conn.execute(
        """
        INSERT INTO notifications (alert_id, user_id, tier, channel, target, status)
        SELECT %(a)s, NULL, %(tier)s, 'webhook', p.id, 'pending' FROM providers p
        WHERE p.webhook_url IS NOT NULL AND p.webhook_url <> ''
          AND p.id IN (SELECT provider_id FROM users WHERE id = ANY(%(users)s))
        UNION ALL
        SELECT %(a)s, u.id, %(tier)s, 'email', u.email, 'pending' FROM users u
        WHERE %(email)s AND u.id = ANY(%(users)s) AND coalesce(u.email, '') <> ''
        """,
        {"a": alert_id, "tier": tier, "users": users, "email": email},
    )


async def claim_deliveries(
    conn: Conn,
    *,
    channels: list[str],
    lease_s: float,
    limit: int = 20,
    now: datetime | None = None,
) -> list[Row]:
    """Due webhook/e-mail rows, leased for ``lease_s`` (a crashed sender's rows come back after it).

    The attempt is counted at the claim, so a sender that dies mid-attempt still used one.
    """
    cur = await conn.execute(
        """
        UPDATE notifications n
        SET attempts = n.attempts + 1,
            next_attempt_at = coalesce(%(now)s, now()) + make_interval(secs => %(lease)s)
        WHERE n.id IN (
            SELECT id FROM notifications
            WHERE channel = ANY(%(channels)s) AND status IN ('pending', 'failed')
              AND next_attempt_at <= coalesce(%(now)s, now())
            ORDER BY next_attempt_at FOR UPDATE SKIP LOCKED LIMIT %(limit)s
        )
        RETURNING n.id, n.alert_id, n.user_id, n.tier, n.channel, n.target, n.attempts
        """,
        {"channels": channels, "lease": lease_s, "limit": limit, "now": now},
    )
    return await cur.fetchall()


async def record_delivery(
    conn: Conn,
    *,
    notification_id: int,
    ok: bool,
    error: str | None = None,
    retry_in_s: float = 0.0,
    max_attempts: int = 8,
    now: datetime | None = None,
) -> str:
    """The outcome of one attempt: delivered, failed (retried after ``retry_in_s``) or gave_up."""
    cur = await conn.execute(
        """
        UPDATE notifications SET
            status = CASE WHEN %(ok)s THEN 'delivered'
                          WHEN attempts >= %(max)s THEN 'gave_up' ELSE 'failed' END,
            delivered_at = CASE WHEN %(ok)s THEN now() END,
            last_error = %(error)s,
            next_attempt_at = coalesce(%(now)s, now()) + make_interval(secs => %(retry)s)
        WHERE id = %(id)s
        RETURNING alert_id, tier, channel, target, status, attempts
        """,
        {
            "ok": ok,
            "max": max_attempts,
            "error": error,
            "retry": retry_in_s,
            "id": notification_id,
            "now": now,
        },
    )
    row = await cur.fetchone()
    assert row is not None
    await trail(
        conn,
        alert_id=row["alert_id"],
        action="delivery",
        tier=row["tier"],
        detail={
            "channel": row["channel"],
            "target": row["target"],
            "attempt": row["attempts"],
            "status": row["status"],
            **({"error": error} if error else {}),
        },
    )
    return str(row["status"])


async def webhook_of(conn: Conn, *, provider_id: str) -> Row | None:
    cur = await conn.execute(
        "SELECT id, name, webhook_url, webhook_secret FROM providers WHERE id = %(p)s",
        {"p": provider_id},
    )
    return await cur.fetchone()


async def notified_members(conn: Conn, *, alert_id: int, tier: int, provider_id: str) -> list[Row]:
    """The provider's people notified of this alert at this tier (for its webhook payload)."""
    cur = await conn.execute(
        """
        SELECT DISTINCT u.id, u.username, u.display_name, u.phone FROM notifications n
        JOIN users u ON u.id = n.user_id
        WHERE n.alert_id = %(a)s AND n.tier = %(tier)s AND n.channel = 'websocket'
          AND u.provider_id = %(p)s ORDER BY u.username
        """,
        {"a": alert_id, "tier": tier, "p": provider_id},
    )
    return await cur.fetchall()


async def user_locale(conn: Conn, *, user_id: int) -> str:
    cur = await conn.execute("SELECT locale FROM users WHERE id = %(u)s", {"u": user_id})
    row = await cur.fetchone()
    return str(row["locale"]) if row else "zh-CN"


# Inactivity detector state ----------------------------------------------------------------------

DETECTOR_METRICS = ["motion", "contact", "in_bed", "power", "press"]


async def ensure_detectors(conn: Conn, *, detector: str) -> None:
    """A settings row for every resident with a home, so each can be claimed."""
    await conn.execute(
        "INSERT INTO detector_settings (resident_id, detector) SELECT id, %(d)s FROM residents"
        " WHERE home_site_id IS NOT NULL ON CONFLICT DO NOTHING",
        {"d": detector},
    )


async def claim_detectors(conn: Conn, *, detector: str, now_s: float, limit: int = 20) -> list[Row]:
    """Residents whose detector is due by their home's clock, locked for the caller's transaction
    (other replicas skip).

    ``home_s`` is the home's clock: ``now_s`` (the wall clock) for a real home; for a simulated one
    the newest time its gateways reported (status or heartbeat), which is the simulator's clock. A
    simulated home none of whose gateways has reported yet is not due: its time is unknown (a run
    may start days behind or ahead of the wall clock).
    """
    cur = await conn.execute(
        """
        WITH clocks AS (
            SELECT g.site_id, max(x.t) AS t
            FROM gateways g JOIN sites gs ON gs.id = g.site_id AND gs.simulated
            CROSS JOIN LATERAL (
                SELECT (SELECT max(ts) FROM gateway_status WHERE gateway_id = g.id) AS t
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
        SELECT d.resident_id, d.sensitivity, d.state, extract(epoch FROM d.fitted_at) AS fitted_s,
               r.home_site_id AS site_id, h.timezone, h.simulated, h.home_s
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
    conn: Conn, *, site: str, after_s: float, until_s: float, kinds: list[str]
) -> list[Row]:
    """The home's sensor readings (and gateway heartbeats) in ``(after_s, until_s]``, in time order."""
    cur = await conn.execute(
        """
        SELECT extract(epoch FROM r.ts) AS t, coalesce(s.kind, 'heartbeat') AS kind, s.room, r.value,
               r.gateway_id, r.sensor_id
        FROM readings r
        JOIN gateways g ON g.id = r.gateway_id
        LEFT JOIN sensors s ON s.gateway_id = r.gateway_id AND s.id = r.sensor_id
        WHERE g.site_id = %(site)s
          AND r.ts > to_timestamp(%(after)s) AND r.ts <= to_timestamp(%(until)s)
          AND ((s.kind = ANY(%(kinds)s) AND r.metric = ANY(%(metrics)s))
               OR (r.sensor_id = r.gateway_id AND r.metric = 'heartbeat'))
        ORDER BY r.ts
        """,
        {"site": site, "after": after_s, "until": until_s, "kinds": kinds, "metrics": DETECTOR_METRICS},
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
