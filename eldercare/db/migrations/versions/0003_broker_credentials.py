"""Gateways' broker credential in Mosquitto's own hash format, so the platform can write the
broker's password file from the registry (``eldercare broker sync``).

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL for gateways provisioned before this revision: they are left out of the broker's password
    # file until their credentials are rotated (POST /gateways/{id}/credentials).
    op.execute(
        "ALTER TABLE gateways ADD COLUMN broker_password_hash text"
        " CHECK (broker_password_hash IS NULL OR broker_password_hash LIKE '$7$%')"
    )
    op.execute(
        "COMMENT ON COLUMN gateways.broker_password_hash IS"
        " 'Mosquitto password_file hash ($7$ = PBKDF2-SHA512) of the gateway''s MQTT password'"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE gateways DROP COLUMN IF EXISTS broker_password_hash")
