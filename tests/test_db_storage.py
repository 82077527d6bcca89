"""Storage at scale: sizing from the settings, idempotent policies, no rollup gaps, list indexes.

The ``timescale`` tests need a server with TimescaleDB preloaded (``ELDERCARE_TEST_DATABASE_URL``,
docs/development.md); the others run on either path and skip where a path does not apply.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from eldercare.config import Settings
from eldercare.db import maintain, retention_policy


def test_chunk_interval_is_derived_from_rate_and_memory() -> None:
    # a quarter of 8 GB over 1,000 readings/s of 160 bytes: 3.7 h of rows -> 3 h chunks
    assert maintain.derived_chunk_minutes(1000, 8192) == 180
    assert maintain.derived_chunk_minutes(100, 8192) == 1440  # 37 h fit: one day
    assert maintain.derived_chunk_minutes(10, 65536) == 7 * 1440  # clamped to a week
    assert maintain.derived_chunk_minutes(100_000, 8192) == 60  # clamped to an hour: add memory
    policy = maintain.RetentionPolicy(readings_per_s=1000, memory_mb=8192)
    assert policy.chunk == timedelta(hours=3)
    assert policy.compress_after == timedelta(hours=6)  # two chunks: the written one stays plain
    assert maintain.RetentionPolicy(chunk_minutes=30).compress_after == timedelta(hours=2)
    assert maintain.RetentionPolicy(compress_after_hours=5).compress_after == timedelta(hours=5)


def test_storage_settings_reach_the_policy() -> None:
    s = Settings(
        storage_readings_per_s=100,
        readings_chunk_minutes=120,
        compress_segmentby=" gateway_id ,sensor_id",
        events_compress_after_days=3,
        dedup_days=10,
    )
    policy = retention_policy(s)
    assert policy.chunk == timedelta(hours=2)
    assert policy.segmentby == "gateway_id, sensor_id"
    assert policy.events_compress_after_days == 3
    assert policy.dedup_days == 10
    with pytest.raises(ValueError, match="compress_segmentby"):
        Settings(compress_segmentby="ts")


def _readings(conn: psycopg.Connection, start: datetime, hours: int, gateway: str = "gw-1") -> int:
    rows = [
        (start + timedelta(hours=h, minutes=m), gateway, "pir-k", "motion", 1.0)
        for h in range(hours)
        for m in range(0, 60, 15)
    ]
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO readings VALUES (%s, %s, %s, %s, %s)", rows)
    return len(rows)


def _rollup_total(conn: psycopg.Connection, lo: datetime, hi: datetime) -> int:
    row = conn.execute(
        "SELECT coalesce(sum(n), 0) FROM activity_hourly WHERE bucket >= %s AND bucket < %s", (lo, hi)
    ).fetchone()
    return int(row[0]) if row else 0


def test_plain_rollup_picks_up_a_replayed_week_older_than_its_lookback(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        if maintain.is_timescale(conn):
            pytest.skip("the TimescaleDB path is tested by the continuous aggregate's test")
        now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        policy = maintain.RetentionPolicy()
        maintain.run(conn, policy, now=now)
        week = (now - timedelta(days=20)).replace(hour=0)  # far beyond the 3-day lookback
        maintain.ensure_partitions(conn, week, week + timedelta(days=7))
        maintain.run(conn, policy, now=now + timedelta(minutes=5))  # partitions exist, still empty
        inserted = _readings(conn, week, 7 * 24)
        conn.execute("SELECT pg_stat_force_next_flush()")
        conn.execute("SELECT 1")  # the statistics of the inserts are flushed after this statement
        assert _rollup_total(conn, week, week + timedelta(days=7)) == 0
        report = maintain.run(conn, policy, now=now + timedelta(minutes=10))
        assert report.rollup_rows >= 7 * 24
        assert _rollup_total(conn, week, week + timedelta(days=7)) == inserted
        # nothing new: the next pass does not recompute those days again
        again = maintain.run(conn, policy, now=now + timedelta(minutes=15))
        assert again.rollup_rows < 7 * 24


@pytest.mark.timescale
def test_timescale_rollup_policy_materialises_a_replayed_week(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        policy = maintain.RetentionPolicy()
        maintain.run(conn, policy)
        job = conn.execute(
            "SELECT job_id FROM timescaledb_information.jobs"
            " WHERE proc_name = 'policy_refresh_continuous_aggregate' AND hypertable_name = 'activity_hourly'"
        ).fetchone()
        assert job is not None
        now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        _readings(conn, now - timedelta(hours=4), 2, gateway="gw-now")
        conn.execute("CALL run_job(%s)", (job[0],))  # the aggregate's watermark moves to about now
        week = (now - timedelta(days=20)).replace(hour=0)
        inserted = _readings(conn, week, 7 * 24)
        # the old week is not materialised yet ...
        assert _rollup_total(conn, week, week + timedelta(days=7)) == 0
        conn.execute("CALL run_job(%s)", (job[0],))
        # ... until the policy's next run, whose window covers every age ingest accepts
        assert _rollup_total(conn, week, week + timedelta(days=7)) == inserted


def _job_ids(conn: psycopg.Connection) -> dict[tuple[str, str], int]:
    rows = conn.execute(
        "SELECT proc_name, hypertable_name, job_id FROM timescaledb_information.jobs"
        " WHERE hypertable_name IS NOT NULL ORDER BY job_id"
    ).fetchall()
    return {(r[0], r[1]): int(r[2]) for r in rows}


@pytest.mark.timescale
def test_maintain_on_a_database_in_the_desired_state_changes_nothing(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        policy = maintain.RetentionPolicy(readings_per_s=1000, memory_mb=8192)
        first = maintain.run(conn, policy)
        ids = _job_ids(conn)
        assert len(ids) == 7  # compression x3, retention x3, the aggregate (the dedup log: partitions)
        assert {t for p, t in ids if p == "policy_compression"} == {"readings", "gateway_status", "events"}
        for _ in range(4):
            report = maintain.run(conn, policy)
            assert report.policies_changed == []
        assert _job_ids(conn) == ids  # no job removed and re-added
        assert first.policies_changed  # the first pass did create them (0005 leaves them to maintain)
        interval = conn.execute(
            "SELECT time_interval FROM timescaledb_information.dimensions WHERE hypertable_name = 'readings'"
        ).fetchone()
        assert interval == (timedelta(hours=3),)
        # a changed setting alters the one job concerned, in place
        changed = maintain.RetentionPolicy(readings_per_s=1000, memory_mb=8192, readings_days=30)
        report = maintain.run(conn, changed)
        assert report.policies_changed == [
            "policy_retention:readings drop_after -> 30 days, 0:00:00",
            "policy_refresh_continuous_aggregate:activity_hourly window -> 29 days, 0:00:00 .. now",
        ]
        assert _job_ids(conn) == ids
        drop_after = conn.execute(
            "SELECT config ->> 'drop_after' FROM timescaledb_information.jobs WHERE job_id = %s",
            (ids[("policy_retention", "readings")],),
        ).fetchone()
        assert drop_after == ("30 days",)
        assert maintain.run(conn, changed).policies_changed == []


@pytest.mark.timescale
def test_events_are_compressed_and_readings_keep_only_the_index_queries_use(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        maintain.run(conn, maintain.RetentionPolicy())
        conn.execute(
            "INSERT INTO events (ts, gateway_id, site_id, epoch, seq, sensor_id, kind, confidence, evidence)"
            " SELECT now() - make_interval(days => 30) + make_interval(mins => i), 'gw-1', 'home-1', 'e', i,"
            " 'w-1', 'fall', 0.9, jsonb_build_object('samples', array_fill(0.5, ARRAY[50]))"
            " FROM generate_series(1, 200) i"
        )
        chunks = conn.execute(
            "SELECT compress_chunk(c) FROM show_chunks('events', older_than => INTERVAL '14 days') c"
        ).fetchall()
        assert chunks
        row = conn.execute("SELECT count(*) FROM events WHERE gateway_id = 'gw-1'").fetchone()
        assert row == (200,)
        indexes = {
            r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'readings'")
        }
        assert indexes == {"readings_sensor_ts"}


ADMIN_LIST = (
    "SELECT a.id, a.kind, a.opened_at, r.name FROM alerts a LEFT JOIN residents r ON r.id = a.resident_id"
    " WHERE {scope} AND TRUE ORDER BY a.opened_at DESC, a.id DESC LIMIT 50 OFFSET 0"
)


def test_alert_lists_are_served_by_an_index_not_a_sort(db_url: str) -> None:
    """The query ``GET /alerts`` runs (eldercare.platform.repo.alerts.list_visible) for an admin and
    a tester, on a year of alerts for 250 homes (about 26k): an index scan, no sort of the table."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO alerts (kind, severity, state, dedup_key, title, detected_at, opened_at,
                                resolved_at, outcome, simulated)
            SELECT 'inactivity', 'high', 'resolved', 'k-' || i, 'Inactivity',
                   now() - make_interval(mins => i * 20), now() - make_interval(mins => i * 20),
                   now() - make_interval(mins => i * 20 - 5), 'false_alarm', i % 10 = 0
            FROM generate_series(1, 26000) i
            """
        )
        conn.execute("ANALYZE alerts")
        conn.execute("UPDATE alerts SET state = 'open', resolved_at = NULL, outcome = NULL WHERE id % 50 = 0")
        conn.execute("ANALYZE alerts")
        cases = (  # scope, index, whether the rows may be sorted after (a few hundred open ones)
            ("TRUE", "alerts_opened", False),
            ("a.simulated", "alerts_simulated_opened", False),
            ("a.state = 'resolved'", "alerts_opened", False),  # most are resolved: read in order
            ("a.state = 'open'", "alerts_state_opened", True),  # the console's open list
        )
        for scope, index, may_sort in cases:
            plan = "\n".join(
                r[0] for r in conn.execute("EXPLAIN " + ADMIN_LIST.format(scope=scope)).fetchall()
            )
            assert f"Index Scan using {index}" in plan, plan
            full_sorts = [line for line in plan.splitlines() if "Sort" in line and "Incremental" not in line]
            assert may_sort or not full_sorts, plan


@pytest.mark.timescale
def test_foreground_jobs_unschedule_the_policies_and_run_them_from_maintain(db_url: str) -> None:
    """ELDERCARE_TIMESCALE_JOBS=foreground: where the background workers fail (PostgreSQL 15.20)."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        policy = maintain.RetentionPolicy(foreground_jobs=True)
        _readings(conn, datetime.now(UTC) - timedelta(days=2), 12)
        first = maintain.run(conn, policy)
        ids = _job_ids(conn)
        assert sorted(first.jobs_run) == sorted(ids.values())
        scheduled = conn.execute(
            "SELECT DISTINCT scheduled FROM timescaledb_information.jobs WHERE hypertable_name IS NOT NULL"
        ).fetchall()
        assert scheduled == [(False,)]
        compressed = conn.execute(
            "SELECT count(*) FROM timescaledb_information.chunks"
            " WHERE hypertable_name = 'readings' AND is_compressed"
        ).fetchone()
        assert compressed is not None and compressed[0] >= 1  # the compression policy ran
        again = maintain.run(conn, policy)
        assert again.policies_changed == [] and _job_ids(conn) == ids
        back = maintain.run(conn, maintain.RetentionPolicy())
        assert len(back.policies_changed) == len(ids) and back.jobs_run == []


