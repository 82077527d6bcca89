"""Wire protocol v1: topics and payloads between gateways and the platform.

The single place that encodes, decodes and validates MQTT payloads. It sits on the ingest hot
path, so decoding and validation happen in one pass with ``msgspec`` typed structs (measured
against stdlib json, orjson with hand validation and pydantic in ``bench/protocol.py``; see
``docs/performance.md``). Every rejection is a :class:`ProtocolError` that names the field and
the reason.

``docs/protocol.md`` is the public description; ``docs/schemas/*.json`` are generated from the
structs below by ``python -m eldercare.protocol --write-schemas docs/schemas`` (so the field
descriptions here are what device makers read).
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeAlias

import msgspec

VERSION = 1
DEFAULT_ROOT = "eldercare/v1"
MAX_READINGS = 10_000
MAX_PAYLOAD_BYTES = 262_144  # the platform's default limit (Settings: ingest max payload bytes)

# Identifiers: sites, gateways, sensors, residents. Safe in MQTT topics and SQL text columns.
# The patterns are written for JSON Schema (ECMA-262, where ``$`` is the end of the string);
# Python's ``$`` also matches before a final newline, so Python checks use ``\Z`` (see _py).
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
METRIC_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"
EPOCH_PATTERN = r"^[A-Za-z0-9-]{8,64}$"
T_MIN_MS = 1_000_000_000_000  # 2001-09-09: anything earlier is a broken clock or seconds-for-ms
T_MAX_MS = 4_102_444_800_000  # 2100-01-01 (exclusive)
VALUE_LIMIT = 1e15
# Evidence is any JSON, nested at most this deep (arrays and objects inside ``evidence``): deeper
# documents are refused with this reason rather than left to whichever parser's stack gives out first.
MAX_EVIDENCE_DEPTH = 32


def _py(pattern: str) -> str:
    """The Python form of a schema pattern: a final ``$`` becomes ``\\Z`` (no trailing newline)."""
    return pattern[:-1] + r"\Z" if pattern.endswith("$") else pattern


def _text(pattern: str, description: str, examples: list[str]) -> msgspec.Meta:
    """A string pattern checked by msgspec in Python form (json_schemas() shows the portable form)."""
    return msgspec.Meta(pattern=_py(pattern), description=description, examples=examples)


Ident = Annotated[
    str,
    _text(
        ID_PATTERN,
        "Identifier (site, gateway, sensor, resident): 1-64 characters, letters, digits and _ . : -, "
        "starting with a letter or digit. Case-sensitive.",
        ["home-0001", "gw-0001", "pir-kitchen", "res-0042"],
    ),
]
Epoch = Annotated[
    str,
    _text(
        EPOCH_PATTERN,
        "Random id the gateway creates together with its outbox (e.g. 16 hex digits). A wiped or "
        "replaced gateway starts a new epoch; (gateway, epoch, seq) identifies a message.",
        ["3f9c2a7be41d0c55"],
    ),
]
Seq = Annotated[
    int,
    msgspec.Meta(
        ge=0,
        le=2**63 - 1,
        description="Message counter: +1 for every telemetry or event message within an epoch; "
        "stored on disk so it survives restarts. A redelivered message keeps its seq.",
        examples=[1042],
    ),
]
Low = Annotated[
    int,
    msgspec.Meta(
        ge=0,
        le=2**63 - 1,
        description="Optional (end-to-end acknowledgement): the gateway's outbox low-water mark when "
        "the message was sealed. Every message of this epoch with a seq below it has been "
        "acknowledged to the gateway or will never be sent (again), e.g. shed: the platform's "
        "acknowledgement may pass it. At most the message's own seq.",
        examples=[1040],
    ),
]
TimeMs = Annotated[
    int,
    msgspec.Meta(
        ge=T_MIN_MS,
        lt=T_MAX_MS,
        description="Integer milliseconds since the Unix epoch, UTC, from the gateway's clock "
        "(2001-09-09 .. 2099-12-31). Never stamp with a clock known to be wrong.",
        examples=[1767225600000],
    ),
]
Metric = Annotated[
    str,
    _text(METRIC_PATTERN, "Metric name: lower-case letters, digits and _, 1-32 characters.", ["heart_rate"]),
]
# A config revision is a 32-bit integer, as the platform stores it (the config it publishes and the
# revision a gateway's status reports): a status naming 2^31 was refused by the database, not by the
# protocol, and every batch it was in was written again one message at a time.
REVISION_MAX = 2**31 - 1
Confidence = Annotated[
    float,
    msgspec.Meta(ge=0.0, le=1.0, description="How sure the detector is, 0..1.", examples=[0.93]),
]
Version = Annotated[Literal[1], msgspec.Meta(description="Protocol version: always 1 in v1.")]

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
SENSOR_KINDS: tuple[str, ...] = ("wearable", "pir", "door", "bed", "plug", "sos", "env", "vitals")


# Inside a reading the identifier patterns are checked once per distinct name by ``decode``,
# not once per reading by msgspec: a 50-reading message has a handful of distinct names, and
# per-reading regex checks tripled the decode cost (bench/protocol.py). The schema still shows
# the patterns (extra_json_schema), so device makers see one rule.
ReadingSensor = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=64,
        description="Sensor id (identifier pattern). The gateway's own id for gateway metrics "
        "such as heartbeat.",
        examples=["pir-kitchen"],
        extra_json_schema={"pattern": ID_PATTERN},
    ),
]
ReadingMetric = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=32,
        description="What was measured. Known metrics (unit or meaning): "
        + "; ".join(f"{k} ({v})" for k, v in METRICS.items())
        + ". Other names matching the pattern are stored but not interpreted.",
        examples=["motion"],
        extra_json_schema={"pattern": METRIC_PATTERN},
    ),
]


class Reading(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """One measurement of one sensor at one time."""

    t: TimeMs
    sensor: ReadingSensor
    metric: ReadingMetric
    value: Annotated[
        float,
        msgspec.Meta(
            ge=-VALUE_LIMIT,
            le=VALUE_LIMIT,
            description="The measurement in the metric's unit: a finite JSON number (integers "
            "allowed), |value| <= 1e15. NaN and Infinity are not JSON and are rejected.",
            examples=[1.0],
        ),
    ]


class Telemetry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A batch of readings, sent up on ``eldercare/v1/{site}/{gateway}/telemetry`` with QoS 1."""

    v: Version
    epoch: Epoch
    seq: Seq
    readings: Annotated[
        list[Reading],
        msgspec.Meta(
            min_length=1,
            max_length=MAX_READINGS,
            description="1 to 10,000 readings, in any order; the whole payload must stay under "
            "the platform's size limit (256 KiB by default).",
        ),
    ]
    low: Low | None = None


