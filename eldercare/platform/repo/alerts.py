"""The alert lifecycle: opening or joining an alert, escalation through the tiers, people acting
on it (acknowledge, seen, resolve, notes), and reading it back.

Every function takes an open connection and runs inside the caller's transaction, so the engine
can claim work and write its consequences atomically. Due escalations are claimed with
``FOR UPDATE SKIP LOCKED``, so any number of replicas can run the engine side by side. The work
queue is :mod:`.work`, the delivery queue :mod:`.deliveries`, detector state :mod:`.detectors`.
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
from eldercare.platform.repo.trail import publish, trail

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


# Opening and joining ------------------------------------------------------------------------------


async def open_or_join(conn: Conn, *, decision: Open, tier: int, due: datetime | None) -> tuple[int, bool]:
    """Insert the alert at ``tier`` with its first deadline, or count one more detection on the
    live one; returns (id, opened). Its trail row (``opened`` or ``detected_again``) is written by
    the same statement, and whether its site is simulated is read by it too: one round trip.

    A later detection's trail row keeps when the detector saw it (``detected_ms``; a simulated
    home's own time as ``sim_detected_ms``): the row's ``at`` is when the engine got to it, which
    may be a round or, for an engine behind a fast simulation, hours of the home's time later."""
    cur = await conn.execute(
        """
        WITH up AS (
            INSERT INTO alerts (kind, severity, resident_id, site_id, gateway_id, sensor_id, dedup_key,
                                title, summary, evidence, detected_at, simulated, tier, next_escalation_at)
            VALUES (%(kind)s, %(severity)s, %(resident)s, %(site)s, %(gateway)s, %(sensor)s, %(key)s,
                    %(title)s, %(summary)s::jsonb, %(evidence)s::jsonb,
                    to_timestamp(%(detected_ms)s / 1000.0),
                    coalesce((SELECT simulated FROM sites WHERE id = %(site)s), false),
                    %(tier)s, %(due)s)
            ON CONFLICT (dedup_key) WHERE state <> 'resolved' DO UPDATE
                SET detections = alerts.detections + 1, last_detected_at = now(), updated_at = now()
            RETURNING id, (xmax = 0) AS opened
        ), trail AS (
            INSERT INTO alert_trail (alert_id, action, tier, detail)
            SELECT id, CASE WHEN opened THEN 'opened' ELSE 'detected_again' END,
                   CASE WHEN opened THEN %(tier)s END,
                   CASE WHEN opened THEN jsonb_build_object('summary', %(summary)s::jsonb)
                        ELSE jsonb_strip_nulls(jsonb_build_object(
                            'detected_ms', %(detected_ms)s::bigint,
                            'sim_detected_ms', %(summary)s::jsonb -> 'sim_detected_ms')) END
            FROM up
        )
        SELECT id, opened FROM up
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
            "tier": tier,
            "due": due,
        },
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row["id"]), bool(row["opened"])


async def reopen(
    conn: Conn, *, alert_id: int, acknowledged_before: datetime, tier: int, due: datetime | None
) -> bool:
    """An alert acknowledged before ``acknowledged_before`` and still not resolved: open again at
    ``tier`` with its deadline, and say so in its trail (who had acknowledged it, when). False (and
    nothing changed) when the alert is open, resolved or acknowledged since."""
    cur = await conn.execute(
        """
        WITH old AS (
            SELECT id, acknowledged_at, acknowledged_by FROM alerts
            WHERE id = %(a)s AND state = 'acknowledged' AND acknowledged_at < %(before)s FOR UPDATE
        ), up AS (
            UPDATE alerts a SET state = 'open', tier = %(tier)s, next_escalation_at = %(due)s,
                                acknowledged_at = NULL, acknowledged_by = NULL, updated_at = now()
            FROM old WHERE a.id = old.id RETURNING a.id
        )
        INSERT INTO alert_trail (alert_id, action, tier, detail)
        SELECT old.id, 'reopened', %(tier)s,
               jsonb_build_object('acknowledged_at', old.acknowledged_at,
                                  'acknowledged_by', old.acknowledged_by)
        FROM old JOIN up ON up.id = old.id
        RETURNING alert_id
        """,
        {"a": alert_id, "before": acknowledged_before, "tier": tier, "due": due},
    )
    return await cur.fetchone() is not None


async def live_alert_id(conn: Conn, *, dedup_key: str) -> int | None:
    cur = await conn.execute(
        "SELECT id FROM alerts WHERE dedup_key = %(k)s AND state <> 'resolved'", {"k": dedup_key}
    )
    row = await cur.fetchone()
    return int(row["id"]) if row else None


async def live_alert_keys(conn: Conn, *, prefix: str) -> list[str]:
    """The dedup keys of the live alerts whose key starts with ``prefix``."""
    cur = await conn.execute(
        "SELECT dedup_key FROM alerts WHERE state <> 'resolved' AND starts_with(dedup_key, %(p)s)",
        {"p": prefix},
    )
    return [r["dedup_key"] for r in await cur.fetchall()]


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


# Escalation ---------------------------------------------------------------------------------------


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


# The people a tier's targets name right now (``%(resident)s``, ``%(site)s``, ``%(targets)s``,
# ``%(providers)s``), as CTEs ending in ``people``: shared by :func:`recipients` and :func:`notify_tier`.
RECIPIENTS = """
        WITH r AS (
            SELECT res.id, res.home_care_provider_id, res.institution_provider_id,
                   st.provider_id AS station_provider
            FROM residents res LEFT JOIN sites st ON st.id = res.station_site_id
            WHERE res.id = %(resident)s
               OR (%(resident)s::text IS NULL AND res.home_site_id = %(site)s)
        ),
        on_duty AS (  -- a shift counts while its person is still a care worker of its provider
            SELECT s.provider_id, s.user_id FROM oncall_shifts s
            JOIN users w ON w.id = s.user_id AND w.provider_id = s.provider_id AND w.role = 'care_worker'
            WHERE now() >= s.starts_at AND now() < s.ends_at
        ),
        picked AS (
            SELECT f.user_id, 'family' AS target FROM family_links f JOIN r ON r.id = f.resident_id
            JOIN users w ON w.id = f.user_id AND w.role = 'family'
            WHERE 'family' = ANY(%(targets)s)
            UNION SELECT c.user_id, 'assigned_worker' FROM care_assignments c JOIN r ON r.id = c.resident_id
            JOIN users w ON w.id = c.user_id AND w.role = 'care_worker'
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
        ),
        people AS (
            SELECT DISTINCT ON (u.id) u.id AS user_id, u.username, u.display_name, u.email, u.phone,
                   u.provider_id, p.target
            FROM picked p JOIN users u ON u.id = p.user_id WHERE u.active
            ORDER BY u.id, p.target
        )
"""


def _providers(targets: tuple[str, ...]) -> list[str]:
    return [t.removeprefix("provider:") for t in targets if t.startswith("provider:")]


async def recipients(
    conn: Conn, *, targets: tuple[str, ...], resident: str | None, site: str | None
) -> list[Row]:
    """Users a tier's targets name right now: family, assigned workers, whoever is on duty."""
    cur = await conn.execute(
        RECIPIENTS + "SELECT * FROM people ORDER BY user_id",
        {"resident": resident, "site": site, "targets": list(targets), "providers": _providers(targets)},
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
    One statement (a round trip) for all of it: in a storm of alerts the engine's time goes in round
    trips, not in the database's work.
    """
    cur = await conn.execute(
        RECIPIENTS
        + """,
        sent AS (  -- in the order a reader of the alert expects: pushes, then webhooks, then e-mails
            INSERT INTO notifications (alert_id, user_id, tier, channel, target, status, attempts)
            SELECT %(a)s, user_id, %(tier)s, channel, target, status, attempts FROM (
                SELECT 0 AS o, user_id, 'websocket' AS channel, target, 'sent' AS status, 1 AS attempts
                FROM people
                UNION ALL
                SELECT 1, NULL, 'webhook', p.id, 'pending', 0 FROM providers p
                WHERE p.webhook_url IS NOT NULL AND p.webhook_url <> ''
                  AND p.id IN (SELECT provider_id FROM people)
                UNION ALL
                SELECT 2, user_id, 'email', email, 'pending', 0 FROM people
                WHERE %(email)s AND coalesce(email, '') <> ''
            ) x ORDER BY o, user_id, target
            RETURNING 1
        ),
        trail AS (
            INSERT INTO alert_trail (alert_id, action, tier, detail)
            SELECT %(a)s, 'notified', %(tier)s, jsonb_build_object(
                'tier_name', %(name)s::text, 'targets', %(targets)s::text[],
                'users', coalesce((SELECT jsonb_agg(username ORDER BY user_id) FROM people), '[]'))
            RETURNING 1
        ),
        users AS (SELECT coalesce(array_agg(user_id ORDER BY user_id), '{}') AS ids FROM people)
        SELECT users.ids, pg_notify('alerts', json_build_object(
            'alert', %(a)s::bigint, 'event', 'notified', 'users', users.ids)::text)
        FROM users
        """,
        {
            "resident": resident, "site": site, "targets": list(tier.targets),
            "providers": _providers(tier.targets), "a": alert_id, "tier": tier.tier, "name": tier.name,
            "email": email,
        },
    )  # fmt: skip
    row = await cur.fetchone()
    return [int(u) for u in row["ids"]] if row else []


async def set_escalation(conn: Conn, *, alert_id: int, tier: int, due: datetime | None) -> None:
    await conn.execute(
        "UPDATE alerts SET tier = %(tier)s, next_escalation_at = %(due)s, updated_at = now() "
        "WHERE id = %(a)s",
        {"tier": tier, "due": due, "a": alert_id},
    )


async def escalate(
    conn: Conn, *, alert_id: int, from_tier: int, tier: int, due: datetime | None,
    reason: str = "not acknowledged in time",
) -> None:  # fmt: skip
    """Move the alert to ``tier`` with its next deadline, and its ``escalated`` trail row, at once."""
    await conn.execute(
        """
        WITH up AS (
            UPDATE alerts SET tier = %(tier)s, next_escalation_at = %(due)s, updated_at = now()
            WHERE id = %(a)s RETURNING id
        )
        INSERT INTO alert_trail (alert_id, action, tier, detail)
        SELECT id, 'escalated', %(tier)s,
               jsonb_build_object('from_tier', %(from)s::int, 'reason', %(reason)s::text)
        FROM up
        """,
        {"a": alert_id, "from": from_tier, "tier": tier, "due": due, "reason": reason},
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


# People acting on alerts --------------------------------------------------------------------------


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


# Reading ------------------------------------------------------------------------------------------


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


def list_visible_query(
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
    before: tuple[datetime, int] | None,
) -> tuple[sql.Composed, dict[str, Any]]:
    """The statement :func:`list_visible` runs (tests ``EXPLAIN`` it on a year of alerts).

    Keyset pages: ``before`` is the ``(opened_at, id)`` of the previous page's last alert, and the
    page is the next range of an index in ``(opened_at DESC, id DESC)`` order: as fast on the
    hundredth page as on the first. A family member's few residents are read each by its own
    index range (``alerts_resident_opened``) and merged, never by walking everyone's alerts.
    """
    filters: list[sql.Composable] = [sql.SQL("TRUE")]
    params: dict[str, Any] = {"uid": user_id, "prov": provider_id, "limit": limit}
    for name, value in (("state", state), ("kind", kind), ("site_id", site), ("resident_id", resident),
                        ("tier", tier)):  # fmt: skip
        if value is not None:
            filters.append(sql.SQL("a.{} = {}").format(sql.Identifier(name), sql.Placeholder(name)))
            params[name] = value
    if before is not None:
        filters.append(sql.SQL("(a.opened_at, a.id) < (%(before_at)s, %(before_id)s)"))
        params["before_at"], params["before_id"] = before
    where = sql.SQL(" AND ").join(filters)
    columns = sql.SQL(ALERT_COLUMNS + ", r.name AS resident_name")
    if role == "family":
        query = sql.SQL(
            "SELECT {columns} FROM family_links f"
            " CROSS JOIN LATERAL (SELECT * FROM alerts a WHERE a.resident_id = f.resident_id AND {where}"
            "   ORDER BY a.opened_at DESC, a.id DESC LIMIT %(limit)s) a"
            " LEFT JOIN residents r ON r.id = a.resident_id"
            " WHERE f.user_id = %(uid)s ORDER BY a.opened_at DESC, a.id DESC LIMIT %(limit)s"
        ).format(columns=columns, where=where)
        return query, params
    scope = {
        "admin": "TRUE",
        "tester": "a.simulated",
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
        "SELECT {columns} FROM alerts a LEFT JOIN residents r ON r.id = a.resident_id"
        " WHERE " + scope + " AND {where} ORDER BY a.opened_at DESC, a.id DESC LIMIT %(limit)s"
    ).format(columns=columns, where=where)
    return query, params


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
    before: tuple[datetime, int] | None = None,
) -> list[Row]:
    """Alerts the user may see (same scope rules as ``eldercare.platform.access``), newest first."""
    query, params = list_visible_query(
        user_id=user_id, role=role, provider_id=provider_id, state=state, kind=kind, site=site,
        resident=resident, tier=tier, limit=limit, before=before,
    )  # fmt: skip
    cur = await conn.execute(query, params)
    return await cur.fetchall()


def now() -> datetime:
    return datetime.now(UTC)


# Live pushes --------------------------------------------------------------------------------------


async def push_summary(conn: Conn, *, alert_id: int) -> Row | None:
    """What a console needs to show an alert without another request."""
    return (await push_summaries(conn, alert_ids=[alert_id])).get(alert_id)


async def push_summaries(conn: Conn, *, alert_ids: list[int]) -> dict[int, Row]:
    """:func:`push_summary` of many alerts at once, by id."""
    cur = await conn.execute(
        f"SELECT {ALERT_COLUMNS}, r.name AS resident_name FROM alerts a"
        " LEFT JOIN residents r ON r.id = a.resident_id WHERE a.id = ANY(%(a)s)",
        {"a": alert_ids},
    )
    return {int(r["id"]): r for r in await cur.fetchall()}


async def audience(conn: Conn, *, alert_id: int, users: list[int]) -> list[int]:
    """Those of ``users`` who may see this alert (the scope of :func:`list_visible`, per user)."""
    return sorted((await audiences(conn, alert_ids=[alert_id], users=users)).get(alert_id, set()))


async def audiences(conn: Conn, *, alert_ids: list[int], users: list[int]) -> dict[int, set[int]]:
    """:func:`audience` of many alerts at once: alert id -> those of ``users`` who may see it.

    Each rule of the scope is a join (not a test of every user against every alert), so the cost
    grows with the pairs that match, not with alerts times connected users.
    """
    if not users or not alert_ids:
        return {}
    cur = await conn.execute(
        """
        WITH a AS (
            SELECT a.id, a.resident_id, a.site_id, a.simulated, r.home_care_provider_id,
                   r.institution_provider_id, st.provider_id AS station_provider
            FROM alerts a LEFT JOIN residents r ON r.id = a.resident_id
            LEFT JOIN sites st ON st.id = r.station_site_id
            WHERE a.id = ANY(%(a)s)
        ), u AS (
            SELECT id, role, provider_id FROM users WHERE id = ANY(%(users)s) AND active
        )
        SELECT a.id AS alert_id, u.id AS user_id FROM a JOIN u ON u.role = 'admin'
        UNION SELECT a.id, u.id FROM a JOIN u ON u.role = 'tester' AND a.simulated
        UNION SELECT a.id, u.id FROM a JOIN family_links f ON f.resident_id = a.resident_id
            JOIN u ON u.id = f.user_id AND u.role = 'family'
        UNION SELECT a.id, u.id FROM a JOIN u ON u.role = 'care_worker'
            AND u.provider_id IN (a.home_care_provider_id, a.institution_provider_id, a.station_provider)
        UNION SELECT a.id, u.id FROM a JOIN care_assignments c ON c.resident_id = a.resident_id
            JOIN u ON u.id = c.user_id AND u.role = 'care_worker'
        UNION SELECT a.id, u.id FROM a
            JOIN residents r2 ON a.resident_id IS NULL AND r2.home_site_id = a.site_id
            JOIN u ON u.role = 'care_worker' AND (r2.home_care_provider_id = u.provider_id
                OR EXISTS (SELECT 1 FROM care_assignments c2
                           WHERE c2.user_id = u.id AND c2.resident_id = r2.id))
        """,
        {"a": alert_ids, "users": users},
    )
    out: dict[int, set[int]] = {}
    for r in await cur.fetchall():
        out.setdefault(int(r["alert_id"]), set()).add(int(r["user_id"]))
    return out
