"""What config a gateway says it runs: the revision in force and why the last push was refused.

The platform pushes ``gateways.config`` (with ``config_revision``) on the retained config topic; the
gateway's retained status answers with the revision it applied and, if it refused a newer one, the
reason. Kept on the registry row so the console can show "config 7 pending / refused: ...".

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE gateways ADD COLUMN config_applied integer, ADD COLUMN config_error text")
    op.execute(
        "COMMENT ON COLUMN gateways.config_applied IS"
        " 'Config revision the gateway last reported in force (status.config_revision)'"
    )
    op.execute(
        "COMMENT ON COLUMN gateways.config_error IS"
        " 'Why the gateway refused the last config pushed to it (status.config_error); NULL: none'"
    )


def downgrade() -> None:
    op.execute(
        "ALTER TABLE gateways DROP COLUMN IF EXISTS config_error, DROP COLUMN IF EXISTS config_applied"
    )
