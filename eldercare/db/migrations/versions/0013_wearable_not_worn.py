"""Alert kind ``wearable_not_worn``: a gentle notice to the care team that a wearable has been left off.

The gateway reports a wearable lying still as a table as ``wear: not_worn`` in its status; after a
while the platform tells the care team (low severity, device policy), never as a fall alarm.

Revision ID: 0013
Revises: 0005
"""

from alembic import op

revision = "0013"
down_revision = "0005"
branch_labels = None
depends_on = None

OLD_KINDS = (
    "'fall', 'sos', 'inactivity', 'night_wandering', 'bed_exit_no_return', 'device_offline', "
    "'low_battery', 'vitals', 'pipeline_stalled', 'work_failed', 'clock_skew'"
)
NEW_KINDS = OLD_KINDS + ", 'wearable_not_worn'"


def upgrade() -> None:
    op.execute(
        f"ALTER TABLE alerts DROP CONSTRAINT alerts_kind_check,"
        f" ADD CONSTRAINT alerts_kind_check CHECK (kind IN ({NEW_KINDS}))"
    )


def downgrade() -> None:
    op.execute("DELETE FROM alerts WHERE kind = 'wearable_not_worn'")
    op.execute(
        f"ALTER TABLE alerts DROP CONSTRAINT alerts_kind_check,"
        f" ADD CONSTRAINT alerts_kind_check CHECK (kind IN ({OLD_KINDS}))"
    )
