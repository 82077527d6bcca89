"""What ingest does to one message before the database: validate it and turn it into COPY rows.

Pure code, no I/O, so it can be tested and benchmarked alone. Readings become rows of PostgreSQL's
binary COPY format built with one ``struct.pack`` per reading: the timestamp is an integer
(microseconds since 2000-01-01) computed from the epoch milliseconds with a constant offset, so no
``datetime`` is ever built on the hot path (building them cost more than decoding the JSON;
``bench/ingest.py`` measures both ways). The text columns of a (gateway, sensor, metric) triple
are encoded once and cached, which is why the COPY column order puts them last.
"""

from __future__ import annotations

import hashlib
import struct
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec

from eldercare.protocol import (
    Event,
    ProtocolError,
    Reading,
    Status,
    Telemetry,
    TopicParts,
    decode,
    encode,
    parse_topic,
)

# PostgreSQL's binary timestamps count microseconds from 2000-01-01 00:00 UTC.
PG_EPOCH_MS = 946_684_800_000
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
COPY_TRAILER = struct.pack(">h", -1)
READING_COLUMNS = ("ts", "value", "gateway_id", "sensor_id", "metric")
_ROW_HEAD = struct.Struct(">hiqid")  # field count, ts (len, int8), value (len, float8)
_LEN = struct.Struct(">i")
DAY_MS = 86_400_000
FUTURE_TOLERANCE_MS = DAY_MS  # a gateway clock further ahead than this is broken, not skewed
MAX_TOPICS = 100_000  # parsed topics remembered per validator
STATUS_EPOCH = "~status-"  # never a real epoch ([A-Za-z0-9-]); status ids are (~status-<state>, key)


@dataclass(slots=True)
class Inbound:
    """One MQTT message as paho's thread handed it over."""

    topic: str
    payload: bytes
    mid: int = 0
    qos: int = 1
    generation: int = 0  # connection it arrived on: acks go only to the same connection
    received: float = field(default_factory=time.time)
    retain: bool = False  # a retained message the broker replays at every new subscription
    # when the main thread took it from the inbox, and put it in the open batch (the commit log's
    # stages of a message's time inside a worker; wall clock like ``received``)
    picked: float = 0.0
    added: float = 0.0


@dataclass(slots=True)
class Accepted:
    """A valid message; ``verified`` is False until its gateway is confirmed at that site."""

    inbound: Inbound
    kind: str
    site: str
    gateway: str
    epoch: str
    seq: int
    message: Telemetry | Event | Status
    verified: bool
    rows: bytes = b""
    n_rows: int = 0
    ts_lo: int = 0  # ms, for partitions on demand
    ts_hi: int = 0
    digest: int = 0  # length and CRC-32 of the contents: tells a conflicting duplicate from a redelivery
    alt_digest: int | None = None  # an event's digest as earlier versions took it (evidence unsorted)
    new_sensors: tuple[str, ...] = ()  # sensor ids this worker had not seen: checked against the registry


@dataclass(slots=True)
class Rejected:
    """A message for ``dead_letters``: kept with its reason, then acknowledged."""

    inbound: Inbound
    reason: str
    site: str | None = None
    gateway: str | None = None
    payload: bytes = b""
    dedup_key: str | None = None  # dead-lettered once only (a retained message comes back by itself)


@dataclass(slots=True)
class Ignored:
    """A message under the topic root that is normal but not data: acknowledged and counted."""

    inbound: Inbound
    why: str  # metric label: cleared, config, control
    reason: str


@dataclass(frozen=True, slots=True)
class Limits:
    """What ingest accepts besides the protocol: payload size and how old data may be."""

    max_payload_bytes: int = 262_144
    readings_days: int = 90
    events_days: int = 730
    future_ms: int = FUTURE_TOLERANCE_MS


class Registry:
    """Gateway -> site of the enabled gateways, as last read from ``gateways``.

    The store refreshes it: a ``NOTIFY gateway_registry`` makes it forget a gateway at once (it is
    read again before the next batch is written), and the worker reloads it all every
    ``ingest_registry_refresh_s`` as a fallback.
    """

    def __init__(self, sites: dict[str, str] | None = None, simulated: Iterable[str] = ()) -> None:
        self.sites: dict[str, str] = dict(sites or {})
        # simulated sites: their gateways run a simulator's clock (hours or days ahead of the wall at
        # 60x), so they are never refused as "ahead of ingest's clock"; real ones still are
        self.simulated: frozenset[str] = frozenset(simulated)
        self.loaded_at = 0.0

    def replace(self, sites: dict[str, str], simulated: Iterable[str] | None = None) -> None:
        self.sites = dict(sites)  # one reference swap: readers never see a half-built dict
        if simulated is not None:
            self.simulated = frozenset(simulated)
        self.loaded_at = time.monotonic()

    def simulated_clock(self, gateway: str, site: str) -> bool:
        """The gateway is registered at this site and the site is simulated (its clock runs fast)."""
        return site in self.simulated and self.sites.get(gateway) == site

    def update(self, sites: dict[str, str], missing: set[str]) -> None:
        new = dict(self.sites)
        new.update(sites)
        for gw in missing:
            new.pop(gw, None)
        self.sites = new

    def forget(self, gateways: set[str]) -> None:
        """Drop entries the registry changed under (they are read again when next needed)."""
        self.update({}, gateways)


