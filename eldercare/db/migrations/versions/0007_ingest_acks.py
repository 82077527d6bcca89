"""End-to-end acknowledgement watermarks and ingest workers' liveness.

``ingest_acks``: per (gateway, epoch), the highest seq such that every message of that epoch with
seq <= it is stored (wire protocol v1, section "Acknowledgements"). Advanced inside the commit
transaction that stores the messages, under the row's lock, so two workers on a shared
subscription never publish a watermark past a message that is not committed.

``ingest_refused``: the (gateway, epoch, seq) of messages that were dead-lettered although their
gateway, epoch and seq could be read. Re-sending them cannot help, so the watermark passes them;
they are not in ``ingested_messages``, so a corrected copy would still be stored.

``ingest_workers``: each worker's client id and when it was last alive. A worker that stopped
while its persistent session stays a member of the shared subscription keeps receiving its share
of the traffic, held by the broker until it returns: the other workers report such silent peers
in their ``/metrics``.

Revision ID: 0007
Revises: 0008
"""

from alembic import op

revision = "0007"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE ingest_acks (
            gateway_id  text        NOT NULL,
            epoch       text        NOT NULL,
            seq         bigint      NOT NULL,
            updated_at  timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (gateway_id, epoch)
        )
        """
    )
    op.execute(
        "COMMENT ON TABLE ingest_acks IS 'Per (gateway, epoch): every message with seq <= seq is stored'"
    )
    op.execute(
        """
        CREATE TABLE ingest_refused (
            gateway_id  text        NOT NULL,
            epoch       text        NOT NULL,
            seq         bigint      NOT NULL,
            received_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (gateway_id, epoch, seq)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE ingest_workers (
            client_id   text        PRIMARY KEY,
            seen_at     timestamptz NOT NULL DEFAULT now(),
            host        text        NOT NULL DEFAULT '',
            pid         integer     NOT NULL DEFAULT 0
        )
        """
    )
    op.execute(
        "COMMENT ON TABLE ingest_workers IS"
        " 'Ingest workers (MQTT client ids) and when each was last alive; retire deletes a row'"
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS ingest_workers")
    op.execute("DROP TABLE IF EXISTS ingest_refused")
    op.execute("DROP TABLE IF EXISTS ingest_acks")
