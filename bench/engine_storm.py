"""Alert storm: N SOS events queued at once -> N alerts opened; then N alerts due together -> N tier changes.

Where the time goes on the path event committed -> alert opened -> NOTIFY -> hub -> console. Two
parts, each timed on its own:

Builds a fresh database (migrated, N homes, each with a resident, an SOS button, a care worker and
the default three-tier policy), queues N ``alert_work`` rows in one transaction (what ingest
writes when every home presses at once), then runs the engine's work step the way its loop does
and records when each transaction committed: how many items each claimed, when the first and the
last alert were in the database. Then it makes every alert due at the same instant and runs the
escalation step (1 and ``--workers`` transactions side by side), recording when the last tier
change committed after the deadline.

``--push`` then runs the push path as serve does: the engine on its own thread (its loops, its
pool), the hub on this loop with one recording console per user (N family members and the care
worker), N events committed at once: when each alert's NOTIFY reached the hub, and when its
tier-1 message was handed to its family member's socket; then every alert made due 2 s ahead, and
when each tier-2 message was handed over after the deadline.

    python bench/engine_storm.py [--alerts 500] [--workers 2] [--push] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from eldercare.config import Settings
from eldercare.db.migrate import upgrade
from eldercare.platform.engine import service
from eldercare.platform.notify.hub import Hub
from eldercare.platform.repo import alerts as alerts_repo
from eldercare.platform.repo.connections import open_pool


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def seed(url: str, n: int) -> None:
    with psycopg.connect(url) as conn, conn.transaction(), conn.cursor() as cur:
        cur.execute("INSERT INTO providers (id, name, kind) VALUES ('hc', 'Home care', 'home_care')")
        cur.execute("INSERT INTO escalation_policies (name) VALUES ('default') RETURNING id")
        row = cur.fetchone()
        assert row is not None
        cur.executemany(
            "INSERT INTO escalation_tiers (policy_id, tier, name, targets, ack_timeout_s)"
            " VALUES (%s, %s, %s, %s, 60)",
            [(row[0], 1, "t1", ["family", "assigned_worker"]), (row[0], 2, "t2", ["station_on_duty"]),
             (row[0], 3, "t3", ["institution_on_duty"])],
        )  # fmt: skip
        cur.execute(
            "INSERT INTO users (username, display_name, password_hash, role, provider_id)"
            " VALUES ('worker', 'Worker', 'x', 'care_worker', 'hc')"
        )
        for i in range(n):
            cur.execute("INSERT INTO sites (id, kind, name) VALUES (%s, 'home', %s)", (f"h{i}", f"home {i}"))
            cur.execute(
                "INSERT INTO residents (id, name, home_site_id, home_care_provider_id, escalation_policy_id)"
                " VALUES (%s, %s, %s, 'hc', %s)",
                (f"r{i}", f"resident {i}", f"h{i}", row[0]),
            )
            cur.execute(
                "INSERT INTO gateways (id, site_id, mqtt_username, mqtt_password_hash)"
                " VALUES (%s, %s, %s, 'x')",
                (f"g{i}", f"h{i}", f"g{i}"),
            )
        cur.execute(
            "INSERT INTO care_assignments (resident_id, user_id)"
            " SELECT id, (SELECT id FROM users WHERE username = 'worker') FROM residents"
        )
        cur.execute(  # a family member per resident, and a station on duty for tier 2
            "INSERT INTO users (username, display_name, password_hash, role)"
            " SELECT 'fam-' || id, 'Family ' || id, 'x', 'family' FROM residents"
        )
        cur.execute(
            "INSERT INTO family_links (user_id, resident_id, relation)"
            " SELECT u.id, r.id, 'son' FROM residents r JOIN users u ON u.username = 'fam-' || r.id"
        )
        cur.execute("INSERT INTO providers (id, name, kind) VALUES ('st', 'Station', 'station')")
        cur.execute(
            "INSERT INTO sites (id, kind, name, provider_id) VALUES ('st', 'station', 'Station', 'st')"
        )
        cur.execute("UPDATE residents SET station_site_id = 'st'")
        cur.execute(
            "INSERT INTO users (username, display_name, password_hash, role, provider_id)"
            " VALUES ('station', 'Station', 'x', 'care_worker', 'st')"
        )
        cur.execute(
            "INSERT INTO oncall_shifts (provider_id, user_id, starts_at, ends_at)"
            " SELECT 'st', id, now() - interval '1 day', now() + interval '1 day' FROM users"
            " WHERE username = 'station'"
        )


def queue(url: str, n: int) -> None:
    now = int(time.time() * 1000)
    with psycopg.connect(url) as conn, conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO alert_work (kind, gateway_id, site_id, payload) VALUES ('event', %s, %s, %s::jsonb)",
            [
                (f"g{i}", f"h{i}", json.dumps({
                    "v": 1, "epoch": "bench", "seq": 1, "t": now, "sensor": "sos", "kind": "sos",
                    "resident": f"r{i}", "gateway": f"g{i}", "site": f"h{i}",
                }))
                for i in range(n)
            ],
        )  # fmt: skip


async def storm(url: str, n: int, workers: int) -> dict[str, Any]:
    out: dict[str, Any] = {"alerts": n}
    async with open_pool(url, min_size=2, max_size=6) as pool:
        t0 = time.perf_counter()
        batches: list[int] = []
        commits: list[float] = []

        async def drain() -> None:  # as the engine's work loop does, ``workers`` side by side
            while claimed := await service.process_work(pool):
                batches.append(claimed)
                commits.append(time.perf_counter() - t0)

        await asyncio.gather(*(drain() for _ in range(service.WORK_WORKERS)))
        out["work_batches"] = batches
        out["first_alerts_committed_s"] = round(commits[0], 3)
        out["last_alert_committed_s"] = round(commits[-1], 3)
        for w in (1, workers):
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("UPDATE alerts SET next_escalation_at = now(), tier = 1")
            deadline = alerts_repo.now() + timedelta(milliseconds=1)
            t0 = time.perf_counter()
            done = await service.escalate_due(pool, now=deadline, workers=w)
            out[f"escalated_with_{w}_workers"] = done
            out[f"last_tier_change_after_deadline_s_{w}_workers"] = round(time.perf_counter() - t0, 3)
    return out


class Console:
    """One console as the hub sees it: when each alert message was handed to it."""

    def __init__(self, got: dict[tuple[int, int], float]) -> None:
        self.got = got

    async def send_text(self, data: str) -> None:
        msg = json.loads(data)
        self.got.setdefault((msg["alert"]["id"], msg["alert"]["tier"]), time.time())


async def push_path(url: str, n: int) -> dict[str, Any]:
    """The engine on its thread and the hub on this loop, as ``eldercare serve`` runs them."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM alerts")
        users = conn.execute("SELECT id, username FROM users").fetchall()
    arrived: dict[int, float] = {}  # alert -> when its first NOTIFY reached the hub
    got: dict[tuple[int, int], float] = {}
    async with open_pool(url, min_size=1, max_size=3) as push_pool:
        hub = Hub(push_pool, url)
        for uid, name in users:
            if name.startswith("fam-"):
                hub.register(uid, Console(got))
        route = hub.route_many

        async def timed(payloads: list[dict[str, Any]]) -> int:
            at = time.time()
            for p in payloads:
                arrived.setdefault(int(p["alert"]), at)
            return await route(payloads)

        hub.route_many = timed  # type: ignore[method-assign]
        listener = asyncio.create_task(hub.run())
        await asyncio.wait_for(hub.listening.wait(), 10)
        engine = service.Engine(url, email=False, settings=Settings())
        engine.start()
        try:
            queue(url, n)
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("NOTIFY alert_work")
            t0 = time.time()
            deadline = t0 + 60
            while len([k for k in got if k[1] == 1]) < n and time.time() < deadline:
                await asyncio.sleep(0.05)
            hub_at = sorted(arrived[a] - t0 for a in arrived)
            pushed = sorted(v - t0 for k, v in got.items() if k[1] == 1)
            with psycopg.connect(url, autocommit=True) as conn:
                row = conn.execute(
                    "UPDATE alerts SET next_escalation_at = now() + interval '2 s' WHERE state = 'open'"
                    " RETURNING extract(epoch FROM next_escalation_at)"
                ).fetchone()
            due = float(row[0]) if row else time.time()
            while len([k for k in got if k[1] == 2]) < n and time.time() < due + 60:
                await asyncio.sleep(0.05)
            climbed = sorted(v - due for k, v in got.items() if k[1] == 2)
        finally:
            await engine.stop()
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
            await hub.close()

    def q(xs: list[float], p: float) -> float:
        return round(xs[min(len(xs) - 1, int(p * len(xs)))], 3) if xs else float("nan")

    return {
        "push_tier1_delivered": len(pushed),
        "notify_at_hub_s_p50_max": (q(hub_at, 0.5), q(hub_at, 1.0)),
        "tier1_on_socket_s_p50_max": (q(pushed, 0.5), q(pushed, 1.0)),
        "tier2_delivered": len(climbed),
        "tier2_on_socket_after_deadline_s_p50_max": (q(climbed, 0.5), q(climbed, 1.0)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alerts", type=int, default=500)
    ap.add_argument("--workers", type=int, default=service.ESCALATION_WORKERS, help="escalation transactions")
    ap.add_argument("--work-workers", type=int, default=service.WORK_WORKERS, help="work transactions")
    ap.add_argument(
        "--pg-url",
        default=os.environ.get("ELDERCARE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--push", action="store_true", help="then the push path: engine thread, hub, consoles")
    args = ap.parse_args()
    service.WORK_WORKERS = args.work_workers
    name = f"bench_storm_{uuid.uuid4().hex[:12]}"
    parts = urlsplit(args.pg_url)
    url = urlunsplit(parts._replace(path=f"/{name}"))
    with psycopg.connect(args.pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        upgrade(url)
        seed(url, args.alerts)
        queue(url, args.alerts)
        log(f"{args.alerts} SOS events queued")
        result = asyncio.run(storm(url, args.alerts, args.workers))
        if args.push:
            log("the push path")
            result |= asyncio.run(push_path(url, args.alerts))
        result["load_avg_1m"] = os.getloadavg()[0]
    finally:
        with psycopg.connect(args.pg_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:48} {v}")


if __name__ == "__main__":
    main()
