"""Security review (issue 19): access tokens revocable per user, and who may stop escalation.

- ``users.token_version``: every access token carries the version current when it was issued;
  logout, a password change and disabling the account bump it, so tokens issued before stop
  working at once (not up to 15 minutes later).
- ``escalation_policies.family_ack_stops``: by default a family member's acknowledgement only
  records that they have seen the alert (and may be on their way); escalation to professionals
  goes on until a care worker acknowledges. A policy may say otherwise explicitly. The family
  member's acknowledgement is the trail action ``family_seen`` (detail ``on_my_way``).

Revision ID: 0009
Revises: 0007
"""

from alembic import op

revision = "0009"
down_revision = "0007"  # was "0004"; relinked after rebasing onto main (0006, 0008, 0007)
branch_labels = None
depends_on = None


TRAIL_ACTIONS = (
    "'opened', 'detected_again', 'notified', 'escalated', 'acknowledged', 'resolved', 'auto_resolved',"
    " 'note', 'delivery'"
)


def upgrade() -> None:
    # a family member's "seen / on my way": in the trail, without stopping escalation
    op.execute("ALTER TABLE alert_trail DROP CONSTRAINT IF EXISTS alert_trail_action_check")
    op.execute(
        "ALTER TABLE alert_trail ADD CONSTRAINT alert_trail_action_check"
        f" CHECK (action IN ({TRAIL_ACTIONS}, 'family_seen'))"
    )
    op.execute("ALTER TABLE users ADD COLUMN token_version integer NOT NULL DEFAULT 0")
    op.execute(
        "COMMENT ON COLUMN users.token_version IS"
        " 'Access tokens carry it (claim ver); bumped by logout, password change, disabling'"
    )
    op.execute(
        "ALTER TABLE escalation_policies ADD COLUMN family_ack_stops boolean NOT NULL DEFAULT false"
    )
    op.execute(
        "COMMENT ON COLUMN escalation_policies.family_ack_stops IS"
        " 'true: a family member''s acknowledgement stops escalation like a care worker''s'"
    )


def downgrade() -> None:
    op.execute("DELETE FROM alert_trail WHERE action = 'family_seen'")
    op.execute("ALTER TABLE alert_trail DROP CONSTRAINT IF EXISTS alert_trail_action_check")
    op.execute(
        f"ALTER TABLE alert_trail ADD CONSTRAINT alert_trail_action_check CHECK (action IN ({TRAIL_ACTIONS}))"
    )
    op.execute("ALTER TABLE escalation_policies DROP COLUMN IF EXISTS family_ack_stops")
    op.execute("ALTER TABLE users DROP COLUMN IF EXISTS token_version")
