"""SQL of people: users, sign-in (attempts, refresh tokens), family links, care assignments, visibility."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from psycopg import sql
from psycopg.types.json import Jsonb

from eldercare.platform.repo import resident_scope, scope_params
from eldercare.platform.repo.connections import Conn

if TYPE_CHECKING:
    from eldercare.platform.access import Principal

USER_COLS = (
    "id, username, display_name, role, provider_id, locale, phone, email, active, created_at, token_version"
)


# Users ------------------------------------------------------------------------------------------


async def get_user(conn: Conn, *, user_id: int) -> dict[str, Any] | None:
    cur = await conn.execute(f"SELECT {USER_COLS} FROM users WHERE id = %(id)s", {"id": user_id})
    return await cur.fetchone()


async def get_login(conn: Conn, *, username: str) -> dict[str, Any] | None:
    cur = await conn.execute(
        f"SELECT {USER_COLS}, password_hash FROM users WHERE username = %(u)s", {"u": username}
    )
    return await cur.fetchone()


async def get_password_hash(conn: Conn, *, user_id: int) -> str | None:
    cur = await conn.execute("SELECT password_hash FROM users WHERE id = %(id)s", {"id": user_id})
    row = await cur.fetchone()
    return None if row is None else str(row["password_hash"])


async def list_users(
    conn: Conn, *, role: str | None = None, provider_id: str | None = None
) -> list[dict[str, Any]]:
    cur = await conn.execute(
        f"SELECT {USER_COLS} FROM users WHERE (%(role)s::text IS NULL OR role = %(role)s)"
        " AND (%(p)s::text IS NULL OR provider_id = %(p)s) ORDER BY id",
        {"role": role, "p": provider_id},
    )
    return await cur.fetchall()


async def create_user(conn: Conn, *, password_hash: str, **fields: Any) -> dict[str, Any]:
    cur = await conn.execute(
        "INSERT INTO users (username, display_name, password_hash, role, provider_id, locale, phone, email)"
        " VALUES (%(username)s, %(display_name)s, %(ph)s, %(role)s, %(provider_id)s, %(locale)s,"
        f" %(phone)s, %(email)s) RETURNING {USER_COLS}",
        {**fields, "ph": password_hash},
    )
    row = await cur.fetchone()
    assert row is not None
    return row


async def update_user(conn: Conn, *, user_id: int, **fields: Any) -> dict[str, Any] | None:
    """Set the given columns (names come from the API schema, never from the client as text)."""
    if not fields:
        return await get_user(conn, user_id=user_id)
    sets = sql.SQL(", ").join(
        sql.SQL("{} = {}").format(sql.Identifier(k), sql.Placeholder(k)) for k in fields
    )
    query = sql.SQL("UPDATE users SET {sets} WHERE id = %(id)s RETURNING {cols}").format(
        sets=sets, cols=sql.SQL(USER_COLS)
    )
    cur = await conn.execute(query, {**fields, "id": user_id})
    return await cur.fetchone()


async def people(conn: Conn, *, usernames: list[str]) -> dict[str, dict[str, Any]]:
    """Display name and role of each named user (for showing people to those who may not see user names)."""
    cur = await conn.execute(
        "SELECT username, display_name, role FROM users WHERE username = ANY(%(u)s)",
        {"u": usernames},
    )
    rows = await cur.fetchall()
    return {r["username"]: r for r in rows}


async def delete_user(conn: Conn, *, user_id: int) -> bool:
    cur = await conn.execute("UPDATE users SET active = false WHERE id = %(id)s", {"id": user_id})
    return cur.rowcount > 0


# Sign-in --------------------------------------------------------------------------------------------


async def record_login_attempt(conn: Conn, *, username: str, client_ip: str | None, ok: bool) -> None:
    await conn.execute(
        "INSERT INTO login_attempts (username, client_ip, ok) VALUES (%(u)s, %(ip)s, %(ok)s)",
        {"u": username, "ip": client_ip, "ok": ok},
    )


async def login_failures(
    conn: Conn, *, username: str, client_ip: str | None, since: datetime
) -> dict[str, Any]:
    """Failed attempts since ``since``: for this username from this address (counted after the
    pair's last success) with the time of the last one, and from this address for any username
    with the time of the oldest one."""
    cur = await conn.execute(
        "WITH pair_ok AS (SELECT max(at) AS at FROM login_attempts WHERE ok AND username = %(u)s"
        " AND client_ip IS NOT DISTINCT FROM %(ip)s AND at >= %(since)s)"
        " SELECT count(*) FILTER (WHERE pair) AS pair_failures, max(at) FILTER (WHERE pair) AS pair_last,"
        " count(*) FILTER (WHERE client_ip = %(ip)s) AS ip_failures,"
        " min(at) FILTER (WHERE client_ip = %(ip)s) AS ip_oldest"
        " FROM (SELECT at, client_ip, username = %(u)s AND client_ip IS NOT DISTINCT FROM %(ip)s"
        "   AND at > coalesce((SELECT at FROM pair_ok), '-infinity') AS pair"
        "   FROM login_attempts WHERE at >= %(since)s AND NOT ok"
        "   AND (username = %(u)s OR client_ip = %(ip)s)) f",
        {"u": username, "ip": client_ip, "since": since},
    )
    row = await cur.fetchone()
    assert row is not None
    return row


async def store_refresh_token(conn: Conn, *, user_id: int, token_hash: str, expires_at: datetime) -> None:
    await conn.execute(
        "INSERT INTO refresh_tokens (user_id, token_hash, expires_at) VALUES (%(u)s, %(h)s, %(e)s)",
        {"u": user_id, "h": token_hash, "e": expires_at},
    )


async def use_refresh_token(conn: Conn, *, token_hash: str) -> tuple[int | None, bool]:
    """Revoke the token and return (user id, was valid). A reused revoked token revokes them all."""
    async with conn.transaction():
        cur = await conn.execute(
            "SELECT id, user_id, revoked_at IS NOT NULL AS revoked, expires_at > now() AS fresh"
            " FROM refresh_tokens WHERE token_hash = %(h)s FOR UPDATE",
            {"h": token_hash},
        )
        row = await cur.fetchone()
        if row is None:
            return None, False
        if row["revoked"]:
            await revoke_all_tokens(conn, user_id=row["user_id"])
            return row["user_id"], False
        await conn.execute(
            "UPDATE refresh_tokens SET revoked_at = now() WHERE id = %(id)s", {"id": row["id"]}
        )
        return row["user_id"], bool(row["fresh"])


async def revoke_all_tokens(conn: Conn, *, user_id: int) -> None:
    """Every refresh token, and (by bumping the user's token version) every access token issued."""
    await conn.execute(
        "WITH bump AS (UPDATE users SET token_version = token_version + 1 WHERE id = %(u)s)"
        " UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = %(u)s AND revoked_at IS NULL",
        {"u": user_id},
    )


# Visibility -----------------------------------------------------------------------------------------


async def resident_visibility(conn: Conn, *, user: Principal, resident_id: str) -> dict[str, Any] | None:
    """The resident's id, simulated flag and (for family) the link's consent, if visible to ``user``."""
    consent = (
        sql.SQL("(SELECT consent FROM family_links WHERE resident_id = r.id AND user_id = %(scope_uid)s)")
        if user.role == "family"
        else sql.SQL("NULL::jsonb")
    )
    query = sql.SQL(
        "SELECT r.id, r.simulated, {consent} AS consent FROM residents r WHERE r.id = %(rid)s AND {scope}"
    ).format(consent=consent, scope=resident_scope(user))
    cur = await conn.execute(query, {**scope_params(user), "rid": resident_id})
    return await cur.fetchone()


# Family links and care assignments --------------------------------------------------------------


async def family_linked_outside_scope(conn: Conn, *, user: Principal, member_id: int) -> bool:
    """Whether family account ``member_id`` is linked to a resident ``user`` may not see (its
    identity then belongs to another provider's people)."""
    query = sql.SQL(
        "SELECT EXISTS (SELECT 1 FROM family_links fl JOIN residents r ON r.id = fl.resident_id"
        " WHERE fl.user_id = %(member)s AND NOT coalesce({scope}, false))"  # NULL: a NULL provider
    ).format(scope=resident_scope(user))
    cur = await conn.execute(query, {**scope_params(user), "member": member_id})
    row = await cur.fetchone()
    return bool(row and row["exists"])


async def provider_serves_resident(conn: Conn, *, provider_id: str | None, resident_id: str) -> bool:
    """Whether ``provider_id`` is one of the resident's providers in the chain: home care, the
    institution, or the provider of the station the resident attends."""
    cur = await conn.execute(
        "SELECT EXISTS (SELECT 1 FROM residents r LEFT JOIN sites st ON st.id = r.station_site_id"
        " WHERE r.id = %(r)s AND %(p)s::text IN (r.home_care_provider_id, r.institution_provider_id,"
        " st.provider_id))",
        {"r": resident_id, "p": provider_id},
    )
    row = await cur.fetchone()
    return bool(row and row["exists"])


async def list_family(conn: Conn, *, resident_id: str) -> list[dict[str, Any]]:
    cur = await conn.execute(
        "SELECT fl.user_id, u.username, u.display_name, fl.resident_id, fl.relation, fl.is_primary,"
        " fl.consent FROM family_links fl JOIN users u ON u.id = fl.user_id"
        " WHERE fl.resident_id = %(r)s ORDER BY fl.is_primary DESC, fl.user_id",
        {"r": resident_id},
    )
    return await cur.fetchall()


async def upsert_family_link(
    conn: Conn,
    *,
    resident_id: str,
    user_id: int,
    relation: str,
    is_primary: bool,
    consent: dict[str, bool],
) -> dict[str, Any]:
    await conn.execute(
        "INSERT INTO family_links (user_id, resident_id, relation, is_primary, consent)"
        " VALUES (%(u)s, %(r)s, %(rel)s, %(p)s, %(c)s) ON CONFLICT (user_id, resident_id) DO UPDATE"
        " SET relation = EXCLUDED.relation, is_primary = EXCLUDED.is_primary, consent = EXCLUDED.consent",
        {"u": user_id, "r": resident_id, "rel": relation, "p": is_primary, "c": Jsonb(consent)},
    )
    rows = [x for x in await list_family(conn, resident_id=resident_id) if x["user_id"] == user_id]
    return rows[0]


async def set_consent(conn: Conn, *, resident_id: str, user_id: int, consent: dict[str, bool]) -> bool:
    cur = await conn.execute(
        "UPDATE family_links SET consent = %(c)s WHERE resident_id = %(r)s AND user_id = %(u)s",
        {"c": Jsonb(consent), "r": resident_id, "u": user_id},
    )
    return cur.rowcount > 0


async def delete_family_link(conn: Conn, *, resident_id: str, user_id: int) -> bool:
    cur = await conn.execute(
        "DELETE FROM family_links WHERE resident_id = %(r)s AND user_id = %(u)s",
        {"r": resident_id, "u": user_id},
    )
    return cur.rowcount > 0


async def list_care_team(conn: Conn, *, resident_id: str) -> list[dict[str, Any]]:
    cur = await conn.execute(
        "SELECT ca.user_id, u.username, u.display_name, u.provider_id, ca.role FROM care_assignments ca"
        " JOIN users u ON u.id = ca.user_id WHERE ca.resident_id = %(r)s ORDER BY ca.user_id",
        {"r": resident_id},
    )
    return await cur.fetchall()


async def assign_worker(conn: Conn, *, resident_id: str, user_id: int, role: str) -> None:
    await conn.execute(
        "INSERT INTO care_assignments (resident_id, user_id, role) VALUES (%(r)s, %(u)s, %(role)s)"
        " ON CONFLICT (resident_id, user_id) DO UPDATE SET role = EXCLUDED.role",
        {"r": resident_id, "u": user_id, "role": role},
    )


async def unassign_worker(conn: Conn, *, resident_id: str, user_id: int) -> bool:
    cur = await conn.execute(
        "DELETE FROM care_assignments WHERE resident_id = %(r)s AND user_id = %(u)s",
        {"r": resident_id, "u": user_id},
    )
    return cur.rowcount > 0


async def site_visible(conn: Conn, *, user: Principal, site_id: str) -> bool:
    """Site-level visibility: :func:`site_scope`, and for family the homes of their relatives."""
    from eldercare.platform.repo import site_scope

    if user.role == "family":
        query: Any = sql.SQL("SELECT 1 FROM residents r WHERE r.home_site_id = %(site)s AND {scope}").format(
            scope=resident_scope(user)
        )
    else:
        query = sql.SQL("SELECT 1 FROM sites s WHERE s.id = %(site)s AND {scope}").format(
            scope=site_scope(user)
        )
    cur = await conn.execute(query, {**scope_params(user), "site": site_id})
    return await cur.fetchone() is not None
