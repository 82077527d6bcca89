"""Storage upkeep run by ``eldercare db maintain``: the one place that owns maintenance SQL.

On TimescaleDB the extension's background jobs do the work; this module only brings the chunk
interval, compression settings and the compression, retention and continuous-aggregate policies to
what the settings ask: a policy is created once and changed with ``alter_job`` only where a setting
differs, so a pass on a database already in that state changes nothing (job ids, schedules and
history stay). On plain PostgreSQL it does the same jobs itself: creates time-range partitions
ahead, drops partitions past retention, refreshes the ``activity_hourly`` rollup (the recent hours,
and any older day whose partition received rows since the last pass) and prunes the dedup log.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

log = logging.getLogger(__name__)

PARTITION_LOCK = 7_305_117_002  # advisory lock key: one partition creator at a time

# table -> partition width; events are sparse and kept long, so months. The dedup log is partitioned
# by the week a key was received (column ``week``); a week without a partition goes to its default
# partition (see ensure_partitions).
PARTITIONED: dict[str, str] = {
    "readings": "day",
    "gateway_status": "day",
    "events": "month",
    "ingested_messages": "week",
}
DEDUP = "ingested_messages"
ROLLUP_LOOKBACK = timedelta(days=3)  # late data (gateway replays) within this window is counted


ROW_BYTES = 160  # a readings row with its index, uncompressed (bench/storage.py measures it)
CHUNK_STEPS_MIN = (60, 120, 180, 240, 360, 480, 720, 1440, 2 * 1440, 3 * 1440, 7 * 1440)


def derived_chunk_minutes(readings_per_s: int, memory_mb: int) -> int:
    """The readings chunk interval: the largest step whose chunk (rows and index, uncompressed) fits
    in a quarter of the server's memory, clamped to 1 h .. 7 days (docs/operations.md)."""
    budget = memory_mb * 1024 * 1024 / 4
    fits_s = budget / (readings_per_s * ROW_BYTES)
    fitting = [m for m in CHUNK_STEPS_MIN if m * 60 <= fits_s]
    return fitting[-1] if fitting else CHUNK_STEPS_MIN[0]


@dataclass
class RetentionPolicy:
    readings_days: int = 90
    status_days: int = 90
    events_days: int = 730
    compress_after_days: int | None = None  # legacy whole-day figure; compress_after_hours wins
    dedup_days: int = 30
    partitions_ahead_days: int = 7
    readings_per_s: int = 1000
    memory_mb: int = 8192
    chunk_minutes: int | None = None  # None: derived from the rate and memory
    compress_after_hours: int | None = None  # None: two chunk intervals
    segmentby: str = "gateway_id, sensor_id, metric"
    events_compress_after_days: int = 14
    foreground_jobs: bool = False  # run the policies from ``db maintain``, not TimescaleDB's workers

    def days_for(self, table: str) -> int:
        return {
            "readings": self.readings_days,
            "gateway_status": self.status_days,
            DEDUP: self.dedup_days,
        }.get(table, self.events_days)

    @property
    def chunk(self) -> timedelta:
        minutes = self.chunk_minutes or derived_chunk_minutes(self.readings_per_s, self.memory_mb)
        return timedelta(minutes=minutes)

    @property
    def compress_after(self) -> timedelta:
        if self.compress_after_hours is not None:
            return timedelta(hours=self.compress_after_hours)
        if self.compress_after_days is not None:
            return timedelta(days=self.compress_after_days)
        return max(2 * self.chunk, timedelta(hours=2))

    @property
    def rollup_window(self) -> timedelta:
        """How far back the aggregate's refresh policy looks: every age ingest still accepts (readings
        retention) less a day, so a replayed old week is materialised but a refresh never runs over
        chunks that retention is about to drop. Only invalidated ranges are recomputed, so a wide
        window costs nothing while no late data arrives."""
        return timedelta(days=max(self.readings_days - 1, 1))


@dataclass
class MaintenanceReport:
    timescale: bool
    partitions_created: list[str] = field(default_factory=list)
    partitions_dropped: list[str] = field(default_factory=list)
    rollup_rows: int = 0
    dedup_pruned: int = 0
    acks_pruned: int = 0  # ingest_acks, ingest_refused and ingest_workers rows forgotten
    policies_changed: list[str] = field(default_factory=list)
    jobs_run: list[int] = field(default_factory=list)


