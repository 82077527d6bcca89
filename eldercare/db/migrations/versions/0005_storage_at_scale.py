"""Storage at city scale: indexes for the lists the consoles poll, events compressed, one index less.

- ``alerts (opened_at DESC, id DESC)``: ``GET /alerts`` for admins orders the whole table by it and
  reads one page; without the index every call scanned and sorted every alert. Testers see only
  simulated alerts: a partial index of the same order serves them.
- TimescaleDB: ``events`` compressed (segmentby ``gateway_id``; its large ``evidence`` JSON
  compresses well); the policy and its delay are set by ``eldercare db maintain``.
- TimescaleDB: ``create_hypertable`` added a ``readings (ts DESC)`` index that no query uses (the
  rollup's refresh reads whole chunks; every other readings query filters by gateway and sensor
  first, served by ``readings_sensor_ts``); it was a third of the table's size. Dropped.
- TimescaleDB: ``activity_hourly`` becomes materialized-only, refreshed up to now every 5 minutes.
- ``ingested_messages`` (the dedup log, billions of rows over its horizon at city rates) is
  partitioned by the week a key was received (native weekly partitions plus a default one, on
  TimescaleDB too) and retained by dropping whole partitions. Exactly once still rests on the
  key ``(gateway_id, epoch, seq)``: the unique index ``(gateway_id, epoch, seq, week)`` settles two
  copies within a week, concurrent ones included, and ingest's insert skips keys found in an
  earlier week's partition (one index probe per partition within the dedup horizon).

Revision ID: 0005
Revises: 0009
"""

from alembic import op
from sqlalchemy import text

revision = "0005"
down_revision = "0009"  # written on 0004; relinked onto main's head (0009) at the rebase
branch_labels = None
depends_on = None


def _timescale() -> bool:
    return op.get_bind().execute(text("SELECT value FROM meta WHERE key = 'timescale'")).scalar() == "true"


WEEK = "date_trunc('week', now() AT TIME ZONE 'UTC')::date"

DEDUP = """
ALTER TABLE ingested_messages RENAME TO ingested_messages_old;
ALTER INDEX ingested_messages_pkey RENAME TO ingested_messages_old_pkey;
DROP INDEX ingested_messages_received;
CREATE TABLE ingested_messages (
    gateway_id text   NOT NULL,
    epoch      text   NOT NULL,
    seq        bigint NOT NULL,
    week       date   NOT NULL DEFAULT {week}{digest},  -- week: its Monday (UTC), when received
    PRIMARY KEY (gateway_id, epoch, seq, week)
) {partitioning};
COMMENT ON TABLE ingested_messages IS
    'Exactly once: (gateway, epoch, seq) of every stored message, partitioned by week received';
"""
COPY_OLD = """
INSERT INTO ingested_messages (gateway_id, epoch, seq, week{digest})
SELECT gateway_id, epoch, seq, date_trunc('week', received_at AT TIME ZONE 'UTC')::date{digest}
FROM ingested_messages_old;
DROP TABLE ingested_messages_old;
"""
DIGEST_COMMENT = (
    "COMMENT ON COLUMN ingested_messages.digest IS"
    " 'Length and CRC-32 of the stored contents: a duplicate with another digest is a conflict'"
)


def _has_digest() -> bool:
    """Migration 0006 (ingest) added ``digest``; kept whichever order the two run in."""
    return bool(
        op.get_bind()
        .execute(
            text(
                "SELECT count(*) FROM information_schema.columns"
                " WHERE table_name = 'ingested_messages' AND column_name = 'digest'"
            )
        )
        .scalar()
    )


def upgrade() -> None:
    timescale = _timescale()
    digest = _has_digest()
    # Native partitions on both paths: a hypertable's first insert into a new chunk holds the chunk's
    # creation lock until it commits, and every other worker's insert (an alarm's too) would wait.
    op.execute(
        DEDUP.format(
            week=WEEK,
            digest=",\n    digest     bigint" if digest else "",  # before the comment
            partitioning="PARTITION BY RANGE (week)",
        )
    )
    # keys of weeks without a partition (none made yet, or maintenance stopped) land here
    op.execute("CREATE TABLE ingested_messages_default PARTITION OF ingested_messages DEFAULT")
    op.execute("CREATE INDEX ingested_messages_default_week ON ingested_messages_default (week)")
    op.execute(COPY_OLD.format(digest=", digest" if digest else ""))
    if digest:
        op.execute(DIGEST_COMMENT)
    op.execute("CREATE INDEX IF NOT EXISTS alerts_opened ON alerts (opened_at DESC, id DESC)")
    op.execute(
        "CREATE INDEX IF NOT EXISTS alerts_simulated_opened ON alerts (opened_at DESC, id DESC) WHERE simulated"
    )
    if timescale:
        op.execute("DROP INDEX IF EXISTS readings_ts_idx")
        # Real-time aggregation unions the raw hypertable into every read of the view, which keeps
        # the timeline's per-sensor join from reaching the materialized rows by index: 6x slower
        # (docs/performance.md). The refresh policy (db maintain) runs every 5 minutes up to now.
        op.execute("ALTER MATERIALIZED VIEW activity_hourly SET (timescaledb.materialized_only = true)")
        op.execute(
            "ALTER TABLE events SET (timescaledb.compress, timescaledb.compress_segmentby = 'gateway_id',"
            " timescaledb.compress_orderby = 'ts DESC')"
        )


def downgrade() -> None:
    if _timescale():
        op.execute("SELECT remove_compression_policy('events', if_exists => true)")
        op.execute("CREATE INDEX IF NOT EXISTS readings_ts_idx ON readings (ts DESC)")
        op.execute("ALTER MATERIALIZED VIEW activity_hourly SET (timescaledb.materialized_only = false)")
    op.execute("DROP INDEX IF EXISTS alerts_simulated_opened")
    op.execute("DROP INDEX IF EXISTS alerts_opened")
    digest = _has_digest()
    op.execute("ALTER TABLE ingested_messages RENAME TO ingested_messages_new")
    op.execute(
        """
        CREATE TABLE ingested_messages (
            gateway_id  text        NOT NULL,
            epoch       text        NOT NULL,
            seq         bigint      NOT NULL,
            received_at timestamptz NOT NULL DEFAULT now(),{col}
            PRIMARY KEY (gateway_id, epoch, seq)
        );
        CREATE INDEX ingested_messages_received ON ingested_messages (received_at);
        INSERT INTO ingested_messages (gateway_id, epoch, seq, received_at{sel})
        SELECT gateway_id, epoch, seq, min(week)::timestamptz{agg} FROM ingested_messages_new GROUP BY 1, 2, 3;
        DROP TABLE ingested_messages_new CASCADE;
        """.format(
            col="\n            digest      bigint," if digest else "",
            sel=", digest" if digest else "",
            agg=", min(digest)" if digest else "",
        )
    )
