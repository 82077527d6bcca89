"""The gateway file, ``gateway.toml``: who this gateway is, where its broker and outbox are.

Two kinds of settings live here. What only the box itself can know (identity, broker URL and
credentials, TLS files, outbox path and bounds, drivers and their device mappings) is local.
What the platform may change remotely (sensors, batching, heartbeat, thresholds; the retained
``config`` topic, :class:`eldercare.protocol.GatewayConfig`) starts from the ``[config]`` table
and ``[[sensors]]`` here and is replaced by any newer valid revision pushed by the platform.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import msgspec
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from eldercare import protocol
from eldercare.edge.errors import GatewayConfigError

IdStr = str  # validated against protocol.ID_PATTERN below


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BrokerConfig(_Model):
    """The platform's MQTT broker. ``mqtts://`` turns TLS on (system CAs unless ``ca_file``)."""

    url: SecretStr = SecretStr("mqtt://127.0.0.1:1883")
    username: str | None = None
    password: SecretStr | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    tls_insecure: bool = False
    client_id: str | None = None  # default: "{site}-{gateway}"
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    # paho's own in-flight window; the agent never hands paho more unacknowledged messages.
    max_inflight: int = Field(default=20, ge=2, le=1000)
    reconnect_min_s: float = Field(default=1.0, gt=0)
    reconnect_max_s: float = Field(default=60.0, gt=0)

    @field_validator("url")
    @classmethod
    def _scheme(cls, v: SecretStr) -> SecretStr:
        parts = urlsplit(v.get_secret_value())
        if parts.scheme not in {"mqtt", "mqtts", "tcp", "ssl"}:
            msg = f"scheme must be mqtt:// or mqtts://, not {parts.scheme or 'missing'}://"
            raise ValueError(msg)
        if not parts.hostname:
            msg = "the URL names no host"
            raise ValueError(msg)
        return v

    @property
    def host(self) -> str:
        return urlsplit(self.url.get_secret_value()).hostname or "127.0.0.1"

    @property
    def tls(self) -> bool:
        return urlsplit(self.url.get_secret_value()).scheme in {"mqtts", "ssl"}

    @property
    def port(self) -> int:
        return urlsplit(self.url.get_secret_value()).port or (8883 if self.tls else 1883)

    @property
    def credentials(self) -> tuple[str | None, str | None]:
        """Username and password from the fields, else from the URL (``mqtt://user:pw@host``)."""
        parts = urlsplit(self.url.get_secret_value())
        user = self.username or parts.username
        pw = self.password.get_secret_value() if self.password else parts.password
        return user, pw


class OutboxConfig(_Model):
    """Where the outbox lives and how big it may grow (see docs/edge.md, "Outbox bounds")."""

    path: Path = Path("outbox.sqlite3")
    max_messages: int = Field(default=200_000, ge=100)
    max_bytes: int = Field(default=64 * 1024 * 1024, ge=64 * 1024)
    max_age_s: int = Field(default=7 * 86400, ge=60)  # older telemetry is shed; events never
    # FULL: a commit survives power loss (fsync of the WAL); NORMAL survives kill -9 only.
    synchronous: Literal["full", "normal"] = "full"


class ClockConfig(_Model):
    """What counts as an obviously wrong clock (docs/edge.md, "Clock")."""

    not_before_ms: int = Field(default=1_767_225_600_000, ge=0)  # 2026-01-01, after this release
    not_after_ms: int = Field(default=4_102_444_800_000)  # 2100-01-01, the protocol's bound
    jump_tolerance_s: float = Field(default=120.0, gt=0)
    settle_s: float = Field(default=600.0, ge=0)  # a jumped clock is trusted again after this
    hold_max: int = Field(default=20_000, ge=0)  # readings held while no good time is known


class FallConfig(_Model):
    """The edge fall detector and its evidence window."""

    detector: Literal["auto", "pretrained", "threshold"] = "auto"
    evidence_before_s: float = Field(default=5.0, ge=0, le=30)
    evidence_after_s: float = Field(default=10.0, ge=0, le=60)
    buffer_s: float = Field(default=60.0, ge=10, le=600)
    context_window_s: float = Field(default=60.0, ge=5, le=600)