def is_timescale(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT value FROM meta WHERE key = 'timescale'").fetchone()
    return bool(row and row[0] == "true")


# Partitions (plain PostgreSQL) --------------------------------------------------------------


def _period_start(day: date, width: str) -> date:
    if width == "week":
        return day - timedelta(days=day.weekday())  # Monday, as date_trunc('week')
    return day.replace(day=1) if width == "month" else day


def _next_period(start: date, width: str) -> date:
    if width == "month":
        return (start.replace(day=28) + timedelta(days=4)).replace(day=1)
    return start + timedelta(days=7 if width == "week" else 1)


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
    names = _native_tables(conn, tables)
    if not names:
        return created  # hypertables: TimescaleDB creates chunks as rows arrive
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (PARTITION_LOCK,))
        for table in names:
            if not _is_partitioned(conn, table):
                continue  # a database migrated to a revision before this table was partitioned
            width = PARTITIONED[table]
            have = set(existing_partitions(conn, table))
            period = _period_start(start.astimezone(UTC).date(), width)
            last = end.astimezone(UTC).date()
            while period <= last:
                upper = _next_period(period, width)
                name = _partition_name(table, period, width)
                if name not in have and not _in_dedup_default(conn, table, period, upper):
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


def _is_partitioned(conn: psycopg.Connection, table: str) -> bool:
    row = conn.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", (table,)).fetchone()
    return bool(row and row[0] == "p")


def _in_dedup_default(conn: psycopg.Connection, table: str, lo: date, hi: date) -> bool:
    """Whether the dedup log's default partition holds keys of ``[lo, hi)``: then no partition is
    made for that week (PostgreSQL refuses one while the default holds its rows) and they stay in
    the default one, which :func:`prune_dedup` empties past the horizon."""
    if table != DEDUP:
        return False
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM ingested_messages_default WHERE week >= %s AND week < %s)", (lo, hi)
    ).fetchone()
    return bool(row and row[0])


def _native_tables(conn: psycopg.Connection, tables: list[str] | None) -> list[str]:
    """The tables natively partitioned here: all on plain PostgreSQL; on TimescaleDB only the dedup
    log (a hypertable's first insert into a new chunk would hold its creation lock until commit,
    and another worker's insert, an alarm's too, would wait for that commit)."""
    if not is_timescale(conn):
        return tables or list(PARTITIONED)
    return [t for t in tables or list(PARTITIONED) if t == DEDUP]


