"""The platform under a city's load, in one run (issue 27).

Seeds a neighbourhood (``eldercare.simulators.neighbourhood``: 250 homes, 5 stations, their
providers, ~370 people, rosters, the default three-tier policy) with a year of history written
by SQL (alerts with their trail and notifications, the audit log, recent readings), starts one
``eldercare serve`` (a subprocess, on a port of its own) and measures against it:

1. read load: 10 / 50 / 200 clients, each a console of one role polling its lists as fast as the
   server answers; requests/s, p50 / p99 per role, errors;
2. fan-out: 1,000 WebSocket consoles, events at 1 / 10 / 50 per second (each an ``alert_work``
   row committed as ingest writes it), with and without 50 polling clients; commit-to-console
   p50 / p99, deliveries, missed and wrong-audience messages;
3. the alarm path under 200 polling clients: an event every 0.5 s, commit-to-console p50 / p99;
4. a storm: 1,000 alerts queued at once (4 kinds per home) while 50 clients poll; when the
   last tier-1 push reached its console, then every alert made due at once and when the last
   tier-2 push arrived after the deadline;
5. a sign-in storm: 100 sign-ins at once while 10 clients poll: 200 / 429 counts, sign-in p99,
   and the pollers' ``GET /alerts`` p99 before and during.

Prints one markdown table with the machine's load average, for docs/performance.md.

    python bench/platform_load.py [--quick] [--port 18500] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import websockets
from psycopg import sql

from eldercare.config import Settings
from eldercare.db import maintain
from eldercare.db.migrate import upgrade
from eldercare.platform.security import create_access_token, hash_password
from eldercare.simulators import neighbourhood, store

PASSWORD = "bench-password-1"
SECRET = "bench-platform-load-secret-key-0123456789abcdef"
KINDS = ("fall", "sos", "vitals")  # events that open an alert about a resident, which then climbs
COUPLES = 0.4  # homes of two: 250 homes give about 340 residents, over 1,000 distinct alerts


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


# Seeding ------------------------------------------------------------------------------------------


def seed(url: str, homes: int, stations: int) -> dict[str, int]:
    """The neighbourhood (cheap hashes: sign-ins are measured with one production hash below)."""
    plan = neighbourhood.plan(7, homes, stations, prefix="city", now=time.time(), couples=COUPLES)
    counts = store.seed(url, plan, hash_password=store.cheap_hasher())
    with psycopg.connect(url) as conn:
        # every person signs in with PASSWORD at the platform's own argon2 cost (one hash, reused)
        conn.execute("UPDATE users SET password_hash = %s", (hash_password(PASSWORD),))
        conn.commit()
    return counts


HISTORY = [
    # ~2 alerts per home per week for a year, resolved (a few recent ones still open); site-level
    # device alerts have no resident
    """
    INSERT INTO alerts (kind, severity, state, resident_id, site_id, dedup_key, title, summary,
                        detected_at, opened_at, last_detected_at, tier, acknowledged_at, resolved_at,
                        outcome, simulated)
    SELECT k.kind, k.severity, 'resolved', CASE WHEN k.kind = 'device_offline' THEN NULL ELSE r.id END,
           r.home_site_id, 'hist-' || r.id || '-' || w || '-' || n, k.kind,
           jsonb_build_object('en', 'history', 'zh-CN', 'history'), t, t, t, 1,
           t + interval '3 minutes', t + interval '20 minutes',
           (ARRAY['confirmed', 'false_alarm', 'no_action_needed'])[1 + (w + n) %% 3], false
    FROM residents r
    CROSS JOIN generate_series(1, %(weeks)s) w CROSS JOIN generate_series(1, 2) n
    CROSS JOIN LATERAL (SELECT now() - make_interval(weeks => w) + make_interval(
        secs => (hashtext(r.id || w || n) & 65535) * 9) AS t) tt
    CROSS JOIN LATERAL (SELECT (ARRAY['inactivity', 'fall', 'sos', 'device_offline', 'low_battery'])[
        1 + (hashtext(r.id || n || w) & 4)] AS kind, 'high' AS severity) k
    """,
    """
    INSERT INTO alert_trail (alert_id, at, action, tier, actor_user_id, detail)
    SELECT a.id, a.opened_at + make_interval(secs => s.o), s.action, 1, NULL, '{}'
    FROM alerts a CROSS JOIN (VALUES ('opened', 0), ('notified', 0), ('acknowledged', 180),
                                     ('resolved', 1200)) s(action, o)
    WHERE a.dedup_key LIKE 'hist-%%'
    """,
    """
    INSERT INTO notifications (alert_id, user_id, tier, channel, target, status, attempts, created_at)
    SELECT a.id, c.user_id, 1, 'websocket', 'assigned_worker', 'sent', 1, a.opened_at
    FROM alerts a JOIN care_assignments c ON c.resident_id = a.resident_id
    WHERE a.dedup_key LIKE 'hist-%%'
    """,
    # a year of reads in the audit log: each person a few times a day
    """
    INSERT INTO audit_log (at, user_id, username, action, resident_id, route, detail)
    SELECT now() - make_interval(days => d, secs => (u.id * 977 + k * 3631) %% 86400), u.id, u.username,
           'read:alerts', f.resident_id, 'GET /api/v1/alerts/1', '{}'
    FROM users u LEFT JOIN family_links f ON f.user_id = u.id
    CROSS JOIN generate_series(1, %(days)s) d CROSS JOIN generate_series(1, %(per_day)s) k
    ORDER BY 1
    """,
    # two days of motion readings in every home (every 10 minutes per sensor)
    """
    INSERT INTO readings (ts, gateway_id, sensor_id, metric, value)
    SELECT now() - make_interval(mins => m * 10), s.gateway_id, s.id, 'motion', 1.0
    FROM sensors s CROSS JOIN generate_series(1, 288) m WHERE s.kind = 'pir'
    """,
]


def history(url: str, *, days: int = 365, audit_per_day: int = 4) -> dict[str, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        now = datetime.now(UTC)
        maintain.ensure_partitions(conn, now - timedelta(days=3), now + timedelta(days=1))
        for statement in HISTORY:
            conn.execute(statement, {"weeks": days // 7, "days": days, "per_day": audit_per_day})
        conn.execute("VACUUM ANALYZE")
        tables = ("alerts", "alert_trail", "notifications", "audit_log", "readings")
        return {
            t: conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t))).fetchone()[0]  # type: ignore[index]
            for t in tables
        }


# The server and its people ------------------------------------------------------------------------


@dataclass
class Person:
    id: int
    username: str
    role: str
    provider: str | None
    token: str = ""
    residents: list[str] = field(default_factory=list)  # family: their relatives


@dataclass
class City:
    url: str
    base: str
    people: list[Person]
    residents: dict[str, dict[str, Any]]  # id -> providers, station provider, home site, family, team
    simulated: bool

    def by_role(self, role: str) -> list[Person]:
        return [p for p in self.people if p.role == role]

    def may_see(self, person: Person, resident: str) -> bool:
        """The access rules, written here apart from the platform's SQL (the check is independent)."""
        r = self.residents[resident]
        if person.role == "admin":
            return True
        if person.role == "tester":
            return self.simulated
        if person.role == "family":
            return resident in person.residents
        providers = {r["home_care"], r["institution"], r["station"]} - {None}
        return person.provider in providers or person.id in r["team"]