class DriverEntry(BaseModel):
    """A ``[[drivers]]`` table: ``type`` picks ``eldercare.edge.drivers.<type>``; the rest: options."""

    model_config = ConfigDict(extra="allow")

    type: str
    name: str | None = None

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class GatewayFile(_Model):
    """Everything in ``gateway.toml``."""

    site: IdStr
    gateway: IdStr
    topic_root: str = protocol.DEFAULT_ROOT
    broker: BrokerConfig = BrokerConfig()
    outbox: OutboxConfig = OutboxConfig()
    clock: ClockConfig = ClockConfig()
    fall: FallConfig = FallConfig()
    status_interval_s: float = Field(default=300.0, ge=5)
    sensors: list[dict[str, Any]] = Field(default_factory=list)
    drivers: list[DriverEntry] = Field(default_factory=list)
    config: dict[str, Any] = Field(default_factory=dict)  # initial protocol.GatewayConfig fields

    @field_validator("site", "gateway")
    @classmethod
    def _ident(cls, v: str) -> str:
        import re

        if not re.match(protocol.ID_PATTERN, v):
            msg = f"{v!r} is not an identifier (letters, digits, _ . : -; at most 64)"
            raise ValueError(msg)
        return v

    @property
    def client_id(self) -> str:
        return self.broker.client_id or f"{self.site}-{self.gateway}"

    def initial_config(self) -> protocol.GatewayConfig:
        """The remotely changeable part as the file states it (revision 0 unless given)."""
        raw = {"v": 1, "revision": 0, **self.config, "sensors": self.sensors}
        return parse_remote_config(msgspec.json.encode(raw))


def parse_remote_config(data: bytes) -> protocol.GatewayConfig:
    """Decode a pushed config and check what the schema cannot; raises ProtocolError."""
    cfg = protocol.decode("config", data)
    assert isinstance(cfg, protocol.GatewayConfig)
    ids = [s.id for s in cfg.sensors]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise protocol.ProtocolError("sensors", f"duplicate sensor ids {dupes}")
    for metric, (lo, hi) in cfg.vitals_ranges.items():
        if not lo < hi:
            raise protocol.ProtocolError(f"vitals_ranges.{metric}", f"low {lo} is not below high {hi}")
    return cfg


def load_gateway_file(path: str | Path, **overrides: Any) -> GatewayFile:
    """Read and validate ``gateway.toml``; relative paths are taken from the file's folder."""
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        msg = f"{p}: no such gateway file"
        raise GatewayConfigError(msg) from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        msg = f"{p}: {exc}"
        raise GatewayConfigError(msg) from None
    raw.update(overrides)
    gw = build_gateway_file(raw, source=str(p))
    base = p.resolve().parent
    out = gw.outbox.model_copy(update={"path": _resolve(base, gw.outbox.path)})
    broker = gw.broker.model_copy(
        update={k: _resolve(base, getattr(gw.broker, k)) for k in ("ca_file", "cert_file", "key_file")}
    )
    return gw.model_copy(update={"outbox": out, "broker": broker})


def build_gateway_file(raw: dict[str, Any], source: str = "gateway config") -> GatewayFile:
    """Validate a mapping (as read from TOML); one readable line per problem on failure."""
    try:
        gw = GatewayFile.model_validate(raw)
        gw.initial_config()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in e['loc']) or 'file'}: {e['msg']}" for e in exc.errors()
        )
        msg = f"{source}: {problems}"
        raise GatewayConfigError(msg) from None
    except protocol.ProtocolError as exc:
        msg = f"{source}: config/sensors {exc}"
        raise GatewayConfigError(msg) from None
    return gw


def _resolve(base: Path, p: Path | None) -> Path | None:
    if p is None or p.is_absolute():
        return p
    return base / p