class RowEncoder:
    """Readings -> binary COPY rows for ``COPY readings (ts, value, gateway_id, sensor_id, metric)``."""

    def __init__(self, max_cached: int = 200_000) -> None:
        self._tails: dict[tuple[str, str, str], bytes] = {}
        self._max = max_cached
        self.new_sensors: list[str] = []  # sensors of the keys first encoded since last drained

    def _tail(self, key: tuple[str, str, str]) -> bytes:
        if len(self._tails) >= self._max:
            self._tails.clear()
        self.new_sensors.append(key[1])
        parts = []
        for text in key:
            raw = text.encode()
            parts.append(_LEN.pack(len(raw)) + raw)
        tail = self._tails[key] = b"".join(parts)
        return tail

    def readings(self, gateway: str, readings: list[Reading]) -> tuple[bytes, int, int]:
        """Rows for one message, and its smallest and largest timestamp (ms)."""
        tails = self._tails
        pack = _ROW_HEAD.pack
        out = []
        lo = hi = readings[0].t
        for r in readings:
            t = r.t
            key = (gateway, r.sensor, r.metric)
            tail = tails.get(key)
            if tail is None:
                tail = self._tail(key)
            out.append(pack(5, 8, (t - PG_EPOCH_MS) * 1000, 8, r.value) + tail)
            if t < lo:
                lo = t
            elif t > hi:
                hi = t
        return b"".join(out), lo, hi


class Validator:
    """Inbound message -> :class:`Accepted` or :class:`Rejected`; never raises on bad input."""

    def __init__(self, root: str, registry: Registry, limits: Limits | None = None) -> None:
        self.root = root
        self.control_prefix = f"{root}/_"
        self.registry = registry
        self.limits = limits or Limits()
        self.rows = RowEncoder()
        self._topics: dict[str, TopicParts] = {}  # topics seen valid: parsed once (bounded)
        self._live_key = 0  # the last live status's key: arrival in microseconds, strictly increasing

    def check(self, m: Inbound, now_ms: int | None = None) -> Accepted | Rejected | Ignored:
        item: Accepted | Rejected | Ignored
        try:
            item = self._check(m, int(time.time() * 1000) if now_ms is None else now_ms)
        except ProtocolError as exc:
            item = Rejected(m, f"{exc.field}: {exc.reason}", payload=m.payload)
        except Exception as exc:  # a bug must not stop ingest; the message is kept for a look
            item = Rejected(m, f"internal error: {type(exc).__name__}: {exc}", payload=m.payload)
        # A status is published retained: its first delivery arrives live (no retain flag), every
        # later one as the broker's replay to a restarting ingest; both are that one dead letter.
        if isinstance(item, Rejected) and (m.retain or m.topic.endswith("/status")):
            item.dedup_key = retained_key(m)
        return item

    def _check(self, m: Inbound, now_ms: int) -> Accepted | Rejected | Ignored:
        if not m.payload:
            return Ignored(m, "cleared", "payload: empty, i.e. a retained topic being cleared (normal)")
        if m.topic.startswith(self.control_prefix):
            return Ignored(
                m, "control", "topic: the platform's own control traffic (_ prefix), not gateway data"
            )
        limit = self.limits.max_payload_bytes
        if len(m.payload) > limit:
            reason = (
                f"payload: {len(m.payload)} bytes exceed ingest_max_payload_bytes ({limit}); "
                f"first {limit} bytes kept"
            )
            try:
                where = parse_topic(m.topic, self.root)
            except ProtocolError:
                return Rejected(m, reason, payload=m.payload[:limit])
            return Rejected(m, reason, where.site, where.gateway, m.payload[:limit])
        parts = self._topics.get(m.topic)
        if parts is None:
            parts = parse_topic(m.topic, self.root)
            if len(self._topics) >= MAX_TOPICS:
                self._topics.clear()
            self._topics[m.topic] = parts
        site, gw, kind = parts.site, parts.gateway, parts.kind
        if kind == "config":
            return Ignored(m, "config", "topic: config goes down to the gateway; ingest stores nothing of it")
        try:
            msg = decode(kind, m.payload)
        except ProtocolError as exc:
            return Rejected(m, f"{exc.field}: {exc.reason}", site, gw, m.payload)
        verified = self.registry.sites.get(gw) == site
        if isinstance(msg, Telemetry):
            rows, lo, hi = self.rows.readings(gw, msg.readings)
            bad = self._outside(
                lo, hi, now_ms, self.limits.readings_days, self.registry.simulated_clock(gw, site)
            )
            new = self.rows.new_sensors
            if bad:
                new.clear()
                return Rejected(m, f"readings: {bad}", site, gw, m.payload)
            a = Accepted(m, kind, site, gw, msg.epoch, msg.seq, msg, verified)
            a.rows, a.n_rows, a.ts_lo, a.ts_hi = rows, len(msg.readings), lo, hi
            a.digest = zlib.crc32(rows) | len(rows) << 32
            if new:
                a.new_sensors = tuple(s for s in dict.fromkeys(new) if s != gw)
                new.clear()
            return a
        if isinstance(msg, Event):
            bad = self._outside(
                msg.t, msg.t, now_ms, self.limits.events_days, self.registry.simulated_clock(gw, site)
            )
            if bad:
                return Rejected(m, f"t: {bad}", site, gw, m.payload)
            a = Accepted(m, kind, site, gw, msg.epoch, msg.seq, msg, verified)
            a.ts_lo = a.ts_hi = msg.t
            a.digest, a.alt_digest = _event_digest(msg)
            a.new_sensors = (msg.sensor,) if msg.sensor != gw else ()
            return a
        assert isinstance(msg, Status)
        # One clock for presence: a status is dated (and ordered) by its arrival, the broker's
        # delivery order, never by the gateway's t, which may be skewed; a Last Will's t is when the
        # agent connected. A live status is keyed by its arrival too: one agent process sends the
        # same Will each time it drops, and every drop must count; an online status may repeat its
        # t (a clock of whole seconds, or one stuck at its last good time) and must still bring the
        # gateway back after the Will. A retained one keeps its t as key, so the broker replaying
        # it to a restarted ingest is a duplicate after the first time. A live key is the arrival
        # in microseconds, never the same twice here: keyed by the millisecond, two statuses of one
        # gateway read in the same one (a backlog delivered to a restarted ingest: online, Will,
        # online again) were one id, and the second was dead-lettered as a "conflicting duplicate".
        ts = int(m.received * 1000)
        if m.retain:
            key = msg.t
        else:
            key = self._live_key = max(int(m.received * 1_000_000), self._live_key + 1)
        a = Accepted(m, kind, site, gw, STATUS_EPOCH + msg.state, key, msg, verified)
        a.ts_lo = a.ts_hi = ts
        a.digest = _digest(encode(msg))
        return a

    def _outside(self, lo: int, hi: int, now_ms: int, days: int, simulated: bool = False) -> str | None:
        if hi > now_ms + self.limits.future_ms and not simulated:
            return f"timestamp {hi} is more than {self.limits.future_ms // 1000} s ahead of ingest's clock"
        if lo < now_ms - days * DAY_MS:
            return f"timestamp {lo} is older than the {days}-day retention"
        return None


