"""Wire protocol v1: topics and payloads between gateways and the platform.

The single place that encodes, decodes and validates MQTT payloads. It sits on the ingest hot
path, so decoding and validation happen in one pass with ``msgspec`` typed structs (measured
against stdlib json and orjson in ``bench/protocol.py``; see ``docs/performance.md``).
Every rejection is a :class:`ProtocolError` that names the field and the reason.

``docs/protocol.md`` is the public description; ``docs/schemas/*.json`` are generated from the
structs below by ``python -m eldercare.protocol --write-schemas docs/schemas``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeAlias

import msgspec

VERSION = 1
DEFAULT_ROOT = "eldercare/v1"
MAX_READINGS = 10_000

# Identifiers: sites, gateways, sensors, residents. Safe in MQTT topics and SQL text columns.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
Ident = Annotated[str, msgspec.Meta(pattern=ID_PATTERN, description="identifier, 1-64 chars")]
Epoch = Annotated[
    str, msgspec.Meta(pattern=r"^[A-Za-z0-9-]{8,64}$", description="random id of the gateway's outbox")
]
Seq = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1, description="message counter, +1 per message")]
# 2001-09-09 .. 2100-01-01: anything outside is certainly a broken clock or seconds-for-ms.
TimeMs = Annotated[
    int, msgspec.Meta(ge=1_000_000_000_000, lt=4_102_444_800_000, description="ms since epoch, UTC")
]
Metric = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
Confidence = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]

METRICS: dict[str, str] = {
    "motion": "pir: 1.0 motion seen",
    "contact": "door: 1.0 opened, 0.0 closed",
    "in_bed": "bed: 1.0 in bed, 0.0 out",
    "power": "plug: watts",
    "press": "sos: 1.0 pressed",
    "temperature": "env: degrees Celsius",
    "humidity": "env: relative humidity 0..100",
    "heart_rate": "wearable/vitals: beats per minute",
    "spo2": "vitals: oxygen saturation 0..100",
    "systolic": "vitals: mmHg",
    "diastolic": "vitals: mmHg",
    "steps": "wearable: steps since the previous reading",
    "acc_x": "wearable raw stream: g",
    "acc_y": "wearable raw stream: g",
    "acc_z": "wearable raw stream: g",
    "battery": "any battery device: 0..1",
    "rssi": "radio: dBm",
    "heartbeat": "gateway itself: seconds since the agent started",
}

EventKind: TypeAlias = Literal[
    "fall",  # edge detector, after the check-in window ran out
    "fall_cancelled",  # the resident answered the check-in; reported, never an alert
    "sos",  # button pressed
    "vitals",  # a vital sign outside the configured range
    "low_battery",
    "bed_exit",
    "clock_error",  # the gateway's clock is obviously wrong; readings held back
    "config_rejected",  # a pushed config failed validation; the old one is kept
]
EVENT_KINDS: tuple[str, ...] = EventKind.__args__  # type: ignore[attr-defined]


# Inside a reading the identifier patterns are checked once per distinct name by ``decode``,
# not once per reading by msgspec: a 50-reading message has a handful of distinct names, and
# per-reading regex checks tripled the decode cost (bench/protocol.py).
METRIC_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"
ReadingSensor = Annotated[
    str, msgspec.Meta(min_length=1, max_length=64, description=f"identifier matching {ID_PATTERN}")
]
ReadingMetric = Annotated[
    str, msgspec.Meta(min_length=1, max_length=32, description=f"metric name matching {METRIC_PATTERN}")
]


class Reading(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One measurement of one sensor."""

    t: TimeMs
    sensor: ReadingSensor
    metric: ReadingMetric
    value: Annotated[float, msgspec.Meta(ge=-1e15, le=1e15, description="finite number")]


class Telemetry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A batch of readings: ``eldercare/v1/{site}/{gateway}/telemetry``."""

    v: Literal[1]
    epoch: Epoch
    seq: Seq
    readings: Annotated[list[Reading], msgspec.Meta(min_length=1, max_length=MAX_READINGS)]


class Event(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Something that happened, detected at the edge: ``.../event``."""

    v: Literal[1]
    epoch: Epoch
    seq: Seq
    t: TimeMs
    sensor: Ident
    kind: EventKind
    confidence: Confidence = 1.0
    resident: Ident | None = None
    evidence: dict[str, Any] = msgspec.field(default_factory=dict)


class SensorStatus(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """Health of one sensor as the gateway sees it; unknown keys are allowed for vendors."""

    battery: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] | None = None
    last_seen: TimeMs | None = None
    online: bool = True


