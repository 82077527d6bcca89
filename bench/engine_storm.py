"""Alert storm: N SOS events queued at once -> N alerts opened; then N alerts due together -> N tier changes.

Builds a fresh database (migrated, N homes, each with a resident, an SOS button, a care worker and
the default three-tier policy), queues N ``alert_work`` rows in one transaction (what ingest
writes when every home presses at once), then runs the engine's work step the way its loop does
and records when each transaction committed: how many items each claimed, when the first and the
last alert were in the database. Then it makes every alert due at the same instant and runs the
escalation step (1 and ``--workers`` transactions side by side), recording when the last tier
change committed after the deadline.

    python bench/engine_storm.py [--alerts 500] [--workers 2] [--json]
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

from eldercare.db.migrate import upgrade
from eldercare.platform.engine import service
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
            " SELECT id, (SELECT id FROM users) FROM residents"
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
