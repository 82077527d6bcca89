"""SQL of the registry: providers, sites, residents, gateways and sensors, policies, on-call shifts.

Lists take the caller (``user``) and filter by scope in SQL. Updates take only the columns the
API schema allows (identifiers composed with ``psycopg.sql``).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from psycopg import sql
from psycopg.types.json import Jsonb

from eldercare.platform.repo import resident_scope, scope_params, site_scope
from eldercare.platform.repo.connections import Conn

if TYPE_CHECKING:
    from eldercare.platform.access import Principal

JSON_COLUMNS = {"layout", "emergency_contacts", "config", "meta", "consent"}


def _wrap(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: Jsonb(v) if k in JSON_COLUMNS and v is not None else v for k, v in fields.items()}


async def insert(conn: Conn, *, table: str, fields: dict[str, Any]) -> dict[str, Any]:
    query = sql.SQL("INSERT INTO {t} ({cols}) VALUES ({vals}) RETURNING *").format(
        t=sql.Identifier(table),
        cols=sql.SQL(", ").join(map(sql.Identifier, fields)),
        vals=sql.SQL(", ").join(map(sql.Placeholder, fields)),
    )
    cur = await conn.execute(query, _wrap(fields))
    row = await cur.fetchone()
    assert row is not None
    return row


async def insert_many(conn: Conn, *, table: str, rows: list[dict[str, Any]]) -> int:
    """Insert ``rows`` (all with the keys of the first) in one batch; returns how many."""
    if not rows:
        return 0
    query = sql.SQL("INSERT INTO {t} ({cols}) VALUES ({vals})").format(
        t=sql.Identifier(table),
        cols=sql.SQL(", ").join(map(sql.Identifier, rows[0])),
        vals=sql.SQL(", ").join(map(sql.Placeholder, rows[0])),
    )
    async with conn.cursor() as cur:
        await cur.executemany(query, [_wrap(r) for r in rows])
    return len(rows)


async def existing_sites(conn: Conn, *, ids: list[str]) -> list[str]:
    """Which of ``ids`` are registered sites already (unscoped: for seeding and provisioning)."""
    cur = await conn.execute("SELECT id FROM sites WHERE id = ANY(%(ids)s) ORDER BY id", {"ids": ids})
    return [str(r["id"]) for r in await cur.fetchall()]


async def update(
    conn: Conn, *, table: str, key: dict[str, Any], fields: dict[str, Any]
) -> dict[str, Any] | None:
    where = sql.SQL(" AND ").join(
        sql.SQL("{} = {}").format(sql.Identifier(k), sql.Placeholder(f"key_{k}")) for k in key
    )
    params = {**_wrap(fields), **{f"key_{k}": v for k, v in key.items()}}
    if not fields:
        query = sql.SQL("SELECT * FROM {t} WHERE {w}").format(t=sql.Identifier(table), w=where)
    else:
        sets = sql.SQL(", ").join(
            sql.SQL("{} = {}").format(sql.Identifier(k), sql.Placeholder(k)) for k in fields
        )
        query = sql.SQL("UPDATE {t} SET {s} WHERE {w} RETURNING *").format(
            t=sql.Identifier(table), s=sets, w=where
        )
    cur = await conn.execute(query, params)
    return await cur.fetchone()


async def change(
    conn: Conn, *, table: str, key: dict[str, Any], fields: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Update one row and return it before and after (locked between, for the audit's diff);
    None when there is no such row. Runs in the caller's transaction if there is one."""
    where = sql.SQL(" AND ").join(
        sql.SQL("{} = {}").format(sql.Identifier(k), sql.Placeholder(f"key_{k}")) for k in key
    )
    params = {f"key_{k}": v for k, v in key.items()}
    async with conn.transaction():
        cur = await conn.execute(
            sql.SQL("SELECT * FROM {t} WHERE {w} FOR UPDATE").format(t=sql.Identifier(table), w=where),
            params,
        )
        old = await cur.fetchone()
        if old is None:
            return None
        new = await update(conn, table=table, key=key, fields=fields)
    assert new is not None
    return old, new