def load_city(url: str, base: str) -> City:
    settings = Settings(secret_key=SECRET, access_token_minutes=600)  # type: ignore[arg-type]
    with psycopg.connect(url) as conn:
        people = [
            Person(uid, name, role, prov)
            for uid, name, role, prov in conn.execute(
                "SELECT id, username, role, provider_id FROM users ORDER BY id"
            )
        ]
        links: dict[int, list[str]] = {}
        for uid, rid in conn.execute("SELECT user_id, resident_id FROM family_links"):
            links.setdefault(uid, []).append(rid)
        residents = {
            rid: {
                "home_care": hc,
                "institution": inst,
                "station": st,
                "site": site,
                "gateway": gw,
                "team": set(),
            }
            for rid, hc, inst, st, site, gw in conn.execute(
                "SELECT r.id, r.home_care_provider_id, r.institution_provider_id, s.provider_id,"
                " r.home_site_id, (SELECT min(g.id) FROM gateways g WHERE g.site_id = r.home_site_id)"
                " FROM residents r LEFT JOIN sites s ON s.id = r.station_site_id"
            )
        }
        for rid, uid in conn.execute("SELECT resident_id, user_id FROM care_assignments"):
            residents[rid]["team"].add(uid)
        simulated = bool(conn.execute("SELECT bool_and(simulated) FROM sites").fetchone()[0])  # type: ignore[index]
    for p in people:
        p.residents = sorted(links.get(p.id, []))
        p.token = create_access_token(settings, user_id=p.id, role=p.role)
    return City(url, base, people, residents, simulated)