def _new_ids(conn: psycopg.Connection, seqs: list[int], gateway: str = "gw-1") -> set[int]:
    """Ingest's own dedup statement: the seqs that come back are new."""
    from eldercare.ingest.store import INSERT_IDS

    n = len(seqs)
    params = {"gateways": [gateway] * n, "epochs": ["e1"] * n, "seqs": seqs, "digests": [7] * n}
    rows = conn.execute(INSERT_IDS, params).fetchall()
    return {r[2] for r in rows}


def test_dedup_log_is_partitioned_and_finds_keys_of_earlier_weeks(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        # native partitions on both paths (a hypertable's chunk creation would block other writers)
        kind = conn.execute("SELECT relkind FROM pg_class WHERE relname = 'ingested_messages'").fetchone()
        assert kind == ("p",)
        now = datetime.now(UTC)
        old_week = maintain._period_start((now - timedelta(days=15)).date(), "week")
        maintain.ensure_partitions(conn, now - timedelta(days=15), now)
        # keys received two weeks ago, in an older partition than this week's
        conn.execute(
            "INSERT INTO ingested_messages (gateway_id, epoch, seq, week)"
            " SELECT 'gw-1', 'e1', s, %s FROM generate_series(1, 10) s",
            (old_week,),
        )
        assert _new_ids(conn, list(range(5, 15))) == set(range(11, 15))
        assert _new_ids(conn, list(range(5, 15))) == set()  # and this week's copies too
        assert _new_ids(conn, [5], gateway="gw-2") == {5}  # another gateway's seq 5 is its own
        rows = conn.execute("SELECT count(*), count(DISTINCT week) FROM ingested_messages").fetchone()
        assert rows == (15, 2)


def test_dedup_retention_drops_whole_weeks_past_the_horizon(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        now = datetime.now(UTC)
        old = now - timedelta(days=50)
        old_week = maintain._period_start(old.date(), "week")
        maintain.ensure_partitions(conn, old, now)
        conn.execute(
            "INSERT INTO ingested_messages (gateway_id, epoch, seq, week) VALUES ('gw-1', 'e1', 1, %s)",
            (old_week,),
        )
        assert _new_ids(conn, [2]) == {2}
        report = maintain.run(conn, maintain.RetentionPolicy(dedup_days=30), now=now)
        this_week = maintain._period_start(now.date(), "week")
        assert f"ingested_messages_p{old_week:%Y%m%d}" in report.partitions_dropped
        assert f"ingested_messages_p{this_week:%Y%m%d}" not in report.partitions_dropped
        assert _new_ids(conn, [1, 2]) == {1}  # the old key is forgotten, this week's is kept


def test_migration_0005_keeps_the_dedup_keys_already_stored(pg_url: str) -> None:
    import uuid
    from urllib.parse import urlsplit

    from eldercare.db.migrate import upgrade

    name = f"m0005_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = urlsplit(pg_url)._replace(path=f"/{name}").geturl()
    try:
        upgrade(url, revision="0009")  # the revision before 0005
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO ingested_messages (gateway_id, epoch, seq, received_at)"
                " SELECT 'gw-1', 'e1', s, now() - make_interval(days => s) FROM generate_series(1, 20) s"
            )
        upgrade(url)
        with psycopg.connect(url, autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM ingested_messages").fetchone() == (20,)
            assert _new_ids(conn, list(range(15, 25))) == set(range(21, 25))
            maintain.run(conn, maintain.RetentionPolicy(dedup_days=30))  # weeks with old keys: fine
            assert _new_ids(conn, [1, 20, 25]) == {25}
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
