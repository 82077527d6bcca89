"""The alert engine's work queue (``alert_work``): claimed, finished, retried or set aside.

Ingest adds a row per event and status (with a ``NOTIFY alert_work``); the engine claims rows with
``FOR UPDATE SKIP LOCKED`` inside the transaction that writes their consequences, so a crash between
the two loses nothing and does nothing twice, and any number of replicas can share the queue.
"""

from __future__ import annotations

from eldercare.platform.repo.connections import Conn, Row


async def claim_work(conn: Conn, *, limit: int = 100) -> list[Row]:
    """Lock at most ``limit`` due work rows for the caller's transaction: falls, their "I'm OK"
    cancellations and SOS first, then the rest oldest first.

    Oldest first alone let one gateway's flood hold up every other home: 5,000 statuses or 2,000 bed
    events sent in a second put another home's SOS 29 s behind them (the outside gateway check,
    round 3). The emergencies are found by a partial index of their own, so a claim reads about
    ``limit`` rows however deep the queue (taking the gateways in turn instead needed a sort of the
    whole queue per claim: 112 ms at 50,000 items). Order between a gateway's items does not
    matter to the engine: a status that arrived earlier never undoes a later one (see ``_status``).

    The ids are picked in ``MATERIALIZED`` CTEs: as a plain ``IN (subquery)`` the planner may run
    the ``LIMIT`` subquery once per row and the window slides through the whole queue (a 500-item
    storm was claimed, and made to wait, in one transaction). The payload comes back as text, and its
    evidence apart, so an item too odd to parse fails (or loses only its evidence) on its own.
    """
    cur = await conn.execute(
        """
        WITH urgent AS MATERIALIZED (  -- as index alert_work_urgent (migration 0016) has them
            SELECT id FROM alert_work
            WHERE kind = 'event' AND payload ->> 'kind' IN ('fall', 'fall_cancelled', 'sos')
              AND failed_at IS NULL AND next_attempt_at <= now()
            ORDER BY id FOR UPDATE SKIP LOCKED LIMIT %(limit)s
        ), rest AS MATERIALIZED (
            SELECT id FROM alert_work
            WHERE failed_at IS NULL AND next_attempt_at <= now() AND id NOT IN (SELECT id FROM urgent)
            ORDER BY id FOR UPDATE SKIP LOCKED LIMIT %(limit)s - (SELECT count(*) FROM urgent)
        ), picked AS MATERIALIZED (
            SELECT id FROM urgent UNION ALL SELECT id FROM rest
        )
        SELECT w.id, w.kind, w.gateway_id, w.site_id, w.attempts,
               (w.payload - 'evidence')::text AS payload, (w.payload -> 'evidence')::text AS evidence
        FROM alert_work w WHERE w.id = ANY(ARRAY(SELECT id FROM picked)) ORDER BY w.id
        """,
        {"limit": limit},
    )
    return await cur.fetchall()


async def finish_work(conn: Conn, *, work_ids: list[int]) -> None:
    await conn.execute("DELETE FROM alert_work WHERE id = ANY(%(ids)s)", {"ids": work_ids})


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