class Server:
    """One ``eldercare serve`` in a subprocess; its CPU and memory read from /proc (psutil)."""

    def __init__(
        self, url: str, port: int, workers: int, src: str | None = None, extra: tuple[str, ...] = ()
    ) -> None:
        env = os.environ | {
            "ELDERCARE_DATABASE_URL": url,
            "ELDERCARE_SECRET_KEY": SECRET,
            "ELDERCARE_ENVIRONMENT": "test",
            "ELDERCARE_ACCESS_TOKEN_MINUTES": "600",
            "ELDERCARE_LOG_LEVEL": "WARNING",
        }
        if src:  # another version of the code (``--before``), with this environment's libraries
            env["PYTHONPATH"] = src
        cmd = [sys.executable, "-m", "eldercare.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
               "--workers", str(workers), *extra]  # fmt: skip
        # ``-m`` puts the working directory first on the path: the version's own directory, or ours
        self.proc = subprocess.Popen(cmd, env=env, cwd=src or None)
        self.base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if httpx.get(self.base + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        else:
            raise RuntimeError("eldercare serve did not start")
        time.sleep(2.0)  # the hub's LISTEN and the engine's loops
        import psutil

        self.ps = psutil.Process(self.proc.pid)
        self._cpu = self._times()
        self._at = time.perf_counter()

    def _procs(self) -> list[Any]:
        return [self.ps, *self.ps.children(recursive=True)]

    def _times(self) -> float:
        return sum(sum(p.cpu_times()[:2]) for p in self._procs())

    def usage(self) -> tuple[float, float]:
        """(share of one core since the last call, resident memory MB now)."""
        cpu, at = self._times(), time.perf_counter()
        share = (cpu - self._cpu) / max(at - self._at, 1e-9)
        self._cpu, self._at = cpu, at
        return share, sum(p.memory_info().rss for p in self._procs()) / 2**20

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# Read load (in a process of its own, so that its Python does not delay the sockets' clock) -------

ROLE_MIX = (
    "care_worker",
    "family",
    "care_worker",
    "family",
    "admin",
    "care_worker",
    "family",
    "tester",
    "family",
    "care_worker",
)


def paths_for(p: Person) -> list[str]:
    """What a console of this role polls."""
    if p.role == "family":
        r = p.residents[0]
        return [
            f"/api/v1/alerts?resident={r}&limit=30",
            f"/api/v1/residents/{r}/summary",
            f"/api/v1/residents/{r}",
        ]
    lists = ["/api/v1/alerts?limit=100", "/api/v1/alerts?state=open&limit=100"]
    if p.role == "admin":
        return [*lists, "/api/v1/residents?limit=1000", "/api/v1/audit?limit=100"]
    return [*lists, "/api/v1/residents?limit=100"]


def clients(city: City, n: int) -> list[tuple[str, str, list[str]]]:
    pools = {
        role: [p for p in city.by_role(role) if p.role != "family" or p.residents] for role in set(ROLE_MIX)
    }
    out = []
    for i in range(n):
        role = ROLE_MIX[i % len(ROLE_MIX)]
        p = pools[role][(i // len(ROLE_MIX)) % len(pools[role])]
        out.append((role, p.token, paths_for(p)))
    return out


def _poll_main(
    base: str, who: list[tuple[str, str, list[str]]], seconds: float, stop: Any, ready: Any, out: Any
) -> None:
    records: list[tuple[float, str, float, int]] = []  # (wall start, role, seconds, status)

    async def one(role: str, token: str, paths: list[str]) -> None:
        async with httpx.AsyncClient(
            base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60
        ) as c:
            i = 0
            while not stop.is_set():
                t0, w0 = time.perf_counter(), time.time()
                try:
                    status = (await c.get(paths[i % len(paths)])).status_code
                except httpx.HTTPError:
                    status = 0
                records.append((w0, role, time.perf_counter() - t0, status))
                i += 1

    async def main() -> None:
        tasks = [asyncio.create_task(one(*w)) for w in who]
        while len(records) < len(who) and not stop.is_set():  # every client has had an answer
            await asyncio.sleep(0.05)
        ready.set()
        deadline = time.time() + seconds
        while time.time() < deadline and not stop.is_set():
            await asyncio.sleep(0.2)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())
    out.put(records)


class Pollers:
    """``n`` consoles polling as fast as the server answers, until stopped (or ``seconds``)."""

    def __init__(self, city: City, n: int, seconds: float = 3600) -> None:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self.stop_event, self.ready, self.queue = ctx.Event(), ctx.Event(), ctx.Queue()
        self.proc = ctx.Process(
            target=_poll_main,
            args=(city.base, clients(city, n), seconds, self.stop_event, self.ready, self.queue),
            daemon=True,
        )
        self.proc.start()
        if not self.ready.wait(300):  # the process started and every client had an answer
            raise RuntimeError("the polling clients did not start")
        self.since = time.time()
        self.n = n

    def stop(self) -> list[tuple[float, str, float, int]]:
        self.stop_event.set()
        records: list[tuple[float, str, float, int]] = self.queue.get(timeout=300)
        self.proc.join(30)
        return records


def read_summary(
    records: list[tuple[float, str, float, int]], since: float = 0.0, until: float = 1e18
) -> dict[str, Any]:
    rows = [r for r in records if since <= r[0] < until]
    span = max((max(r[0] for r in rows) - min(r[0] for r in rows)) if rows else 0.0, 1e-9)
    out: dict[str, Any] = {
        "requests": len(rows),
        "per_s": round(len(rows) / span, 1),
        "errors": sum(1 for r in rows if r[3] >= 500 or r[3] == 0),
        "refused": sum(1 for r in rows if 400 <= r[3] < 500),
    }
    for role in sorted({r[1] for r in rows}):
        ms = [r[2] * 1000 for r in rows if r[1] == role]
        out[role] = (round(pct(ms, 50), 1), round(pct(ms, 99), 1), len(ms))
    every = [r[2] * 1000 for r in rows]
    out["all"] = (round(pct(every, 50), 1), round(pct(every, 99), 1), len(every))
    return out


# WebSocket consoles and events ------------------------------------------------------------------


def _consoles_main(base: str, socks: list[tuple[int, str]], ready: Any, stop: Any, out: Any) -> None:
    """Some of the consoles, in a process of their own: every alert message is stamped on arrival
    and sent to the bench in batches (one process for 1,000 sockets fell behind the server)."""
    got: list[tuple[int, int, str | None, str, str, int, float]] = []
    closed: list[tuple[int, str]] = []

    async def one(i: int, token: str, hello: asyncio.Event) -> None:
        url = base.replace("http", "ws") + "/api/v1/ws"
        async with websockets.connect(
            url,
            subprotocols=["eldercare.v1", "bearer." + token],
            max_queue=None,
            open_timeout=120,
            ping_interval=None,
        ) as ws:  # type: ignore[list-item]
            await ws.recv()  # hello
            hello.set()
            try:
                async for text in ws:
                    at = time.time()
                    msg = json.loads(text)
                    if msg.get("type") == "alert":
                        a = msg["alert"]
                        got.append((i, a["id"], a["resident_id"], a["kind"], msg["event"], a["tier"], at))
            finally:
                closed.append((i, f"{ws.close_code} {ws.close_reason}"))

    async def main() -> None:
        hellos = [asyncio.Event() for _ in socks]
        tasks = [asyncio.create_task(one(i, token, hellos[k])) for k, (i, token) in enumerate(socks)]
        await asyncio.wait_for(asyncio.gather(*(h.wait() for h in hellos)), 300)
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.1)
            if got:
                batch = got[:]
                del got[: len(batch)]
                out.put(("got", batch))
            if closed:
                gone = closed[:]
                del closed[: len(gone)]
                out.put(("closed", gone))
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        out.put(("got", got))
        out.put(("done", None))

    asyncio.run(main())


class Consoles:
    """``n`` sockets over the city's people (several per person, like open tabs), spread over
    ``processes`` processes, recording every alert message as (socket, alert id, resident, kind,
    event, tier, arrival)."""

    def __init__(self, city: City, n: int, processes: int = 4) -> None:
        people = [p for p in city.people if p.role != "family" or p.residents]
        self.owners = [people[i % len(people)] for i in range(n)]
        self.got: list[tuple[int, int, str | None, str, str, int, float]] = []
        self.city = city
        self.closed: list[tuple[int, str]] = []  # sockets the server closed: (socket, why)
        self.processes = processes

    async def open(self) -> float:
        import multiprocessing as mp
        import threading

        t0 = time.perf_counter()
        ctx = mp.get_context("spawn")
        self.stop_event, self.queue = ctx.Event(), ctx.Queue()
        readies = [ctx.Event() for _ in range(self.processes)]
        socks = [(i, p.token) for i, p in enumerate(self.owners)]
        self.procs = [
            ctx.Process(
                target=_consoles_main,
                args=(self.city.base, socks[k :: self.processes], readies[k], self.stop_event, self.queue),
                daemon=True,
            )
            for k in range(self.processes)
        ]
        for proc in self.procs:
            proc.start()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        for ready in readies:
            if not await asyncio.to_thread(ready.wait, 300):
                raise RuntimeError("the consoles did not connect")
        return time.perf_counter() - t0

    def _read(self) -> None:
        done = 0
        while done < self.processes:
            kind, data = self.queue.get()
            if kind == "got":
                self.got.extend(data)
            elif kind == "closed":
                self.closed.extend(data)
            else:
                done += 1

    async def close(self) -> None:
        self.stop_event.set()
        await asyncio.to_thread(self.reader.join, 120)
        for proc in self.procs:
            proc.join(30)

    def expected(self, resident: str) -> set[int]:
        return {i for i, p in enumerate(self.owners) if self.city.may_see(p, resident)}


def work_row(city: City, resident: str, kind: str, seq: int) -> tuple[str, str, str]:
    r = city.residents[resident]
    payload = {
        "v": 1,
        "epoch": "load",
        "seq": seq,
        "t": int(time.time() * 1000),
        "sensor": "wearable-1",
        "kind": kind,
        "confidence": 0.9,
        "resident": resident,
        "gateway": r["gateway"],
        "site": r["site"],
        "evidence": {"metric": "heart_rate", "value": 150},
    }
    return r["gateway"], r["site"], json.dumps(payload)


async def commit_events(conn: psycopg.AsyncConnection[Any], rows: list[tuple[str, str, str]]) -> float:
    """What ingest writes for events: ``alert_work`` rows and ``NOTIFY alert_work``, one commit."""
    async with conn.transaction():
        async with conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO alert_work (kind, gateway_id, site_id, payload)"
                " VALUES ('event', %s, %s, %s::jsonb)",
                rows,
            )
        await conn.execute("NOTIFY alert_work")
    return time.time()


