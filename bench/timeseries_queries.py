"""Timeline, summary and report queries on a year of generated data for 1,000 homes.

What is generated (all server-side with ``generate_series`` and a fixed ``setseed``):

- registry: ``--homes`` homes (default 1,000), one resident, one gateway and 8 sensors each
  (pir in kitchen, bathroom, bedroom, living; bed; front door; kettle plug; wearable);
- ``activity_hourly`` for ``--days`` days (default 365): one row per sensor-metric and hour in
  which it reported, with a probability by sensor kind and hour of day (PIRs ~60% of daytime
  hours, the wearable every hour) -- the rollup the timeline reads, synthesised directly for the
  days older than the raw window;
- raw ``readings`` for the last ``--raw-days`` days (default 7; retention keeps 90): PIR motion
  in ~15% of daytime minutes and ~1% of night minutes, kettle power 2% of minutes, wearable heart
  rate every 5 minutes, bed in/out at night with a bathroom trip, the front door a few times a
  day (~900 readings per home per day); the rollup for those days is computed from them with
  ``eldercare.db.maintain.refresh_rollup``; the other days of the 90-day window have empty
  partitions (so the planner sees the real partition count);
- ``alerts`` (~2 per home per week over the year) with an opened and acknowledged trail row each.

Then it times the exact repository functions the API calls (``eldercare.platform.repo``), warm
cache, over random residents: timeline for 1, 7, 30 and 90 days, the daily summary's four
queries, and the 30-day care-quality report. Plain PostgreSQL path (the synthesised rollup is
inserted, which a TimescaleDB continuous aggregate would not accept).

    python bench/timeseries_queries.py [--homes 1000] [--days 365] [--raw-days 7] [--runs 30] [--json]
    python bench/timeseries_queries.py --url postgresql://.../existing_bench_db --reuse   # time only
"""

from __future__ import annotations

