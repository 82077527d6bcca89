"""The delivery queue (``notifications``): webhooks and e-mails waiting to be sent, leased by
the delivery worker, and the outcome of each attempt (written to the alert's trail). Rows are
queued by :func:`eldercare.platform.repo.alerts.notify_tier`, in the statement that notifies a tier.

Rows are claimed with ``FOR UPDATE SKIP LOCKED`` and a lease, so a sender that dies mid-attempt
gives its rows back after the lease and no two replicas send the same one.
"""

from __future__ import annotations

from datetime import datetime

from eldercare import i18n
from eldercare.platform.repo.connections import Conn, Row
from eldercare.platform.repo.trail import trail


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
    return str(row["locale"]) if row else i18n.DEFAULT_LOCALE