def resolve_all(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "UPDATE alerts SET state = 'resolved', resolved_at = now(), outcome = 'no_action_needed',"
            " next_escalation_at = NULL WHERE state <> 'resolved'"
        )


def deliveries(
    consoles: Consoles, events: dict[tuple[str, str], float], *, tier: int, since: float
) -> dict[str, Any]:
    """Per event: the pushes of its alert at ``tier`` to its audience; latencies, missed, wrong."""
    got: dict[tuple[str, str], dict[int, float]] = {}
    for sock, _, resident, kind, event, t, at in consoles.got:
        if event == "notified" and t == tier and at >= since and (resident, kind) in events:
            got.setdefault((resident or "", kind), {}).setdefault(sock, at)
    lat, last, missed, wrong = [], [], 0, 0
    for key, t0 in events.items():
        expected = consoles.expected(key[0])
        arrived = got.get(key, {})
        missed += len(expected - set(arrived))
        wrong += len(set(arrived) - expected)
        lat += [(at - t0) * 1000 for s, at in arrived.items() if s in expected]
        if arrived:
            last.append((max(arrived.values()) - t0) * 1000)
    return {
        "events": len(events),
        "deliveries": len(lat),
        "missed": missed,
        "wrong": wrong,
        "p50_ms": round(pct(lat, 50), 1),
        "p99_ms": round(pct(lat, 99), 1),
        "max_ms": round(max(lat, default=float("nan")), 1),
        "last_per_event_max_ms": round(max(last, default=float("nan")), 1),
    }