import argparse
import asyncio
import json
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


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def generate(url: str, homes: int, days: int, raw_days: int, now: datetime) -> dict[str, Any]:
    stats: dict[str, Any] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT setseed(0.42)")
        t = time.perf_counter()
        conn.execute("INSERT INTO providers (id, name, kind) VALUES ('hc-b', 'Bench Home Care', 'home_care')")
        conn.execute(
            "INSERT INTO sites (id, kind, name) SELECT format('home-%%s', i), 'home', format('Home %%s', i)"
            " FROM generate_series(1, %s) i",
            (homes,),
        )
        conn.execute(
            "INSERT INTO residents (id, name, home_site_id, home_care_provider_id)"
            " SELECT format('res-%%s', i), format('Resident %%s', i), format('home-%%s', i), 'hc-b'"
            " FROM generate_series(1, %s) i",
            (homes,),
        )
        conn.execute(
            "INSERT INTO gateways (id, site_id, mqtt_username, mqtt_password_hash)"
            " SELECT format('gw-%%s', i), format('home-%%s', i), format('gw-%%s', i), 'x'"
            " FROM generate_series(1, %s) i",
            (homes,),
        )
        with conn.cursor() as cur:
            for sid, kind, room, _metric in SENSORS:
                cur.execute(
                    "INSERT INTO sensors (gateway_id, id, kind, room, resident_id)"
                    " SELECT format('gw-%%s', i), %s, %s, %s, CASE WHEN %s = 'wearable'"
                    " THEN format('res-%%s', i) END FROM generate_series(1, %s) i",
                    (sid if kind != "wearable" else "wearable", kind, room, kind, homes),
                )
        stats["registry_s"] = round(time.perf_counter() - t, 1)

        raw_start = (now - timedelta(days=raw_days)).replace(minute=0, second=0, microsecond=0)
        year_start = (now - timedelta(days=days)).replace(minute=0, second=0, microsecond=0)
        # Synthesised rollup for the days before the raw window; indexes rebuilt after the load.
        t = time.perf_counter()
        index_defs = [
            (name, ddl)
            for name, ddl in conn.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'activity_hourly'"
                " AND indexname <> 'activity_hourly_pkey'"
            ).fetchall()
        ]
        conn.execute("ALTER TABLE activity_hourly DROP CONSTRAINT activity_hourly_pkey")
        for name, _ddl in index_defs:
            conn.execute(psycopg.sql.SQL("DROP INDEX {}").format(psycopg.sql.Identifier(name)))
        conn.execute(
            """
            INSERT INTO activity_hourly (bucket, gateway_id, sensor_id, metric, n, total, max_value)
            SELECT h, s.gateway_id, s.id, m.metric,
                   1 + (random() * 20)::int, 1 + (random() * 20)::int, m.max_value
            FROM generate_series(%(lo)s::timestamptz, %(hi)s::timestamptz - interval '1 hour',
                                 interval '1 hour') h
            CROSS JOIN sensors s
            JOIN (VALUES ('pir', 'motion', 1.0), ('bed', 'in_bed', 1.0), ('door', 'contact', 1.0),
                         ('plug', 'power', 1800.0), ('wearable', 'heart_rate', 90.0))
                 AS m(kind, metric, max_value) ON m.kind = s.kind
            WHERE random() < CASE
                WHEN s.kind = 'wearable' THEN 1.0
                WHEN extract(hour FROM h AT TIME ZONE 'Asia/Shanghai') BETWEEN 7 AND 21 THEN
                    CASE s.kind WHEN 'pir' THEN 0.6 WHEN 'plug' THEN 0.15 WHEN 'door' THEN 0.1 ELSE 0.05 END
                ELSE CASE s.kind WHEN 'bed' THEN 0.2 WHEN 'pir' THEN 0.08 ELSE 0.01 END END
            """,
            {"lo": year_start, "hi": raw_start},
        )
        stats["rollup_synth_s"] = round(time.perf_counter() - t, 1)
        log(f"synthesised rollup in {stats['rollup_synth_s']} s")

        t = time.perf_counter()
        maintain.ensure_partitions(conn, now - timedelta(days=90), now + timedelta(days=1))
        day0 = raw_start.replace(hour=0)
        for d in range(raw_days + 1):
            lo = day0 + timedelta(days=d)
            hi = min(lo + timedelta(days=1), now)
            if hi <= lo:
                break
            # per-minute sensors (PIR, plug), wearable every 5 min, bed and door as state changes
            conn.execute(
                """
                INSERT INTO readings (ts, gateway_id, sensor_id, metric, value)
                SELECT m + (random() * interval '59 seconds'), s.gateway_id, s.id,
                       CASE s.kind WHEN 'pir' THEN 'motion' ELSE 'power' END,
                       CASE s.kind WHEN 'pir' THEN 1.0 ELSE 1800.0 END
                FROM generate_series(%(lo)s::timestamptz, %(hi)s::timestamptz - interval '1 minute',
                                     interval '1 minute') m
                CROSS JOIN sensors s
                WHERE s.kind IN ('pir', 'plug') AND random() < CASE
                    WHEN s.kind = 'plug' THEN 0.02
                    WHEN extract(hour FROM m AT TIME ZONE 'Asia/Shanghai') BETWEEN 7 AND 21 THEN 0.15
                    ELSE 0.01 END
                """,
                {"lo": lo, "hi": hi},
            )
            conn.execute(
                """
                INSERT INTO readings (ts, gateway_id, sensor_id, metric, value)
                SELECT m, s.gateway_id, s.id, 'heart_rate', 60 + random() * 30
                FROM generate_series(%(lo)s::timestamptz, %(hi)s::timestamptz - interval '5 minutes',
                                     interval '5 minutes') m
                CROSS JOIN sensors s WHERE s.kind = 'wearable'
                """,
                {"lo": lo, "hi": hi},
            )
            local_midnight = lo  # the bed and door pattern is stamped relative to the UTC day
            conn.execute(
                """
                INSERT INTO readings (ts, gateway_id, sensor_id, metric, value)
                SELECT %(d)s::timestamptz + e.off + random() * interval '20 minutes',
                       s.gateway_id, s.id, e.metric, e.value
                FROM sensors s
                JOIN (VALUES ('bed', 'in_bed', interval '14 hours', 1.0),
                             ('bed', 'in_bed', interval '18 hours', 0.0),
                             ('bed', 'in_bed', interval '18 hours 30 minutes', 1.0),
                             ('bed', 'in_bed', interval '22 hours 30 minutes', 0.0),
                             ('door', 'contact', interval '1 hour', 1.0),
                             ('door', 'contact', interval '3 hours', 1.0),
                             ('door', 'contact', interval '8 hours', 1.0),
                             ('door', 'contact', interval '9 hours', 1.0))
                     AS e(kind, metric, off, value) ON e.kind = s.kind
                WHERE %(d)s::timestamptz + e.off < %(hi)s
                """,
                {"d": local_midnight, "hi": hi},
            )
        n_raw = conn.execute("SELECT count(*) FROM readings").fetchone()
        stats["readings_rows"] = int(n_raw[0]) if n_raw else 0
        stats["readings_load_s"] = round(time.perf_counter() - t, 1)
        log(f"{stats['readings_rows']:,} raw readings in {stats['readings_load_s']} s")

        t = time.perf_counter()
        maintain.refresh_rollup(conn, raw_start)
        stats["rollup_from_raw_s"] = round(time.perf_counter() - t, 1)
        t = time.perf_counter()
        conn.execute(
            "ALTER TABLE activity_hourly ADD CONSTRAINT activity_hourly_pkey"
            " PRIMARY KEY (gateway_id, sensor_id, metric, bucket)"
        )
        conn.execute("SET maintenance_work_mem = '256MB'")
        for _name, ddl in index_defs:  # the migrations' own definitions, rebuilt after the load
            conn.execute(ddl)
        conn.execute("VACUUM activity_hourly")  # index-only scans need the visibility map
        stats["rollup_index_s"] = round(time.perf_counter() - t, 1)
        n_roll = conn.execute("SELECT count(*) FROM activity_hourly").fetchone()
        stats["activity_hourly_rows"] = int(n_roll[0]) if n_roll else 0
        log(f"{stats['activity_hourly_rows']:,} rollup rows; indexes in {stats['rollup_index_s']} s")

        t = time.perf_counter()
        conn.execute(
            """
            WITH a AS (
                INSERT INTO alerts (kind, severity, state, resident_id, dedup_key, title, detected_at,
                                    opened_at, tier, acknowledged_at, resolved_at, outcome)
                SELECT k.kind, 'high', 'resolved', format('res-%%s', 1 + (random() * (%(homes)s - 1))::int),
                       format('bench-%%s', g), 'bench', o, o, 1 + (random() * 2)::int,
                       o + random() * interval '20 minutes',
                       o + interval '30 minutes' + random() * interval '2 hours',
                       (ARRAY['confirmed', 'false_alarm', 'no_action_needed'])[1 + (random() * 2)::int]
                FROM generate_series(1, %(n)s) g
                CROSS JOIN LATERAL (SELECT %(lo)s::timestamptz + g * interval '0'
                                           + random() * (%(hi)s::timestamptz - %(lo)s) AS o) t
                CROSS JOIN LATERAL (
                    SELECT (ARRAY['fall', 'inactivity', 'sos', 'low_battery', 'device_offline'])
                           [1 + (random() * 4 + g * 0)::int] AS kind) k
                RETURNING id, opened_at, acknowledged_at, tier
            )
            INSERT INTO alert_trail (alert_id, at, action, tier)
            SELECT id, opened_at, 'opened', 1 FROM a
            UNION ALL SELECT id, acknowledged_at, 'acknowledged', tier FROM a
            """,
            {"homes": homes, "n": int(homes * days / 7 * 2), "lo": year_start, "hi": now},
        )
        stats["alerts_load_s"] = round(time.perf_counter() - t, 1)
        n_alerts = conn.execute("SELECT count(*) FROM alerts").fetchone()
        stats["alerts_rows"] = int(n_alerts[0]) if n_alerts else 0
        conn.execute("ANALYZE")
        size = conn.execute("SELECT pg_size_pretty(pg_database_size(current_database()))").fetchone()
        stats["database_size"] = size[0] if size else None
    return stats


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


