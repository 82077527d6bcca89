"""The gateway file, ``gateway.toml``: who this gateway is, where its broker and outbox are.

Two kinds of settings live here. What only the box itself can know (identity, broker URL and
credentials, TLS files, outbox path and bounds, drivers and their device mappings) is local.
What the platform may change remotely (sensors, batching, heartbeat, thresholds; the retained
``config`` topic, :class:`eldercare.protocol.GatewayConfig`) starts from the ``[config]`` table
and ``[[sensors]]`` here and is replaced by any newer valid revision pushed by the platform.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import msgspec

from eldercare import protocol
from eldercare.edge.errors import GatewayConfigError

# The gateway file is parsed with msgspec, not pydantic: the agent runs on small boxes and
# pydantic's import and model build cost ~7 MB of RSS (docs/edge.md, "Footprint").


def _ge(v: float) -> msgspec.Meta:
    return msgspec.Meta(ge=v)


class BrokerConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """The platform's MQTT broker. ``mqtts://`` turns TLS on (system CAs unless ``ca_file``)."""

    url: str = "mqtt://127.0.0.1:1883"
    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    tls_insecure: bool = False
    client_id: str | None = None  # default: "{site}-{gateway}"
    keepalive_s: Annotated[int, msgspec.Meta(ge=5, le=3600)] = 30
    # paho's own in-flight window; the agent never hands paho more unacknowledged messages.
    max_inflight: Annotated[int, msgspec.Meta(ge=2, le=1000)] = 20
    # Reconnect backoff (docs/edge.md, "Connection"): the first ``reconnect_fast_attempts`` waits
    # after a loss are capped at ``reconnect_fast_max_s`` so a broker restart costs seconds; then
    # doubling from ``reconnect_min_s`` up to ``reconnect_max_s``; each wait times [0.5, 1].
    reconnect_min_s: Annotated[float, msgspec.Meta(gt=0)] = 0.5
    reconnect_max_s: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    reconnect_fast_max_s: Annotated[float, msgspec.Meta(gt=0)] = 2.0
    reconnect_fast_attempts: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 10

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in {"mqtt", "mqtts", "tcp", "ssl"}:
            msg = f"url: scheme must be mqtt:// or mqtts://, not {parts.scheme or 'missing'}://"
            raise ValueError(msg)
        if not parts.hostname:
            msg = "url: the URL names no host"
            raise ValueError(msg)

    def __repr__(self) -> str:
        """Without the password or the URL's credentials (they end up in logs otherwise)."""
        user = self.credentials[0]
        return f"BrokerConfig(host={self.host!r}, port={self.port}, tls={self.tls}, user={user!r})"

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme in {"mqtts", "ssl"}

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or (8883 if self.tls else 1883)

    @property
    def credentials(self) -> tuple[str | None, str | None]:
        """Username and password from the fields, else from the URL (``mqtt://user:pw@host``)."""
        parts = urlsplit(self.url)
        user = self.username or parts.username
        pw = self.password if self.password is not None else parts.password
        return user, pw


class OutboxConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Where the outbox lives and how big it may grow (see docs/edge.md, "Outbox bounds")."""

    path: Path = Path("outbox.sqlite3")
    max_messages: Annotated[int, _ge(100)] = 200_000
    max_bytes: Annotated[int, _ge(64 * 1024)] = 64 * 1024 * 1024
    max_age_s: Annotated[int, _ge(60)] = 7 * 86400  # older telemetry is shed; events never
    # FULL: a commit survives power loss (fsync of the WAL); NORMAL survives kill -9 only.
    synchronous: Literal["full", "normal"] = "full"
    # When a message may be deleted (docs/edge.md, "End-to-end acknowledgement"): "platform" keeps
    # it until the platform's ``.../ack`` says it is stored; "broker" on the broker's PUBACK;
    # "auto" behaves as "broker" until the first platform ack is seen, then as "platform".
    ack: Literal["auto", "platform", "broker"] = "auto"
    # No platform ack progress for this long while messages wait for one: send them again
    # (doubling up to ten times this while it stays silent).
    ack_timeout_s: Annotated[float, msgspec.Meta(ge=1)] = 30.0
    # After each (re)connect the first ack is awaited only this long (at most ack_timeout_s) before
    # one more resend: a restarted broker may have dropped what was resent before ingest was back.
    ack_timeout_after_connect_s: Annotated[float, msgspec.Meta(ge=1)] = 5.0
    # Free space below this on the outbox's file system: status.outbox.disk_low = 1 (an alert).
    disk_low_bytes: Annotated[int, _ge(0)] = 32 * 1024 * 1024


class ClockConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """What counts as an obviously wrong clock (docs/edge.md, "Clock")."""

    not_before_ms: Annotated[int, _ge(0)] = 1_767_225_600_000  # 2026-01-01, after this release
    not_after_ms: int = 4_102_444_800_000  # 2100-01-01, the protocol's bound
    jump_tolerance_s: Annotated[float, msgspec.Meta(gt=0)] = 120.0
    settle_s: Annotated[float, _ge(0)] = 600.0  # a jumped clock is trusted again after this
    hold_max: Annotated[int, _ge(0)] = 20_000  # readings held while no good time is known


class FallConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """The edge fall detector and its evidence window."""

    detector: Literal["auto", "pretrained", "threshold"] = "auto"
    evidence_before_s: Annotated[float, msgspec.Meta(ge=0, le=30)] = 5.0
    evidence_after_s: Annotated[float, msgspec.Meta(ge=0, le=60)] = 10.0
    buffer_s: Annotated[float, msgspec.Meta(ge=10, le=600)] = 60.0
    context_window_s: Annotated[float, msgspec.Meta(ge=5, le=600)] = 60.0


class DriverEntry(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """A ``[[drivers]]`` table: ``type`` picks ``eldercare.edge.drivers.<type>``; the rest: options."""

    type: str
    name: str | None = None
    options: dict[str, Any] = msgspec.field(default_factory=dict)

    @classmethod
    def from_table(cls, table: dict[str, Any]) -> DriverEntry:
        """``{"type": ..., "name": ..., **options}`` as written in the file."""
        rest = dict(table)
        kind, name = rest.pop("type", None), rest.pop("name", None)
        if not isinstance(kind, str) or not kind:
            msg = "type: a driver needs a type (a name such as zigbee2mqtt, or package.module:Class)"
            raise ValueError(msg)
        if name is not None and not isinstance(name, str):
            msg = "name: must be a string"
            raise ValueError(msg)
        return cls(type=kind, name=name, options=rest)


class GatewayFile(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Everything in ``gateway.toml``."""

    site: str
    gateway: str
    topic_root: str = protocol.DEFAULT_ROOT
    broker: BrokerConfig = msgspec.field(default_factory=BrokerConfig)
    outbox: OutboxConfig = msgspec.field(default_factory=OutboxConfig)
    clock: ClockConfig = msgspec.field(default_factory=ClockConfig)
    fall: FallConfig = msgspec.field(default_factory=FallConfig)
    status_interval_s: Annotated[float, _ge(5)] = 300.0
    sensors: list[dict[str, Any]] = msgspec.field(default_factory=list)
    drivers: list[DriverEntry] = msgspec.field(default_factory=list)
    config: dict[str, Any] = msgspec.field(default_factory=dict)  # initial protocol.GatewayConfig fields

    def __post_init__(self) -> None:
        for name in ("site", "gateway"):
            v = getattr(self, name)
            if not protocol.is_identifier(v):
                msg = f"{name}: {v!r} is not an identifier (letters, digits, _ . : -; at most 64)"
                raise ValueError(msg)

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