async def wait_for(
    consoles: Consoles, events: dict[tuple[str, str], float], tier: int, since: float, limit_s: float
) -> None:
    """Until every event's audience heard of it at ``tier`` (or ``limit_s``): the proof of a miss."""
    deadline = time.time() + limit_s
    want = sum(len(consoles.expected(r)) for r, _ in events)
    while time.time() < deadline:
        n = len(
            {
                (s, r, k)
                for s, _, r, k, e, t, at in consoles.got
                if e == "notified" and t == tier and at >= since and (r, k) in events
            }
        )
        if n >= want:
            return
        await asyncio.sleep(0.5)


# The phases -------------------------------------------------------------------------------------


async def fanout(
    city: City,
    consoles: Consoles,
    server: Server,
    rate: float,
    seconds: float,
    pollers: int,
    pairs: list[tuple[str, str]],
) -> dict[str, Any]:
    """Events at ``rate``/s for ``seconds`` (each opening a new alert) to the connected consoles."""
    resolve_all(city.url)
    polling = Pollers(city, pollers) if pollers else None
    await asyncio.sleep(2.0 if pollers else 0.2)
    server.usage()
    events: dict[tuple[str, str], float] = {}
    since = time.time()
    async with await psycopg.AsyncConnection.connect(city.url) as conn:
        start = time.perf_counter()
        for k in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, start + k / rate - time.perf_counter()))
            resident, kind = pairs[k % len(pairs)]
            events[(resident, kind)] = await commit_events(conn, [work_row(city, resident, kind, k)])
    await wait_for(consoles, events, 1, since, 30)
    cpu, rss = server.usage()
    opened = opened_after(city.url, events, since)
    reads = read_summary(polling.stop()) if polling else {"per_s": 0, "errors": 0}
    return deliveries(consoles, events, tier=1, since=since) | {
        "rate": rate,
        "pollers": pollers,
        "reads_per_s": reads["per_s"],
        "read_errors": reads["errors"],
        "serve_cpu": round(cpu, 2),
        "serve_mb": round(rss),
        "closed": len(consoles.closed),
        "opened_p50_ms": round(pct(opened, 50), 1),
        "opened_p99_ms": round(pct(opened, 99), 1),
    }