async def time_queries(url: str, homes: int, runs: int, now: datetime) -> list[dict[str, Any]]:
    from eldercare.platform.access import STREAMS, Principal
    from eldercare.platform.repo import report, timeline

    admin = Principal(0, "bench", "bench", "admin", None, "en")
    streams = [s for s in STREAMS if s in ("activity", "bed", "bathroom", "vitals")]
    rng = random.Random(7)
    results = []
    async with await connect(url) as conn:

        async def summary(rid: str, site: str) -> None:
            day_end = now
            await timeline.last_sensor_activity(conn, site_id=site, since=day_end - timedelta(days=7))
            await timeline.bed_samples(
                conn, site_id=site, resident_id=rid, start=now - timedelta(hours=18), end=now
            )
            await timeline.active_hours(conn, site_id=site, start=now - timedelta(hours=12), end=now)
            await timeline.open_alerts(conn, resident_id=rid)

        cases: list[tuple[str, Any]] = []
        for label, days in (("timeline 1 day", 1), ("timeline 7 days", 7), ("timeline 30 days", 30),
                            ("timeline 90 days", 90)):  # fmt: skip

            def tl(rid: str, site: str, days: int = days) -> Any:
                return timeline.timeline(
                    conn, resident_id=rid, start=now - timedelta(days=days), end=now, streams=streams
                )

            cases.append((label, tl))
        cases.append(("daily summary (4 queries)", summary))

        def rep(rid: str, site: str) -> Any:
            return report.care_quality(conn, user=admin, since=now - timedelta(days=30), until=now)

        cases.append(("care-quality report, 30 days, all homes", rep))
        for label, fn in cases:
            n = runs if "report" not in label else max(3, runs // 10)
            picks = [rng.randint(1, homes) for _ in range(n)]
            await fn(f"res-{picks[0]}", f"home-{picks[0]}")  # warm-up
            ms = []
            rows = 0
            for i in picks:
                t = time.perf_counter()
                out = await fn(f"res-{i}", f"home-{i}")
                ms.append((time.perf_counter() - t) * 1000)
                rows = len(out) if isinstance(out, list) else rows
            results.append(
                {
                    "query": label,
                    "runs": n,
                    "p50_ms": round(statistics.median(ms), 2),
                    "p95_ms": round(pct(ms, 0.95), 2),
                    "max_ms": round(max(ms), 2),
                    "rows_last": rows,
                }
            )
            log(f"{label}: p50 {results[-1]['p50_ms']} ms")
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432/test")
    ap.add_argument("--url", help="Use this database (with --reuse: already generated)")
    ap.add_argument("--reuse", action="store_true", help="Skip generation: time queries on --url")
    ap.add_argument("--keep", action="store_true", help="Keep the generated database")
    ap.add_argument("--homes", type=int, default=1000)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--raw-days", type=int, default=7)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    now = datetime.now(UTC).replace(microsecond=0)
    created = None
    url = args.url
    if url is None:
        created = f"bench_ts_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(args.server, autocommit=True) as c:
            c.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(created)))
        url = urlsplit(args.server)._replace(path=f"/{created}").geturl()
    try:
        stats: dict[str, Any] = {}
        if not args.reuse:
            upgrade(url, timescale="off")  # the rollup is synthesised by INSERT: a table, not a cagg
            t = time.perf_counter()
            stats = generate(url, args.homes, args.days, args.raw_days, now)
            stats["generate_total_s"] = round(time.perf_counter() - t, 1)
        with psycopg.connect(url) as c:
            stats["timescale"] = maintain.is_timescale(c)
        results = asyncio.run(time_queries(url, args.homes, args.runs, now))
    finally:
        if created and not args.keep:
            with psycopg.connect(args.server, autocommit=True) as c:
                c.execute(
                    psycopg.sql.SQL("DROP DATABASE {} WITH (FORCE)").format(psycopg.sql.Identifier(created))
                )
        elif created:
            log(f"kept {url}")
    out = {
        "homes": args.homes,
        "days": args.days,
        "raw_days": args.raw_days,
        "data": stats,
        "queries": results,
    }
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"{args.homes} homes, {args.days} days of rollup, {args.raw_days} days of raw readings")
    for k, v in stats.items():
        print(f"  {k:24} {v}")
    print(f"{'query':42} {'runs':>5} {'p50 ms':>9} {'p95 ms':>9} {'max ms':>9} {'rows':>7}")
    for r in results:
        print(
            f"{r['query']:42} {r['runs']:>5} {r['p50_ms']:>9} {r['p95_ms']:>9} {r['max_ms']:>9}"
            f" {r['rows_last']:>7}"
        )


if __name__ == "__main__":
    main()
