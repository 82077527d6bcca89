"""Alert work that fails is set aside, not retried for ever; gateways' clock skew; two operator kinds.

- ``alert_work`` keeps a failing item with its error: ``attempts``, ``last_error``, ``next_attempt_at``
  (retried with backoff) and ``failed_at`` (set aside after the last attempt, listed for admins).
- ``gateway_clocks``: each gateway's clock minus ingest's at its last live status.
- alert kinds ``work_failed`` (the engine could not process an item: for the operators) and
  ``clock_skew`` (a gateway's clock is far off).

Revision ID: 0008
Revises: 0006 (was 0004; relinked after main gained 0006)
"""

from alembic import op

revision = "0008"
down_revision = "0006"
branch_labels = None
depends_on = None

OLD_KINDS = (
    "'fall', 'sos', 'inactivity', 'night_wandering', 'bed_exit_no_return', 'device_offline', "
    "'low_battery', 'vitals', 'pipeline_stalled'"
)
NEW_KINDS = OLD_KINDS + ", 'work_failed', 'clock_skew'"


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE alert_work
            ADD COLUMN attempts integer NOT NULL DEFAULT 0,
            ADD COLUMN last_error text,
            ADD COLUMN next_attempt_at timestamptz NOT NULL DEFAULT now(),
            ADD COLUMN failed_at timestamptz;
        CREATE INDEX alert_work_failed ON alert_work (failed_at DESC) WHERE failed_at IS NOT NULL;
        COMMENT ON COLUMN alert_work.failed_at IS
            'Set aside after its last attempt failed (last_error says why); never claimed again';
        CREATE TABLE gateway_clocks (
            gateway_id text PRIMARY KEY REFERENCES gateways ON DELETE CASCADE,
            skew_ms    bigint NOT NULL,
            checked_at timestamptz NOT NULL DEFAULT now()
        );
        COMMENT ON TABLE gateway_clocks IS
            'Gateway clock minus ingest clock at the last live status (ms); apart from gateways,'
            ' so the engine writing it never holds a row ingest updates';
        """
    )
    op.execute(
        f"ALTER TABLE alerts DROP CONSTRAINT alerts_kind_check,"
        f" ADD CONSTRAINT alerts_kind_check CHECK (kind IN ({NEW_KINDS}))"
    )


def downgrade() -> None:
    op.execute("DELETE FROM alerts WHERE kind IN ('work_failed', 'clock_skew')")
    op.execute(
        f"ALTER TABLE alerts DROP CONSTRAINT alerts_kind_check,"
        f" ADD CONSTRAINT alerts_kind_check CHECK (kind IN ({OLD_KINDS}))"
    )
    op.execute(
        """
        DROP TABLE IF EXISTS gateway_clocks;
        DROP INDEX IF EXISTS alert_work_failed;
        ALTER TABLE alert_work DROP COLUMN failed_at, DROP COLUMN next_attempt_at,
            DROP COLUMN last_error, DROP COLUMN attempts;
        """
    )
