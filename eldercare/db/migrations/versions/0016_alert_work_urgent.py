"""Falls, their cancellations and SOS in the engine's queue are found without reading what is
queued before them.

The engine claimed its work oldest first; one gateway's flood (thousands of statuses or bed events
in a second) put another home's SOS behind all of it (found by the outside gateway check, round 3:
29 s). The engine now takes a batch's falls, "I'm OK" cancellations and SOS first, found by this
small partial index (they are rare), then fills the batch oldest first as before.

Revision ID: 0016
Revises: 0015
"""

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX IF NOT EXISTS alert_work_urgent ON alert_work (id) WHERE kind = 'event'"
        " AND payload ->> 'kind' IN ('fall', 'fall_cancelled', 'sos') AND failed_at IS NULL"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS alert_work_urgent")
