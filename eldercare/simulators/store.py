"""The simulators' storage: a seeded neighbourhood written through the platform's repositories
(``platform.repo.registry`` and ``users``, one transaction), alerts read back for scoring.

Passwords (gateways' MQTT credentials, users') are stored as argon2 hashes; simulated gateways use
a cheap argon2 profile so that a thousand homes seed in seconds (the hash string carries its
parameters, so verification works unchanged).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg

from eldercare.broker_hash import mosquitto_hash
from eldercare.platform.repo import registry, sim, users
from eldercare.platform.repo.connections import Conn, connect
from eldercare.scoring import AlertRow, TrailRow, alert_rows
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


def seed(url: str, p: Plan, hash_password: Callable[[str], str] | None = None) -> dict[str, int]:
    """Register the plan through the platform's repositories, in one transaction; returns row
    counts per table. ``hash_password`` (tests) replaces both argon2 profiles."""
    return asyncio.run(_seed(url, p, hash_password))


async def _seed(url: str, p: Plan, hash_password: Callable[[str], str] | None) -> dict[str, int]:
    try:
        async with await connect(url) as conn, conn.transaction():
            await _refuse_taken(conn, p)
            policy_id = await _policy(conn, p)
            counts = {"providers": await registry.insert_many(conn, table="providers", rows=_providers(p))}
            counts["sites"] = await registry.insert_many(conn, table="sites", rows=_sites(p))
            counts["residents"] = await registry.insert_many(
                conn, table="residents", rows=_residents(p, policy_id)
            )
            gateways, sensors = _gateways(p, hash_password or cheap_hasher())
            counts["gateways"] = await registry.insert_many(conn, table="gateways", rows=gateways)
            counts["sensors"] = await registry.insert_many(conn, table="sensors", rows=sensors)
            counts |= await _people(conn, p, hash_password or production_hasher())
    except psycopg.errors.UndefinedTable:
        raise StoreError("the database has no eldercare schema; run `eldercare db migrate` first") from None
    return counts


async def _refuse_taken(conn: Conn, p: Plan) -> None:
    """A plan goes into a database once: its sites' ids (the prefix) must be free."""
    ids = [h.site for h in p.homes] + [s.site for s in p.stations]
    if await registry.existing_sites(conn, ids=ids):
        raise StoreError(
            f"sites with prefix {p.prefix!r} already exist; use another --prefix or a fresh database"
        )


async def _policy(conn: Conn, p: Plan) -> int:
    """The simulated residents' escalation policy (the default tiers)."""
    tiers = [
        {"tier": tier, "name": name, "targets": list(targets), "ack_timeout_s": ack}
        for tier, name, targets, ack in DEFAULT_TIERS
    ]
    policy_id = await registry.save_policy(conn, policy_id=None, name=p.policy, tiers=tiers)
    assert policy_id is not None
    return policy_id


def _providers(p: Plan) -> list[dict[str, Any]]:
    return [{"id": x.id, "name": x.name, "kind": x.kind, "district": x.district} for x in p.providers]


def _sites(p: Plan) -> list[dict[str, Any]]:
    """The stations (their gateways in the layout), then the homes (rooms and sensors)."""
    stations = [
        _site(s.site, "station", s.name, None, s.provider, {"gateways": [g.id for g in s.gateways]})
        for s in p.stations
    ]
    homes = [
        _site(
            h.site,
            "home",
            f"{h.name}的家 / Home of {h.name}",
            h.district,
            None,
            {
                "rooms": sorted({x["room"] for x in h.gateway.sensors if x.get("room")}),
                "sensors": list(h.gateway.sensors),
            },
        )
        for h in p.homes
    ]
    return stations + homes


def _site(
    site: str, kind: str, name: str, district: str | None, provider: str | None, layout: dict[str, Any]
) -> dict[str, Any]:
    return {
        "id": site,
        "kind": kind,
        "name": name,
        "district": district,
        "provider_id": provider,
        "layout": layout,
        "simulated": True,
        "timezone": "UTC",
    }