class Status(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Gateway presence, retained: ``.../status``; also the Last Will with state offline."""

    v: Literal[1]
    t: TimeMs
    state: Literal["online", "offline"]
    sensors: dict[Ident, SensorStatus] = msgspec.field(default_factory=dict)
    version: str | None = None
    clock_ok: bool = True
    outbox: dict[str, int] = msgspec.field(default_factory=dict)


class SensorConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One sensor behind a gateway, as the platform configures it."""

    id: Ident
    kind: Literal["wearable", "pir", "door", "bed", "plug", "sos", "env", "vitals"]
    room: str | None = None
    resident: Ident | None = None
    sample_hz: Annotated[float, msgspec.Meta(gt=0, le=200)] | None = None


class GatewayConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Settings pushed to a gateway, retained: ``.../config`` (down)."""

    v: Literal[1]
    revision: Annotated[int, msgspec.Meta(ge=0)]
    sensors: list[SensorConfig] = msgspec.field(default_factory=list)
    telemetry_batch_max: Annotated[int, msgspec.Meta(ge=1, le=MAX_READINGS)] = 50
    telemetry_batch_ms: Annotated[int, msgspec.Meta(ge=10, le=60_000)] = 1000
    heartbeat_s: Annotated[int, msgspec.Meta(ge=5, le=3600)] = 60
    stream_raw_acc: bool = False
    fall_threshold: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 0.5
    checkin_window_s: Annotated[int, msgspec.Meta(ge=0, le=600)] = 30
    vitals_ranges: dict[Metric, tuple[float, float]] = msgspec.field(default_factory=dict)


Payload: TypeAlias = Telemetry | Event | Status | GatewayConfig
KINDS: dict[str, type[Payload]] = {
    "telemetry": Telemetry,
    "event": Event,
    "status": Status,
    "config": GatewayConfig,
}
TopicKind: TypeAlias = Literal["telemetry", "event", "status", "config"]


class ProtocolError(ValueError):
    """A payload or topic that does not follow wire protocol v1."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


_ID_RE = re.compile(ID_PATTERN)
_DECODERS = {kind: msgspec.json.Decoder(cls) for kind, cls in KINDS.items()}
_ENCODER = msgspec.json.Encoder()
_AT = re.compile(r"^(?P<reason>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)


def _to_protocol_error(exc: msgspec.MsgspecError) -> ProtocolError:
    m = _AT.match(str(exc))
    assert m is not None  # the pattern matches any string
    path = (m.group("path") or "").lstrip(".")
    if isinstance(exc, msgspec.DecodeError) and not isinstance(exc, msgspec.ValidationError):
        return ProtocolError("$", f"not valid JSON: {m.group('reason')}")
    return ProtocolError(path or "$", m.group("reason"))


def decode(kind: str, data: bytes | bytearray | memoryview | str) -> Payload:
    """Decode and validate one payload of the given topic kind, or raise :class:`ProtocolError`."""
    decoder = _DECODERS.get(kind)
    if decoder is None:
        raise ProtocolError("topic", f"unknown message kind {kind!r}")
    try:
        msg = decoder.decode(data)
    except msgspec.MsgspecError as exc:
        raise _to_protocol_error(exc) from None
    if isinstance(msg, Telemetry):
        _check_readings(msg.readings)
    return msg


_GOOD_SENSORS: set[str] = set()  # names already seen to match their pattern (bounded)
_GOOD_METRICS: set[str] = set()
_METRIC_RE = re.compile(METRIC_PATTERN)


def _check_readings(readings: list[Reading]) -> None:
    sensors = {r.sensor for r in readings}
    metrics = {r.metric for r in readings}
    if sensors <= _GOOD_SENSORS and metrics <= _GOOD_METRICS:
        return
    checks = (("sensor", sensors, _GOOD_SENSORS, _ID_RE), ("metric", metrics, _GOOD_METRICS, _METRIC_RE))
    for field, names, good, pattern in checks:
        for name in names - good:
            if not pattern.match(name):
                i = next(i for i, r in enumerate(readings) if getattr(r, field) == name)
                raise ProtocolError(f"readings[{i}].{field}", f"{name!r} does not match {pattern.pattern}")
        if len(good) > 100_000:
            good.clear()
        good |= names


# Topics -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TopicParts:
    site: str
    gateway: str
    kind: TopicKind


def topic(site: str, gateway: str, kind: TopicKind, root: str = DEFAULT_ROOT) -> str:
    """``{root}/{site}/{gateway}/{kind}``, e.g. ``eldercare/v1/home-001/gw-001/telemetry``."""
    for name, value in (("site", site), ("gateway", gateway)):
        if not _ID_RE.match(value):
            raise ProtocolError(name, f"{value!r} is not a valid identifier")
    return f"{root}/{site}/{gateway}/{kind}"


def parse_topic(name: str, root: str = DEFAULT_ROOT) -> TopicParts:
    """Split a topic into site, gateway and kind, rejecting anything outside ``root``."""
    prefix = root + "/"
    if not name.startswith(prefix):
        raise ProtocolError("topic", f"{name!r} is not under {root}/")
    parts = name[len(prefix) :].split("/")
    if len(parts) != 3:
        raise ProtocolError("topic", f"{name!r} is not {root}/<site>/<gateway>/<kind>")
    site, gateway, kind = parts
    if kind not in KINDS:
        raise ProtocolError("topic", f"unknown message kind {kind!r}")
    for field, value in (("site", site), ("gateway", gateway)):
        if not _ID_RE.match(value):
            raise ProtocolError(f"topic.{field}", f"{value!r} is not a valid identifier")
    return TopicParts(site, gateway, kind)  # type: ignore[arg-type]


def subscription(kind: str, root: str = DEFAULT_ROOT, shared_group: str | None = None) -> str:
    """Wildcard subscription for one kind, optionally as an MQTT v5 shared subscription."""
    sub = f"{root}/+/+/{kind}"
    return f"$share/{shared_group}/{sub}" if shared_group else sub


# JSON Schemas -----------------------------------------------------------------------------


def json_schemas() -> dict[str, dict[str, Any]]:
    """One JSON Schema per payload kind, generated from the structs above."""
    out = {}
    for kind, cls in KINDS.items():
        schema = msgspec.json.schema(cls)
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"https://eldercare.example/schemas/v1/{kind}.json"
        schema["title"] = f"eldercare wire protocol v1: {kind}"
        out[kind] = schema
    return out


def _main() -> None:
    import argparse
    import json
    from pathlib import Path

    parser = argparse.ArgumentParser(description="Write the protocol's JSON Schemas.")
    parser.add_argument("--write-schemas", type=Path, required=True)
    args = parser.parse_args()
    args.write_schemas.mkdir(parents=True, exist_ok=True)
    for kind, schema in json_schemas().items():
        path = args.write_schemas / f"{kind}.schema.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        print(path)


if __name__ == "__main__":
    _main()
