"""The one settings object: ``ELDERCARE_*`` environment variables over an optional TOML file.

Every component receives a :class:`Settings` explicitly (the CLI builds it once); nothing deeper
reads ``os.environ``. Unset ``database_url`` / ``mqtt_url`` mean "use the embedded PostgreSQL and
MQTT broker" (see :mod:`eldercare.embedded`), which is how ``eldercare demo`` runs on a fresh machine.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
from collections import Counter
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

# the file named by --config while load_settings builds Settings (not put in os.environ: that would
# outlive the call and leak into every later Settings of the process, tests included)
_config_file: ContextVar[str | None] = ContextVar("eldercare_config_file", default=None)

ENV_PREFIX = "ELDERCARE_"
CONFIG_ENV = "ELDERCARE_CONFIG"
PLACEHOLDER_SECRET = "change-me-in-production"  # refused outside development


def _user_data_dir() -> Path:
    """Where a user's eldercare state lives: ~/.local/share/eldercare on Linux (XDG), the
    platform's own place elsewhere; the same for root and ordinary users, never the current directory."""
    import platformdirs

    return platformdirs.user_data_path("eldercare")


MIN_SECRET_CHARS = 32
MIN_SECRET_BITS = 128.0


def secret_weakness(secret: str) -> str | None:
    """Why ``secret`` cannot protect signed tokens, or None when it looks random and long enough.

    Entropy is estimated from the secret's own character frequencies (Shannon, bits per character
    times length): a repeated or dictionary-like secret scores low however long it is.
    """
    if not secret or secret == PLACEHOLDER_SECRET:
        return "the secret is empty or the public placeholder"
    if len(secret) < MIN_SECRET_CHARS:
        return f"the secret is only {len(secret)} characters"
    counts = Counter(secret)
    bits = -sum(n / len(secret) * math.log2(n / len(secret)) for n in counts.values()) * len(secret)
    if bits < MIN_SECRET_BITS or len(counts) < 10:
        return f"the secret is not random enough (about {bits:.0f} bits)"
    return None


class SettingsError(Exception):
    """The configuration is invalid; the message is one readable line naming the variable."""


