"""Initial schema: registry, time series, alerts and their trail, audit log, dead letters, dedup.

Revision ID: 0001
Revises:

Time-series tables (readings, events, gateway_status) become TimescaleDB hypertables when the
extension is available (or required by ELDERCARE_TIMESCALE=on), otherwise natively range-partitioned
tables whose partitions ``eldercare db maintain`` creates ahead and drops after retention. The hourly
rollup ``activity_hourly`` is a continuous aggregate on TimescaleDB and a table refreshed by the
maintenance job on plain PostgreSQL: the same name and columns either way.
"""

import logging

from alembic import context, op
from sqlalchemy import text

log = logging.getLogger("eldercare.db.migrations")

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

REGISTRY = """
CREATE TABLE meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);

CREATE TABLE providers (
    id             text PRIMARY KEY,
    name           text NOT NULL,
    kind           text NOT NULL CHECK (kind IN ('home_care', 'station', 'institution')),
    district       text,
    phone          text,
    webhook_url    text,
    webhook_secret text,
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE escalation_policies (
    id         bigserial PRIMARY KEY,
    name       text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- targets: 'family', 'assigned_worker', 'station_on_duty', 'institution_on_duty', 'provider:<id>'
CREATE TABLE escalation_tiers (
    policy_id     bigint   NOT NULL REFERENCES escalation_policies ON DELETE CASCADE,
    tier          smallint NOT NULL CHECK (tier >= 1),
    name          text     NOT NULL,
    targets       text[]   NOT NULL CHECK (cardinality(targets) > 0),
    ack_timeout_s integer  NOT NULL CHECK (ack_timeout_s > 0),
    PRIMARY KEY (policy_id, tier)
);

CREATE TABLE sites (
    id          text PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('home', 'station', 'institution')),
    name        text NOT NULL,
    district    text,
    address     text,
    provider_id text REFERENCES providers,          -- operator of a station or institution
    timezone    text NOT NULL DEFAULT 'Asia/Shanghai',
    layout      jsonb NOT NULL DEFAULT '{}',        -- rooms and sensor placement, for the console
    simulated   boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE residents (
    id                      text PRIMARY KEY,
    name                    text NOT NULL,
    home_site_id            text NOT NULL REFERENCES sites,
    station_site_id         text REFERENCES sites,
    home_care_provider_id   text REFERENCES providers,
    institution_provider_id text REFERENCES providers,
    care_level              text NOT NULL DEFAULT 'independent'
        CHECK (care_level IN ('independent', 'partly_dependent', 'dependent', 'dementia')),
    birth_year              integer CHECK (birth_year BETWEEN 1900 AND 2100),
    sex                     text CHECK (sex IN ('f', 'm', 'x')),
    phone                   text,
    emergency_contacts      jsonb NOT NULL DEFAULT '[]',
    escalation_policy_id    bigint REFERENCES escalation_policies,
    notes                   text,
    simulated               boolean NOT NULL DEFAULT false,
    created_at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX residents_home_site ON residents (home_site_id);
CREATE INDEX residents_station_site ON residents (station_site_id);

CREATE TABLE gateways (
    id                 text PRIMARY KEY,
    site_id            text NOT NULL REFERENCES sites,
    mqtt_username      text NOT NULL UNIQUE,
    mqtt_password_hash text NOT NULL,
    description        text,
    config             jsonb NOT NULL DEFAULT '{}',
    config_revision    integer NOT NULL DEFAULT 0,
    state              text NOT NULL DEFAULT 'unknown' CHECK (state IN ('unknown', 'online', 'offline')),
    state_at           timestamptz,
    version            text,
    created_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX gateways_site ON gateways (site_id);

CREATE TABLE sensors (
    gateway_id  text NOT NULL REFERENCES gateways ON DELETE CASCADE,
    id          text NOT NULL,
    kind        text NOT NULL
        CHECK (kind IN ('wearable', 'pir', 'door', 'bed', 'plug', 'sos', 'env', 'vitals')),
    room        text,
    resident_id text REFERENCES residents,
    meta        jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (gateway_id, id)
);
CREATE INDEX sensors_resident ON sensors (resident_id);

CREATE TABLE users (
    id            bigserial PRIMARY KEY,
    username      text NOT NULL UNIQUE,
    display_name  text NOT NULL,
    password_hash text NOT NULL,
    role          text NOT NULL CHECK (role IN ('admin', 'care_worker', 'family', 'tester')),
    provider_id   text REFERENCES providers,        -- care workers: their employer
    locale        text NOT NULL DEFAULT 'zh-CN' CHECK (locale IN ('zh-CN', 'en')),
    phone         text,
    email         text,
    active        boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- consent: streams this family member may see beyond the default (daily summary and alerts),
-- e.g. {"activity": true, "bed": true, "bathroom": false, "vitals": true}
CREATE TABLE family_links (
    user_id     bigint NOT NULL REFERENCES users ON DELETE CASCADE,
    resident_id text   NOT NULL REFERENCES residents ON DELETE CASCADE,
    relation    text   NOT NULL,
    is_primary  boolean NOT NULL DEFAULT false,
    consent     jsonb  NOT NULL DEFAULT '{}',
    PRIMARY KEY (user_id, resident_id)
);
CREATE INDEX family_links_resident ON family_links (resident_id);

-- the resident's care team: assigned home-care workers and others
CREATE TABLE care_assignments (
    resident_id text   NOT NULL REFERENCES residents ON DELETE CASCADE,
    user_id     bigint NOT NULL REFERENCES users ON DELETE CASCADE,
    role        text   NOT NULL DEFAULT 'home_care_worker',
    PRIMARY KEY (resident_id, user_id)
);
CREATE INDEX care_assignments_user ON care_assignments (user_id);

CREATE TABLE oncall_shifts (
    id          bigserial PRIMARY KEY,
    provider_id text   NOT NULL REFERENCES providers ON DELETE CASCADE,
    user_id     bigint NOT NULL REFERENCES users ON DELETE CASCADE,
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz NOT NULL,
    CHECK (ends_at > starts_at)
);
CREATE INDEX oncall_shifts_provider_time ON oncall_shifts (provider_id, starts_at, ends_at);

-- per-resident detector state and thresholds (fitted inactivity model, sensitivity fed back from outcomes)
CREATE TABLE detector_settings (
    resident_id text NOT NULL REFERENCES residents ON DELETE CASCADE,
    detector    text NOT NULL,
    sensitivity real NOT NULL DEFAULT 1.0 CHECK (sensitivity > 0),
    state       jsonb,
    fitted_at   timestamptz,
    PRIMARY KEY (resident_id, detector)
);
"""