async def delete_returning(conn: Conn, *, table: str, key: dict[str, Any]) -> dict[str, Any] | None:
    """Delete one row and return what it was (for the audit log); None when there was none."""
    where = sql.SQL(" AND ").join(
        sql.SQL("{} = {}").format(sql.Identifier(k), sql.Placeholder(k)) for k in key
    )
    cur = await conn.execute(
        sql.SQL("DELETE FROM {t} WHERE {w} RETURNING *").format(t=sql.Identifier(table), w=where), key
    )
    return await cur.fetchone()


async def delete(conn: Conn, *, table: str, key: dict[str, Any]) -> bool:
    where = sql.SQL(" AND ").join(
        sql.SQL("{} = {}").format(sql.Identifier(k), sql.Placeholder(k)) for k in key
    )
    cur = await conn.execute(
        sql.SQL("DELETE FROM {t} WHERE {w}").format(t=sql.Identifier(table), w=where), key
    )
    return cur.rowcount > 0


# Providers --------------------------------------------------------------------------------------------

PROVIDER_COLS = sql.SQL(
    "p.id, p.name, p.kind, p.district, p.phone, p.webhook_url,"
    " coalesce(p.webhook_secret, '') <> '' AS webhook_secret_set, p.created_at"
)


async def list_providers(conn: Conn, *, user: Principal) -> list[dict[str, Any]]:
    scope = sql.SQL("true") if user.role == "admin" else sql.SQL("p.id = %(scope_pid)s")
    query = sql.SQL("SELECT {c} FROM providers p WHERE {s} ORDER BY p.id").format(c=PROVIDER_COLS, s=scope)
    cur = await conn.execute(query, scope_params(user))
    return await cur.fetchall()


async def get_provider(conn: Conn, *, user: Principal, provider_id: str) -> dict[str, Any] | None:
    scope = sql.SQL("true") if user.role == "admin" else sql.SQL("p.id = %(scope_pid)s")
    query = sql.SQL("SELECT {c} FROM providers p WHERE p.id = %(id)s AND {s}").format(
        c=PROVIDER_COLS, s=scope
    )
    cur = await conn.execute(query, {**scope_params(user), "id": provider_id})
    return await cur.fetchone()


# Sites ------------------------------------------------------------------------------------------------


async def list_sites(conn: Conn, *, user: Principal, kind: str | None = None) -> list[dict[str, Any]]:
    query = sql.SQL(
        "SELECT s.* FROM sites s WHERE {scope}"
        " AND (%(kind)s::text IS NULL OR s.kind = %(kind)s) ORDER BY s.id"
    ).format(scope=site_scope(user))
    cur = await conn.execute(query, {**scope_params(user), "kind": kind})
    return await cur.fetchall()


async def get_site(conn: Conn, *, user: Principal, site_id: str) -> dict[str, Any] | None:
    query = sql.SQL("SELECT s.* FROM sites s WHERE s.id = %(id)s AND {scope}").format(scope=site_scope(user))
    cur = await conn.execute(query, {**scope_params(user), "id": site_id})
    return await cur.fetchone()


# Residents --------------------------------------------------------------------------------------------


async def list_residents(
    conn: Conn,
    *,
    user: Principal,
    site_id: str | None = None,
    limit: int = 100,
    after: str | None = None,
) -> list[dict[str, Any]]:
    query = sql.SQL(
        "SELECT r.* FROM residents r WHERE {scope}"
        " AND (%(site)s::text IS NULL OR r.home_site_id = %(site)s OR r.station_site_id = %(site)s)"
        " AND (%(after)s::text IS NULL OR r.id > %(after)s) ORDER BY r.id LIMIT %(limit)s"
    ).format(scope=resident_scope(user))
    cur = await conn.execute(query, {**scope_params(user), "site": site_id, "after": after, "limit": limit})
    return await cur.fetchall()


