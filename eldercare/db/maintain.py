"""Storage upkeep run by ``eldercare db maintain``: the one place that owns maintenance SQL.

On TimescaleDB the extension's background jobs do the work; this module only (re)applies the
compression, retention and continuous-aggregate policies from the settings. On plain PostgreSQL it
does the same jobs itself: creates time-range partitions ahead, drops partitions past retention,
refreshes the ``activity_hourly`` rollup incrementally and prunes the dedup log.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

PARTITION_LOCK = 7_305_117_002  # advisory lock key: one partition creator at a time

# table -> partition width; events are sparse and kept long, so months
PARTITIONED: dict[str, str] = {"readings": "day", "gateway_status": "day", "events": "month"}
ROLLUP_LOOKBACK = timedelta(days=3)  # late data (gateway replays) within this window is counted


@dataclass
class RetentionPolicy:
    readings_days: int = 90
    status_days: int = 90
    events_days: int = 730
    compress_after_days: int = 7
    dedup_days: int = 30
    partitions_ahead_days: int = 7

    def days_for(self, table: str) -> int:
        return {"readings": self.readings_days, "gateway_status": self.status_days}.get(
            table, self.events_days
        )


@dataclass
class MaintenanceReport:
    timescale: bool
    partitions_created: list[str] = field(default_factory=list)
    partitions_dropped: list[str] = field(default_factory=list)
    rollup_rows: int = 0
    dedup_pruned: int = 0


def is_timescale(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT value FROM meta WHERE key = 'timescale'").fetchone()
    return bool(row and row[0] == "true")


# Partitions (plain PostgreSQL) --------------------------------------------------------------


def _period_start(day: date, width: str) -> date:
    return day.replace(day=1) if width == "month" else day


def _next_period(start: date, width: str) -> date:
    if width == "month":
        return (start.replace(day=28) + timedelta(days=4)).replace(day=1)
    return start + timedelta(days=1)


def _partition_name(table: str, start: date, width: str) -> str:
    return f"{table}_p{start:%Y%m}" if width == "month" else f"{table}_p{start:%Y%m%d}"


def existing_partitions(conn: psycopg.Connection, table: str) -> list[str]:
    rows = conn.execute(
        """
        SELECT c.relname FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = %(table)s::regclass
        ORDER BY c.relname
        """,
        {"table": table},
    ).fetchall()
    return [r[0] for r in rows]


def ensure_partitions(
    conn: psycopg.Connection, start: datetime, end: datetime, tables: list[str] | None = None
) -> list[str]:
    """Create the partitions covering ``[start, end]`` (UTC) for the time-series tables.

    Safe to call from several processes: creation is serialised by an advisory lock. Ingest
    calls it when a write meets a missing partition; the maintenance job calls it ahead of time.
    """
    created: list[str] = []
    if is_timescale(conn):
        return created  # hypertables: TimescaleDB creates chunks as rows arrive
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (PARTITION_LOCK,))
        for table in tables or list(PARTITIONED):
            width = PARTITIONED[table]
            have = set(existing_partitions(conn, table))
            period = _period_start(start.astimezone(UTC).date(), width)
            last = end.astimezone(UTC).date()
            while period <= last:
                upper = _next_period(period, width)
                name = _partition_name(table, period, width)
                if name not in have:
                    conn.execute(
                        sql.SQL(
                            "CREATE TABLE {part} PARTITION OF {table} FOR VALUES FROM ({lo}) TO ({hi})"
                        ).format(
                            part=sql.Identifier(name),
                            table=sql.Identifier(table),
                            lo=sql.Literal(f"{period.isoformat()} 00:00:00+00"),
                            hi=sql.Literal(f"{upper.isoformat()} 00:00:00+00"),
                        )
                    )
                    created.append(name)
                period = upper
    if created:
        log.info("created partitions %s", ", ".join(created))
    return created


def drop_expired_partitions(conn: psycopg.Connection, policy: RetentionPolicy, now: datetime) -> list[str]:
    """Retention on plain PostgreSQL: drop whole partitions that end before the horizon."""
    dropped: list[str] = []
    with conn.transaction():
        for table, width in PARTITIONED.items():
            horizon = (now - timedelta(days=policy.days_for(table))).astimezone(UTC).date()
            for name in existing_partitions(conn, table):
                start = _parse_partition_start(name, table, width)
                if start is not None and _next_period(start, width) <= horizon:
                    conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))
                    dropped.append(name)
    if dropped:
        log.info("dropped expired partitions %s", ", ".join(dropped))
    return dropped


def _parse_partition_start(name: str, table: str, width: str) -> date | None:
    suffix = name.removeprefix(f"{table}_p")
    try:
        if width == "month":
            return datetime.strptime(suffix, "%Y%m").date()
        return datetime.strptime(suffix, "%Y%m%d").date()
    except ValueError:
        return None  # not one of ours: leave it alone


# Hourly rollup (plain PostgreSQL) -------------------------------------------------------------


def refresh_rollup(conn: psycopg.Connection, since: datetime, until: datetime | None = None) -> int:
    """Recompute ``activity_hourly`` for the hours from ``since`` (truncated) onwards.

    Buckets in the window are replaced as a whole, so late readings and re-runs give the same
    result as a full recomputation of those hours.
    """
    lo = since.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    params = {"lo": lo, "hi": until or datetime.max.replace(tzinfo=UTC)}
    if is_timescale(conn):
        return _refresh_continuous_aggregate(conn, lo, until)
    with conn.transaction():
        conn.execute("DELETE FROM activity_hourly WHERE bucket >= %(lo)s AND bucket < %(hi)s", params)
        cur = conn.execute(
            """
            INSERT INTO activity_hourly (bucket, gateway_id, sensor_id, metric, n, total, max_value)
            SELECT date_trunc('hour', ts), gateway_id, sensor_id, metric, count(*), sum(value), max(value)
            FROM readings
            WHERE ts >= %(lo)s AND ts < %(hi)s AND metric NOT IN ('acc_x', 'acc_y', 'acc_z')
            GROUP BY 1, 2, 3, 4
            """,
            params,
        )
        return cur.rowcount


def _refresh_continuous_aggregate(conn: psycopg.Connection, lo: datetime, until: datetime | None) -> int:
    """TimescaleDB keeps ``activity_hourly`` as a continuous aggregate: have it recompute the window
    now (its policy would, later). The CALL may not run inside a transaction block."""
    autocommit = conn.autocommit
    if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
        conn.autocommit = True
    try:
        conn.execute(
            "CALL refresh_continuous_aggregate('activity_hourly', %s::timestamptz, %s::timestamptz)",
            (lo, until),
        )
    finally:
        conn.autocommit = autocommit
    row = conn.execute(
        "SELECT count(*) FROM activity_hourly"
        " WHERE bucket >= %s AND (%s::timestamptz IS NULL OR bucket < %s)",
        (lo, until, until),
    ).fetchone()
    return int(row[0]) if row else 0


# TimescaleDB policies -------------------------------------------------------------------------


def apply_timescale_policies(conn: psycopg.Connection, policy: RetentionPolicy) -> None:
    """(Re)apply compression, retention and continuous-aggregate policies from the settings."""
    with conn.transaction():
        for table in ("readings", "gateway_status"):
            conn.execute("SELECT remove_compression_policy(%s, if_exists => true)", (table,))
            conn.execute(
                "SELECT add_compression_policy(%s, make_interval(days => %s))",
                (table, policy.compress_after_days),
            )
        for table in PARTITIONED:
            conn.execute("SELECT remove_retention_policy(%s, if_exists => true)", (table,))
            conn.execute(
                "SELECT add_retention_policy(%s, make_interval(days => %s))",
                (table, policy.days_for(table)),
            )
        conn.execute("SELECT remove_continuous_aggregate_policy('activity_hourly', if_exists => true)")
        conn.execute(
            """
            SELECT add_continuous_aggregate_policy('activity_hourly',
                start_offset => %s, end_offset => INTERVAL '1 hour',
                schedule_interval => INTERVAL '15 minutes')
            """,
            (ROLLUP_LOOKBACK,),
        )


# The job --------------------------------------------------------------------------------------


def prune_dedup(conn: psycopg.Connection, older_than: datetime) -> int:
    """Forget message ids older than the dedup horizon (longer than any gateway's outbox age)."""
    with conn.transaction():
        cur = conn.execute("DELETE FROM ingested_messages WHERE received_at < %s", (older_than,))
        return cur.rowcount


def run(conn: psycopg.Connection, policy: RetentionPolicy, now: datetime | None = None) -> MaintenanceReport:
    """One maintenance pass; idempotent, safe to run from cron or a loop on several replicas."""
    now = now or datetime.now(UTC)
    report = MaintenanceReport(timescale=is_timescale(conn))
    if report.timescale:
        apply_timescale_policies(conn, policy)
    else:
        report.partitions_created = ensure_partitions(
            conn, now - timedelta(days=1), now + timedelta(days=policy.partitions_ahead_days)
        )
        report.partitions_dropped = drop_expired_partitions(conn, policy, now)
        watermark = _rollup_watermark(conn)
        since = min(watermark, now) - ROLLUP_LOOKBACK if watermark else now - ROLLUP_LOOKBACK
        report.rollup_rows = refresh_rollup(conn, since)
        _set_rollup_watermark(conn, now)
    report.dedup_pruned = prune_dedup(conn, now - timedelta(days=policy.dedup_days))
    return report


def _rollup_watermark(conn: psycopg.Connection) -> datetime | None:
    row = conn.execute("SELECT value FROM meta WHERE key = 'rollup_watermark'").fetchone()
    return datetime.fromisoformat(row[0]) if row else None


def _set_rollup_watermark(conn: psycopg.Connection, at: datetime) -> None:
    with conn.transaction():
        conn.execute(
            """
            INSERT INTO meta (key, value) VALUES ('rollup_watermark', %s)
            ON CONFLICT (key) DO UPDATE SET value = excluded.value
            """,
            (at.isoformat(),),
        )
