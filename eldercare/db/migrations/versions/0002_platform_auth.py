"""Platform access: refresh tokens, login attempts (rate limit across replicas), simulated incidents,
outcome feedback claims, an index for
timelines on the hourly rollup.

Revision ID: 0002
Revises: 0001
"""

from alembic import op
from sqlalchemy import text

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UP = """
-- opaque refresh tokens, stored hashed; rotated on every use, a reused (revoked) one revokes the lot
CREATE TABLE refresh_tokens (
    id          bigserial PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users ON DELETE CASCADE,
    token_hash  text NOT NULL UNIQUE,
    issued_at   timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz
);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);

-- every login attempt; the rate limit counts recent failures here, so it holds across replicas
CREATE TABLE login_attempts (
    id        bigserial PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    username  text NOT NULL,
    client_ip text,
    ok        boolean NOT NULL
);
CREATE INDEX login_attempts_username_at ON login_attempts (username, at DESC);
CREATE INDEX login_attempts_ip_at ON login_attempts (client_ip, at DESC);

-- incidents triggered through the tester API, with the simulator's ground truth, for scoring
CREATE TABLE sim_incidents (
    id           bigserial PRIMARY KEY,
    requested_at timestamptz NOT NULL DEFAULT now(),
    requested_by bigint REFERENCES users ON DELETE SET NULL,
    resident_id  text NOT NULL REFERENCES residents ON DELETE CASCADE,
    site_id      text NOT NULL REFERENCES sites ON DELETE CASCADE,
    kind         text NOT NULL,
    request      jsonb NOT NULL,
    truth        jsonb,
    clock        jsonb
);
CREATE INDEX sim_incidents_site ON sim_incidents (site_id, requested_at);

-- resolved alerts whose outcome has been fed back into detector_settings.sensitivity (exactly once)
CREATE TABLE outcome_feedback (
    alert_id   bigint PRIMARY KEY REFERENCES alerts ON DELETE CASCADE,
    applied_at timestamptz NOT NULL DEFAULT now()
);
"""


# Timelines read one resident's sensors over a time range; the rollup's primary key has the
# metric before the bucket, so a range could not bound its scan. Covering (INCLUDE) on plain
# PostgreSQL: index-only scans (bench/timeseries_queries.py: 30-day timeline 92 -> 42 ms on a
# year of 1,000 homes); a plain index on the TimescaleDB continuous aggregate.
TIMELINE_INDEX = (
    "CREATE INDEX activity_hourly_sensor_bucket ON activity_hourly (gateway_id, sensor_id, bucket){include}"
)


def upgrade() -> None:
    op.execute(UP)
    timescale = op.get_bind().execute(text("SELECT value FROM meta WHERE key = 'timescale'")).scalar()
    include = "" if timescale == "true" else " INCLUDE (metric, n, total, max_value)"
    op.execute(TIMELINE_INDEX.format(include=include))


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS activity_hourly_sensor_bucket")
    op.execute("DROP TABLE IF EXISTS outcome_feedback, sim_incidents, login_attempts, refresh_tokens")