async def get_resident(conn: Conn, *, resident_id: str) -> dict[str, Any] | None:
    """Unscoped: callers check access first (``access.require_resident_access``). With the names
    (and the home-care provider's phone) of the providers, so no page shows a family a raw id."""
    cur = await conn.execute(
        """
        SELECT r.*, hp.name AS home_care_provider_name, hp.phone AS home_care_provider_phone,
               ip.name AS institution_provider_name
        FROM residents r
        LEFT JOIN providers hp ON hp.id = r.home_care_provider_id
        LEFT JOIN providers ip ON ip.id = r.institution_provider_id
        WHERE r.id = %(id)s
        """,
        {"id": resident_id},
    )
    return await cur.fetchone()


# Gateways and sensors ---------------------------------------------------------------------------------

GATEWAY_COLS = sql.SQL(
    "g.id, g.site_id, g.mqtt_username, g.description, g.config_revision, g.state, g.state_at, g.version,"
    " g.config_applied, g.config_error, g.created_at"
)


async def list_gateways(conn: Conn, *, user: Principal, site_id: str | None = None) -> list[dict[str, Any]]:
    query = sql.SQL(
        "SELECT {c} FROM gateways g JOIN sites s ON s.id = g.site_id WHERE {scope}"
        " AND (%(site)s::text IS NULL OR g.site_id = %(site)s) ORDER BY g.id"
    ).format(c=GATEWAY_COLS, scope=site_scope(user))
    cur = await conn.execute(query, {**scope_params(user), "site": site_id})
    return await cur.fetchall()


async def gateways_health(conn: Conn, *, user: Principal) -> list[dict[str, Any]]:
    """Each visible gateway with its site, clock skew, registered sensors, the sensors' part of its
    latest status, and the names of the residents (the user may see) living at its site."""
    query = sql.SQL(
        """
        SELECT g.id, g.site_id, s.name AS site_name, s.kind AS site_kind, g.state, g.state_at, g.version,
               c.skew_ms AS clock_skew_ms, c.checked_at AS clock_checked_at,
               st.clock_ok, st.sensors AS sensor_status,
               (SELECT coalesce(jsonb_agg(jsonb_build_object('id', se.id, 'kind', se.kind, 'room', se.room)
                                ORDER BY se.id), '[]'::jsonb)
                FROM sensors se WHERE se.gateway_id = g.id) AS sensors,
               (SELECT coalesce(array_agg(r.name ORDER BY r.name), '{{}}') FROM residents r
                WHERE r.home_site_id = s.id AND {rscope}) AS residents
        FROM gateways g JOIN sites s ON s.id = g.site_id
        LEFT JOIN gateway_clocks c ON c.gateway_id = g.id
        LEFT JOIN LATERAL (
            SELECT gs.clock_ok, gs.sensors FROM gateway_status gs
            WHERE gs.gateway_id = g.id ORDER BY gs.ts DESC LIMIT 1
        ) st ON true
        WHERE {scope}
        ORDER BY g.site_id, g.id
        """
    ).format(scope=site_scope(user), rscope=resident_scope(user, "r"))
    cur = await conn.execute(query, scope_params(user))
    return await cur.fetchall()


async def get_gateway(conn: Conn, *, user: Principal, gateway_id: str) -> dict[str, Any] | None:
    query = sql.SQL(
        "SELECT {c}, g.config FROM gateways g JOIN sites s ON s.id = g.site_id"
        " WHERE g.id = %(id)s AND {scope}"
    ).format(c=GATEWAY_COLS, scope=site_scope(user))
    cur = await conn.execute(query, {**scope_params(user), "id": gateway_id})
    return await cur.fetchone()


