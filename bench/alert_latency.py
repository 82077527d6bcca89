"""Alert latency: an event row written to the database -> the alert on a care worker's WebSocket.

Builds a fresh database (migrated, one home with a resident, a wearable and a care worker), runs
the whole app under uvicorn in this process (engine, hub and delivery worker as in production),
signs the worker in, opens ``/api/v1/ws`` (with ``--pollers`` consoles polling ``GET /alerts``
meanwhile, as fast as the API answers) and then, ``--events`` times: commits what ingest
writes for a fall (an ``alert_work`` row and ``NOTIFY alert_work``, one transaction), waits for
the alert message on the socket, and resolves the alert directly in the database so that the next
fall opens a new one. The path measured: LISTEN wake-up of the work loop, claim, open, notify the
tier, ``NOTIFY alerts`` at commit, the hub's audience query, the WebSocket frame.

    python bench/alert_latency.py [--events 200] [--pollers 50] [--json]
    python bench/alert_latency.py --pg-url postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import threading
import time
import uuid
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import uvicorn
from psycopg import sql
from websockets.sync.client import connect

from eldercare.config import Settings
from eldercare.db.migrate import upgrade
from eldercare.platform.app import create_app
from eldercare.platform.security import hash_password
from eldercare.platform.state import app_state

PASSWORD = "bench-password-1"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def with_db(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def seed(url: str) -> None:
    with psycopg.connect(url) as conn, conn.transaction():
        conn.execute("INSERT INTO providers (id, name, kind) VALUES ('hc', 'Home care', 'home_care')")
        conn.execute("INSERT INTO sites (id, kind, name) VALUES ('home', 'home', 'Bench home')")
        conn.execute(
            "INSERT INTO residents (id, name, home_site_id, home_care_provider_id) "
            "VALUES ('res', 'Bench Resident', 'home', 'hc')"
        )
        conn.execute(
            "INSERT INTO gateways (id, site_id, mqtt_username, mqtt_password_hash, state) "
            "VALUES ('gw', 'home', 'gw', 'x', 'online')"
        )
        conn.execute(
            "INSERT INTO sensors (gateway_id, id, kind, resident_id)"
            " VALUES ('gw', 'wearable', 'wearable', 'res')"
        )
        conn.execute(
            "INSERT INTO users (username, display_name, password_hash, role, provider_id, email) "
            "VALUES ('worker', 'Worker', %s, 'care_worker', 'hc', NULL) RETURNING id",
            (hash_password(PASSWORD),),
        )
        conn.execute(
            "INSERT INTO care_assignments (resident_id, user_id)"
            " SELECT 'res', id FROM users WHERE username = 'worker'"
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fall(seq: int) -> str:
    return json.dumps({
        "v": 1, "epoch": "bench", "seq": seq, "t": int(time.time() * 1000), "sensor": "wearable",
        "kind": "fall", "confidence": 0.9, "resident": "res", "evidence": {}, "gateway": "gw", "site": "home",
    })  # fmt: skip


def poll(port: int, token: str, stop: threading.Event, counts: list[int]) -> None:
    """One console polling the alert list as fast as the API answers (the read load)."""
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"}) as c:
        while not stop.is_set():
            c.get("/api/v1/alerts", params={"limit": 50}, timeout=30)
            counts.append(1)


def measure(url: str, events: int, pollers: int = 0) -> tuple[list[float], float]:
    app = create_app(Settings(database_url=url, environment="test", db_pool_max=10))  # type: ignore[arg-type]
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, ws="websockets-sansio", log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    hub = app_state(app).hub
    assert hub is not None
    while not hub.listening.is_set():
        time.sleep(0.05)
    r = httpx.post(
        f"http://127.0.0.1:{port}/api/v1/auth/token", data={"username": "worker", "password": PASSWORD}
    )
    r.raise_for_status()
    token = r.json()["access_token"]
    out: list[float] = []
    stop = threading.Event()
    counts: list[int] = []
    readers = [
        threading.Thread(target=poll, args=(port, token, stop, counts), daemon=True) for _ in range(pollers)
    ]
    for reader in readers:
        reader.start()
    started = time.perf_counter()
    try:
        with connect(f"ws://127.0.0.1:{port}/api/v1/ws?token={token}") as ws, psycopg.connect(url) as conn:
            ws.recv(timeout=10)  # hello
            for seq in range(1, events + 1):
                with conn.transaction():
                    conn.execute(
                        "INSERT INTO alert_work (kind, gateway_id, site_id, payload) "
                        "VALUES ('event', 'gw', 'home', %s::jsonb)",
                        (fall(seq),),
                    )
                    conn.execute("NOTIFY alert_work")
                    t0 = time.perf_counter()  # the commit below is when the event row exists
                while True:
                    msg = json.loads(ws.recv(timeout=10))
                    if msg.get("type") == "alert" and msg["event"] == "notified":
                        break
                out.append((time.perf_counter() - t0) * 1000)
                with conn.transaction():
                    conn.execute(
                        "UPDATE alerts SET state = 'resolved', resolved_at = now(),"
                        " outcome = 'no_action_needed', next_escalation_at = NULL WHERE id = %s",
                        (msg["alert"]["id"],),
                    )
                time.sleep(0.01)
    finally:
        rate = len(counts) / (time.perf_counter() - started)
        stop.set()
        for reader in readers:
            reader.join(30)
        server.should_exit = True
        thread.join(20)
    return out, rate


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200)
    ap.add_argument("--pollers", type=int, default=0, help="consoles polling GET /alerts meanwhile")
    ap.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    name = f"bench_alerts_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = with_db(args.pg_url, name)
    try:
        log(f"migrating {name}")
        upgrade(url)
        seed(url)
        log(f"{args.events} falls -> WebSocket")
        ms, rate = measure(url, args.events, args.pollers)
    finally:
        with psycopg.connect(args.pg_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    result: dict[str, Any] = {
        "events": len(ms),
        "pollers": args.pollers,
        "reads_per_s": round(rate, 1),
        "p50_ms": round(pct(ms, 50), 2),
        "p90_ms": round(pct(ms, 90), 2),
        "p99_ms": round(pct(ms, 99), 2),
        "max_ms": round(max(ms), 2),
        "mean_ms": round(statistics.fmean(ms), 2),
    }
    if args.json:
        print(json.dumps(result))
        return
    keys = ("events", "pollers", "reads_per_s", "p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms")
    print("| events | pollers | reads/s | p50 ms | p90 ms | p99 ms | max ms | mean ms |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    print("| " + " | ".join(str(result[k]) for k in keys) + " |")


if __name__ == "__main__":
    main()
