"""Ingest's trust boundaries and nothing vanishing (issue 18).

- ``ingested_messages.digest``: a cheap hash of a stored message's contents, so a redelivery with
  the same ``(gateway, epoch, seq)`` but different contents is told apart (dead-lettered as a
  conflicting duplicate) from an identical redelivery (silent). NULL for rows stored before.
- ``dead_letters.dedup_key``: a dead letter that would come back by itself (a retained message
  re-sent at every subscription, the same conflicting duplicate) is kept once.
- ``gateways.disabled_at``: a disabled gateway's messages are refused (dead-lettered).
- ``NOTIFY gateway_registry`` (payload: the gateway id) on every insert, delete, site change or
  (dis|en)abling of a gateway, whoever makes it: ingest forgets its cached entry at once; its
  cache TTL is only the fallback.
- ``unknown_sensors``: sensor ids a gateway sent that are not registered. Their data is stored
  (an SOS from a button nobody registered yet must still alert); this lists them for an admin.

Revision ID: 0006
Revises: 0004
"""

from alembic import op

revision = "0006"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE ingested_messages ADD COLUMN digest bigint")
    op.execute(
        "COMMENT ON COLUMN ingested_messages.digest IS"
        " 'Length and CRC-32 of the stored contents: a duplicate with another digest is a conflict'"
    )
    op.execute("ALTER TABLE dead_letters ADD COLUMN dedup_key text")
    op.execute("CREATE UNIQUE INDEX dead_letters_once ON dead_letters (dedup_key) WHERE dedup_key IS NOT NULL")
    op.execute("ALTER TABLE gateways ADD COLUMN disabled_at timestamptz")
    op.execute(
        "COMMENT ON COLUMN gateways.disabled_at IS"
        " 'When an admin disabled the gateway: ingest refuses its messages; NULL: enabled'"
    )
    op.execute(
        """
        CREATE FUNCTION notify_gateway_registry() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP IN ('UPDATE', 'DELETE') THEN
                PERFORM pg_notify('gateway_registry', OLD.id);
            END IF;
            IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.id IS DISTINCT FROM OLD.id) THEN
                PERFORM pg_notify('gateway_registry', NEW.id);
            END IF;
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER gateways_notify_registry"
        " AFTER INSERT OR DELETE OR UPDATE OF id, site_id, disabled_at ON gateways"
        " FOR EACH ROW EXECUTE FUNCTION notify_gateway_registry()"
    )
    op.execute(
        """
        CREATE TABLE unknown_sensors (
            gateway_id text        NOT NULL REFERENCES gateways ON DELETE CASCADE,
            sensor_id  text        NOT NULL,
            first_seen timestamptz NOT NULL DEFAULT now(),
            last_seen  timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (gateway_id, sensor_id)
        )
        """
    )
    op.execute(
        "COMMENT ON TABLE unknown_sensors IS"
        " 'Sensor ids gateways sent that the registry does not know (their data is stored); an admin"
        " registers them (POST /gateways/{id}/sensors) or removes them from the gateway'"
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS unknown_sensors")
    op.execute("DROP TRIGGER IF EXISTS gateways_notify_registry ON gateways")
    op.execute("DROP FUNCTION IF EXISTS notify_gateway_registry()")
    op.execute("ALTER TABLE gateways DROP COLUMN IF EXISTS disabled_at")
    op.execute("DROP INDEX IF EXISTS dead_letters_once")
    op.execute("ALTER TABLE dead_letters DROP COLUMN IF EXISTS dedup_key")
    op.execute("ALTER TABLE ingested_messages DROP COLUMN IF EXISTS digest")