async def set_gateway_config(
    conn: Conn, *, gateway_id: str, config: dict[str, Any], expected_revision: int | None
) -> dict[str, Any] | None:
    """Store a new config and bump the revision; None when the revision moved meanwhile."""
    cur = await conn.execute(
        "UPDATE gateways SET config = %(c)s || jsonb_build_object('revision', config_revision + 1),"
        " config_revision = config_revision + 1"
        " WHERE id = %(id)s AND (%(exp)s::int IS NULL OR config_revision = %(exp)s)"
        " RETURNING id, site_id, config, config_revision",
        {"c": Jsonb(config), "id": gateway_id, "exp": expected_revision},
    )
    return await cur.fetchone()


async def list_sensors(conn: Conn, *, gateway_id: str) -> list[dict[str, Any]]:
    cur = await conn.execute("SELECT * FROM sensors WHERE gateway_id = %(g)s ORDER BY id", {"g": gateway_id})
    return await cur.fetchall()


# Escalation policies ----------------------------------------------------------------------------------


async def list_policies(conn: Conn) -> list[dict[str, Any]]:
    cur = await conn.execute(
        "SELECT p.id, p.name, p.family_ack_stops, p.created_at,"
        " coalesce(jsonb_agg(jsonb_build_object('tier', t.tier, 'name', t.name, 'targets', t.targets,"
        " 'ack_timeout_s', t.ack_timeout_s) ORDER BY t.tier)"
        " FILTER (WHERE t.tier IS NOT NULL), '[]') AS tiers"
        " FROM escalation_policies p LEFT JOIN escalation_tiers t ON t.policy_id = p.id"
        " GROUP BY p.id ORDER BY p.id",
        {},
    )
    return await cur.fetchall()


async def get_policy(conn: Conn, *, policy_id: int) -> dict[str, Any] | None:
    rows = [p for p in await list_policies(conn) if p["id"] == policy_id]
    return rows[0] if rows else None


async def save_policy(
    conn: Conn,
    *,
    policy_id: int | None,
    name: str,
    tiers: list[dict[str, Any]],
    family_ack_stops: bool = False,
) -> int | None:
    """Create or replace a policy with its tiers in one transaction; None if ``policy_id`` is unknown."""
    params = {"n": name, "id": policy_id, "f": family_ack_stops}
    async with conn.transaction():
        if policy_id is None:
            cur = await conn.execute(
                "INSERT INTO escalation_policies (name, family_ack_stops) VALUES (%(n)s, %(f)s) RETURNING id",
                params,
            )
            row = await cur.fetchone()
        else:
            cur = await conn.execute(
                "UPDATE escalation_policies SET name = %(n)s, family_ack_stops = %(f)s WHERE id = %(id)s"
                " RETURNING id",
                params,
            )
            row = await cur.fetchone()
        if row is None:
            return None
        pid = int(row["id"])
        await conn.execute("DELETE FROM escalation_tiers WHERE policy_id = %(p)s", {"p": pid})
        async with conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO escalation_tiers (policy_id, tier, name, targets, ack_timeout_s)"
                " VALUES (%(p)s, %(tier)s, %(name)s, %(targets)s, %(ack_timeout_s)s)",
                [{**t, "p": pid} for t in tiers],
            )
        return pid


async def policy_in_use(conn: Conn, *, policy_id: int) -> int:
    cur = await conn.execute(
        "SELECT count(*) AS n FROM residents WHERE escalation_policy_id = %(p)s", {"p": policy_id}
    )
    row = await cur.fetchone()
    return int(row["n"]) if row else 0


# On-call shifts ---------------------------------------------------------------------------------------


async def list_shifts(
    conn: Conn, *, provider_id: str, start: datetime | None, end: datetime | None
) -> list[dict[str, Any]]:
    cur = await conn.execute(
        "SELECT o.id, o.provider_id, o.user_id, u.display_name, o.starts_at, o.ends_at FROM oncall_shifts o"
        " JOIN users u ON u.id = o.user_id WHERE o.provider_id = %(p)s"
        " AND (%(end)s::timestamptz IS NULL OR o.starts_at < %(end)s)"
        " AND (%(start)s::timestamptz IS NULL OR o.ends_at > %(start)s) ORDER BY o.starts_at, o.id",
        {"p": provider_id, "start": start, "end": end},
    )
    return await cur.fetchall()


