"""A simulated neighbourhood as plain data: homes, stations, providers, people, rosters, policy.

:func:`plan` is pure and seeded; :mod:`.store` writes a plan into the platform's database and
:func:`manifest` turns it into the JSON the runner, the trigger and the load tools read. The
manifest holds the plain-text passwords of the simulated gateways and users (the database only
their argon2 hashes): it is a test fixture, keep it out of production.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import random
from dataclasses import dataclass, field
from typing import Any

from eldercare.simulators.routine import HOUR, HomeSim, ResidentProfile, SensorSpec, home_sensors
from eldercare.simulators.scenario import home_ids, home_seed

MANIFEST_VERSION = 1
CARE_LEVELS = ("independent", "partly_dependent", "dependent", "dementia")
HOMES_PER_AGENCY = 50
HOMES_PER_WORKER = 10
# (tier, name, targets, acknowledgement deadline s): targets as the escalation_tiers table spells them
DEFAULT_TIERS: tuple[tuple[int, str, tuple[str, ...], int], ...] = (
    (1, "family and home-care worker", ("family", "assigned_worker"), 300),
    (2, "community station on duty", ("station_on_duty",), 600),
    (3, "institution nurse on duty", ("institution_on_duty",), 900),
)
STATION_SENSORS: tuple[tuple[SensorSpec, ...], ...] = (
    (
        SensorSpec("door-entrance", "door", "entrance"),
        SensorSpec("pir-entrance", "pir", "entrance"),
        SensorSpec("pir-dining", "pir", "dining"),
    ),
    (
        SensorSpec("pir-activity", "pir", "activity"),
        SensorSpec("pir-restroom", "pir", "restroom"),
        SensorSpec("sos-station", "sos", "activity"),
    ),
)
_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林高罗"
_GIVEN = "秀英桂兰玉兰淑珍凤英建国志强德明国华永福"


def secret(seed: int, prefix: str, name: str) -> str:
    """A deterministic password for a simulated account (so testers can log in again)."""
    key = f"eldercare-sim:{seed}:{prefix}".encode()
    return hmac.new(key, name.encode(), hashlib.sha256).hexdigest()[:20]


@dataclass(frozen=True, slots=True)
class Gateway:
    id: str
    site: str
    password: str
    sensors: tuple[dict[str, Any], ...]  # {"id", "kind", "room", "resident"?, "appliance"?}


@dataclass(frozen=True, slots=True)
class Home:
    index: int
    site: str
    resident: str
    name: str
    seed: int
    profile: ResidentProfile
    gateway: Gateway
    district: str
    agency: str
    station: str | None
    care_level: str
    birth_year: int
    sex: str
    worker: str  # username of the assigned home-care worker
    family: tuple[tuple[str, str], ...]  # (username, relation)
    partner: ResidentProfile | None = None  # a home of two: the second resident (id: first's + "-2")
    partner_name: str | None = None


@dataclass(frozen=True, slots=True)
class Station:
    site: str
    provider: str
    name: str
    gateways: tuple[Gateway, ...]


@dataclass(frozen=True, slots=True)
class User:
    username: str
    display_name: str
    role: str
    password: str
    provider: str | None = None
    locale: str = "zh-CN"
    # a reserved domain: in the demo, mail "sent" to it lands in the outbox (ELDERCARE_MAIL_OUTBOX)
    email: str | None = None


@dataclass(frozen=True, slots=True)
class Provider:
    id: str
    name: str
    kind: str  # home_care | station | institution
    district: str


@dataclass(slots=True)
class Plan:
    prefix: str
    seed: int
    policy: str
    providers: list[Provider] = field(default_factory=list)
    stations: list[Station] = field(default_factory=list)
    homes: list[Home] = field(default_factory=list)
    users: list[User] = field(default_factory=list)
    shifts: list[tuple[str, str, float, float]] = field(default_factory=list)  # provider, user, from, to


def _name(r: random.Random) -> str:
    return r.choice(_SURNAMES) + r.choice(_GIVEN[::2]) + r.choice(_GIVEN[1::2])


def plan(
    seed: int,
    homes: int,
    stations: int,
    *,
    prefix: str = "sim",
    now: float,
    roster_days: int = 30,
    couples: float = 0.0,
) -> Plan:
    """The whole neighbourhood for ``homes`` homes and ``stations`` stations, rosters from ``now``.

    ``couples``: the share of homes with two residents (the same homes a scenario with this seed
    and share would pick).
    """
    from eldercare.simulators.couple import is_couple, partner_of

    if homes < 0 or stations < 0:
        raise ValueError("homes and stations must be >= 0")
    r = random.Random(f"{seed}:neighbourhood:{prefix}")
    p = Plan(prefix, seed, f"{prefix}-default")
    users = p.users

    def user(username: str, role: str, provider: str | None = None, display: str | None = None) -> str:
        email = f"{username}@example.org" if role in ("family", "care_worker") else None
        users.append(
            User(username, display or username, role, secret(seed, prefix, username), provider, email=email)
        )
        return username

    user(f"{prefix}-tester", "tester", display="Simulation tester / 模拟测试员")
    user(f"{prefix}-admin", "admin", display="Simulation admin / 模拟管理员")
    inst = Provider(f"{prefix}-inst-1", "颐养院 Evergreen Care Home", "institution", "District 1")
    p.providers.append(inst)
    nurses = [user(f"{prefix}-nurse-{k}", "care_worker", inst.id, f"护士 Nurse {k}") for k in (1, 2)]
    n_agencies = max(1, -(-homes // HOMES_PER_AGENCY))
    agencies = [
        Provider(f"{prefix}-hc-{k + 1}", f"居家护理 Home Care {k + 1}", "home_care", f"District {k % 4 + 1}")
        for k in range(n_agencies)
    ]
    p.providers += agencies
    workers: list[str] = []
    for k in range(max(1, -(-homes // HOMES_PER_WORKER))):
        agency = agencies[k * HOMES_PER_WORKER // HOMES_PER_AGENCY % n_agencies]
        workers.append(user(f"{prefix}-cw-{k + 1}", "care_worker", agency.id, f"护理员 Care worker {k + 1}"))
    staff: dict[str, list[str]] = {}
    for j in range(stations):
        sid = f"{prefix}-station-{j + 1:02d}"
        prov = Provider(
            f"{prefix}-st-{j + 1:02d}", f"长者驿站 Elder Station {j + 1}", "station", f"District {j % 4 + 1}"
        )
        p.providers.append(prov)
        gws = tuple(
            Gateway(
                f"{prefix}-stgw-{j + 1:02d}-{g + 1}",
                sid,
                secret(seed, prefix, f"{sid}-gw{g + 1}"),
                tuple({"id": s.id, "kind": s.kind, "room": s.room} for s in specs),
            )
            for g, specs in enumerate(STATION_SENSORS)
        )
        p.stations.append(Station(sid, prov.id, f"长者驿站 Elder Station {j + 1}", gws))
        staff[prov.id] = [
            user(f"{prefix}-staff-{j + 1}-{s}", "care_worker", prov.id, f"驿站员工 Staff {j + 1}-{s}")
            for s in (1, 2)
        ]
    for i in range(homes):
        ids = home_ids(prefix, i)
        hs = home_seed(seed, i)
        profile = ResidentProfile.draw(hs, resident=ids["resident"])
        station = p.stations[i % stations].site if stations and profile.station_days else None
        sensors = [
            {
                "id": s.id,
                "kind": s.kind,
                "room": s.room,
                **({"appliance": s.appliance} if s.appliance else {}),
                **({"resident": ids["resident"]} if s.kind == "bed" else {}),  # whose mat it is
            }
            for s in home_sensors(profile)
        ]
        sensors += [
            {"id": "wearable-1", "kind": "wearable", "room": None, "resident": ids["resident"]},  # type: ignore[dict-item]
            {"id": "env-1", "kind": "env", "room": "living"},
        ]
        partner = partner_of(profile, hs, f"{ids['resident']}-2") if is_couple(seed, i, couples) else None
        if partner is not None:
            sensors += [
                {"id": "bed-2", "kind": "bed", "room": "bedroom", "resident": partner.resident},  # type: ignore[dict-item]
                {"id": "sos-2", "kind": "sos", "room": "living"},
                {"id": "wearable-2", "kind": "wearable", "room": None, "resident": partner.resident},  # type: ignore[dict-item]
            ]
        gw = Gateway(ids["gateway"], ids["site"], secret(seed, prefix, ids["gateway"]), tuple(sensors))
        agency = agencies[i // HOMES_PER_AGENCY % n_agencies]
        family = tuple(
            (user(f"{prefix}-fam-{i + 1:04d}-{f + 1}", "family", None, f"家属 Family {i + 1}-{f + 1}"), rel)
            for f, rel in enumerate(r.sample(("daughter", "son", "niece", "spouse"), r.choice((1, 1, 2))))
        )
        p.homes.append(
            Home(
                index=i,
                site=ids["site"],
                resident=ids["resident"],
                name=_name(r),
                seed=hs,
                profile=profile,
                gateway=gw,
                district=agency.district,
                agency=agency.id,
                station=station,
                care_level=r.choices(CARE_LEVELS, weights=(5, 3, 1, 1))[0],
                birth_year=r.randint(1928, 1956),
                sex=r.choice("fm"),
                worker=workers[i // HOMES_PER_WORKER],
                family=family,
                partner=partner,
                partner_name=_name(random.Random(f"{seed}:partner:{i}")) if partner else None,
            )
        )
    # rosters: 12-hour shifts alternating between two people, from a day ago over roster_days
    t0 = (now // (12 * HOUR) - 2) * 12 * HOUR
    rosters = {inst.id: nurses, **staff}
    for a in agencies:
        rosters[a.id] = [u.username for u in users if u.provider == a.id] or workers[:1]
    for provider, people in rosters.items():
        for k in range(roster_days * 2 + 2):
            start = t0 + k * 12 * HOUR
            p.shifts.append((provider, people[k % len(people)], start, start + 12 * HOUR))
    return p


def manifest(p: Plan, *, topic_root: str, created_at: float, start: float) -> dict[str, Any]:
    """What the runner and tools need: ids, sensors, credentials, profiles. JSON-serialisable."""

    def gw(g: Gateway) -> dict[str, Any]:
        return {
            "id": g.id,
            "site": g.site,
            "mqtt_username": g.id,
            "mqtt_password": g.password,
            "sensors": list(g.sensors),
        }

    out = {
        "version": MANIFEST_VERSION,
        "prefix": p.prefix,
        "seed": p.seed,
        "created_at": created_at,
        "start": start,
        "topic_root": topic_root,
        "policy": p.policy,
        "homes": [
            {
                "index": h.index,
                "site": h.site,
                "resident": h.resident,
                "seed": h.seed,
                "station": h.station,
                "gateway": gw(h.gateway),
                "profile": dataclasses.asdict(h.profile),
                "partner": {"resident": h.partner.resident, "profile": dataclasses.asdict(h.partner)}
                if h.partner
                else None,
            }
            for h in p.homes
        ],
        "stations": [
            {"site": s.site, "provider": s.provider, "gateways": [gw(g) for g in s.gateways]}
            for s in p.stations
        ],
        "users": [
            {"username": u.username, "password": u.password, "role": u.role, "provider": u.provider}
            for u in p.users
        ],
    }
    return json.loads(json.dumps(out))  # plain JSON types: lists, not tuples


def home_sim(
    home: dict[str, Any], day0: float, *, drop_rate: float = 0.0, spurious_rate: float = 0.0
) -> HomeSim:
    """A manifest home's (first) resident, their days planned from midnight ``day0``, as the runner
    does (with a scenario's radio faults, ``drop_rate`` and ``spurious_rate``, if any)."""
    return HomeSim(
        home["seed"],
        start=day0,
        profile=profile_from(home["profile"]),
        site=home["site"],
        drop_rate=drop_rate,
        spurious_rate=spurious_rate,
    )


def profile_from(d: dict[str, Any]) -> ResidentProfile:
    """A ResidentProfile back from its manifest form (lists to tuples)."""
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
    return ResidentProfile(**fields)