def _digest(data: bytes) -> int:
    return zlib.crc32(data) | len(data) << 32


def _event_digest(msg: Event) -> tuple[int, int | None]:
    """The digest of an event's contents, and the one earlier versions took when it differs.

    Without ``low`` when absent, so that an event stored before the field existed has the digest
    it had then. The evidence's keys are sorted: a JSON object is unordered, and a gateway that
    re-serialises a message from its outbox is sending the same contents (protocol section 9);
    earlier versions kept the order as sent, hence the second digest, for their stored events.
    """
    fields = msgspec.structs.asdict(msg)
    if msg.low is None:
        del fields["low"]
    as_sent = _digest(msgspec.json.encode(fields))
    if not msg.evidence:
        return as_sent, None
    fields["evidence"] = msgspec.json.decode(msgspec.json.encode(msg.evidence, order="deterministic"))
    canonical = _digest(msgspec.json.encode(fields))
    return canonical, (as_sent if as_sent != canonical else None)


def same_contents(a: Accepted, stored: int) -> bool:
    """Whether a stored digest is this message's: a redelivery, not a conflicting duplicate."""
    return stored == a.digest or stored == a.alt_digest


def retained_key(m: Inbound) -> str:
    """The same bytes on the same topic, however often they come, have one dead letter: a retained
    message the broker replays, or a message its gateway re-sends because nobody acknowledges it."""
    h = hashlib.sha256(m.topic.encode("utf-8", "replace") + b"\0" + m.payload).hexdigest()
    return f"retained:{h[:32]}"


@dataclass(slots=True)
class Batch:
    """Messages written in one transaction and acknowledged after its commit."""

    accepted: list[Accepted] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    ignored: list[Ignored] = field(default_factory=list)  # acknowledged with the batch, nothing written
    rows: int = 0
    opened: float = field(default_factory=time.monotonic)

    def add(self, item: Accepted | Rejected | Ignored) -> None:
        if not len(self):
            self.opened = time.monotonic()
        if isinstance(item, Accepted):
            self.accepted.append(item)
            self.rows += item.n_rows or 1
        elif isinstance(item, Rejected):
            self.rejected.append(item)
            self.rows += 1
        else:
            self.ignored.append(item)
            self.rows += 1

    def __len__(self) -> int:
        return len(self.accepted) + len(self.rejected) + len(self.ignored)

    def due(self, now: float, max_rows: int, max_age_s: float) -> bool:
        return len(self) > 0 and (self.rows >= max_rows or now - self.opened >= max_age_s)

    def inbound(self) -> list[Inbound]:
        return (
            [a.inbound for a in self.accepted]
            + [r.inbound for r in self.rejected]
            + [i.inbound for i in self.ignored]
        )

    def oldest_received(self) -> float:
        return min(m.received for m in self.inbound())