def opened_after(url: str, events: dict[tuple[str, str], float], since: float) -> list[float]:
    """The engine's part of each event's path: from its commit to its alert's ``opened_at`` (the
    opening transaction's start), ms."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT resident_id, kind, extract(epoch FROM opened_at) FROM alerts"
            " WHERE opened_at >= to_timestamp(%s)",
            (since,),
        ).fetchall()
    return [(float(at) - events[(r, k)]) * 1000 for r, k, at in rows if (r, k) in events]


async def storm(
    city: City,
    consoles: Consoles,
    server: Server,
    pairs: list[tuple[str, str]],
    pollers: int,
    escalate_in_s: float = 3.0,
) -> dict[str, Any]:
    """Every pair's event in one commit; then every alert due at once."""
    resolve_all(city.url)
    polling = Pollers(city, pollers) if pollers else None
    await asyncio.sleep(2.0)
    server.usage()
    since = time.time()
    async with await psycopg.AsyncConnection.connect(city.url) as conn:
        t0 = await commit_events(conn, [work_row(city, r, k, i) for i, (r, k) in enumerate(pairs)])
    events = dict.fromkeys(pairs, t0)
    await wait_for(consoles, events, 1, since, 60)
    first = deliveries(consoles, events, tier=1, since=since)
    with psycopg.connect(city.url, autocommit=True) as conn:
        opened = conn.execute("SELECT count(*) FROM alerts WHERE state = 'open'").fetchone()[0]  # type: ignore[index]
        # the engine's part: when the last alert was in the database (the rest is the push)
        last_open = conn.execute(
            "SELECT extract(epoch FROM max(opened_at)) FROM alerts WHERE state = 'open'"
        ).fetchone()[0]  # type: ignore[index]
        row = conn.execute(
            "UPDATE alerts SET next_escalation_at = now() + make_interval(secs => %s) WHERE state = 'open'"
            " RETURNING extract(epoch FROM next_escalation_at)",
            (escalate_in_s,),
        ).fetchone()
    due = float(row[0]) if row else time.time()  # type: ignore[index]
    await wait_for(consoles, dict.fromkeys(pairs, due), 2, due, 60)
    second = deliveries(consoles, dict.fromkeys(pairs, due), tier=2, since=due - 1)
    with psycopg.connect(city.url, autocommit=True) as conn:
        last_climb = conn.execute(
            "SELECT extract(epoch FROM max(t.at)) FROM alert_trail t JOIN alerts a ON a.id = t.alert_id"
            " WHERE a.state = 'open' AND t.action = 'escalated'"
        ).fetchone()[0]  # type: ignore[index]
    cpu, rss = server.usage()
    reads = read_summary(polling.stop()) if polling else {"per_s": 0, "all": (0, 0, 0)}
    return {
        "alerts": len(pairs),
        "opened": opened,
        "pollers": pollers,
        "reads_per_s": reads["per_s"],
        "tier1": first,
        "tier2_after_deadline": second,
        "last_opened_ms": round((float(last_open) - t0) * 1000) if last_open else None,
        "last_escalated_ms": round((float(last_climb) - due) * 1000) if last_climb else None,
        "serve_cpu": round(cpu, 2),
        "serve_mb": round(rss),
        "closed": len(consoles.closed),
        "closed_why": sorted({w for _, w in consoles.closed}),
    }


async def sign_in_storm(city: City, server: Server, n: int, pollers: int) -> dict[str, Any]:
    people = [p for p in city.people if p.role != "admin"][:n]
    polling = Pollers(city, pollers)
    await asyncio.sleep(5.0)  # the pollers' latency before
    server.usage()
    t_start = time.time()

    async def one(p: Person) -> tuple[int, float, str | None]:
        async with httpx.AsyncClient(base_url=city.base, timeout=120) as c:
            t0 = time.perf_counter()
            r = await c.post("/api/v1/auth/token", data={"username": p.username, "password": PASSWORD})
            return r.status_code, time.perf_counter() - t0, r.headers.get("retry-after")

    results = await asyncio.gather(*(one(p) for p in people))
    t_end = time.time()
    cpu, rss = server.usage()
    await asyncio.sleep(1.0)
    records = polling.stop()
    before, during = read_summary(records, 0, t_start), read_summary(records, t_start, t_end)
    ok = [r[1] * 1000 for r in results if r[0] == 200]
    return {
        "sign_ins": n,
        "ok": len(ok),
        "429": sum(r[0] == 429 for r in results),
        "other": sum(r[0] not in (200, 429) for r in results),
        "retry_after": sorted({r[2] for r in results if r[2]}),
        "seconds": round(t_end - t_start, 1),
        "sign_in_p50_ms": round(pct(ok, 50)),
        "sign_in_p99_ms": round(pct(ok, 99)),
        "polls_p99_before_ms": before["all"][1],
        "polls_p99_during_ms": during["all"][1],
        "serve_cpu": round(cpu, 2),
        "serve_mb": round(rss),
    }


async def run(city: City, server: Server, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"reads": {}, "fanout": [], "load_avg": []}
    secs = args.seconds
    for n in args.clients:
        log(f"read load: {n} clients for {secs} s")
        polling = Pollers(city, n)
        server.usage()
        await asyncio.sleep(secs)
        cpu, rss = server.usage()
        records = polling.stop()
        server.usage()
        out["reads"][n] = read_summary(records, polling.since) | {
            "serve_cpu": round(cpu, 2),
            "serve_mb": round(rss),
        }
        out["load_avg"].append(os.getloadavg()[0])
    consoles = Consoles(city, args.sockets)
    log(f"opening {args.sockets} WebSocket consoles")
    out["sockets_open_s"] = round(await consoles.open(), 2)
    pairs = [(r, k) for k in KINDS for r in sorted(city.residents)]
    for pollers in (0, args.fanout_pollers):
        for rate in args.rates:
            log(f"fan-out: {rate} events/s for {secs} s to {args.sockets} sockets, {pollers} polling")
            out["fanout"].append(await fanout(city, consoles, server, rate, secs, pollers, pairs))
            out["load_avg"].append(os.getloadavg()[0])
    log(f"alarm path: 2 events/s for {secs} s, {args.clients[-1]} polling")
    out["alarm_path"] = await fanout(city, consoles, server, 2.0, secs, args.clients[-1], pairs)
    out["load_avg"].append(os.getloadavg()[0])
    n_storm = min(args.storm, len(pairs))
    log(f"storm: {n_storm} alerts at once, {args.fanout_pollers} polling")
    out["storm"] = await storm(city, consoles, server, pairs[:n_storm], args.fanout_pollers)
    out["load_avg"].append(os.getloadavg()[0])
    await consoles.close()
    log(f"sign-in storm: {args.sign_ins} at once, 10 polling")
    out["sign_in"] = await sign_in_storm(city, server, args.sign_ins, 10)
    out["load_avg"].append(os.getloadavg()[0])
    return out