def _residents(p: Plan, policy_id: int) -> list[dict[str, Any]]:
    """Each home's resident, then the partners of homes of two (independent, the other sex)."""
    inst = next((x.id for x in p.providers if x.kind == "institution"), None)

    def resident(
        h: Any, rid: str, name: str | None, care_level: str, birth_year: int, sex: str
    ) -> dict[str, Any]:
        return {
            "id": rid,
            "name": name,
            "home_site_id": h.site,
            "station_site_id": h.station,
            "home_care_provider_id": h.agency,
            "institution_provider_id": inst,
            "care_level": care_level,
            "birth_year": birth_year,
            "sex": sex,
            "escalation_policy_id": policy_id,
            "simulated": True,
            "emergency_contacts": [{"username": u, "relation": rel} for u, rel in h.family],
        }

    rows = [resident(h, h.resident, h.name, h.care_level, h.birth_year, h.sex) for h in p.homes]
    rows += [
        resident(
            h,
            h.partner.resident,
            h.partner_name,
            "independent",
            h.birth_year + 2,
            "m" if h.sex == "f" else "f",
        )
        for h in p.homes
        if h.partner is not None
    ]
    return rows


def _gateways(p: Plan, hasher: Callable[[str], str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every gateway (homes' and stations') with its credentials, and its sensors.

    The Mosquitto hash lets ``eldercare broker sync`` give simulated gateways broker accounts."""
    gateways = [(h.gateway, h.site) for h in p.homes] + [(g, s.site) for s in p.stations for g in s.gateways]
    gw_rows = [
        {
            "id": g.id,
            "site_id": site,
            "mqtt_username": g.id,
            "mqtt_password_hash": hasher(g.password),
            "broker_password_hash": mosquitto_hash(g.password),
            "description": "simulated gateway",
        }
        for g, site in gateways
    ]
    sensor_rows = [
        {
            "gateway_id": g.id,
            "id": x["id"],
            "kind": x["kind"],
            "room": x.get("room"),
            "resident_id": x.get("resident"),
            "meta": {k: v for k, v in x.items() if k not in ("id", "kind", "room", "resident")},
        }
        for g, _ in gateways
        for x in g.sensors
    ]
    return gw_rows, sensor_rows


async def _people(conn: Conn, p: Plan, hasher: Callable[[str], str]) -> dict[str, int]:
    """The accounts, then what ties them to residents: family links, care assignments, shifts."""
    user_ids: dict[str, int] = {}
    hashes = _hash_all(hasher, [u.password for u in p.users])
    for u, pw_hash in zip(p.users, hashes, strict=True):
        row = await users.create_user(
            conn,
            password_hash=pw_hash,
            username=u.username,
            display_name=u.display_name,
            role=u.role,
            provider_id=u.provider,
            locale=u.locale,
            phone=None,
            email=u.email,
        )
        user_ids[u.username] = int(row["id"])
    links = [
        {"user_id": user_ids[u], "resident_id": resident, "relation": rel, "is_primary": k == 0}
        for h in p.homes
        for resident in (h.resident, *((h.partner.resident,) if h.partner else ()))
        for k, (u, rel) in enumerate(h.family)
    ]
    cared = [(h.resident, h.worker) for h in p.homes] + [
        (h.partner.resident, h.worker) for h in p.homes if h.partner
    ]
    return {
        "users": len(user_ids),
        "family_links": await registry.insert_many(conn, table="family_links", rows=links),
        "care_assignments": await registry.insert_many(
            conn,
            table="care_assignments",
            rows=[{"resident_id": r, "user_id": user_ids[w]} for r, w in cared],
        ),
        "oncall_shifts": await registry.insert_many(
            conn,
            table="oncall_shifts",
            rows=[
                {"provider_id": prov, "user_id": user_ids[u], "starts_at": _ts(a), "ends_at": _ts(b)}
                for prov, u, a, b in p.shifts
            ],
        ),
    }


# Scoring ---------------------------------------------------------------------------------------


def fetch_alerts(
    url: str, *, sites: list[str], since: float | None = None
) -> tuple[list[AlertRow], list[TrailRow]]:
    """Alerts of the given sites (or their residents) and their trail, times as epoch seconds, read
    through the platform's repository (``platform.repo.sim.alerts_of_sites``)."""
    return asyncio.run(_fetch_alerts(url, sites, None if since is None else _ts(since)))


async def _fetch_alerts(
    url: str, sites: list[str], since: datetime | None
) -> tuple[list[AlertRow], list[TrailRow]]:
    async with await connect(url) as conn:
        alerts, trail = await sim.alerts_of_sites(conn, sites=sites, since=since)
    return alert_rows(alerts, trail, home_time=True)
