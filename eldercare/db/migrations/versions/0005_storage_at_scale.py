"""Storage at city scale: indexes for the lists the consoles poll, events compressed, one index less.

- ``alerts (opened_at DESC, id DESC)``: ``GET /alerts`` for admins orders the whole table by it and
  reads one page; without the index every call scanned and sorted every alert. Testers see only
  simulated alerts: a partial index of the same order serves them.
- TimescaleDB: ``events`` compressed (segmentby ``gateway_id``; its large ``evidence`` JSON
  compresses well); the policy and its delay are set by ``eldercare db maintain``.
- TimescaleDB: ``create_hypertable`` added a ``readings (ts DESC)`` index that no query uses (the
  rollup's refresh reads whole chunks; every other readings query filters by gateway and sensor
  first, served by ``readings_sensor_ts``); it was a third of the table's size. Dropped.

Revision ID: 0005
Revises: 0004
"""

from alembic import op
from sqlalchemy import text

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _timescale() -> bool:
    return op.get_bind().execute(text("SELECT value FROM meta WHERE key = 'timescale'")).scalar() == "true"


def upgrade() -> None:
    op.execute("CREATE INDEX IF NOT EXISTS alerts_opened ON alerts (opened_at DESC, id DESC)")
    op.execute(
        "CREATE INDEX IF NOT EXISTS alerts_simulated_opened ON alerts (opened_at DESC, id DESC) WHERE simulated"
    )
    if _timescale():
        op.execute("DROP INDEX IF EXISTS readings_ts_idx")
        op.execute(
            "ALTER TABLE events SET (timescaledb.compress, timescaledb.compress_segmentby = 'gateway_id',"
            " timescaledb.compress_orderby = 'ts DESC')"
        )


def downgrade() -> None:
    if _timescale():
        op.execute("SELECT remove_compression_policy('events', if_exists => true)")
        op.execute("CREATE INDEX IF NOT EXISTS readings_ts_idx ON readings (ts DESC)")
    op.execute("DROP INDEX IF EXISTS alerts_simulated_opened")
    op.execute("DROP INDEX IF EXISTS alerts_opened")