async def alarms(city: City, server: Server, args: argparse.Namespace) -> dict[str, Any]:
    """Only the alarm path under the most polling clients and the storm under polling."""
    out: dict[str, Any] = {"load_avg": [os.getloadavg()[0]]}
    consoles = Consoles(city, args.sockets)
    log(f"opening {args.sockets} WebSocket consoles")
    out["sockets_open_s"] = round(await consoles.open(), 2)
    pairs = [(r, k) for k in KINDS for r in sorted(city.residents)]
    log(f"alarm path: 2 events/s for {args.seconds} s, {args.clients[-1]} polling")
    out["alarm_path"] = await fanout(city, consoles, server, 2.0, args.seconds, args.clients[-1], pairs)
    out["load_avg"].append(os.getloadavg()[0])
    n_storm = min(args.storm, len(pairs))
    log(f"storm: {n_storm} alerts at once, {args.fanout_pollers} polling")
    out["storm"] = await storm(city, consoles, server, pairs[:n_storm], args.fanout_pollers)
    out["load_avg"].append(os.getloadavg()[0])
    await consoles.close()
    return out


def compare_table(runs: dict[str, dict[str, Any]]) -> str:
    """``--alarms-only``: the alarm path and the storm per server version, with ratios."""
    lines = _head(
        "code",
        "alarm path: alert opened p50 / p99, pushed p50 / p99, ms",
        "missed, wrong",
        "storm: last alert opened / last tier 1 pushed, from commit, ms",
        "storm: last tier 2 made / pushed, after deadline, ms",
        "missed, wrong",
        "serve CPU (alarm, storm)",
        "load (1 min)",
    )
    for name, r in runs.items():
        a, s = r["alarm_path"], r["storm"]
        t1, t2 = s["tier1"], s["tier2_after_deadline"]
        lines.append(
            _row(
                name,
                f"{a['opened_p50_ms']} / {a['opened_p99_ms']}, {a['p50_ms']} / {a['p99_ms']}",
                f"{a['missed']}, {a['wrong']}",
                f"{s['last_opened_ms']} / {t1['last_per_event_max_ms']}",
                f"{s['last_escalated_ms']} / {t2['last_per_event_max_ms']}",
                f"{t1['missed'] + t2['missed']}, {t1['wrong'] + t2['wrong']}",
                f"{a['serve_cpu']:.0%}, {s['serve_cpu']:.0%}",
                ", ".join(f"{x:.1f}" for x in r["load_avg"]),
            )
        )
    if {"before", "after"} <= runs.keys():
        b, f = runs["before"], runs["after"]

        def ratio(get: Any) -> str:
            return f"{get(b) / max(get(f), 1e-9):.1f}x"

        lines.append(
            _row(
                "before / after",
                ratio(lambda r: r["alarm_path"]["p99_ms"]),
                "",
                ratio(lambda r: r["storm"]["tier1"]["last_per_event_max_ms"]),
                ratio(lambda r: r["storm"]["tier2_after_deadline"]["last_per_event_max_ms"]),
                "",
                "",
                "",
            )
        )
    return "\n".join(lines)


def _row(*cells: object) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _head(*names: str) -> list[str]:
    return [_row(*names), _row(*(["---:"] * len(names)))]


