"""All SQL of the simulators: writing a seeded neighbourhood, reading alerts back for scoring.

Table names and columns follow ``eldercare/db/migrations/versions``. Passwords (gateways' MQTT
credentials, users') are stored as argon2 hashes; simulated accounts use a cheap argon2 profile so
that a thousand homes seed in seconds (the hash string carries its parameters, so verification
works unchanged).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from eldercare.broker_hash import mosquitto_hash
from eldercare.scoring import AlertRow, TrailRow
from eldercare.simulators.neighbourhood import DEFAULT_TIERS, Plan

log = logging.getLogger(__name__)


class StoreError(Exception):
    """The database refused the simulated neighbourhood (already there, schema missing)."""


def cheap_hasher() -> Callable[[str], str]:
    """argon2id with a low cost: for simulated gateways' random 32-character passwords only."""
    from argon2 import PasswordHasher

    ph = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    return ph.hash


def production_hasher() -> Callable[[str], str]:
    """argon2id with the platform's own parameters: simulated people sign in like real ones, so a
    sign-in's timing does not tell a seeded user name from a real one."""
    from argon2 import PasswordHasher

    return PasswordHasher().hash


def _hash_all(hasher: Callable[[str], str], passwords: list[str]) -> list[str]:
    """Hash on every core (argon2 releases the GIL): seeding hundreds of people stays quick."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return list(pool.map(hasher, passwords))


def _ts(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def seed(
    conn: psycopg.Connection[Any], p: Plan, hash_password: Callable[[str], str] | None = None
) -> dict[str, int]:
    """Insert the plan in one transaction; returns row counts per table."""
    user_hasher = hash_password or production_hasher()
    hash_password = hash_password or cheap_hasher()
    site_ids = [h.site for h in p.homes] + [s.site for s in p.stations]
    counts: dict[str, int] = {}
    with conn.transaction(), conn.cursor() as cur:
        try:
            cur.execute("SELECT id FROM sites WHERE id = ANY(%s) LIMIT 1", (site_ids,))
        except psycopg.errors.UndefinedTable:
            raise StoreError(
                "the database has no eldercare schema; run `eldercare db migrate` first"
            ) from None
        if cur.fetchone() is not None:
            raise StoreError(
                f"sites with prefix {p.prefix!r} already exist; use another --prefix or a fresh database"
            )
        cur.executemany(
            "INSERT INTO providers (id, name, kind, district) VALUES (%s, %s, %s, %s)",
            [(x.id, x.name, x.kind, x.district) for x in p.providers],
        )
        counts["providers"] = len(p.providers)
        cur.execute("INSERT INTO escalation_policies (name) VALUES (%s) RETURNING id", (p.policy,))
        row = cur.fetchone()
        assert row is not None
        policy_id = row[0]
        cur.executemany(
            "INSERT INTO escalation_tiers (policy_id, tier, name, targets, ack_timeout_s)"
            " VALUES (%s, %s, %s, %s, %s)",
            [(policy_id, tier, name, list(targets), ack) for tier, name, targets, ack in DEFAULT_TIERS],
        )
        sites: list[tuple[Any, ...]] = [
            (s.site, "station", s.name, None, s.provider, Jsonb({"gateways": [g.id for g in s.gateways]}))
            for s in p.stations
        ]
        sites += [
            (
                h.site,
                "home",
                f"{h.name}的家 / Home of {h.name}",
                h.district,
                None,
                Jsonb(
                    {
                        "rooms": sorted({x["room"] for x in h.gateway.sensors if x.get("room")}),
                        "sensors": list(h.gateway.sensors),
                    }
                ),
            )
            for h in p.homes
        ]
        cur.executemany(
            "INSERT INTO sites (id, kind, name, district, provider_id, layout, simulated, timezone)"
            " VALUES (%s, %s, %s, %s, %s, %s, true, 'UTC')",
            sites,
        )
        counts["sites"] = len(sites)
        inst = next((x.id for x in p.providers if x.kind == "institution"), None)
        cur.executemany(
            "INSERT INTO residents (id, name, home_site_id, station_site_id, home_care_provider_id,"
            " institution_provider_id, care_level, birth_year, sex, escalation_policy_id, simulated,"
            " emergency_contacts) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, true, %s)",
            [
                (
                    h.resident,
                    h.name,
                    h.site,
                    h.station,
                    h.agency,
                    inst,
                    h.care_level,
                    h.birth_year,
                    h.sex,
                    policy_id,
                    Jsonb([{"username": u, "relation": rel} for u, rel in h.family]),
                )
                for h in p.homes
            ],
        )
        partners = [(h, h.partner) for h in p.homes if h.partner is not None]
        cur.executemany(
            "INSERT INTO residents (id, name, home_site_id, station_site_id, home_care_provider_id,"
            " institution_provider_id, care_level, birth_year, sex, escalation_policy_id, simulated,"
            " emergency_contacts) VALUES (%s, %s, %s, %s, %s, %s, 'independent', %s, %s, %s, true, %s)",
            [
                (
                    b.resident,
                    h.partner_name,
                    h.site,
                    h.station,
                    h.agency,
                    inst,
                    h.birth_year + 2,
                    "m" if h.sex == "f" else "f",
                    policy_id,
                    Jsonb([{"username": u, "relation": rel} for u, rel in h.family]),
                )
                for h, b in partners
            ],
        )
        counts["residents"] = len(p.homes) + len(partners)
        gateways = [(h.gateway, h.site) for h in p.homes] + [
            (g, s.site) for s in p.stations for g in s.gateways
        ]
        # the Mosquitto hash lets `eldercare broker sync` give simulated gateways broker accounts
        cur.executemany(
            "INSERT INTO gateways (id, site_id, mqtt_username, mqtt_password_hash, broker_password_hash,"
            " description) VALUES (%s, %s, %s, %s, %s, %s)",
            [
                (g.id, site, g.id, hash_password(g.password), mosquitto_hash(g.password), "simulated gateway")
                for g, site in gateways
            ],
        )
        counts["gateways"] = len(gateways)
        sensor_rows = [
            (
                g.id,
                x["id"],
                x["kind"],
                x.get("room"),
                x.get("resident"),
                Jsonb({k: v for k, v in x.items() if k not in ("id", "kind", "room", "resident")}),
            )
            for g, _ in gateways
            for x in g.sensors
        ]
        cur.executemany(
            "INSERT INTO sensors (gateway_id, id, kind, room, resident_id, meta)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            sensor_rows,
        )
        counts["sensors"] = len(sensor_rows)
        user_ids: dict[str, int] = {}
        hashes = _hash_all(user_hasher, [u.password for u in p.users])
        for u, pw_hash in zip(p.users, hashes, strict=True):
            cur.execute(
                "INSERT INTO users (username, display_name, password_hash, role, provider_id, locale)"
                " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
                (u.username, u.display_name, pw_hash, u.role, u.provider, u.locale),
            )
            row = cur.fetchone()
            assert row is not None
            user_ids[u.username] = row[0]
        counts["users"] = len(user_ids)
        links = [
            (user_ids[u], resident, rel, k == 0)
            for h in p.homes
            for resident in (h.resident, *((h.partner.resident,) if h.partner else ()))
            for k, (u, rel) in enumerate(h.family)
        ]
        cur.executemany(
            "INSERT INTO family_links (user_id, resident_id, relation, is_primary) VALUES (%s, %s, %s, %s)",
            links,
        )
        counts["family_links"] = len(links)
        cur.executemany(
            "INSERT INTO care_assignments (resident_id, user_id) VALUES (%s, %s)",
            [(h.resident, user_ids[h.worker]) for h in p.homes]
            + [(b.resident, user_ids[h.worker]) for h, b in partners],
        )
        counts["care_assignments"] = len(p.homes) + len(partners)
        cur.executemany(
            "INSERT INTO oncall_shifts (provider_id, user_id, starts_at, ends_at) VALUES (%s, %s, %s, %s)",
            [(prov, user_ids[u], _ts(a), _ts(b)) for prov, u, a, b in p.shifts],
        )
        counts["oncall_shifts"] = len(p.shifts)
    return counts


# Scoring ---------------------------------------------------------------------------------------


def fetch_alerts(
    conn: psycopg.Connection[Any], *, sites: list[str], since: float | None = None
) -> tuple[list[AlertRow], list[TrailRow]]:
    """Alerts of the given sites (or their residents) and their trail, times as epoch seconds."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT a.id, a.kind, a.resident_id, coalesce(a.site_id, r.home_site_id), a.sensor_id,"
            " extract(epoch FROM a.detected_at), extract(epoch FROM a.opened_at),"
            " extract(epoch FROM a.acknowledged_at), a.outcome,"
            " (a.summary ->> 'sim_detected_ms')::double precision / 1000"
            " FROM alerts a LEFT JOIN residents r ON r.id = a.resident_id"
            " WHERE (a.site_id = ANY(%(sites)s) OR r.home_site_id = ANY(%(sites)s))"
            " AND (%(since)s::timestamptz IS NULL OR a.opened_at >= %(since)s::timestamptz)"
            " ORDER BY a.opened_at",
            {"sites": sites, "since": None if since is None else _ts(since)},
        )
        alerts = [
            AlertRow(
                i,
                k,
                res,
                site,
                sen,
                float(d),
                float(o),
                None if a is None else float(a),
                out,
                None if sim is None else float(sim),
            )
            for i, k, res, site, sen, d, o, a, out, sim in cur.fetchall()
        ]
        ids = [a.id for a in alerts]
        cur.execute(
            "SELECT alert_id, extract(epoch FROM at), action, tier FROM alert_trail"
            " WHERE alert_id = ANY(%s) ORDER BY alert_id, at",
            (ids,),
        )
        trail = [TrailRow(i, float(at), action, tier) for i, at, action, tier in cur.fetchall()]
    return alerts, trail
