"""A new emergency on an alert acknowledged long ago opens it again (trail action ``reopened``).

A resident's fall or SOS joins the live alert of its kind. When that alert was acknowledged but
never resolved (a care worker went, helped and forgot to close it), a press a day later only
counted one more detection: nobody was told. The engine now opens such an alert again at its
first tier, with its escalation clock, and writes ``reopened`` in its trail.

Revision ID: 0015
Revises: 0012
"""

from alembic import op

revision = "0015"
down_revision = "0012"
branch_labels = None
depends_on = None

TRAIL_ACTIONS = (
    "'opened', 'detected_again', 'notified', 'escalated', 'acknowledged', 'resolved', 'auto_resolved',"
    " 'note', 'delivery', 'family_seen'"
)


def upgrade() -> None:
    op.execute("ALTER TABLE alert_trail DROP CONSTRAINT IF EXISTS alert_trail_action_check")
    op.execute(
        "ALTER TABLE alert_trail ADD CONSTRAINT alert_trail_action_check"
        f" CHECK (action IN ({TRAIL_ACTIONS}, 'reopened'))"
    )


def downgrade() -> None:
    op.execute("UPDATE alert_trail SET action = 'detected_again' WHERE action = 'reopened'")
    op.execute("ALTER TABLE alert_trail DROP CONSTRAINT IF EXISTS alert_trail_action_check")
    op.execute(
        f"ALTER TABLE alert_trail ADD CONSTRAINT alert_trail_action_check CHECK (action IN ({TRAIL_ACTIONS}))"
    )
