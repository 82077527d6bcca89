"""SQL of the audit trail: who read or changed which resident's data, through which route."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from eldercare.platform.repo.connections import Conn


async def write(
    conn: Conn,
    *,
    user_id: int | None,
    username: str | None,
    action: str,
    resident_id: str | None = None,
    route: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        "INSERT INTO audit_log (user_id, username, action, resident_id, route, detail)"
        " VALUES (%(u)s, %(n)s, %(a)s, %(r)s, %(route)s, %(d)s)",
        {
            "u": user_id,
            "n": username,
            "a": action,
            "r": resident_id,
            "route": route,
            "d": Jsonb(detail or {}),
        },
    )


# Actions once stored as English sentences, read back as the codes written now (rows are kept as stored).
RENAMED_ACTIONS = {
    "view a resident's alert limits:profile": "read_limits:profile",
    "change a resident's alert limits:profile": "update_limits:profile",
    "change residents:profile": "update_resident:profile",
    "view the care team and family links:profile": "read_care_team:profile",
}


async def search(
    conn: Conn,
    *,
    resident_id: str | None = None,
    user_id: int | None = None,
    since: datetime | None = None,
    limit: int = 100,
    before_id: int | None = None,
) -> list[dict[str, Any]]:
    cur = await conn.execute(
        "SELECT id, at, user_id, username, action, resident_id, route, detail FROM audit_log"
        " WHERE (%(r)s::text IS NULL OR resident_id = %(r)s)"
        " AND (%(u)s::bigint IS NULL OR user_id = %(u)s)"
        " AND (%(since)s::timestamptz IS NULL OR at >= %(since)s)"
        " AND (%(before)s::bigint IS NULL OR id < %(before)s)"
        " ORDER BY id DESC LIMIT %(limit)s",
        {"r": resident_id, "u": user_id, "since": since, "before": before_id, "limit": limit},
    )
    rows = await cur.fetchall()
    for row in rows:
        row["action"] = RENAMED_ACTIONS.get(row["action"], row["action"])
    return rows