class Settings(BaseSettings):
    """Effective configuration of every eldercare process."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", validate_default=True)

    environment: Literal["development", "test", "production"] = "development"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    data_dir: Path = Field(
        default_factory=_user_data_dir,
        description="State: embedded database and broker, demo logs (default: the user's data directory)",
    )

    # PostgreSQL / TimescaleDB. None: start the embedded PostgreSQL under data_dir.
    database_url: SecretStr | None = None
    db_pool_min: int = Field(default=1, ge=1)
    db_pool_max: int = Field(default=10, ge=1)
    timescale: Literal["auto", "on", "off"] = "auto"
    retention_readings_days: int = Field(default=90, ge=1)
    retention_status_days: int = Field(default=90, ge=1)
    retention_events_days: int = Field(default=730, ge=1)
    partitions_ahead_days: int = Field(default=7, ge=1)
    # Storage sizing (docs/operations.md, "Sizing the hypertables"): chunk interval and compression
    # delay are derived from the expected sustained reading rate and the database server's memory
    # unless set explicitly.
    storage_readings_per_s: int = Field(default=1000, ge=1, description="expected sustained readings/s")
    storage_memory_mb: int = Field(default=8192, ge=256, description="database server memory (MB)")
    readings_chunk_minutes: int | None = Field(default=None, ge=5, le=7 * 1440)
    compress_after_hours: int | None = Field(default=None, ge=1)
    compress_segmentby: str = "gateway_id, sensor_id, metric"
    events_compress_after_days: int = Field(default=14, ge=1)
    dedup_days: int = Field(default=30, ge=1)
    # background: TimescaleDB's workers run the policies; foreground: `eldercare db maintain` runs
    # them (and unschedules them), for servers where the workers fail (docs/operations.md).
    timescale_jobs: Literal["background", "foreground"] = "background"

    # MQTT broker. None: start the embedded broker. mqtts:// turns TLS on.
    mqtt_url: SecretStr | None = None
    mqtt_topic_root: str = "eldercare/v1"
    mqtt_ca_file: Path | None = None
    mqtt_cert_file: Path | None = None
    mqtt_key_file: Path | None = None
    mqtt_tls_insecure: bool = False
    mqtt_keepalive_s: int = Field(default=30, ge=5)
    # 3.1.1 only for brokers without MQTT v5 (the embedded amqtt): no shared subscriptions there.
    mqtt_protocol: Literal["5", "3.1.1"] = "5"

    # Broker accounts (Mosquitto). With both files set, the platform rewrites them from the registry
    # whenever a gateway is provisioned, rotated or deleted, and at start (`eldercare broker sync`),
    # then asks the broker to reload: SIGHUP to the pid in broker_pid_file (same host), and/or a new
    # broker_reload_stamp_file that deploy/mosquitto-reload.sh, beside the broker, turns into a SIGHUP.
    broker_password_file: Path | None = Field(default=None, description="Mosquitto password_file to write")
    broker_acl_file: Path | None = Field(default=None, description="Mosquitto acl_file to write")
    broker_pid_file: Path | None = Field(default=None, description="Mosquitto pid_file: reload by SIGHUP")
    broker_reload_stamp_file: Path | None = Field(
        default=None, description="rewritten after each change, for a watcher that reloads the broker"
    )
    # per_gateway: a `user` block per gateway naming its site (exact; Mosquitto 2.0 parses these in
    # quadratic time: ~1.4 s broker stall per reload at 5,000 gateways). pattern: `%u` patterns for
    # all gateways (constant cost; the site level is then checked by ingest only).
    broker_acl_style: Literal["per_gateway", "pattern"] = "per_gateway"
    # Service accounts' passwords (None: no such account): eldercare-ingest, eldercare-platform,
    # eldercare-simulator. Each process connects with its own in ELDERCARE_MQTT_URL.
    broker_ingest_password: SecretStr | None = None
    broker_platform_password: SecretStr | None = None
    broker_simulator_password: SecretStr | None = None

    # Ingest.
    ingest_client_id: str = "eldercare-ingest-0"
    # Replicas started from one configuration (compose `replicas`): each takes the lowest free slot
    # in this directory (a volume they share) and adds it to the client id's trailing number.
    ingest_slot_dir: Path | None = None
    ingest_shared_group: str = "ingest"
    # Group commit: a commit takes whatever arrived while the previous one was in flight, at most
    # this many rows / payload bytes (no timer: an idle worker commits each message at once).
    ingest_batch_rows: int = Field(default=50_000, ge=1)
    ingest_batch_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    # Telemetry commits a worker keeps in flight at once, each on its own database connection: with
    # two, a batch starts its COPY while the previous one waits for its COMMIT (the WAL flush).
    # 1 by default: on a loaded 2-core machine two cut telemetry's half-load p99 but made events
    # (falls, SOS) 2-4x slower at p50 (docs/performance.md, issue 24 fifth pass).
    ingest_writers: int = Field(default=1, ge=1, le=8)
    # Deprecated and ignored since group commit (batches used to be due at this age); a worker
    # started with it set logs a warning. To be removed in a later release.
    ingest_batch_ms: int | None = Field(default=None, ge=1)
    ingest_max_payload_bytes: int = Field(default=262_144, ge=1024)
    ingest_receive_maximum: int = Field(default=1000, ge=1, le=65535)  # unacked messages in flight
    ingest_session_expiry_s: int = Field(default=86_400, ge=0)  # broker keeps a worker's queue this long
    ingest_registry_refresh_s: float = Field(default=30.0, gt=0)
    # A gateway's stored-up-to watermark (its retained .../ack) is published at most this often
    # while telemetry flows; after an event at once.
    ingest_ack_interval_ms: int = Field(default=200, ge=10, le=60_000)
    # Each worker records itself alive this often; a peer silent for 3 x this is reported in /metrics.
    ingest_heartbeat_s: float = Field(default=5.0, gt=0)
    metrics_port: int = Field(default=9108, ge=0, le=65535)
    # The alert engine process's own /metrics (its counters); engine i of `serve --engines N` uses
    # port + i. 0 (the default): none, the counters then show only in its log.
    engine_metrics_port: int = Field(default=0, ge=0, le=65535)

    # HTTP API and consoles.
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=0, le=65535)
    secret_key: SecretStr = SecretStr(PLACEHOLDER_SECRET)
    access_token_minutes: int = Field(default=15, ge=1)
    refresh_token_days: int = Field(default=7, ge=1)
    smtp_url: SecretStr | None = None
    smtp_from: str = "eldercare@localhost"
    # Without an SMTP server, e-mails can be written to this Maildir instead (the demo does), so
    # one sees what would have gone to whom; with neither, no e-mails are queued.
    mail_outbox: Path | None = None
    # Request limits (docs/security.md): bodies larger are refused with 413, JSON nested deeper with 422.
    http_max_body_bytes: int = Field(default=1_048_576, ge=1024)
    http_max_json_depth: int = Field(default=32, ge=2, le=200)
    # Addresses or networks of reverse proxies whose X-Forwarded-For is believed, comma-separated
    # (e.g. "127.0.0.1,10.0.0.0/8"); empty: the peer's address is the client's, whatever it sends.
    trusted_proxies: str = ""
    # how long a wearable may lie unworn before the care team gets a gentle "not worn" notice
    not_worn_notice_min: float = Field(default=60.0, gt=0, le=7 * 1440)
    # Webhook URLs in private, loopback or link-local ranges are refused unless this is true
    # (a test bench, or providers inside the same private network).
    webhook_allow_private: bool = False
    # argon2 runs on this many threads; past this many more waiting, sign-ins answer 429.
    password_hash_workers: int = Field(default=2, ge=1, le=64)
    password_hash_queue: int = Field(default=32, ge=0, le=10_000)

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_any_case(cls, v: object) -> object:
        # `eldercare edge run` takes the same ELDERCARE_LOG_LEVEL in any case (its --log-level lists
        # debug|info|...): one value in a shared environment must serve both
        return v.upper() if isinstance(v, str) else v

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt_scheme(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None:
            scheme = urlsplit(v.get_secret_value()).scheme
            if scheme not in {"mqtt", "mqtts", "tcp", "ssl"}:
                msg = f"scheme must be mqtt:// or mqtts://, not {scheme or 'missing'}://"
                raise ValueError(msg)
        return v

    @field_validator("compress_segmentby")
    @classmethod
    def _segmentby(cls, v: str) -> str:
        cols = [c.strip() for c in v.split(",") if c.strip()]
        bad = [c for c in cols if c not in {"gateway_id", "sensor_id", "metric"}]
        if not cols or bad:
            msg = f"must list readings columns among gateway_id, sensor_id, metric (not {bad or v!r})"
            raise ValueError(msg)
        return ", ".join(cols)

    @field_validator("database_url")
    @classmethod
    def _db_scheme(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and urlsplit(v.get_secret_value()).scheme not in {"postgresql", "postgres"}:
            msg = "must be a postgresql:// URL"
            raise ValueError(msg)
        return v

    @model_validator(mode="after")
    def _broker_files_together(self) -> Settings:
        if (self.broker_password_file is None) != (self.broker_acl_file is None):
            msg = (  # named as operators set them (in a --config file: the same keys, lower case)
                "ELDERCARE_BROKER_PASSWORD_FILE and ELDERCARE_BROKER_ACL_FILE are set together or not at all"
            )
            raise ValueError(msg)
        return self

    @field_validator("secret_key")
    @classmethod
    def _strong_secret_in_production(cls, v: SecretStr, info: ValidationInfo) -> SecretStr:
        if info.data.get("environment") == "production":
            weakness = secret_weakness(v.get_secret_value())
            if weakness:
                msg = (
                    f"{weakness}; production needs a random secret of at least {MIN_SECRET_CHARS}"
                    " characters, e.g. `openssl rand -hex 32`"
                )
                raise ValueError(msg)
        return v

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, v: str) -> str:
        for part in filter(None, (p.strip() for p in v.split(","))):
            try:
                ipaddress.ip_network(part, strict=False)
            except ValueError:
                msg = f"{part!r} is not an address or network (e.g. 10.0.0.0/8)"
                raise ValueError(msg) from None
        return v

    @property
    def trusted_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        parts = filter(None, (p.strip() for p in self.trusted_proxies.split(",")))
        return tuple(ipaddress.ip_network(p, strict=False) for p in parts)

    @property
    def weak_secret(self) -> str | None:
        """Why the signing secret is unsafe (None: strong), for the loud warning outside production."""
        return secret_weakness(self.secret_key.get_secret_value())

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml_file = _config_file.get() or os.environ.get(CONFIG_ENV)
        if toml_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)

    # Derived values -------------------------------------------------------------------------

    @property
    def uses_embedded_db(self) -> bool:
        return self.database_url is None

    @property
    def uses_embedded_broker(self) -> bool:
        return self.mqtt_url is None

    def masked(self) -> dict[str, Any]:
        """Effective values for display, with passwords in URLs and secrets masked."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                raw = value.get_secret_value()
                value = _mask_url(raw) if "://" in raw else "********"
            elif isinstance(value, Path):
                value = str(value)
            out[name] = value
        return out