TIME_SERIES = """
CREATE TABLE readings (
    ts         timestamptz      NOT NULL,
    gateway_id text             NOT NULL,
    sensor_id  text             NOT NULL,
    metric     text             NOT NULL,
    value      double precision NOT NULL
) {partitioning};
CREATE INDEX readings_sensor_ts ON readings (gateway_id, sensor_id, ts DESC);

CREATE TABLE events (
    ts          timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    gateway_id  text        NOT NULL,
    site_id     text        NOT NULL,
    epoch       text        NOT NULL,
    seq         bigint      NOT NULL,
    sensor_id   text        NOT NULL,
    kind        text        NOT NULL,
    confidence  real        NOT NULL,
    resident_id text,
    evidence    jsonb       NOT NULL DEFAULT '{{}}'
) {partitioning};
CREATE INDEX events_gateway_ts ON events (gateway_id, ts DESC);
CREATE INDEX events_resident_ts ON events (resident_id, ts DESC);

CREATE TABLE gateway_status (
    ts          timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    gateway_id  text        NOT NULL,
    site_id     text        NOT NULL,
    state       text        NOT NULL,
    clock_ok    boolean     NOT NULL DEFAULT true,
    version     text,
    sensors     jsonb       NOT NULL DEFAULT '{{}}',
    outbox      jsonb       NOT NULL DEFAULT '{{}}'
) {partitioning};
CREATE INDEX gateway_status_gateway_ts ON gateway_status (gateway_id, ts DESC);
"""