def drop_expired_partitions(conn: psycopg.Connection, policy: RetentionPolicy, now: datetime) -> list[str]:
    """Retention of native partitions: drop whole partitions that end before the horizon."""
    dropped: list[str] = []
    with conn.transaction():
        for table in _native_tables(conn, None):
            width = PARTITIONED[table]
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
    result as a full recomputation of those hours. On TimescaleDB the connection must be in autocommit
    mode (the continuous aggregate's refresh cannot run in a transaction).
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
    now (its policy would, later). The CALL may not run inside a transaction block, so it needs an
    autocommit connection (one in a transaction is refused before anything is sent: the refresh would
    not see its uncommitted writes anyway)."""
    if not conn.autocommit:
        msg = "refresh_rollup on TimescaleDB needs an autocommit connection (commit the writes first)"
        raise psycopg.ProgrammingError(msg)
    conn.execute(
        "CALL refresh_continuous_aggregate('activity_hourly', %s::timestamptz, %s::timestamptz)",
        (lo, until),
    )
    row = conn.execute(
        "SELECT count(*) FROM activity_hourly"
        " WHERE bucket >= %s AND (%s::timestamptz IS NULL OR bucket < %s)",
        (lo, until, until),
    ).fetchone()
    return int(row[0]) if row else 0


# TimescaleDB policies -------------------------------------------------------------------------


COMPRESSED: dict[str, str] = {"gateway_status": "gateway_id", "events": "gateway_id"}


def _jobs(conn: psycopg.Connection) -> dict[tuple[str, str], tuple[int, dict[str, object]]]:
    """(policy proc, hypertable) -> (job id, config) of the policies that exist now."""
    rows = conn.execute(
        "SELECT proc_name, hypertable_name, job_id, config FROM timescaledb_information.jobs"
        " WHERE proc_schema = '_timescaledb_functions' AND hypertable_name IS NOT NULL"
    ).fetchall()
    return {(r[0], r[1]): (int(r[2]), r[3] or {}) for r in rows}


def _same_interval(conn: psycopg.Connection, a: object, b: timedelta) -> bool:
    row = conn.execute("SELECT %s::interval = %s::interval", (a, b)).fetchone()
    return bool(row and row[0])


def _ensure_policy(
    conn: psycopg.Connection,
    jobs: dict[tuple[str, str], tuple[int, dict[str, object]]],
    proc: str,
    table: str,
    key: str,
    want: timedelta,
    add: str,
    changed: list[str],
) -> None:
    """Create the policy if missing; if its interval ``key`` differs, ``alter_job`` its config only."""
    found = jobs.get((proc, table))
    if found is None:
        conn.execute(add, (want,))
        changed.append(f"{proc}:{table} created")
        return
    job_id, config = found
    if _same_interval(conn, config.get(key), want):
        return
    conn.execute(
        "SELECT alter_job(%s, config => %s::jsonb || jsonb_build_object(%s::text, (%s::interval)::text))",
        (job_id, Jsonb(config), key, want),
    )
    changed.append(f"{proc}:{table} {key} -> {want}")


def _ensure_chunk_interval(conn: psycopg.Connection, table: str, want: timedelta, changed: list[str]) -> None:
    row = conn.execute(
        "SELECT time_interval FROM timescaledb_information.dimensions"
        " WHERE hypertable_name = %s AND dimension_number = 1",
        (table,),
    ).fetchone()
    if row is not None and row[0] != want:
        conn.execute("SELECT set_chunk_time_interval(%s, %s::interval)", (table, want))
        changed.append(f"chunk_interval:{table} -> {want}")


def _ensure_compression(conn: psycopg.Connection, table: str, segmentby: str, changed: list[str]) -> None:
    """Compression on with the wanted segmentby (orderby ``ts DESC``); new chunks use a change."""
    rows = conn.execute(
        "SELECT attname FROM timescaledb_information.compression_settings"
        " WHERE hypertable_name = %s AND segmentby_column_index IS NOT NULL ORDER BY segmentby_column_index",
        (table,),
    ).fetchall()
    have = ", ".join(r[0] for r in rows)
    if have == segmentby:
        return
    conn.execute(
        sql.SQL(
            "ALTER TABLE {} SET (timescaledb.compress, timescaledb.compress_segmentby = {},"
            " timescaledb.compress_orderby = 'ts DESC')"
        ).format(sql.Identifier(table), sql.Literal(segmentby))
    )
    changed.append(f"compression:{table} segmentby {have or '-'} -> {segmentby}")


def apply_timescale_policies(conn: psycopg.Connection, policy: RetentionPolicy) -> list[str]:
    """Bring chunking, compression and the policies to the settings; returns what changed (empty on
    a database already there: no job is removed or re-added, schedules and history stay)."""
    changed: list[str] = []
    with conn.transaction():
        _ensure_chunk_interval(conn, "readings", policy.chunk, changed)
        _ensure_compression(conn, "readings", policy.segmentby, changed)
        for table, segmentby in COMPRESSED.items():
            _ensure_compression(conn, table, segmentby, changed)
        jobs = _jobs(conn)
        compress_after = {
            "readings": policy.compress_after,
            "gateway_status": policy.compress_after,
            "events": timedelta(days=policy.events_compress_after_days),
        }
        for table, after in compress_after.items():
            add = f"SELECT add_compression_policy('{table}', %s::interval)"
            _ensure_policy(conn, jobs, "policy_compression", table, "compress_after", after, add, changed)
        for table in (t for t in PARTITIONED if t != DEDUP):  # the dedup log: native partitions
            want = timedelta(days=policy.days_for(table))
            add = f"SELECT add_retention_policy('{table}', %s::interval)"
            _ensure_policy(conn, jobs, "policy_retention", table, "drop_after", want, add, changed)
        add = (
            "SELECT add_continuous_aggregate_policy('activity_hourly', start_offset => %s::interval,"
            " end_offset => NULL, schedule_interval => %s::interval)"
        )
        _ensure_rollup_policy(conn, jobs, policy.rollup_window, add, changed)
        _ensure_scheduled(conn, not policy.foreground_jobs, changed)
    if changed:
        log.info("storage policies changed: %s", "; ".join(changed))
    return changed


ROLLUP_EVERY = timedelta(minutes=5)


def _ensure_rollup_policy(
    conn: psycopg.Connection,
    jobs: dict[tuple[str, str], tuple[int, dict[str, object]]],
    window: timedelta,
    add: str,
    changed: list[str],
) -> None:
    """``activity_hourly`` is materialized-only (real-time aggregation made the timeline 6x slower:
    docs/performance.md), so its policy refreshes up to now (``end_offset`` NULL: the current hour
    too) every 5 minutes, over a window that covers every age ingest accepts."""
    found = jobs.get(("policy_refresh_continuous_aggregate", "activity_hourly"))
    if found is None:
        conn.execute(add, (window, ROLLUP_EVERY))
        changed.append("policy_refresh_continuous_aggregate:activity_hourly created")
        return
    job_id, config = found
    if not _same_interval(conn, config.get("start_offset"), window) or config.get("end_offset") is not None:
        conn.execute(
            "SELECT alter_job(%s, config => %s::jsonb || jsonb_build_object('start_offset',"
            " (%s::interval)::text, 'end_offset', NULL))",
            (job_id, Jsonb(config), window),
        )
        changed.append(f"policy_refresh_continuous_aggregate:activity_hourly window -> {window} .. now")
    row = conn.execute(
        "SELECT schedule_interval = %s FROM timescaledb_information.jobs WHERE job_id = %s",
        (ROLLUP_EVERY, job_id),
    ).fetchone()
    if not (row and row[0]):
        conn.execute("SELECT alter_job(%s, schedule_interval => %s)", (job_id, ROLLUP_EVERY))
        changed.append(f"policy_refresh_continuous_aggregate:activity_hourly every {ROLLUP_EVERY}")


def _ensure_scheduled(conn: psycopg.Connection, scheduled: bool, changed: list[str]) -> None:
    """Background workers run the policies, or (``foreground_jobs``) nobody but ``db maintain``."""
    rows = conn.execute(
        "SELECT job_id FROM timescaledb_information.jobs WHERE proc_schema = '_timescaledb_functions'"
        " AND hypertable_name IS NOT NULL AND scheduled <> %s ORDER BY job_id",
        (scheduled,),
    ).fetchall()
    for (job_id,) in rows:
        conn.execute("SELECT alter_job(%s, scheduled => %s)", (job_id, scheduled))
        changed.append(f"job {job_id} scheduled -> {scheduled}")


def run_jobs(conn: psycopg.Connection) -> list[int]:
    """Run every policy job now, in this session (each commits on its own: autocommit needed).
    Where the background workers fail (docs/operations.md, "Supported versions"), this does the
    work: compression and retention act on what is due, the aggregate refreshes invalidated ranges."""
    rows = conn.execute(
        "SELECT job_id FROM timescaledb_information.jobs WHERE proc_schema = '_timescaledb_functions'"
        " AND hypertable_name IS NOT NULL ORDER BY job_id"
    ).fetchall()
    autocommit = conn.autocommit
    conn.autocommit = True
    try:
        for (job_id,) in rows:
            conn.execute("CALL run_job(%s)", (job_id,))
    finally:
        conn.autocommit = autocommit
    return [int(r[0]) for r in rows]


# The job --------------------------------------------------------------------------------------


def prune_dedup(conn: psycopg.Connection, older_than: datetime) -> int:
    """Forget the keys of the dedup log's default partition past the horizon (the weekly partitions
    are dropped whole by :func:`drop_expired_partitions`)."""
    horizon = _period_start(older_than.astimezone(UTC).date(), "week")
    with conn.transaction():
        cur = conn.execute("DELETE FROM ingested_messages_default WHERE week < %s", (horizon,))
        return cur.rowcount


def prune_ack_state(conn: psycopg.Connection, older_than: datetime) -> int:
    """Forget ingest's acknowledgement bookkeeping that can no longer matter (rows deleted).

    - ``ingest_acks``: a watermark not moved since the dedup horizon: its epoch is over (a gateway
      re-sends nothing older than the horizon, wire protocol section 9) or it starts again from the
      gateway's ``low`` or its first stored seq, as a new epoch does.
    - ``ingest_refused``: a refused seq at or below its epoch's watermark (passed already: the
      advance looks only above it) or older than the horizon.
    - ``ingest_workers``: a worker silent since the horizon (its broker session expired long ago;
      ``eldercare ingest retire`` removes one at once).
    """
    with conn.transaction():
        n = conn.execute("DELETE FROM ingest_acks WHERE updated_at < %s", (older_than,)).rowcount
        n += conn.execute(
            "DELETE FROM ingest_refused f WHERE f.received_at < %s OR EXISTS (SELECT 1 FROM ingest_acks a"
            " WHERE a.gateway_id = f.gateway_id AND a.epoch = f.epoch AND a.seq >= f.seq)",
            (older_than,),
        ).rowcount
        n += conn.execute("DELETE FROM ingest_workers WHERE seen_at < %s", (older_than,)).rowcount
    return n


def run(conn: psycopg.Connection, policy: RetentionPolicy, now: datetime | None = None) -> MaintenanceReport:
    """One maintenance pass; idempotent, safe to run from cron or a loop on several replicas."""
    now = now or datetime.now(UTC)
    report = MaintenanceReport(timescale=is_timescale(conn))
    if report.timescale:
        report.policies_changed = apply_timescale_policies(conn, policy)
        if policy.foreground_jobs:
            report.jobs_run = run_jobs(conn)
        report.partitions_created = ensure_partitions(
            conn, now - timedelta(days=1), now + timedelta(days=policy.partitions_ahead_days)
        )
        report.partitions_dropped = drop_expired_partitions(conn, policy, now)
    else:
        report.partitions_created = ensure_partitions(
            conn, now - timedelta(days=1), now + timedelta(days=policy.partitions_ahead_days)
        )
        report.partitions_dropped = drop_expired_partitions(conn, policy, now)
        watermark = _rollup_watermark(conn)
        since = min(watermark, now) - ROLLUP_LOOKBACK if watermark else now - ROLLUP_LOOKBACK
        counts = _readings_insert_counts(conn)
        for lo, hi in _late_days(conn, counts, since):
            report.rollup_rows += refresh_rollup(conn, lo, hi)
        report.rollup_rows += refresh_rollup(conn, since)
        _set_meta(conn, "rollup_partition_inserts", json.dumps(counts, sort_keys=True))
        _set_rollup_watermark(conn, now)
    report.dedup_pruned = prune_dedup(conn, now - timedelta(days=policy.dedup_days))
    report.acks_pruned = prune_ack_state(conn, now - timedelta(days=policy.dedup_days))
    return report


def _readings_insert_counts(conn: psycopg.Connection) -> dict[str, int]:
    """Rows ever inserted into each readings partition (the server's statistics, no hot-path cost)."""
    rows = conn.execute(
        """
        SELECT c.relname, coalesce(pg_stat_get_tuples_inserted(c.oid), 0) FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'readings'::regclass
        """
    ).fetchall()
    return {str(r[0]): int(r[1]) for r in rows}


def _late_days(
    conn: psycopg.Connection, counts: dict[str, int], since: datetime
) -> list[tuple[datetime, datetime]]:
    """Days before ``since`` whose partition took rows since the last pass: a replay from a
    gateway's outbox, or an import. A counter that moved either way (statistics are reset after a
    crash) counts as changed. The first pass only records the counters."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'rollup_partition_inserts'").fetchone()
    if row is None:
        return []
    seen: dict[str, int] = json.loads(row[0])
    days = []
    for name, n in sorted(counts.items()):
        start = _parse_partition_start(name, "readings", "day")
        if start is None or seen.get(name) == n:
            continue
        lo = datetime(start.year, start.month, start.day, tzinfo=UTC)
        if lo < since:
            days.append((lo, min(lo + timedelta(days=1), since)))
    return days


def _set_meta(conn: psycopg.Connection, key: str, value: str) -> None:
    with conn.transaction():
        conn.execute(
            "INSERT INTO meta (key, value) VALUES (%s, %s)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )


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