async def get_shift(conn: Conn, *, shift_id: int) -> dict[str, Any] | None:
    cur = await conn.execute(
        "SELECT o.id, o.provider_id, o.user_id, u.display_name, o.starts_at, o.ends_at FROM oncall_shifts o"
        " JOIN users u ON u.id = o.user_id WHERE o.id = %(id)s",
        {"id": shift_id},
    )
    return await cur.fetchone()


async def on_duty(conn: Conn, *, provider_id: str, at: datetime) -> list[dict[str, Any]]:
    """Who is on duty for a provider at ``at`` (the engine's tier targets use the same rule)."""
    cur = await conn.execute(
        "SELECT o.user_id, u.display_name FROM oncall_shifts o JOIN users u ON u.id = o.user_id"
        " WHERE o.provider_id = %(p)s AND o.starts_at <= %(at)s AND o.ends_at > %(at)s AND u.active",
        {"p": provider_id, "at": at},
    )
    return await cur.fetchall()


async def provision_gateway(
    conn: Conn, *, gateway: dict[str, Any], sensors: list[dict[str, Any]]
) -> dict[str, Any]:
    """Insert a gateway (credentials already hashed, config built) and its sensors atomically."""
    async with conn.transaction():
        row = await insert(conn, table="gateways", fields=gateway)
        for s in sensors:
            await insert(conn, table="sensors", fields={**s, "gateway_id": gateway["id"]})
    return row


async def list_unknown_sensors(conn: Conn) -> list[dict[str, Any]]:
    """Sensor ids gateways sent that are still not registered (ingest stores their data and notes them)."""
    cur = await conn.execute(
        "SELECT u.gateway_id, g.site_id, u.sensor_id, u.first_seen, u.last_seen FROM unknown_sensors u"
        " JOIN gateways g ON g.id = u.gateway_id"
        " WHERE NOT EXISTS (SELECT 1 FROM sensors s WHERE s.gateway_id = u.gateway_id AND s.id = u.sensor_id)"
        " ORDER BY u.gateway_id, u.sensor_id",
        {},
    )
    return await cur.fetchall()


async def set_gateway_password(
    conn: Conn, *, gateway_id: str, password_hash: str, broker_hash: str
) -> str | None:
    cur = await conn.execute(
        "UPDATE gateways SET mqtt_password_hash = %(h)s, broker_password_hash = %(b)s WHERE id = %(id)s"
        " RETURNING mqtt_username",
        {"h": password_hash, "b": broker_hash, "id": gateway_id},
    )
    row = await cur.fetchone()
    return None if row is None else str(row["mqtt_username"])


# Broker accounts --------------------------------------------------------------------------------------

BROKER_FILES_LOCK = 0x656C6463_62726F6B  # "eldc" "brok": one writer of the broker files at a time


async def lock_broker_files(conn: Conn) -> None:
    """Serialise rewriting the broker files across API replicas until the transaction ends.

    Whoever takes the lock last reads the registry after every earlier change committed, so the
    last files written are never missing a gateway another replica just provisioned.
    """
    await conn.execute("SELECT pg_advisory_xact_lock(%(k)s)", {"k": BROKER_FILES_LOCK})


async def broker_gateways(conn: Conn) -> list[dict[str, Any]]:
    """Every enabled gateway's MQTT username, site and Mosquitto hash (None: not issued since
    migration 0003). A disabled gateway has no broker account: it cannot even connect."""
    cur = await conn.execute(
        "SELECT id, site_id, mqtt_username, broker_password_hash FROM gateways"
        " WHERE disabled_at IS NULL ORDER BY mqtt_username",
        {},
    )
    return await cur.fetchall()
