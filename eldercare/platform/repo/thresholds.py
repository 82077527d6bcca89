"""SQL of a resident's detector thresholds as a care worker sees them: the starting limits set for a
new home, the sensitivity the outcome feedback moves, and the history of every change (undoable).

Each change is a ``detector_changes`` row with the settings before and after it; undoing one applies
its inverse to the settings as they are now (a sensitivity factor divided back out, the limits it
touched put back), so later changes stay, and is itself recorded.
"""

from __future__ import annotations

import json
from typing import Any

from eldercare.platform.repo import RepoError
from eldercare.platform.repo.connections import Conn, Row

CHANGE_COLUMNS = (
    "c.id, c.at, c.source, c.actor, c.alert_id, c.outcome, c.before, c.after, c.undoes, c.undone_by,"
    " u.username AS actor_name"
)


class AlreadyUndone(RepoError):
    """The change was undone before."""


async def _rows(conn: Conn, query: str, params: dict[str, Any]) -> list[Row]:
    cur = await conn.execute(query, params)
    return await cur.fetchall()


async def settings(conn: Conn, *, resident: str, detector: str) -> Row:
    """The resident's settings (a default row when the engine has not made one yet)."""
    rows = await _rows(
        conn,
        """
        SELECT sensitivity, limits, state, fitted_at
        FROM detector_settings WHERE resident_id = %(r)s AND detector = %(d)s
        """,
        {"r": resident, "d": detector},
    )
    return rows[0] if rows else {"sensitivity": 1.0, "limits": {}, "state": None, "fitted_at": None}


async def _lock(conn: Conn, *, resident: str, detector: str) -> Row:
    rows = await _rows(
        conn,
        """
        INSERT INTO detector_settings (resident_id, detector) VALUES (%(r)s, %(d)s)
        ON CONFLICT (resident_id, detector) DO UPDATE SET detector = EXCLUDED.detector
        RETURNING sensitivity, limits
        """,
        {"r": resident, "d": detector},
    )
    return rows[0]


async def _write(
    conn: Conn,
    *,
    resident: str,
    detector: str,
    before: Row,
    after: Row,
    source: str,
    actor: int | None,
    alert_id: int | None = None,
    outcome: str | None = None,
    undoes: int | None = None,
) -> int:
    await conn.execute(
        "UPDATE detector_settings SET sensitivity = %(s)s, limits = %(l)s::jsonb"
        " WHERE resident_id = %(r)s AND detector = %(d)s",
        {"s": after["sensitivity"], "l": json.dumps(after["limits"]), "r": resident, "d": detector},
    )
    rows = await _rows(
        conn,
        """
        INSERT INTO detector_changes (resident_id, detector, source, actor, alert_id, outcome, before,
                                      after, undoes)
        VALUES (%(r)s, %(d)s, %(source)s, %(actor)s, %(alert)s, %(outcome)s, %(before)s::jsonb,
                %(after)s::jsonb, %(undoes)s)
        RETURNING id
        """,
        {
            "r": resident, "d": detector, "source": source, "actor": str(actor) if actor else None,
            "alert": alert_id, "outcome": outcome, "before": json.dumps(_plain(before)),
            "after": json.dumps(_plain(after)), "undoes": undoes,
        },
    )  # fmt: skip
    return int(rows[0]["id"])


def _plain(s: Row) -> Row:
    return {"sensitivity": round(float(s["sensitivity"]), 6), "limits": dict(s["limits"] or {})}


async def set_limits(
    conn: Conn, *, resident: str, detector: str, limits: dict[str, float | None], actor: int
) -> int | None:
    """Set (a number) or clear (``None``) starting limits by room; returns the change's id, or
    None when nothing changed. Call inside a transaction."""
    before = _plain(await _lock(conn, resident=resident, detector=detector))
    new = dict(before["limits"])
    for room, value in limits.items():
        if value is None:
            new.pop(room, None)
        else:
            new[room] = float(value)
    if new == before["limits"]:
        return None
    after = {"sensitivity": before["sensitivity"], "limits": new}
    return await _write(
        conn, resident=resident, detector=detector, before=before, after=after, source="limits", actor=actor
    )


async def nudge_sensitivity(
    conn: Conn,
    *,
    resident: str,
    detector: str,
    factor: float,
    lo: float,
    hi: float,
    alert_id: int | None,
    outcome: str,
    actor: int | None,
) -> float:
    """Multiply the sensitivity by ``factor`` within [lo, hi] for one alert's outcome, recorded as
    a change; returns the new sensitivity."""
    before = _plain(await _lock(conn, resident=resident, detector=detector))
    s = min(max(before["sensitivity"] * factor, lo), hi)
    after = {"sensitivity": s, "limits": before["limits"]}
    await _write(
        conn, resident=resident, detector=detector, before=before, after=after, source="feedback",
        actor=actor, alert_id=alert_id, outcome=outcome,
    )  # fmt: skip
    return s


async def undo(conn: Conn, *, resident: str, detector: str, change: int, actor: int) -> int | None:
    """Undo change ``change`` of this resident: its inverse applied to the settings as they are now.

    Returns the new change's id; None when there is no such change; raises :class:`AlreadyUndone`.
    Call inside a transaction.
    """
    rows = await _rows(
        conn,
        "SELECT before, after, undone_by FROM detector_changes"
        " WHERE id = %(c)s AND resident_id = %(r)s AND detector = %(d)s FOR UPDATE",
        {"c": change, "r": resident, "d": detector},
    )
    if not rows:
        return None
    old = rows[0]
    if old["undone_by"] is not None:
        raise AlreadyUndone(f"change {change} was undone by change {old['undone_by']}")
    now = _plain(await _lock(conn, resident=resident, detector=detector))
    was, became = old["before"], old["after"]
    s = now["sensitivity"]
    if became["sensitivity"] != was["sensitivity"]:
        s = now["sensitivity"] * was["sensitivity"] / became["sensitivity"]
    limits = dict(now["limits"])
    for room in set(was["limits"]) | set(became["limits"]):
        if was["limits"].get(room) == became["limits"].get(room):
            continue
        if room in was["limits"]:
            limits[room] = was["limits"][room]
        else:
            limits.pop(room, None)
    after = {"sensitivity": s, "limits": limits}
    new_id = await _write(
        conn, resident=resident, detector=detector, before=now, after=after, source="undo", actor=actor,
        undoes=change,
    )  # fmt: skip
    await conn.execute(
        "UPDATE detector_changes SET undone_by = %(n)s WHERE id = %(c)s", {"n": new_id, "c": change}
    )
    return new_id


async def changes(conn: Conn, *, resident: str, detector: str, limit: int = 50) -> list[Row]:
    """The resident's latest changes, newest first, with who made them."""
    return await _rows(
        conn,
        f"""
        SELECT {CHANGE_COLUMNS}
        FROM detector_changes c LEFT JOIN users u ON u.id::text = c.actor
        WHERE c.resident_id = %(r)s AND c.detector = %(d)s
        ORDER BY c.at DESC, c.id DESC LIMIT %(limit)s
        """,
        {"r": resident, "d": detector, "limit": limit},
    )