MESSAGES_AND_ALERTS = """
-- exactly once: each (gateway, epoch, seq) is stored once; pruned after the dedup horizon
CREATE TABLE ingested_messages (
    gateway_id  text        NOT NULL,
    epoch       text        NOT NULL,
    seq         bigint      NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (gateway_id, epoch, seq)
);
CREATE INDEX ingested_messages_received ON ingested_messages (received_at);

CREATE TABLE dead_letters (
    id          bigserial PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    topic       text  NOT NULL,
    payload     bytea NOT NULL,
    reason      text  NOT NULL,
    site_id     text,
    gateway_id  text
);
CREATE INDEX dead_letters_received ON dead_letters (received_at);

-- work for the alert engine: claimed and deleted with FOR UPDATE SKIP LOCKED by any replica
CREATE TABLE alert_work (
    id          bigserial PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now(),
    kind        text NOT NULL CHECK (kind IN ('event', 'status')),
    gateway_id  text NOT NULL,
    site_id     text NOT NULL,
    payload     jsonb NOT NULL
);

CREATE TABLE alerts (
    id                 bigserial PRIMARY KEY,
    kind               text NOT NULL CHECK (kind IN ('fall', 'sos', 'inactivity', 'night_wandering',
                           'bed_exit_no_return', 'device_offline', 'low_battery', 'vitals',
                           'pipeline_stalled')),
    severity           text NOT NULL CHECK (severity IN ('critical', 'high', 'medium', 'low')),
    state              text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'acknowledged', 'resolved')),
    resident_id        text REFERENCES residents,
    site_id            text REFERENCES sites,
    gateway_id         text,
    sensor_id          text,
    dedup_key          text NOT NULL,
    title              text NOT NULL,
    summary            jsonb NOT NULL DEFAULT '{}',   -- {"en": "...", "zh-CN": "..."} and figures
    evidence           jsonb NOT NULL DEFAULT '{}',
    detected_at        timestamptz NOT NULL,          -- when the condition began (event time)
    opened_at          timestamptz NOT NULL DEFAULT now(),
    last_detected_at   timestamptz NOT NULL DEFAULT now(),
    detections         integer NOT NULL DEFAULT 1,
    tier               smallint NOT NULL DEFAULT 1,
    next_escalation_at timestamptz,
    acknowledged_at    timestamptz,
    acknowledged_by    bigint REFERENCES users,
    resolved_at        timestamptz,
    resolved_by        bigint REFERENCES users,
    outcome            text CHECK (outcome IN ('confirmed', 'false_alarm', 'no_action_needed')),
    simulated          boolean NOT NULL DEFAULT false,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CHECK ((state = 'resolved') = (resolved_at IS NOT NULL))
);
-- one live alert per resident (or site) and kind: a new detection joins it
CREATE UNIQUE INDEX alerts_one_live ON alerts (dedup_key) WHERE state <> 'resolved';
CREATE INDEX alerts_escalation_due ON alerts (next_escalation_at) WHERE state = 'open';
CREATE INDEX alerts_resident_opened ON alerts (resident_id, opened_at DESC);
CREATE INDEX alerts_site_opened ON alerts (site_id, opened_at DESC);
CREATE INDEX alerts_state_opened ON alerts (state, opened_at DESC);

CREATE TABLE alert_trail (
    id            bigserial PRIMARY KEY,
    alert_id      bigint NOT NULL REFERENCES alerts ON DELETE CASCADE,
    at            timestamptz NOT NULL DEFAULT now(),
    action        text NOT NULL CHECK (action IN ('opened', 'detected_again', 'notified', 'escalated',
                      'acknowledged', 'resolved', 'auto_resolved', 'note', 'delivery')),
    tier          smallint,
    actor_user_id bigint REFERENCES users,
    detail        jsonb NOT NULL DEFAULT '{}',
    note          text
);
CREATE INDEX alert_trail_alert ON alert_trail (alert_id, at);

-- every delivery attempt and receipt of a notification
CREATE TABLE notifications (
    id              bigserial PRIMARY KEY,
    alert_id        bigint NOT NULL REFERENCES alerts ON DELETE CASCADE,
    user_id         bigint REFERENCES users,
    tier            smallint NOT NULL,
    channel         text NOT NULL CHECK (channel IN ('websocket', 'webhook', 'email')),
    target          text NOT NULL,
    status          text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'sent', 'delivered', 'failed', 'gave_up')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz
);
CREATE INDEX notifications_due ON notifications (next_attempt_at) WHERE status = 'pending';
CREATE INDEX notifications_alert ON notifications (alert_id);

CREATE TABLE audit_log (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    user_id     bigint REFERENCES users,
    username    text,
    action      text NOT NULL,
    resident_id text,
    route       text,
    detail      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_resident_at ON audit_log (resident_id, at DESC);
CREATE INDEX audit_log_user_at ON audit_log (user_id, at DESC);
"""

# Hourly activity per sensor; raw accelerometer samples are left out (they are 50 Hz noise here).
ROLLUP_SELECT = """
SELECT {bucket} AS bucket, gateway_id, sensor_id, metric,
       count(*) AS n, sum(value) AS total, max(value) AS max_value
FROM readings
WHERE metric NOT IN ('acc_x', 'acc_y', 'acc_z')
GROUP BY 1, 2, 3, 4
"""