def newer_remote_config(payload: bytes, current: protocol.GatewayConfig) -> protocol.GatewayConfig:
    """The config a pushed ``payload`` asks for, given the ``current`` one; raises ProtocolError
    when it is invalid or older. A config of thresholds only (no sensors) keeps the current
    sensors (the gateway file's or the last config's)."""
    cfg = parse_remote_config(payload)
    if cfg.revision < current.revision:
        raise protocol.ProtocolError(
            "revision", f"{cfg.revision} is older than the applied revision {current.revision}"
        )
    if not cfg.sensors and current.sensors:
        cfg = msgspec.structs.replace(cfg, sensors=current.sensors)
    return cfg


def refusal(payload: bytes, exc: protocol.ProtocolError) -> str:
    """``status.config_error``: the refused revision (when readable) and what was wrong."""
    try:
        revision = msgspec.json.decode(payload).get("revision")
    except (msgspec.DecodeError, AttributeError, RecursionError):
        revision = None
    prefix = f"revision {revision}: " if isinstance(revision, int) else ""
    return f"{prefix}{exc.field}: {exc.reason}"[:500]


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
    out = msgspec.structs.replace(gw.outbox, path=_resolve(base, gw.outbox.path))
    broker = msgspec.structs.replace(
        gw.broker, **{k: _resolve(base, getattr(gw.broker, k)) for k in ("ca_file", "cert_file", "key_file")}
    )
    for key in ("ca_file", "cert_file", "key_file"):  # `edge check` says so, not a traceback at run
        file = getattr(broker, key)
        if file is not None and not (file.is_file() and os.access(file, os.R_OK)):
            msg = f"{p}: broker.{key}: {file} is not a readable file"
            raise GatewayConfigError(msg)
    return msgspec.structs.replace(gw, outbox=out, broker=broker)


def build_gateway_file(raw: dict[str, Any], source: str = "gateway config") -> GatewayFile:
    """Validate a mapping (as read from TOML); one readable line per problem on failure."""
    raw = dict(raw)
    try:
        tables = raw.get("drivers", [])
        if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
            msg = "drivers: must be a list of [[drivers]] tables"
            raise ValueError(msg)
        entries: list[DriverEntry] = []
        for i, table in enumerate(tables):
            try:
                entries.append(DriverEntry.from_table(table))
            except ValueError as exc:
                msg = f"drivers.{i}.{exc}"
                raise ValueError(msg) from None
        raw["drivers"] = []
        gw = msgspec.convert(raw, GatewayFile, dec_hook=_dec_hook)
        gw = msgspec.structs.replace(gw, drivers=entries)
        gw.initial_config()
    except (msgspec.ValidationError, ValueError) as exc:
        if isinstance(exc, protocol.ProtocolError):
            msg = f"{source}: config/sensors {exc}"
            raise GatewayConfigError(msg) from None
        msg = f"{source}: {problem(exc)}"
        raise GatewayConfigError(msg) from None
    return gw


def problem(exc: Exception) -> str:
    """msgspec's "Expected ... - at `$.broker.url`" as "broker.url: Expected ..." (one line)."""
    text = str(exc).replace("\n", " ")
    if " - at `$" not in text:
        return text
    what, _, where = text.rpartition(" - at `$")
    path = where.rstrip("`").lstrip(".").replace("[", ".").replace("]", "")
    field, sep, rest = what.partition(": ")
    if sep and field.isidentifier() and path:  # raised by a __post_init__ about one of its fields
        return f"{path}.{field}: {rest}"
    return f"{path}: {what}" if path else what


def _dec_hook(kind: type, obj: Any) -> Any:
    if kind is Path and isinstance(obj, str):
        return Path(obj)
    msg = f"Expected `{getattr(kind, '__name__', kind)}`, got `{type(obj).__name__}`"
    raise ValueError(msg)


def _resolve(base: Path, p: Path | None) -> Path | None:
    if p is None or p.is_absolute():
        return p
    return base / p