def table(r: dict[str, Any]) -> str:
    """The run as markdown tables, for docs/performance.md."""
    lines = _head(
        "clients",
        "requests/s",
        "errors",
        "p50 / p99 ms",
        "admin",
        "care_worker",
        "family",
        "tester",
        "serve CPU, MB",
    )
    for n, x in r["reads"].items():
        cell = {
            role: f"{x[role][0]} / {x[role][1]}" if role in x else "-"
            for role in ("all", "admin", "care_worker", "family", "tester")
        }
        lines.append(
            _row(
                n,
                x["per_s"],
                x["errors"],
                cell["all"],
                cell["admin"],
                cell["care_worker"],
                cell["family"],
                cell["tester"],
                f"{x['serve_cpu']:.0%}, {x['serve_mb']}",
            )
        )
    lines += ["", f"{r['sockets']} sockets opened in {r['sockets_open_s']} s", ""]
    lines += _head(
        "events/s",
        "polling",
        "reads/s",
        "deliveries",
        "missed",
        "wrong audience",
        "p50 ms",
        "p99 ms",
        "max ms",
        "sockets closed",
        "serve CPU, MB",
    )
    for x in [*r["fanout"], r["alarm_path"]]:
        lines.append(
            _row(
                x["rate"],
                x["pollers"],
                x["reads_per_s"],
                x["deliveries"],
                x["missed"],
                x["wrong"],
                x["p50_ms"],
                x["p99_ms"],
                x["max_ms"],
                x["closed"],
                f"{x['serve_cpu']:.0%}, {x['serve_mb']}",
            )
        )
    s, t1, t2 = r["storm"], r["storm"]["tier1"], r["storm"]["tier2_after_deadline"]
    lines += [
        "",
        f"storm: {s['opened']} alerts opened of {s['alerts']} queued at once, {s['pollers']} clients"
        f" polling ({s['reads_per_s']} reads/s), serve {s['serve_cpu']:.0%} of a core, {s['serve_mb']} MB,"
        f" sockets closed so far {s['closed']} {s['closed_why']}",
        "",
    ]
    lines += _head("storm", "pushes", "missed", "wrong", "p50 ms", "p99 ms", "last push of an alert, ms")
    for name, t in (("commit -> tier 1", t1), ("deadline -> tier 2", t2)):
        lines.append(
            _row(
                name,
                t["deliveries"],
                t["missed"],
                t["wrong"],
                t["p50_ms"],
                t["p99_ms"],
                t["last_per_event_max_ms"],
            )
        )
    g = r["sign_in"]
    lines += [
        "",
        *_head(
            "sign-ins at once",
            "200",
            "429",
            "Retry-After s",
            "other",
            "took s",
            "sign-in p50 / p99 ms",
            "GET p99 before / during ms",
            "serve CPU, MB",
        ),
    ]
    lines.append(
        _row(
            g["sign_ins"],
            g["ok"],
            g["429"],
            ", ".join(g["retry_after"]) or "-",
            g["other"],
            g["seconds"],
            f"{g['sign_in_p50_ms']} / {g['sign_in_p99_ms']}",
            f"{g['polls_p99_before_ms']} / {g['polls_p99_during_ms']}",
            f"{g['serve_cpu']:.0%}, {g['serve_mb']}",
        )
    )
    lines += ["", "load average (1 min) at each step: " + ", ".join(f"{x:.1f}" for x in r["load_avg"])]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a smaller run: 60 days of history, shorter steps")
    ap.add_argument("--port", type=int, default=18500)
    ap.add_argument("--workers", type=int, default=1, help="eldercare serve --workers")
    ap.add_argument(
        "--pg-url",
        default=os.environ.get("ELDERCARE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the database")
    ap.add_argument(
        "--alarms-only",
        action="store_true",
        help="only the alarm path under 200 polling clients and the storm under 50",
    )
    ap.add_argument(
        "--before",
        metavar="SRC",
        help="with --alarms-only: first measure the code in SRC (a directory holding another version's"
        " eldercare package, e.g. `git archive <commit> eldercare | tar -x -C SRC`), then this one",
    )
    ap.add_argument(
        "--serve-args", default="", help="more options for this tree's eldercare serve (e.g. '--engines 2')"
    )
    args = ap.parse_args()
    args.days, args.seconds = (60, 5.0) if args.quick else (365, 10.0)
    args.clients, args.rates = (10, 50, 200), (1.0, 10.0, 50.0)
    args.sockets, args.fanout_pollers, args.storm, args.sign_ins = 1000, 50, 1000, 100
    name = f"bench_city_{uuid.uuid4().hex[:10]}"
    url = urlunsplit(urlsplit(args.pg_url)._replace(path=f"/{name}"))
    with psycopg.connect(args.pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    server = None
    try:
        t0 = time.time()
        upgrade(url)
        counts = seed(url, 250, 5)
        hist = history(url, days=args.days)
        log(f"seeded in {time.time() - t0:.0f} s: {counts} {hist}")
        if args.alarms_only:
            runs: dict[str, dict[str, Any]] = {}
            versions = [("before", args.before), ("after", None)] if args.before else [("this", None)]
            for name, src in versions:
                extra = () if src else tuple(args.serve_args.split())
                log(f"{name}: eldercare serve {' '.join(extra)} from {src or 'this tree'}")
                server = Server(url, args.port, args.workers, src, extra)
                city = load_city(url, server.base)
                runs[name] = asyncio.run(alarms(city, server, args))
                server.stop()
                server = None
            print(json.dumps(runs, default=str) if args.json else compare_table(runs))
            return
        server = Server(url, args.port, args.workers, None, tuple(args.serve_args.split()))
        city = load_city(url, server.base)
        result = asyncio.run(run(city, server, args))
        result |= {
            "seed": counts,
            "history": hist,
            "sockets": args.sockets,
            "workers": args.workers,
            "quick": args.quick,
            "cores": os.cpu_count(),
        }
    finally:
        if server is not None:
            server.stop()
        if not args.keep:
            with psycopg.connect(args.pg_url, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    if args.json:
        print(json.dumps(result, default=str))
    else:
        print(table(result))


if __name__ == "__main__":
    main()