ROLLUP_PLAIN = """
CREATE TABLE activity_hourly (
    bucket     timestamptz      NOT NULL,
    gateway_id text             NOT NULL,
    sensor_id  text             NOT NULL,
    metric     text             NOT NULL,
    n          bigint           NOT NULL,
    total      double precision NOT NULL,
    max_value  double precision NOT NULL,
    PRIMARY KEY (gateway_id, sensor_id, metric, bucket)
);
CREATE INDEX activity_hourly_bucket ON activity_hourly (bucket);
"""

ROLLUP_ROOM_VIEW = """
CREATE VIEW activity_hourly_room AS
SELECT a.bucket, g.site_id, s.room, s.kind AS sensor_kind, s.resident_id,
       a.gateway_id, a.sensor_id, a.metric, a.n, a.total, a.max_value
FROM activity_hourly a
JOIN gateways g ON g.id = a.gateway_id
JOIN sensors s ON s.gateway_id = a.gateway_id AND s.id = a.sensor_id;
"""


def _use_timescale() -> bool:
    """Decide once, at creation: 'on' requires the extension, 'auto' uses it when available."""
    mode = context.config.attributes.get("timescale", "auto")
    if mode == "off":
        return False
    bind = op.get_bind()
    available = bind.execute(
        text("SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'")
    ).scalar()
    if not available:
        if mode == "on":
            msg = "ELDERCARE_TIMESCALE=on but the timescaledb extension is not available in this server"
            raise RuntimeError(msg)
        return False
    # Installed files are not enough: the library must be in shared_preload_libraries.
    try:
        with bind.begin_nested():
            bind.execute(text("CREATE EXTENSION IF NOT EXISTS timescaledb"))
    except Exception as exc:
        if mode == "on":
            raise
        log.warning("timescaledb is installed but cannot be loaded (%s); using plain PostgreSQL", exc)
        return False
    return True


def upgrade() -> None:
    timescale = _use_timescale()
    op.execute(REGISTRY)
    if timescale:
        op.execute(TIME_SERIES.format(partitioning=""))
        for table, chunk in (("readings", "1 day"), ("events", "7 days"), ("gateway_status", "1 day")):
            op.execute(
                f"SELECT create_hypertable('{table}', by_range('ts', INTERVAL '{chunk}'))"
            )
        op.execute(
            "ALTER TABLE readings SET (timescaledb.compress, "
            "timescaledb.compress_segmentby = 'gateway_id, sensor_id, metric', "
            "timescaledb.compress_orderby = 'ts DESC')"
        )
        op.execute(
            "ALTER TABLE gateway_status SET (timescaledb.compress, "
            "timescaledb.compress_segmentby = 'gateway_id', timescaledb.compress_orderby = 'ts DESC')"
        )
    else:
        op.execute(TIME_SERIES.format(partitioning="PARTITION BY RANGE (ts)"))
    op.execute(MESSAGES_AND_ALERTS)
    if timescale:
        # Continuous aggregates cannot be created inside a transaction block.
        with context.get_context().autocommit_block():
            op.execute(
                "CREATE MATERIALIZED VIEW activity_hourly "
                "WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS "
                + ROLLUP_SELECT.format(bucket="time_bucket(INTERVAL '1 hour', ts)")
                + " WITH NO DATA"
            )
    else:
        op.execute(ROLLUP_PLAIN)
    op.execute(ROLLUP_ROOM_VIEW)
    op.execute(
        text("INSERT INTO meta (key, value) VALUES ('timescale', :v)").bindparams(
            v="true" if timescale else "false"
        )
    )


def downgrade() -> None:
    timescale = op.get_bind().execute(text("SELECT value FROM meta WHERE key = 'timescale'")).scalar()
    op.execute("DROP VIEW IF EXISTS activity_hourly_room")
    if timescale == "true":
        op.execute("DROP MATERIALIZED VIEW IF EXISTS activity_hourly CASCADE")
    else:
        op.execute("DROP TABLE IF EXISTS activity_hourly")
    op.execute(
        """
        DROP TABLE IF EXISTS audit_log, notifications, alert_trail, alerts, alert_work,
            dead_letters, ingested_messages, gateway_status, events, readings, detector_settings,
            oncall_shifts, care_assignments, family_links, users, sensors, gateways, residents, sites,
            escalation_tiers, escalation_policies, providers, meta CASCADE;
        """
    )
