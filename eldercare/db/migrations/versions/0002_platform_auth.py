"""Platform access: refresh tokens, login attempts (rate limit across replicas), simulated incidents,
outcome feedback claims.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

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


def upgrade() -> None:
    op.execute(UP)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS outcome_feedback, sim_incidents, login_attempts, refresh_tokens")
