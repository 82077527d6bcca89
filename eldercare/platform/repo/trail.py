"""The alert trail and the live push: what every change to an alert writes, whichever module
makes the change (the lifecycle in :mod:`.alerts`, deliveries in :mod:`.deliveries`).

Both run inside the caller's transaction: a ``NOTIFY`` is delivered at commit, so a replica never
pushes a change that was rolled back.
"""

from __future__ import annotations

import json
from typing import Any

from eldercare.platform.repo.connections import Conn


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


async def publish(conn: Conn, *, alert_id: int, event: str, users: list[int] | None = None) -> None:
    """``NOTIFY alerts``: delivered at commit to every replica's WebSocket hub."""
    payload = json.dumps({"alert": alert_id, "event": event, "users": users or []})
    await conn.execute("SELECT pg_notify('alerts', %(p)s)", {"p": payload})