class Event(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Something detected at the edge, sent up on ``.../event`` with QoS 1."""

    v: Version
    epoch: Epoch
    seq: Seq
    t: Annotated[TimeMs, msgspec.Meta(description="When it happened (for a fall: the impact).")]
    sensor: Annotated[
        Ident,
        msgspec.Meta(description="The sensor it concerns; the gateway's own id for gateway events."),
    ]
    kind: Annotated[
        EventKind,
        msgspec.Meta(
            description="What happened: fall (the edge detector's fall, check-in not answered); "
            "fall_cancelled (the resident answered the check-in; never an alert); sos (button "
            "pressed); vitals (a reading outside the configured vitals_ranges); low_battery; "
            "bed_exit; clock_error (the gateway's clock is wrong, readings held back); "
            "config_rejected (a pushed config failed validation, the old one is kept)."
        ),
    ]
    confidence: Confidence = 1.0
    resident: Annotated[
        Ident | None, msgspec.Meta(description="The resident it concerns, when the gateway knows.")
    ] = None
    evidence: Annotated[
        dict[str, Any],
        msgspec.Meta(
            description="Free-form details by kind, any JSON object nested at most "
            f"{MAX_EVIDENCE_DEPTH} levels deep, e.g. the raw accelerometer window of a fall "
            '{"t0": ms, "hz": 50, "unit": "mg", "x": [...], "y": [...], "z": [...]}.'
        ),
    ] = msgspec.field(default_factory=dict)
    low: Low | None = None


class SensorStatus(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """Health of one sensor as the gateway sees it; other keys are allowed (and ignored)."""

    battery: (
        Annotated[float, msgspec.Meta(ge=0.0, le=1.0, description="Battery charge, 0..1.", examples=[0.81])]
        | None
    ) = None
    last_seen: Annotated[TimeMs | None, msgspec.Meta(description="Last time the sensor was heard.")] = None
    online: Annotated[bool, msgspec.Meta(description="False when the gateway lost the sensor.")] = True
    via: Annotated[
        Ident | None,
        msgspec.Meta(
            description="The sensor id of the bridge (e.g. a zigbee2mqtt coordinator) this sensor is "
            "reached through. While that bridge is offline its sensors are offline too, and the "
            "platform raises one device_offline alert for the bridge, not one per sensor."
        ),
    ] = None
    wear: Annotated[
        Literal["worn", "not_worn"] | None,
        msgspec.Meta(
            description="Wearables only: not_worn while the device lies still as a table (taken off and "
            "put down: ~1 g, no breathing or pulse micro-motion) for a minute; worn as soon as it moves "
            "like a device on a body again; absent or null when unknown."
        ),
    ] = None
    not_worn_since: Annotated[
        TimeMs | None,
        msgspec.Meta(description="With wear not_worn: since when the device has been lying still."),
    ] = None


class Status(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Gateway presence on ``.../status``, QoS 1, retained; also the Last Will with state offline."""

    v: Version
    t: Annotated[TimeMs, msgspec.Meta(description="When the status was composed (for the Will: at connect).")]
    state: Annotated[Literal["online", "offline"], msgspec.Meta(description="online, or offline (Will).")]
    sensors: Annotated[dict[Ident, SensorStatus], msgspec.Meta(description="Health per sensor id.")] = (
        msgspec.field(default_factory=dict)
    )
    version: (
        Annotated[
            str, msgspec.Meta(max_length=64, description="Gateway software version.", examples=["1.4.2"])
        ]
        | None
    ) = None
    clock_ok: Annotated[bool, msgspec.Meta(description="False while the gateway distrusts its clock.")] = True
    outbox: Annotated[
        dict[str, Annotated[int, msgspec.Meta(ge=0)]],
        msgspec.Meta(
            description="Counters of the gateway's outbox, e.g. messages, pending_readings, "
            "shed_messages, next_seq (non-negative integers)."
        ),
    ] = msgspec.field(default_factory=dict)
    config_revision: Annotated[
        Annotated[int, msgspec.Meta(ge=0, le=REVISION_MAX)] | None,
        msgspec.Meta(description="Revision of the remote config in force (0: the gateway's own file)."),
    ] = None
    config_error: Annotated[
        Annotated[str, msgspec.Meta(max_length=500)] | None,
        msgspec.Meta(
            description="Why the last config pushed to the gateway was refused (the old one is kept); "
            "null once a newer config is applied."
        ),
    ] = None


class SensorConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One sensor behind a gateway, as the platform configures it."""

    id: Ident
    kind: Annotated[
        Literal["wearable", "pir", "door", "bed", "plug", "sos", "env", "vitals"],
        msgspec.Meta(description="Kind of device (see the domain table)."),
    ]
    room: (
        Annotated[
            str, msgspec.Meta(max_length=64, description="Room of a fixed sensor.", examples=["kitchen"])
        ]
        | None
    ) = None
    resident: Annotated[Ident | None, msgspec.Meta(description="Wearer of a wearable.")] = None
    sample_hz: (
        Annotated[float, msgspec.Meta(gt=0, le=200, description="Sampling rate, 0 < Hz <= 200.")] | None
    ) = None


class GatewayConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Settings pushed down to a gateway on ``.../config``, QoS 1, retained.

    A gateway applies a config whose revision is not older than the one it runs; a config that
    fails validation is rejected with a ``config_rejected`` event and the old one is kept.
    """

    v: Version
    revision: Annotated[
        int,
        msgspec.Meta(
            ge=0,
            le=REVISION_MAX,
            description="Increases with every change; an older revision than the applied one is rejected.",
        ),
    ]
    sensors: Annotated[
        list[SensorConfig], msgspec.Meta(description="Sensors behind the gateway; ids must be unique.")
    ] = msgspec.field(default_factory=list)
    telemetry_batch_max: Annotated[
        int,
        msgspec.Meta(ge=1, le=MAX_READINGS, description="Send a telemetry message at this many readings."),
    ] = 50
    telemetry_batch_ms: Annotated[
        int,
        msgspec.Meta(ge=10, le=60_000, description="...or when the oldest unsent reading is this old (ms)."),
    ] = 1000
    heartbeat_s: Annotated[
        int, msgspec.Meta(ge=5, le=3600, description="Seconds between heartbeat readings.")
    ] = 60
    stream_raw_acc: Annotated[
        bool, msgspec.Meta(description="Also send raw accelerometer samples as acc_x/acc_y/acc_z readings.")
    ] = False
    fall_threshold: Annotated[
        float,
        msgspec.Meta(ge=0.0, le=1.0, description="Edge fall detector confidence that starts a check-in."),
    ] = 0.5
    checkin_window_s: Annotated[
        int,
        msgspec.Meta(
            ge=0,
            le=600,
            description="Seconds the resident has to cancel a suspected fall (0: report at once).",
        ),
    ] = 30
    vitals_ranges: Annotated[
        dict[Metric, Annotated[tuple[float, float], msgspec.Meta(description="[low, high], low < high")]],
        msgspec.Meta(
            description="Per metric, the normal [low, high] range; a reading outside it raises a "
            "vitals event.",
            examples=[{"heart_rate": [40, 120], "spo2": [92, 100]}],
        ),
    ] = msgspec.field(default_factory=dict)


class Ack(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What the platform has stored, sent down on ``.../ack`` with QoS 1, retained (optional).

    Every telemetry and event message of ``epoch`` with a seq up to and including ``seq`` is
    stored (or, refused, kept as a dead letter): the gateway may delete those from its outbox.
    """

    v: Version
    epoch: Epoch
    seq: Annotated[Seq, msgspec.Meta(description="Every message of the epoch with seq <= this is stored.")]


Payload: TypeAlias = Telemetry | Event | Status | GatewayConfig | Ack
KINDS: dict[str, type[Payload]] = {
    "telemetry": Telemetry,
    "event": Event,
    "status": Status,
    "config": GatewayConfig,
    "ack": Ack,
}
TopicKind: TypeAlias = Literal["telemetry", "event", "status", "config", "ack"]


class ProtocolError(ValueError):
    """A payload or topic that does not follow wire protocol v1."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


_ID_RE = re.compile(_py(ID_PATTERN))
_METRIC_RE = re.compile(_py(METRIC_PATTERN))
_DECODERS = {kind: msgspec.json.Decoder(cls) for kind, cls in KINDS.items()}
_ENCODER = msgspec.json.Encoder()
_AT = re.compile(r"^(?P<reason>.*?)(?: - at `(?P<key>key` in `)?\$(?P<path>[^`]*)`)?$", re.S)
_MISSING = re.compile(r"^Object missing required field `(?P<name>.*)`$", re.S)
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<name>.*)`$", re.S)


_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _join(path: str, name: str) -> str:
    """``path.name``, or ``path["odd name"]`` when the name is empty or not a plain word."""
    if not _PLAIN_NAME.match(name):
        return f"{path or '$'}[{msgspec.json.encode(name).decode()}]"
    return f"{path}.{name}" if path else name


def _to_protocol_error(exc: msgspec.MsgspecError) -> ProtocolError:
    m = _AT.match(str(exc))
    assert m is not None  # the pattern matches any string
    reason, path = m.group("reason"), (m.group("path") or "").lstrip(".")
    reason = reason.replace("\\\\Z'", "$'")  # patterns as documented (msgspec shows the Python form)
    if not isinstance(exc, msgspec.ValidationError):
        return ProtocolError("$", f"not valid JSON: {reason}")
    if m.group("key"):
        return ProtocolError(path or "$", f"bad key: {reason}")
    if mm := _MISSING.match(reason):
        return ProtocolError(_join(path, mm.group("name")), "missing required field")
    if mm := _UNKNOWN.match(reason):
        return ProtocolError(_join(path, mm.group("name")), "unknown field (not in protocol v1)")
    if path == "v":
        return ProtocolError("v", f"unsupported protocol version: this platform speaks v1 ({reason})")
    if path == "kind" and reason.startswith("Invalid enum value"):
        return ProtocolError("kind", f"{reason}; known kinds: {', '.join(EVENT_KINDS)}")
    return ProtocolError(path or "$", reason)


def decode(kind: str, data: bytes | bytearray | memoryview | str) -> Payload:
    """Decode and validate one payload of the given topic kind, or raise :class:`ProtocolError`."""
    decoder = _DECODERS.get(kind)
    if decoder is None:
        raise ProtocolError("topic", f"unknown message kind {kind!r}")
    try:
        msg = decoder.decode(data)
    except msgspec.MsgspecError as exc:
        if not isinstance(exc, msgspec.ValidationError) and "UTF-8" in str(exc):  # msgspec >= 0.23
            raise ProtocolError("$", f"not valid UTF-8 in a string: {exc}") from None
        if not isinstance(exc, msgspec.ValidationError) and (lone := _lone_surrogate(data)):
            raise lone from None  # msgspec reports these as "truncated" or "malformed"
        raise _to_protocol_error(exc) from None
    except UnicodeDecodeError as exc:  # msgspec < 0.23 checks it with Python's codec
        raise ProtocolError("$", f"not valid UTF-8 in a string: {exc.reason}") from None
    except RecursionError:
        raise _too_deep(data) from None
    if isinstance(msg, Telemetry):
        _check_readings(msg.readings)
        _check_low(msg.low, msg.seq)
    elif isinstance(msg, Event):
        if msg.evidence:
            _check_depth(msg.evidence)
        _check_low(msg.low, msg.seq)
        _check_nul(data)
    elif isinstance(msg, Status):
        _check_nul(data)
    elif isinstance(msg, GatewayConfig):
        _check_config(msg)
    return msg


def _check_nul(data: bytes | bytearray | memoryview | str) -> None:
    """A ``\\u0000`` in a free-form string (evidence, a status's version or vendor keys): the
    database cannot store it. Named here rather than left to the database's refusal, which names
    no field. Telemetry's strings all have patterns that exclude it already."""
    found = ("\\u0000" in data) if isinstance(data, str) else _NUL_ESCAPE.search(data)
    if not found:
        return
    try:
        doc = json.loads(bytes(data) if not isinstance(data, str) else data)
    except (ValueError, RecursionError):
        return  # the database's refusal names it then
    path = _string_path(doc, _has_nul)
    if path is not None:  # else only a literal backslash before "u0000"
        raise ProtocolError(
            path, "a NUL character (\\u0000) cannot be stored: strings and keys must not contain it"
        )


_NUL_ESCAPE = re.compile(rb"\\u0000")  # searched in the payload's buffer, never copied


def _has_nul(text: str) -> bool:
    return "\x00" in text


def _check_low(low: int | None, seq: int) -> None:
    """A low-water mark above the message's own seq would acknowledge the message unstored."""
    if low is not None and low > seq:
        raise ProtocolError("low", f"{low} is above the message's own seq {seq}; low <= seq")


_DEPTH_RULE = (
    f"nested more than {MAX_EVIDENCE_DEPTH} levels deep; evidence is any JSON nested at most "
    f"{MAX_EVIDENCE_DEPTH} levels (arrays and objects, the evidence object itself is level 1)"
)


def _check_depth(evidence: dict[str, Any]) -> None:
    """Evidence nested deeper than :data:`MAX_EVIDENCE_DEPTH` (the evidence object is level 1)."""
    stack: list[tuple[Any, int]] = [(evidence, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_EVIDENCE_DEPTH:
            raise ProtocolError("evidence", _DEPTH_RULE)
        children = node.values() if isinstance(node, dict) else node
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))


_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"\s*:?|[\[\]{}]')


def _too_deep(data: bytes | bytearray | memoryview | str) -> ProtocolError:
    """The parser's stack gave out: name the top-level field holding the deep part."""
    raw = data.encode("utf-8", "replace") if isinstance(data, str) else bytes(data)
    depth, key = 0, "$"
    for m in _TOKEN.finditer(raw):
        tok = m.group()
        if tok[:1] == b'"':
            if depth == 1 and tok.endswith(b":"):
                key = tok[1 : tok.rindex(b'"')].decode("utf-8", "replace")
        elif tok in b"[{":
            depth += 1
            if depth > MAX_EVIDENCE_DEPTH + 1:
                break
        else:
            depth -= 1
    return ProtocolError(key, _DEPTH_RULE)


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _surrogate_path(doc: Any) -> str | None:
    """Path of the first key or string holding a lone surrogate, or None."""
    return _string_path(doc, _has_surrogate)


def _string_path(doc: Any, bad: Callable[[str], bool]) -> str | None:
    """Path of the first key or string that is ``bad``, or None."""
    stack: list[tuple[str, Any]] = [("", doc)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, str) and bad(node):
            return path or "$"
        if isinstance(node, dict):
            for k, v in reversed(node.items()):
                if bad(k):
                    return f"{path or '$'}[{json.dumps(k)}]"
                stack.append((_join(path, k), v))
        elif isinstance(node, list):
            stack.extend((f"{path}[{i}]", node[i]) for i in reversed(range(len(node))))
    return None


def _lone_surrogate(data: bytes | bytearray | memoryview | str) -> ProtocolError | None:
    """Python's json decodes a lone ``\\ud800`` escape: find the field that holds one, if any."""
    try:
        doc = json.loads(bytes(data) if not isinstance(data, str) else data)
    except (ValueError, RecursionError):
        return None
    path = _surrogate_path(doc)
    if path is None:
        return None
    return ProtocolError(
        path,
        "a lone UTF-16 surrogate escape (\\ud800-\\udfff without its pair) is not a character; "
        "JSON strings must be valid Unicode (RFC 8259 section 8.2)",
    )


def decode_telemetry(data: bytes | bytearray | memoryview | str) -> Telemetry:
    """:func:`decode` for ``telemetry`` with its precise type."""
    return decode("telemetry", data)  # type: ignore[return-value]


def decode_event(data: bytes | bytearray | memoryview | str) -> Event:
    """:func:`decode` for ``event`` with its precise type."""
    return decode("event", data)  # type: ignore[return-value]


def decode_status(data: bytes | bytearray | memoryview | str) -> Status:
    """:func:`decode` for ``status`` with its precise type."""
    return decode("status", data)  # type: ignore[return-value]


def decode_config(data: bytes | bytearray | memoryview | str) -> GatewayConfig:
    """:func:`decode` for ``config`` with its precise type."""
    return decode("config", data)  # type: ignore[return-value]


def encode(msg: Payload) -> bytes:
    """Compact JSON for one payload (fields at their defaults are written too).

    Structs built in Python are not validated; decode what you encoded in tests.
    """
    return _ENCODER.encode(msg)


def is_identifier(value: str) -> bool:
    """True if ``value`` is a valid site, gateway, sensor or resident id."""
    return _ID_RE.match(value) is not None


def is_metric(value: str) -> bool:
    """True if ``value`` is a valid reading metric name."""
    return _METRIC_RE.match(value) is not None


_GOOD_SENSORS: set[str] = set()  # names already seen to match their pattern (bounded)
_GOOD_METRICS: set[str] = set()


def _check_readings(readings: list[Reading]) -> None:
    good_sensors, good_metrics = _GOOD_SENSORS, _GOOD_METRICS
    for r in readings:  # fast path: every name seen before (a plain loop beat two set builds)
        if r.sensor not in good_sensors or r.metric not in good_metrics:
            break
    else:
        return
    sensors = {r.sensor for r in readings}
    metrics = {r.metric for r in readings}
    checks = (
        ("sensor", sensors, _GOOD_SENSORS, _ID_RE, ID_PATTERN),
        ("metric", metrics, _GOOD_METRICS, _METRIC_RE, METRIC_PATTERN),
    )
    for field, names, good, regex, pattern in checks:
        for name in names - good:
            if not regex.match(name):
                i = next(i for i, r in enumerate(readings) if getattr(r, field) == name)
                raise ProtocolError(f"readings[{i}].{field}", f"{name!r} does not match {pattern}")
        if len(good) > 100_000:
            good.clear()
        good |= names


def _check_config(cfg: GatewayConfig) -> None:
    """What the schema cannot say: unique sensor ids, and low < high in every vitals range."""
    seen: set[str] = set()
    for i, s in enumerate(cfg.sensors):
        if s.id in seen:
            raise ProtocolError(f"sensors[{i}].id", f"duplicate sensor id {s.id!r}")
        seen.add(s.id)
    for metric, (low, high) in cfg.vitals_ranges.items():
        if not low < high:
            raise ProtocolError(f"vitals_ranges.{metric}", f"low {low} is not below high {high}")


@dataclass(frozen=True, slots=True)
class TopicParts:
    site: str
    gateway: str
    kind: TopicKind


def topic(site: str, gateway: str, kind: TopicKind, root: str = DEFAULT_ROOT) -> str:
    """``{root}/{site}/{gateway}/{kind}``, e.g. ``eldercare/v1/home-001/gw-001/telemetry``."""
    if kind not in KINDS:
        raise ProtocolError("kind", f"unknown message kind {kind!r}")
    for name, value in (("site", site), ("gateway", gateway)):
        if not _ID_RE.match(value):
            raise ProtocolError(name, f"{value!r} is not a valid identifier")
    return f"{root}/{site}/{gateway}/{kind}"


def parse_topic(name: str, root: str = DEFAULT_ROOT) -> TopicParts:
    """Split a topic into site, gateway and kind, rejecting anything outside ``root``."""
    prefix = root + "/"
    shape = f"topics are {root}/<site>/<gateway>/<{'|'.join(KINDS)}>"
    if not name.startswith(prefix):
        raise ProtocolError("topic", f"{name!r} is not under {root}/; {shape}")
    parts = name[len(prefix) :].split("/")
    if len(parts) != 3:
        raise ProtocolError("topic", f"{name!r} has {len(parts)} levels after {root}/, not 3; {shape}")
    site, gateway, kind = parts
    if kind not in KINDS:
        raise ProtocolError("topic", f"unknown message kind {kind!r} (kinds are lower-case); {shape}")
    for field, value in (("site", site), ("gateway", gateway)):
        if not _ID_RE.match(value):
            raise ProtocolError(f"topic.{field}", f"{value!r} is not a valid identifier")
    return TopicParts(site, gateway, kind)  # type: ignore[arg-type]


def subscription(kind: str, root: str = DEFAULT_ROOT, shared_group: str | None = None) -> str:
    """Wildcard subscription for one kind, optionally as an MQTT v5 shared subscription."""
    if kind not in KINDS:
        raise ProtocolError("kind", f"unknown message kind {kind!r}")
    return _shared(f"{root}/+/+/{kind}", shared_group)


def subscription_all(root: str = DEFAULT_ROOT, shared_group: str | None = None) -> str:
    """Everything under ``root`` (what ingest reads, so that no message on a wrong topic goes unseen)."""
    return _shared(f"{root}/#", shared_group)


def subscription_shape(pattern: str, shared_group: str | None = None) -> str:
    """Any topic filter (e.g. ``root/+/+/+/+/#``), optionally as an MQTT v5 shared subscription."""
    return _shared(pattern, shared_group)


def _shared(sub: str, shared_group: str | None) -> str:
    if shared_group is not None and not re.fullmatch(r"[^/+#]+", shared_group):
        raise ProtocolError("shared_group", f"{shared_group!r} must be non-empty without / + #")
    return f"$share/{shared_group}/{sub}" if shared_group else sub


# JSON Schemas -----------------------------------------------------------------------------


def _portable(node: Any) -> Any:
    """Patterns back in JSON Schema (ECMA-262) form: ``\\Z`` is Python-only, ``$`` means the same there.

    Descriptions from docstrings are dedented here (msgspec 0.23 does it itself, earlier versions
    did not), so the generated schemas are the same whichever msgspec is installed.
    """
    if isinstance(node, dict):
        out = {k: _portable(v) for k, v in node.items()}
        pattern = out.get("pattern")
        if isinstance(pattern, str) and pattern.endswith(r"\Z"):
            out["pattern"] = pattern[:-2] + "$"
        if isinstance(out.get("description"), str):
            out["description"] = inspect.cleandoc(out["description"])
        return out
    if isinstance(node, list):
        return [_portable(v) for v in node]
    return node


def json_schemas() -> dict[str, dict[str, Any]]:
    """One JSON Schema per payload kind, generated from the structs above."""
    out = {}
    for kind, cls in KINDS.items():
        schema = _portable(msgspec.json.schema(cls))
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"https://eldercare.example/schemas/v1/{kind}.schema.json"
        schema["title"] = f"eldercare wire protocol v1: {kind}"
        schema["description"] = (
            f"Payload of MQTT topic {DEFAULT_ROOT}/{{site}}/{{gateway}}/{kind}. "
            "Generated from eldercare/protocol.py; the full contract is docs/protocol.md."
        )
        out[kind] = schema
    return out


def _main() -> None:
    import argparse
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
