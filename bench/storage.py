"""Storage on both paths in one run: bytes per reading, ingest into a compressed-era table, queries.

For each server given (plain PostgreSQL and TimescaleDB; a path whose server does not answer is
reported as skipped), in a fresh database migrated and maintained with the default settings
(``eldercare db migrate`` + one ``db maintain`` pass, so chunking and policies are the real ones,
sized with ``ELDERCARE_STORAGE_READINGS_PER_S`` = the generated data's rate unless
``--readings-per-s`` says otherwise):

1. a neighbourhood of ``--homes`` homes (default 200: one resident, one gateway, 8 sensors each)
   with ``--days`` days (default 90) of readings, one per sensor every ``--every-min`` minutes
   (default 15: 768 readings per home and day), generated server-side with a fixed seed;
2. bytes per reading: the readings table with its indexes, divided by its rows; on TimescaleDB
   again after compressing every chunk older than the compression delay (what the policy does);
3. ingest rate: binary COPY (ingest's own method) of ``--ingest-rows`` current readings in batches
   of 5,000 rows, one commit each, into that compressed-era table; and of late readings (older
   than the compression delay plus a chunk) into a compressed chunk;
4. the dedup insert (ingest's ``INSERT_IDS``) with ``--dedup-keys`` keys spread over 5 weekly
   partitions, batches of 100 new and 100 replayed ids, against the same statement on one
   unpartitioned table keyed by ``(gateway_id, epoch, seq)`` (the layout before migration 0005);
5. query latency, warm, over random residents: the functions the portal and the timeline call
   (``eldercare.platform.repo.timeline``): timeline for 7 and 90 days, the last activity per sensor,
   last night's bed samples, and the active hours of a day.

    python bench/storage.py [--plain-url URL] [--timescale-url URL] [--homes 200] [--days 90] [--json]

``--timescale-url`` defaults to ``ELDERCARE_BENCH_TIMESCALE_URL``, else 127.0.0.1:5440 (see
docs/development.md for a local TimescaleDB server).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import psycopg

from eldercare.db import maintain
from eldercare.db.migrate import upgrade
from eldercare.platform.repo.connections import connect

SENSORS = (
    ("pir-kitchen", "pir", "kitchen", "motion"),
    ("pir-bathroom", "pir", "bathroom", "motion"),
    ("pir-bedroom", "pir", "bedroom", "motion"),
    ("pir-living", "pir", "living", "motion"),
    ("bed-1", "bed", "bedroom", "in_bed"),
    ("door-front", "door", "hall", "contact"),
    ("plug-kettle", "plug", "kitchen", "power"),
    ("wearable", "wearable", None, "heart_rate"),
)
BATCH = 5000


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def with_db(url: str, name: str) -> str:
    return urlsplit(url)._replace(path=f"/{name}").geturl()


def seed_registry(conn: psycopg.Connection, homes: int) -> None:
    conn.execute(
        """
        INSERT INTO sites (id, kind, name, timezone)
        SELECT format('home-%s', lpad(h::text, 4, '0')), 'home', format('Home %s', h), 'UTC'
        FROM generate_series(1, %(n)s) h;
        INSERT INTO residents (id, name, home_site_id)
        SELECT format('res-%s', lpad(h::text, 4, '0')), format('Resident %s', h),
               format('home-%s', lpad(h::text, 4, '0'))
        FROM generate_series(1, %(n)s) h;
        INSERT INTO gateways (id, site_id, mqtt_username, mqtt_password_hash)
        SELECT format('gw-%s', lpad(h::text, 4, '0')), format('home-%s', lpad(h::text, 4, '0')),
               format('gw-%s', lpad(h::text, 4, '0')), 'x'
        FROM generate_series(1, %(n)s) h;
        """.replace("%(n)s", str(int(homes)))
    )
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO sensors (gateway_id, id, kind, room, resident_id)"
            " SELECT format('gw-%%s', lpad(h::text, 4, '0')), %s, %s, %s,"
            " CASE WHEN %s = 'wearable' THEN format('res-%%s', lpad(h::text, 4, '0')) END"
            " FROM generate_series(1, %s) h",
            [(sid, kind, room, kind, homes) for sid, kind, room, _ in SENSORS],
        )


def load_readings(conn: psycopg.Connection, homes: int, start: datetime, days: int, every_min: int) -> int:
    """One reading per sensor every ``every_min`` minutes, a day per statement (server-side)."""
    values = ", ".join(f"('{sid}', '{metric}', '{kind}')" for sid, kind, _, metric in SENSORS)
    total = 0
    conn.execute("SELECT setseed(0.23)")
    for d in range(days):
        lo = start + timedelta(days=d)
        cur = conn.execute(
            f"""
            INSERT INTO readings (ts, gateway_id, sensor_id, metric, value)
            SELECT t + make_interval(secs => h * 3 %% (%(every)s * 60)),
                   format('gw-%%s', lpad(h::text, 4, '0')), s.id, s.metric,
                   CASE s.kind WHEN 'wearable' THEN 60 + floor(random() * 30)
                               WHEN 'plug' THEN CASE WHEN random() < 0.05 THEN 1800 ELSE 0 END
                               ELSE (random() < 0.3)::int END
            FROM generate_series(1, %(homes)s) h, (VALUES {values}) s(id, metric, kind),
                 generate_series(%(lo)s::timestamptz, %(hi)s::timestamptz - interval '1 second',
                                 make_interval(mins => %(every)s)) t
            """,
            {"homes": homes, "lo": lo, "hi": lo + timedelta(days=1), "every": every_min},
        )
        total += cur.rowcount
        conn.commit()
    return total


def readings_bytes(conn: psycopg.Connection, timescale: bool) -> int:
    if timescale:
        row = conn.execute("SELECT hypertable_size('readings')").fetchone()
    else:
        row = conn.execute(
            "SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits"
            " WHERE inhparent = 'readings'::regclass"
        ).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def copy_rate(conn: psycopg.Connection, rows: int, at: datetime, spread_s: float) -> float:
    """Binary COPY of ``rows`` readings in 5,000-row batches, one commit each: rows per second."""
    rnd = random.Random(7)
    done = 0
    t0 = time.perf_counter()
    while done < rows:
        n = min(BATCH, rows - done)
        with conn.cursor().copy(
            "COPY readings (ts, gateway_id, sensor_id, metric, value) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["timestamptz", "text", "text", "text", "float8"])
            for i in range(n):
                home = rnd.randrange(1, 201)
                sid, _, _, metric = SENSORS[i % len(SENSORS)]
                ts = at + timedelta(seconds=rnd.random() * spread_s)
                copy.write_row((ts, f"gw-{home:04d}", sid, metric, float(i % 2)))
        conn.commit()
        done += n
    return rows / (time.perf_counter() - t0)


OLD_IDS = """
INSERT INTO dedup_unpartitioned (gateway_id, epoch, seq, digest)
SELECT * FROM unnest(%(gateways)s::text[], %(epochs)s::text[], %(seqs)s::bigint[], %(digests)s::bigint[])
ON CONFLICT DO NOTHING
RETURNING gateway_id, epoch, seq
"""


def dedup_cost(conn: psycopg.Connection, keys: int, batches: int) -> dict[str, float]:
    """Microseconds per message id of the dedup insert, partitioned (now) and one table (before)."""
    from eldercare.ingest.store import INSERT_IDS

    per_week = keys // 5
    conn.execute(
        "CREATE TABLE dedup_unpartitioned (gateway_id text, epoch text, seq bigint, received_at timestamptz"
        " NOT NULL DEFAULT now(), digest bigint, PRIMARY KEY (gateway_id, epoch, seq))"
    )
    for w in range(5):  # ids of the last 5 weeks, as many per week
        week = f"date_trunc('week', now() AT TIME ZONE 'UTC')::date - {7 * w}"
        tables = (("ingested_messages", ", week", f", {week}"), ("dedup_unpartitioned", "", ""))
        for table, extra, value in tables:
            conn.execute(
                f"INSERT INTO {table} (gateway_id, epoch, seq{extra})"
                f" SELECT format('gw-%s', lpad((s % 200 + 1)::text, 4, '0')), 'e{w}', s{value}"
                f" FROM generate_series(1, {per_week}) s"
            )
        conn.commit()
    conn.execute("ANALYZE ingested_messages")
    conn.execute("ANALYZE dedup_unpartitioned")
    conn.commit()
    out = {}
    for label, statement in (("partitioned_us_per_id", INSERT_IDS), ("one_table_us_per_id", OLD_IDS)):
        rnd = random.Random(5)
        t0 = time.perf_counter()
        ids = 0
        for b in range(batches):
            gws, epochs, seqs = [], [], []
            for i in range(200):
                old = i % 2 == 1  # half of the batch replayed from an earlier week
                seq = rnd.randrange(1, per_week) if old else b * 200 + i
                gws.append(f"gw-{seq % 200 + 1:04d}")
                epochs.append(f"e{rnd.randrange(0, 5)}" if old else "now")
                seqs.append(seq)
            params = {"gateways": gws, "epochs": epochs, "seqs": seqs, "digests": [7] * len(seqs)}
            conn.execute(statement, params).fetchall()
            conn.commit()
            ids += len(seqs)
        out[label] = round((time.perf_counter() - t0) / ids * 1e6, 1)
    return out


async def time_queries(url: str, homes: int, end: datetime, runs: int) -> dict[str, dict[str, float]]:
    from eldercare.platform.repo import timeline as repo

    rnd = random.Random(11)
    streams = ["activity", "bathroom", "bed", "vitals"]
    cases = {
        "timeline 7 d": lambda c, r, s: repo.timeline(
            c, resident_id=r, start=end - timedelta(days=7), end=end, streams=streams
        ),
        "timeline 90 d": lambda c, r, s: repo.timeline(
            c, resident_id=r, start=end - timedelta(days=90), end=end, streams=streams
        ),
        "portal: last activity per sensor (24 h)": lambda c, r, s: repo.last_sensor_activity(
            c, site_id=s, since=end - timedelta(days=1)
        ),
        "portal: bed samples, last night": lambda c, r, s: repo.bed_samples(
            c, site_id=s, resident_id=r, start=end - timedelta(hours=12), end=end
        ),
        "portal: active hours of a day": lambda c, r, s: repo.active_hours(
            c, site_id=s, start=end - timedelta(days=1), end=end
        ),
    }
    out: dict[str, dict[str, float]] = {}
    async with await connect(url) as conn:
        for name, fn in cases.items():
            times = []
            for i in range(runs + 3):
                h = rnd.randrange(1, homes + 1)
                t0 = time.perf_counter()
                await fn(conn, f"res-{h:04d}", f"home-{h:04d}")
                if i >= 3:  # warm-up
                    times.append((time.perf_counter() - t0) * 1000)
            times.sort()
            out[name] = {
                "p50_ms": round(statistics.median(times), 2),
                "p95_ms": round(times[int(0.95 * (len(times) - 1))], 2),
            }
    return out


def run_path(server: str, args: argparse.Namespace) -> dict[str, Any]:
    name = f"bench_storage_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = with_db(server, name)
    result: dict[str, Any] = {}
    try:
        choice = upgrade(url)
        # sized for the rate of the generated data, as an operator would set it
        rate = args.readings_per_s or max(1, round(args.homes * len(SENSORS) / (args.every_min * 60)))
        policy = maintain.RetentionPolicy(readings_per_s=rate)
        with psycopg.connect(url, autocommit=True) as conn:
            maintain.run(conn, policy)
            result["path"] = "TimescaleDB" if choice.use else "plain PostgreSQL"
            result["server"] = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
            if choice.use:
                result["timescaledb"] = conn.execute(
                    "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
                ).fetchone()[0]  # type: ignore[index]
            result["readings_per_s_setting"] = rate
            result["chunk_interval"] = str(policy.chunk)
            result["compress_after"] = str(policy.compress_after)
        end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        start = end - timedelta(days=args.days)
        with psycopg.connect(url) as conn:
            if not choice.use:
                maintain.ensure_partitions(conn, start, end + timedelta(days=1))
            seed_registry(conn, args.homes)
            conn.commit()
            t0 = time.perf_counter()
            rows = load_readings(conn, args.homes, start, args.days, args.every_min)
            result["rows"] = rows
            result["load_rows_per_s"] = round(rows / (time.perf_counter() - t0))
            log(f"{result['path']}: {rows:,} readings loaded")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE readings")
            size = readings_bytes(conn, choice.use)
            result["bytes_per_reading_raw"] = round(size / rows, 1)
            if choice.use:
                t0 = time.perf_counter()
                conn.execute(
                    "SELECT count(compress_chunk(c, if_not_compressed => true))"
                    " FROM show_chunks('readings', older_than => %s::interval) c",
                    (policy.compress_after,),
                )
                result["compress_s"] = round(time.perf_counter() - t0, 1)
                conn.execute("CALL refresh_continuous_aggregate('activity_hourly', NULL, NULL)")
                conn.execute("VACUUM ANALYZE readings")
                size = readings_bytes(conn, True)
                result["bytes_per_reading_compressed"] = round(size / rows, 1)
            else:
                maintain.refresh_rollup(conn, start)
            conn.execute("ANALYZE")
            log(f"{result['path']}: sizes measured")
        with psycopg.connect(url) as conn:
            result["ingest_now_rows_per_s"] = round(copy_rate(conn, args.ingest_rows, end, 600))
            late = end - policy.compress_after - policy.chunk - timedelta(days=1)  # a compressed chunk
            result["ingest_late_rows_per_s"] = round(copy_rate(conn, args.ingest_rows // 5, late, 3600))
        with psycopg.connect(url) as conn:
            if not choice.use:  # the weeks retention keeps, as in production
                maintain.drop_expired_partitions(conn, policy, datetime.now(UTC))
                conn.commit()
            result["dedup"] = dedup_cost(conn, args.dedup_keys, 200)
        log(f"{result['path']}: dedup timed")
        result["queries"] = asyncio.run(time_queries(url, args.homes, end, args.runs))
        log(f"{result['path']}: queries timed")
    finally:
        if not args.keep:
            with psycopg.connect(server, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plain-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument(
        "--timescale-url",
        default=os.environ.get(
            "ELDERCARE_BENCH_TIMESCALE_URL", "postgresql://postgres@127.0.0.1:5440/postgres"
        ),
    )
    ap.add_argument("--homes", type=int, default=200)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--every-min", type=int, default=15)
    ap.add_argument("--ingest-rows", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--dedup-keys", type=int, default=1_000_000)
    ap.add_argument(
        "--readings-per-s",
        type=int,
        default=None,
        help="ELDERCARE_STORAGE_READINGS_PER_S to size with (default: the generated data's rate)",
    )
    ap.add_argument("--keep", action="store_true", help="keep the databases")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    results: dict[str, Any] = {}
    for label, server in (("plain", args.plain_url), ("timescale", args.timescale_url)):
        try:
            with psycopg.connect(server, connect_timeout=3, autocommit=True):
                pass
        except psycopg.Error as exc:
            results[label] = {"skipped": str(exc).strip().splitlines()[0]}
            continue
        results[label] = run_path(server, args)
        if label == "timescale" and results[label]["path"] != "TimescaleDB":
            results[label]["note"] = "this server cannot give TimescaleDB: measured the plain path"
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for label, r in results.items():
        print(f"\n## {label}: {json.dumps({k: v for k, v in r.items() if k != 'queries'})}")
        for q, t in r.get("queries", {}).items():
            print(f"  {q:45s} p50 {t['p50_ms']:8.2f} ms   p95 {t['p95_ms']:8.2f} ms")


if __name__ == "__main__":
    main()
