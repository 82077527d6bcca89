"""A small, known world for platform tests (API, engine, web consoles) to build on.

``seed_world(conn)`` inserts, in one transaction:

- providers ``hc-1`` (home care, serves ``res-1``), ``hc-2`` (home care, serves ``res-2``),
  ``st-1`` (community station), ``inst-1`` (institution);
- sites ``station-1`` (station run by ``st-1``), ``home-1``, ``home-2``, ``inst-site-1`` and the
  simulated home ``sim-home-1``;
- residents ``res-1`` (home-1, attends station-1, hc-1 + inst-1), ``res-2`` (home-2, hc-2) and
  ``sim-res-1`` (simulated, sim-home-1, hc-1), all on the 3-tier policy ``default``;
- gateways ``gw-home-1``, ``gw-home-2``, ``gw-station-1``, ``gw-sim-1`` with sensors per room
  (pir-kitchen, pir-bathroom, bed-1, door-front, plug-kettle, sos-1) and a wearable per resident;
- users (password :data:`PASSWORD` for everyone): ``admin``; care workers ``worker1`` (hc-1,
  assigned to res-1), ``worker2`` (hc-2), ``station1`` (st-1, on duty now), ``nurse1`` (inst-1, on
  duty now); family ``family1`` (daughter of res-1, default consent), ``family2`` (son of res-2,
  consent for activity and bed); ``tester``;
- policy ``default``: tier 1 family + assigned_worker, tier 2 station_on_duty, tier 3
  institution_on_duty, with ``ack_timeouts`` seconds (engine tests pass a few seconds).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

PASSWORD = "eldercare-test-pw"  # every seeded user's password

ROOM_SENSORS: tuple[tuple[str, str, str], ...] = (
    ("pir-kitchen", "pir", "kitchen"),
    ("pir-bathroom", "pir", "bathroom"),
    ("pir-bedroom", "pir", "bedroom"),
    ("bed-1", "bed", "bedroom"),
    ("door-front", "door", "hall"),
    ("plug-kettle", "plug", "kitchen"),
    ("sos-1", "sos", "living"),
)


@dataclass
class World:
    """Ids of what :func:`seed_world` inserted, for tests to refer to."""

    users: dict[str, int] = field(default_factory=dict)  # username -> users.id
    policy_id: int = 0
    providers: tuple[str, ...] = ("hc-1", "hc-2", "st-1", "inst-1")
    sites: tuple[str, ...] = ("station-1", "home-1", "home-2", "inst-site-1", "sim-home-1")
    residents: tuple[str, ...] = ("res-1", "res-2", "sim-res-1")
    gateways: dict[str, str] = field(
        default_factory=lambda: {
            "gw-home-1": "home-1",
            "gw-home-2": "home-2",
            "gw-station-1": "station-1",
            "gw-sim-1": "sim-home-1",
        }
    )
    password: str = PASSWORD

    def user_id(self, username: str) -> int:
        return self.users[username]


def _hasher() -> Any:
    from argon2 import PasswordHasher

    return PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)  # cheap: tests only


def seed_world(
    conn: psycopg.Connection[Any],
    *,
    ack_timeouts: tuple[int, int, int] = (300, 600, 900),
    now: datetime | None = None,
) -> World:
    """Insert the world described in the module docstring; ``conn`` may be autocommit or not."""
    now = now or datetime.now(UTC)
    ph = _hasher()
    pw_hash = ph.hash(PASSWORD)
    world = World()
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO providers (id, name, kind, district, phone) VALUES (%s, %s, %s, %s, %s)",
            [
                ("hc-1", "Sunrise Home Care", "home_care", "Xuhui", "021-1000"),
                ("hc-2", "Harbour Home Care", "home_care", "Pudong", "021-2000"),
                ("st-1", "Maple Community Station", "station", "Xuhui", "021-3000"),
                ("inst-1", "Pine Nursing Home", "institution", "Xuhui", "021-4000"),
            ],
        )
        cur.execute("INSERT INTO escalation_policies (name) VALUES ('default') RETURNING id")
        row = cur.fetchone()
        assert row is not None
        world.policy_id = int(row[0])
        cur.executemany(
            "INSERT INTO escalation_tiers (policy_id, tier, name, targets, ack_timeout_s)"
            " VALUES (%s, %s, %s, %s, %s)",
            [
                (world.policy_id, 1, "family and home-care worker", ["family", "assigned_worker"],
                 ack_timeouts[0]),
                (world.policy_id, 2, "community station on duty", ["station_on_duty"], ack_timeouts[1]),
                (world.policy_id, 3, "institution nurse on duty", ["institution_on_duty"], ack_timeouts[2]),
            ],
        )  # fmt: skip
        cur.executemany(
            "INSERT INTO sites (id, kind, name, district, address, provider_id, simulated)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [
                ("station-1", "station", "Maple Station", "Xuhui", "1 Maple Rd", "st-1", False),
                ("inst-site-1", "institution", "Pine Nursing Home", "Xuhui", "9 Pine Rd", "inst-1", False),
                ("home-1", "home", "Home of Wang Fang", "Xuhui", "12 Elm St", None, False),
                ("home-2", "home", "Home of Li Wei", "Pudong", "34 Oak St", None, False),
                ("sim-home-1", "home", "Simulated home 1", "Xuhui", None, None, True),
            ],
        )
        cur.executemany(
            "INSERT INTO residents (id, name, home_site_id, station_site_id, home_care_provider_id,"
            " institution_provider_id, care_level, birth_year, sex, escalation_policy_id, simulated)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                ("res-1", "Wang Fang", "home-1", "station-1", "hc-1", "inst-1", "partly_dependent", 1938,
                 "f", world.policy_id, False),
                ("res-2", "Li Wei", "home-2", None, "hc-2", None, "independent", 1941, "m",
                 world.policy_id, False),
                ("sim-res-1", "Sim Resident", "sim-home-1", None, "hc-1", None, "independent", 1940, "f",
                 world.policy_id, True),
            ],
        )  # fmt: skip
        for gw, site in world.gateways.items():
            cur.execute(
                "INSERT INTO gateways (id, site_id, mqtt_username, mqtt_password_hash, state, state_at)"
                " VALUES (%s, %s, %s, %s, 'online', %s)",
                (gw, site, gw, ph.hash(f"mqtt-{gw}"), now),
            )
        residents_at = {"gw-home-1": "res-1", "gw-home-2": "res-2", "gw-sim-1": "sim-res-1"}
        for gw, res in residents_at.items():
            rows = [(gw, sid, kind, room, None) for sid, kind, room in ROOM_SENSORS]
            rows.append((gw, f"wearable-{res}", "wearable", None, res))
            cur.executemany(
                "INSERT INTO sensors (gateway_id, id, kind, room, resident_id) VALUES (%s, %s, %s, %s, %s)",
                rows,
            )
        cur.execute(
            "INSERT INTO sensors (gateway_id, id, kind, room)"
            " VALUES ('gw-station-1', 'pir-hall', 'pir', 'hall')"
        )
        users = [
            ("admin", "Admin", "admin", None, "en"),
            ("worker1", "Zhang Min", "care_worker", "hc-1", "zh-CN"),
            ("worker2", "Chen Jie", "care_worker", "hc-2", "zh-CN"),
            ("station1", "Liu Yang", "care_worker", "st-1", "zh-CN"),
            ("nurse1", "Zhao Li", "care_worker", "inst-1", "zh-CN"),
            ("family1", "Wang Xiu", "family", None, "zh-CN"),
            ("family2", "Li Ming", "family", None, "en"),
            ("tester", "Test Driver", "tester", None, "en"),
        ]
        for username, display, role, provider, locale in users:
            cur.execute(
                "INSERT INTO users (username, display_name, password_hash, role, provider_id, locale, email)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
                (username, display, pw_hash, role, provider, locale, f"{username}@example.org"),
            )
            row = cur.fetchone()
            assert row is not None
            world.users[username] = int(row[0])
        cur.executemany(
            "INSERT INTO family_links (user_id, resident_id, relation, is_primary, consent)"
            " VALUES (%s, %s, %s, %s, %s)",
            [
                (world.users["family1"], "res-1", "daughter", True, Jsonb({})),
                (world.users["family2"], "res-2", "son", True, Jsonb({"activity": True, "bed": True})),
            ],
        )
        cur.execute(
            "INSERT INTO care_assignments (resident_id, user_id) VALUES ('res-1', %s), ('sim-res-1', %s)",
            (world.users["worker1"], world.users["worker1"]),
        )
        cur.executemany(
            "INSERT INTO oncall_shifts (provider_id, user_id, starts_at, ends_at) VALUES (%s, %s, %s, %s)",
            [
                ("st-1", world.users["station1"], now - timedelta(days=1), now + timedelta(days=1)),
                ("inst-1", world.users["nurse1"], now - timedelta(days=1), now + timedelta(days=1)),
            ],
        )
    return world


def queue_sos(db_url: str, n: int) -> None:
    """``n`` SOS events at each of the world's two homes, queued for the engine as ingest queues them."""
    import json

    with psycopg.connect(db_url, autocommit=True) as conn:
        for i, (gw, site, res) in enumerate(
            [("gw-home-1", "home-1", "res-1"), ("gw-home-2", "home-2", "res-2")] * n
        ):
            payload = {
                "v": 1, "epoch": "e-1", "seq": i, "t": 1_800_000_000_000, "sensor": "sos-1",
                "kind": "sos", "resident": res, "evidence": {}, "gateway": gw, "site": site,
            }  # fmt: skip
            conn.execute(
                "WITH w AS (INSERT INTO alert_work (kind, gateway_id, site_id, payload)"
                " VALUES ('event', %s, %s, %s) RETURNING id)"
                " SELECT pg_notify('alert_work', id::text) FROM w",
                (gw, site, json.dumps(payload)),
            )
