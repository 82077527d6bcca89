"""A simulated gateway's own clock; a resident's starting limits and the history of their thresholds.

- ``gateways.reported_at``: the newest time a gateway stamped on a status (its own clock), written by
  ingest with the status. A simulated home is judged by it: ``gateway_status.ts`` is ingest's
  arrival time, the wall clock, a day off for a run started a day behind (issue 22); and the
  engine's work queue, which saw each status later, fell hours behind a fast simulation.
- ``detector_settings.limits``: a care worker's limits for a new home (seconds by room, e.g.
  ``{"bathroom": 2700}``), in place of the population's while the detector learns the home.
- ``detector_changes``: every change of a resident's thresholds (outcome feedback on an alert, a
  care worker's limits, an undo), with what they were before and after, so each can be shown and
  undone.

Revision ID: 0012
Revises: 0014
"""

from alembic import op

revision = "0012"
down_revision = "0014"  # written on 0005; relinked onto main's head (0014) at the rebase
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE gateways ADD COLUMN reported_at timestamptz;
        COMMENT ON COLUMN gateways.reported_at IS
            'Newest time the gateway stamped on a status (its clock; a simulator''s for simulated homes)';
        ALTER TABLE detector_settings ADD COLUMN limits jsonb NOT NULL DEFAULT '{}'::jsonb;
        COMMENT ON COLUMN detector_settings.limits IS
            'A care worker''s limits for a new home, seconds by room (instead of the population''s)';
        CREATE TABLE detector_changes (
            id          bigserial PRIMARY KEY,
            resident_id text NOT NULL REFERENCES residents ON DELETE CASCADE,
            detector    text NOT NULL,
            at          timestamptz NOT NULL DEFAULT now(),
            source      text NOT NULL CHECK (source IN ('feedback', 'limits', 'undo')),
            actor       text,
            alert_id    bigint REFERENCES alerts ON DELETE SET NULL,
            outcome     text,
            before      jsonb NOT NULL,
            after       jsonb NOT NULL,
            undoes      bigint REFERENCES detector_changes ON DELETE SET NULL,
            undone_by   bigint REFERENCES detector_changes ON DELETE SET NULL
        );
        CREATE INDEX detector_changes_resident ON detector_changes (resident_id, detector, at DESC);
        COMMENT ON TABLE detector_changes IS
            'Each change of a resident''s detector thresholds (sensitivity, limits): shown and undoable';
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE IF EXISTS detector_changes;
        ALTER TABLE detector_settings DROP COLUMN IF EXISTS limits;
        ALTER TABLE gateways DROP COLUMN IF EXISTS reported_at;
        """
    )