def _mask_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":********@", 1)
    return parts._replace(netloc=netloc).geturl()


def describe_error(exc: ValidationError, config_file: str | Path | None = None) -> str:
    """One readable line per problem, naming where the value came from: the environment variable,
    or the TOML file's key when the variable is unset (the operator looks there, not at the env)."""
    lines = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "settings"
        var = f"{ENV_PREFIX}{field.upper()}" if err["loc"] else "settings"
        if err["loc"] and config_file and var not in os.environ:
            var = f"{config_file}: {field}"
        lines.append(f"{var}: {err['msg'].removeprefix('Value error, ')}")
    return "; ".join(lines)


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build settings, turning a validation failure into :class:`SettingsError` with one line."""
    if config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            msg = f"{CONFIG_ENV}: config file {path} does not exist"
            raise SettingsError(msg)
    _refuse_unknown_variables()
    token = _config_file.set(None if config_file is None else str(config_file))
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(describe_error(exc, config_file or os.environ.get(CONFIG_ENV))) from None
    except (OSError, ValueError) as exc:  # unreadable or malformed TOML file
        msg = f"{CONFIG_ENV}: {exc}"
        raise SettingsError(msg) from None
    finally:
        _config_file.reset(token)


def _refuse_unknown_variables() -> None:
    """A misspelt ``ELDERCARE_*`` variable would otherwise be ignored without a word."""
    known = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields} | {CONFIG_ENV}
    for var in sorted(os.environ):
        if var.startswith(ENV_PREFIX) and not var.startswith(f"{ENV_PREFIX}TEST_") and var not in known:
            close = difflib.get_close_matches(var, known, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            msg = f"{var}: unknown setting{hint}"
            raise SettingsError(msg)


@lru_cache
def get_settings() -> Settings:
    """Process-wide settings for FastAPI's ``Depends``; tests override the dependency."""
    return load_settings()


def broker_address(settings: Settings) -> tuple[str, int, bool, str | None, str | None]:
    """host, port, tls, username, password of the configured broker (embedded: localhost:1883)."""
    if settings.mqtt_url is None:
        return "127.0.0.1", 1883, False, None, None
    u = urlsplit(settings.mqtt_url.get_secret_value())
    tls = u.scheme in ("mqtts", "ssl")
    return (
        u.hostname or "127.0.0.1",
        u.port or (8883 if tls else 1883),
        tls,
        unquote(u.username) if u.username else None,
        unquote(u.password) if u.password else None,
    )
