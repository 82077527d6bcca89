"""Migrations and storage upkeep against the real PostgreSQL (plain path) and TimescaleDB (marked)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from eldercare.db import maintain
from eldercare.db.migrate import status, upgrade

EXPECTED_TABLES = {
    "providers", "escalation_policies", "escalation_tiers", "sites", "residents", "gateways",
    "sensors", "users", "family_links", "care_assignments", "oncall_shifts", "detector_settings",
    "readings", "events", "gateway_status", "ingested_messages", "dead_letters", "alert_work",
    "alerts", "alert_trail", "notifications", "audit_log",
}  # fmt: skip


@pytest.fixture
def empty_db(pg_url: str) -> str:
    """A database with nothing in it (db_url is already migrated)."""
    import uuid

    name = f"empty_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = _with_db(pg_url, name)
    yield url
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _with_db(url: str, name: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(url)
    info["dbname"] = name
    return psycopg.conninfo.make_conninfo(**info)  # type: ignore[arg-type]


def _tables(conn: psycopg.Connection) -> set[str]:
    rows = conn.execute(
        "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p')"
    ).fetchall()
    return {r[0] for r in rows}


def test_migrate_is_idempotent_and_reports_status(empty_db: str) -> None:
    before = status(empty_db)
    assert (before.current is None and before.pending == [before.head]) or len(before.pending) >= 1
    upgrade(empty_db)
    upgrade(empty_db)  # a second run changes nothing and does not fail
    after = status(empty_db)
    assert after.up_to_date and after.current == after.head
    with psycopg.connect(empty_db) as conn:
        assert _tables(conn) >= EXPECTED_TABLES


def test_a_database_migrated_by_a_newer_release_is_said_so(db_url: str) -> None:
    """A release rolled back over a database a newer one migrated: `db status` listed every
    migration of this release as pending and `db migrate` said "Can't locate revision"."""
    import json
    import os
    import subprocess
    import sys

    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    st = status(db_url)
    assert st.unknown and not st.up_to_date and st.pending == [] and st.applied == []
    env = {k: v for k, v in os.environ.items() if not k.startswith("ELDERCARE_")}
    env["ELDERCARE_DATABASE_URL"] = db_url

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "eldercare.cli", "db", *args]
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60, check=False)

    said = f"the database is at revision 9999, which this release (head {st.head}) does not have"
    shown = cli("status")
    assert shown.returncode == 0 and said in shown.stdout and "[ ]" not in shown.stdout, shown
    assert json.loads(cli("status", "--json").stdout) | {"timescale": None} == {
        "current": "9999",
        "head": st.head,
        "applied": [],
        "pending": [],
        "timescale": None,
        "up_to_date": False,
    }
    migrated = cli("migrate")
    assert migrated.returncode == 1 and "Traceback" not in migrated.stderr, migrated.stderr
    assert f"Error: migration failed: {said}" in migrated.stderr, migrated.stderr


def test_plain_path_partitions_readings_by_time(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        if maintain.is_timescale(conn):
            pytest.skip("this database uses TimescaleDB; the plain path is tested without it")
        kind = conn.execute("SELECT relkind FROM pg_class WHERE relname = 'readings'").fetchone()
        assert kind == ("p",)
        now = datetime.now(UTC)
        conn.execute("INSERT INTO readings VALUES (%s, 'gw-1', 'pir-kitchen', 'motion', 1.0)", (now,))
        # a row far outside the created partitions is refused, not silently misplaced
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(
                "INSERT INTO readings VALUES (%s, 'gw-1', 'pir-kitchen', 'motion', 1.0)",
                (now - timedelta(days=40),),
            )
        created = maintain.ensure_partitions(conn, now - timedelta(days=40), now - timedelta(days=40))
        assert created and all(
            name.endswith((now - timedelta(days=40)).strftime("%Y%m%d"))
            or name.startswith(("events_p", "ingested_messages_p"))  # monthly, weekly
            for name in created
        )
        conn.execute(
            "INSERT INTO readings VALUES (%s, 'gw-1', 'pir-kitchen', 'motion', 1.0)",
            (now - timedelta(days=40),),
        )
        assert conn.execute("SELECT count(*) FROM readings").fetchone() == (2,)


def test_retention_drops_whole_partitions_past_the_horizon(db_url: str) -> None:
    policy = maintain.RetentionPolicy(readings_days=10, status_days=10, events_days=400)
    with psycopg.connect(db_url, autocommit=True) as conn:
        if maintain.is_timescale(conn):
            pytest.skip("TimescaleDB applies retention with its own policy")
        now = datetime.now(UTC)
        old, recent = now - timedelta(days=20), now - timedelta(days=2)
        maintain.ensure_partitions(conn, old, now)
        for ts in (old, recent):
            conn.execute("INSERT INTO readings VALUES (%s, 'gw-1', 'bed-1', 'in_bed', 1.0)", (ts,))
        report = maintain.run(conn, policy, now=now)
        assert f"readings_p{old:%Y%m%d}" in report.partitions_dropped
        assert f"readings_p{recent:%Y%m%d}" not in report.partitions_dropped
        rows = conn.execute("SELECT ts FROM readings").fetchall()
        assert [r[0] for r in rows] == [recent]
        # partitions ahead exist for the coming week
        names = set(maintain.existing_partitions(conn, "readings"))
        assert f"readings_p{now + timedelta(days=policy.partitions_ahead_days):%Y%m%d}" in names


def test_rollup_refresh_matches_full_recomputation(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        if maintain.is_timescale(conn):
            pytest.skip("TimescaleDB maintains activity_hourly as a continuous aggregate")
        now = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)
        rows = [
            (now - timedelta(hours=h, minutes=m), "gw-1", sensor, "motion", 1.0)
            for h in range(5)
            for m in range(0, 60, 7)
            for sensor in ("pir-kitchen", "pir-bath")
        ]
        rows.append((now, "gw-1", "w-1", "acc_x", 0.98))  # raw stream: not rolled up
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO readings VALUES (%s, %s, %s, %s, %s)", rows)
        maintain.run(conn, maintain.RetentionPolicy(), now=now)
        # late data for an hour already rolled up, then an incremental pass
        conn.execute(
            "INSERT INTO readings VALUES (%s, 'gw-1', 'pir-bath', 'motion', 1.0)",
            (now - timedelta(hours=3),),
        )
        maintain.run(conn, maintain.RetentionPolicy(), now=now + timedelta(minutes=20))
        got = conn.execute(
            "SELECT bucket, sensor_id, metric, n FROM activity_hourly ORDER BY 1, 2"
        ).fetchall()
        want = conn.execute(
            """
            SELECT date_trunc('hour', ts), sensor_id, metric, count(*) FROM readings
            WHERE metric <> 'acc_x' GROUP BY 1, 2, 3 ORDER BY 1, 2
            """
        ).fetchall()
        assert got == want
        assert not any(r[2] == "acc_x" for r in got)


def test_only_one_live_alert_per_resident_and_kind(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        insert = (
            "INSERT INTO alerts (kind, severity, dedup_key, title, detected_at) "
            "VALUES ('fall', 'critical', 'r-1:fall', 'Fall', now()) RETURNING id"
        )
        first = conn.execute(insert).fetchone()
        assert first is not None
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(insert)
        conn.execute(
            "UPDATE alerts SET state = 'resolved', resolved_at = now(), outcome = 'confirmed' WHERE id = %s",
            (first[0],),
        )
        assert conn.execute(insert).fetchone() is not None  # a new one may open after resolution


def test_rollup_room_view_joins_registry(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("INSERT INTO sites (id, kind, name) VALUES ('home-1', 'home', 'Home 1')")
        conn.execute(
            "INSERT INTO gateways (id, site_id, mqtt_username, mqtt_password_hash) "
            "VALUES ('gw-1', 'home-1', 'gw-1', 'x')"
        )
        conn.execute(
            "INSERT INTO sensors (gateway_id, id, kind, room) VALUES ('gw-1', 'pir-k', 'pir', 'kitchen')"
        )
        now = datetime.now(UTC)
        conn.execute("INSERT INTO readings VALUES (%s, 'gw-1', 'pir-k', 'motion', 1.0)", (now,))
        maintain.refresh_rollup(conn, now - timedelta(hours=1))  # a continuous aggregate on TimescaleDB
        row = conn.execute("SELECT site_id, room, sensor_kind, n FROM activity_hourly_room").fetchone()
        assert row == ("home-1", "kitchen", "pir", 1)


@pytest.mark.timescale
def test_timescale_path_uses_hypertables_and_policies(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert maintain.is_timescale(conn)
        hypertables = {
            r[0] for r in conn.execute("SELECT hypertable_name FROM timescaledb_information.hypertables")
        }
        assert {"readings", "events", "gateway_status"} <= hypertables
        maintain.run(conn, maintain.RetentionPolicy(readings_days=30))
        jobs = conn.execute(
            "SELECT proc_name, hypertable_name FROM timescaledb_information.jobs "
            "WHERE application_name NOT LIKE 'Telemetry%'"
        ).fetchall()
        procs = {(p, h) for p, h in jobs}
        assert ("policy_retention", "readings") in procs
        assert ("policy_compression", "readings") in procs
        assert any(p == "policy_refresh_continuous_aggregate" for p, _ in procs)
        now = datetime.now(UTC)
        conn.execute("INSERT INTO readings VALUES (%s, 'gw-1', 'pir-k', 'motion', 1.0)", (now,))
        # materialized only (real-time aggregation made the timeline 6x slower): the newest hour
        # shows after a refresh, which the policy runs every 5 minutes up to now
        assert conn.execute("SELECT sum(n) FROM activity_hourly").fetchone() == (None,)
        job = conn.execute(
            "SELECT job_id, schedule_interval, config ->> 'end_offset' FROM timescaledb_information.jobs"
            " WHERE proc_name = 'policy_refresh_continuous_aggregate'"
        ).fetchone()
        assert job is not None and job[1:] == (timedelta(minutes=5), None)
        conn.execute("CALL run_job(%s)", (job[0],))
        assert conn.execute("SELECT sum(n) FROM activity_hourly").fetchone() == (1,)
        # the plain path's upkeep is harmless here: no partitions to make, the aggregate refreshes
        assert maintain.ensure_partitions(conn, now - timedelta(days=1), now) == []
        assert maintain.refresh_rollup(conn, now - timedelta(hours=1)) == 1


def test_status_on_timescale_setting_off_forces_plain(empty_db: str) -> None:
    upgrade(empty_db, timescale="off")
    assert status(empty_db).timescale is False
