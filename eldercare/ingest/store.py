"""All of ingest's SQL: one transaction per batch, message ids first, then the rows of new messages.

Exactly once rests on one statement: the batch's ``(gateway, epoch, seq)`` ids go into
``ingested_messages`` with ``ON CONFLICT DO NOTHING RETURNING``, and only the messages that come
back (the new ones) have their readings, events and status written, in the same transaction. A
redelivered or replayed message therefore costs one conflicting key and nothing else. Readings go
in with binary COPY (rows prepared by :mod:`eldercare.ingest.batch`); status is rare and uses
``executemany``. Each event also becomes an ``alert_work`` row and a ``NOTIFY alert_work``
(payload: the row id) in the same transaction, so the alert engine on any replica sees it exactly
when it is committed. A batch of events alone (a fall, an SOS: the worker's event thread) is one
statement, :data:`WRITE_EVENTS`, its own transaction: one round trip to its commit, not five.
"""

from __future__ import annotations

import contextlib
import json
import logging
import struct
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import psycopg
from psycopg import errors

from eldercare.db import maintain
from eldercare.ingest.batch import (
    COPY_HEADER,
    COPY_TRAILER,
    READING_COLUMNS,
    Accepted,
    Batch,
    Registry,
    Rejected,
    retained_key,
    same_contents,
)
from eldercare.ingest.errors import StoreUnavailable
from eldercare.protocol import Event, Status

log = logging.getLogger(__name__)

_UNIX = datetime(1970, 1, 1, tzinfo=UTC)
_JSON = msgspec.json.Encoder()
# Detect a dead server or network within about half a minute even mid-COPY.
CONNECT_OPTIONS: dict[str, Any] = {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,
    "application_name": "eldercare-ingest",
}
COPY_READINGS = "COPY readings ({}) FROM STDIN (FORMAT BINARY)".format(", ".join(READING_COLUMNS))

# ingested_messages is partitioned by the week a key was received (its ``week`` column, part of the
# unique key): ON CONFLICT settles two copies within one week (and waits for a concurrent one), the
# NOT EXISTS finds a copy received in an earlier week, one index probe per partition kept.
INSERT_IDS = """
INSERT INTO ingested_messages (gateway_id, epoch, seq, digest)
SELECT * FROM unnest(%(gateways)s::text[], %(epochs)s::text[], %(seqs)s::bigint[], %(digests)s::bigint[])
    AS b (gateway_id, epoch, seq, digest)
WHERE NOT EXISTS (
    SELECT 1 FROM ingested_messages m
    WHERE m.gateway_id = b.gateway_id AND m.epoch = b.epoch AND m.seq = b.seq
)
ON CONFLICT DO NOTHING
RETURNING gateway_id, epoch, seq
"""
# the stored digests of the messages that came back as duplicates (rare: redeliveries)
STORED_DIGESTS = """
SELECT m.gateway_id, m.epoch, m.seq, m.digest
FROM ingested_messages m
JOIN unnest(%(gateways)s::text[], %(epochs)s::text[], %(seqs)s::bigint[]) AS d(gateway_id, epoch, seq)
USING (gateway_id, epoch, seq)
"""
# A gateway may name only residents of its own site: their home, or the station they attend.
RESIDENT_SITES = "SELECT id, home_site_id, station_site_id FROM residents WHERE id = ANY(%(ids)s)"
UNKNOWN_SENSORS = """
INSERT INTO unknown_sensors (gateway_id, sensor_id)
SELECT g, s FROM unnest(%(gateways)s::text[], %(sensors)s::text[]) AS n(g, s)
WHERE NOT EXISTS (SELECT 1 FROM sensors WHERE gateway_id = n.g AND id = n.s)
ON CONFLICT (gateway_id, sensor_id) DO UPDATE SET last_seen = now()
"""
INSERT_EVENT = """
INSERT INTO events (ts, gateway_id, site_id, epoch, seq, sensor_id, kind, confidence, resident_id, evidence)
VALUES (%(ts)s, %(gateway)s, %(site)s, %(epoch)s, %(seq)s, %(sensor)s, %(kind)s, %(confidence)s,
        %(resident)s, %(evidence)s::jsonb)
"""
INSERT_WORK = """
WITH w AS (
    INSERT INTO alert_work (kind, gateway_id, site_id, payload)
    VALUES (%(work)s, %(gateway)s, %(site)s, %(payload)s::jsonb)
    RETURNING id
)
SELECT pg_notify('alert_work', id::text) FROM w
"""
# A batch of events alone (the event thread's: a fall, an SOS) in one statement, its own transaction
# (docs/performance.md, ingest, seventh pass): the checks of :meth:`Store._verify` and
# :meth:`Store._check_residents` made again in the statement's own snapshot (the gateway at that
# site and enabled; a named resident living there or attending it), the ids inserted as by
# INSERT_IDS for the messages that pass, and only for those that came back the events, their
# alert_work and its NOTIFY; the unknown sensors as by UNKNOWN_SENSORS. Each row tells the caller
# what it found (a copy stored before, visible in this snapshot, comes back with its digest), so
# the rare cases (dead letters, a copy another transaction committed while this one waited) are
# written by a transaction after it, before any acknowledgement (what the statement did not store
# is not in ingested_messages: a crash in between redelivers it). The ids are inserted first and in sorted
# order (the main query pulls them), as INSERT_IDS locks them; the unknown sensors after.
WRITE_EVENTS = """
WITH b AS (
    SELECT * FROM unnest(
        %(gateways)s::text[], %(epochs)s::text[], %(seqs)s::bigint[], %(digests)s::bigint[],
        %(sites)s::text[], %(residents)s::text[], %(ts)s::timestamptz[], %(sensors)s::text[],
        %(kinds)s::text[], %(confidences)s::real[], %(evidence)s::text[], %(payloads)s::text[],
        %(new_sensors)s::bool[])
        WITH ORDINALITY AS b (gateway_id, epoch, seq, digest, site_id, resident_id, ts, sensor_id, kind,
                              confidence, evidence, payload, new_sensor, i)
), c AS (
    SELECT b.*, g.id IS NOT NULL AS gateway_ok, r.id IS NOT NULL AS known, r.home_site_id, r.station_site_id,
           b.resident_id IS NULL
           OR coalesce(b.site_id IN (r.home_site_id, r.station_site_id), false) AS resident_ok,
           s.found IS NOT NULL AS found, s.digest AS stored
    FROM b
    LEFT JOIN gateways g ON g.id = b.gateway_id AND g.site_id = b.site_id AND g.disabled_at IS NULL
    LEFT JOIN residents r ON r.id = b.resident_id
    LEFT JOIN LATERAL (
        SELECT true AS found, m.digest FROM ingested_messages m
        WHERE m.gateway_id = b.gateway_id AND m.epoch = b.epoch AND m.seq = b.seq LIMIT 1
    ) s ON true
), ids AS (
    INSERT INTO ingested_messages (gateway_id, epoch, seq, digest)
    SELECT gateway_id, epoch, seq, digest FROM c WHERE gateway_ok AND resident_ok AND NOT found
    ORDER BY gateway_id, epoch, seq
    ON CONFLICT DO NOTHING
    RETURNING gateway_id, epoch, seq
), fresh AS (
    SELECT c.* FROM c JOIN ids USING (gateway_id, epoch, seq)
), ev AS (
    INSERT INTO events (ts, gateway_id, site_id, epoch, seq, sensor_id, kind, confidence, resident_id,
                        evidence)
    SELECT ts, gateway_id, site_id, epoch, seq, sensor_id, kind, confidence, resident_id, evidence::jsonb
    FROM fresh
), w AS (
    INSERT INTO alert_work (kind, gateway_id, site_id, payload)
    SELECT 'event', gateway_id, site_id, payload::jsonb FROM fresh
    RETURNING id
), unknown AS (
    INSERT INTO unknown_sensors (gateway_id, sensor_id)
    SELECT DISTINCT c.gateway_id, c.sensor_id FROM c
    WHERE c.new_sensor AND c.gateway_ok AND c.resident_ok
      AND NOT EXISTS (SELECT 1 FROM sensors WHERE gateway_id = c.gateway_id AND id = c.sensor_id)
    ORDER BY 1, 2
    ON CONFLICT (gateway_id, sensor_id) DO UPDATE SET last_seen = now()
)
SELECT c.i, c.gateway_ok, c.known, c.home_site_id, c.station_site_id, c.resident_ok,
       ids.seq IS NOT NULL AS new, c.found, c.stored,
       (SELECT count(pg_notify('alert_work', id::text)) FROM w) AS notified
FROM c LEFT JOIN ids USING (gateway_id, epoch, seq)
ORDER BY c.i
"""
INSERT_STATUS = """
INSERT INTO gateway_status (ts, gateway_id, site_id, state, clock_ok, version, sensors, outbox)
VALUES (%(ts)s, %(gateway)s, %(site)s, %(state)s, %(clock_ok)s, %(version)s, %(sensors)s::jsonb,
        %(outbox)s::jsonb)
"""
# Status messages may arrive out of order (two workers, a late Last Will): the newest by arrival wins.
# A status without a config revision (a Last Will, an older agent) leaves what the gateway said about it.
# The broker's replay of a retained status (to a restarted ingest) that says the state the gateway
# is in already is no news: the gateway went offline when it did, not at ingest's restart.
UPDATE_GATEWAY = """
UPDATE gateways SET state = %(state)s, state_at = %(ts)s, version = coalesce(%(version)s, version),
    reported_at = greatest(reported_at, %(reported)s),
    config_applied = coalesce(%(config_revision)s, config_applied),
    config_error = CASE WHEN %(config_revision)s IS NULL THEN config_error ELSE %(config_error)s END
WHERE id = %(gateway)s AND (state_at IS NULL OR state_at <= %(ts)s)
  AND NOT (%(retained)s AND state = %(state)s)
"""
# Acknowledgement watermarks (wire protocol v1, "Acknowledgements"), the last step of a commit so
# the row locks are held only until the commit returns. ACK_LOCK creates the rows of epochs seen
# for the first time and locks every row of the batch, in one sorted order: ``DO UPDATE ... WHERE
# false`` locks a conflicting row without writing it. A new row starts just below the gateway's
# ``low`` (its outbox low-water mark, carried by its messages) or, from a gateway that sends none,
# just below the lowest seq stored of that epoch. ACK_RAISE moves a watermark up to ``low - 1``:
# below ``low`` the gateway will never send anything again (a shed gap is passed). The advance is
# a statement of its own so that its snapshot is taken after the locks: it sees whatever another
# worker committed while we waited for them.
ACK_LOCK = """
INSERT INTO ingest_acks (gateway_id, epoch, seq)
SELECT k.gateway_id, k.epoch,
       coalesce(k.low,
                least((SELECT min(m.seq) FROM ingested_messages m
                       WHERE m.gateway_id = k.gateway_id AND m.epoch = k.epoch),
                      (SELECT min(f.seq) FROM ingest_refused f
                       WHERE f.gateway_id = k.gateway_id AND f.epoch = k.epoch))) - 1
FROM unnest(%(gateways)s::text[], %(epochs)s::text[], %(lows)s::bigint[]) AS k(gateway_id, epoch, low)
ORDER BY 1, 2
ON CONFLICT (gateway_id, epoch) DO UPDATE SET seq = excluded.seq WHERE false
"""
ACK_RAISE = """
UPDATE ingest_acks a SET seq = k.low - 1, updated_at = now()
FROM unnest(%(gateways)s::text[], %(epochs)s::text[], %(lows)s::bigint[]) AS k(gateway_id, epoch, low)
WHERE a.gateway_id = k.gateway_id AND a.epoch = k.epoch AND a.seq < k.low - 1
"""
# Reads, per (gateway, epoch), the next ``n`` stored seqs above the watermark (one index range scan,
# ``n`` = the batch's messages of that epoch plus a little for other workers' out-of-order ones)
# and moves the watermark to the end of their contiguous run. So the cost follows the messages
# just stored, whatever the size of ingested_messages. ``more`` says the whole window was
# contiguous: the run may go on (another worker stored the rest), and the caller looks again.
# Only rows that moved are written; every watermark is returned.
ACK_ADVANCE = """
WITH k AS (
    SELECT a.gateway_id, a.epoch, a.seq AS wm, k.n FROM ingest_acks a
    JOIN unnest(%(gateways)s::text[], %(epochs)s::text[], %(ns)s::int[]) AS k(gateway_id, epoch, n)
      USING (gateway_id, epoch)
), top AS (
    SELECT k.gateway_id, k.epoch, k.wm, coalesce(r.seq, k.wm) AS seq,
           coalesce(r.seq, k.wm) - k.wm >= k.n AS more
    FROM k, LATERAL (
        SELECT max(w.seq) AS seq FROM (
            SELECT u.seq, row_number() OVER (ORDER BY u.seq) AS rn FROM (
                (SELECT m.seq FROM ingested_messages m
                 WHERE m.gateway_id = k.gateway_id AND m.epoch = k.epoch AND m.seq > k.wm
                 ORDER BY m.seq LIMIT k.n)
                UNION
                (SELECT f.seq FROM ingest_refused f
                 WHERE f.gateway_id = k.gateway_id AND f.epoch = k.epoch AND f.seq > k.wm
                 ORDER BY f.seq LIMIT k.n)
            ) u
        ) w WHERE w.seq - w.rn = k.wm AND w.rn <= k.n
    ) r
), moved AS (
    UPDATE ingest_acks a SET seq = top.seq, updated_at = now()
    FROM top WHERE a.gateway_id = top.gateway_id AND a.epoch = top.epoch AND a.seq < top.seq
)
SELECT gateway_id, epoch, seq, more FROM top
"""
ACK_SLACK = 8  # seqs looked at beyond the batch's own, per (gateway, epoch)
UPSERT_WORKER = """
INSERT INTO ingest_workers (client_id, seen_at, host, pid) VALUES (%(client_id)s, now(), %(host)s, %(pid)s)
ON CONFLICT (client_id) DO UPDATE SET seen_at = now(), host = excluded.host, pid = excluded.pid
"""
SILENT_WORKERS = """
SELECT client_id, extract(epoch FROM now() - seen_at) FROM ingest_workers WHERE client_id <> %(client_id)s
"""
INSERT_REFUSED = """
INSERT INTO ingest_refused (gateway_id, epoch, seq)
SELECT * FROM unnest(%(gateways)s::text[], %(epochs)s::text[], %(seqs)s::bigint[])
ORDER BY 1, 2, 3
ON CONFLICT DO NOTHING
"""
INSERT_DEAD = """
INSERT INTO dead_letters (topic, payload, reason, site_id, gateway_id, dedup_key)
VALUES (%(topic)s, %(payload)s, %(reason)s, %(site)s, %(gateway)s, %(dedup_key)s)
ON CONFLICT (dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING
"""
LOAD_REGISTRY = "SELECT id, site_id FROM gateways WHERE disabled_at IS NULL"
LOAD_SIMULATED_SITES = "SELECT id FROM sites WHERE simulated"
RECHECK_GATEWAYS = "SELECT id, site_id, disabled_at IS NOT NULL FROM gateways WHERE id = ANY(%s)"
REGISTRY_CHANNEL = "gateway_registry"


@dataclass
class WriteResult:
    """What one committed batch did, for the metrics and the acknowledgements."""

    messages: int = 0  # new messages stored
    readings: int = 0
    events: int = 0
    statuses: int = 0
    duplicates: int = 0
    dead: list[Rejected] = field(default_factory=list)
    # (site, gateway, epoch) -> highest seq of that epoch up to which every message is stored
    acks: dict[tuple[str, str, str], int] = field(default_factory=dict)
    # with ``defer_acks``: the watermarks still to advance (:meth:`Store.advance_acks`)
    pending: AckWork = field(default_factory=lambda: AckWork())
    # wall clock when the ids were inserted and when the rows were written (then COMMIT): where a
    # commit's time goes, for the commit log
    ids_at: float = 0.0
    written_at: float = 0.0

    def add(self, other: WriteResult) -> None:
        self.messages += other.messages
        self.readings += other.readings
        self.events += other.events
        self.statuses += other.statuses
        self.duplicates += other.duplicates
        self.dead.extend(other.dead)
        for key, seq in other.acks.items():
            self.acks[key] = max(seq, self.acks.get(key, seq))
        self.pending.merge(other.pending)


@dataclass
class AckWork:
    """The (gateway, epoch) watermarks a commit may move: site, messages of the epoch, highest low.

    Pure bookkeeping, so the work of several commits can be merged and done in one transaction
    (the message counts only size the window :data:`ACK_ADVANCE` reads).
    """

    keys: dict[tuple[str, str], list[Any]] = field(default_factory=dict)  # -> [site, count, low]

    def __bool__(self) -> bool:
        return bool(self.keys)

    def note(self, site: str, gateway: str, epoch: str, low: int | None = None) -> None:
        entry = self.keys.get((gateway, epoch))
        if entry is None:
            self.keys[(gateway, epoch)] = [site, 1, low]
            return
        entry[1] += 1
        if low is not None and (entry[2] is None or low > entry[2]):
            entry[2] = low

    def merge(self, other: AckWork) -> None:
        for (gw, ep), (site, n, low) in other.keys.items():
            entry = self.keys.get((gw, ep))
            if entry is None:
                self.keys[(gw, ep)] = [site, n, low]
                continue
            entry[1] += n
            if low is not None and (entry[2] is None or low > entry[2]):
                entry[2] = low


def ack_work(good: list[Accepted], refused: list[tuple[str, str, str, int]]) -> AckWork:
    """What a batch's watermarks need: its stored (or duplicate) messages and its refused ids.

    Duplicates count too: a gateway re-sending because an acknowledgement was lost gets one.
    """
    work = AckWork()
    for a in good:
        if a.kind != "status":
            work.note(a.site, a.gateway, a.epoch, getattr(a.message, "low", None))
    for site, gw, ep, _ in refused:
        work.note(site, gw, ep)
    return work


class _MessageId(msgspec.Struct):
    """Just the id of a telemetry or event payload, however wrong the rest of it is."""

    epoch: str
    seq: int


_MESSAGE_ID = msgspec.json.Decoder(_MessageId)


def refused_ids(dead: list[Rejected], registry: Registry) -> list[tuple[str, str, str, int]]:
    """(site, gateway, epoch, seq) of the dead letters that a registered gateway numbered.

    The gateway would otherwise keep re-sending them, waiting for an acknowledgement that a
    refused message never gets. Unknown gateways and unreadable ids are left out.
    """
    out = []
    for r in dead:
        if r.gateway is None or r.site is None or registry.sites.get(r.gateway) != r.site:
            continue
        if not r.inbound.topic.endswith(("/telemetry", "/event")):
            continue
        mid: _MessageId | None
        try:
            mid = _MESSAGE_ID.decode(r.inbound.payload)
        except (msgspec.MsgspecError, UnicodeDecodeError):
            mid = _lenient_id(r.inbound.payload)
        if mid is None:
            continue
        if 0 <= mid.seq < 2**63 and is_epoch(mid.epoch):
            out.append((r.site, r.gateway, mid.epoch, mid.seq))
    return out


def _lenient_id(payload: bytes) -> _MessageId | None:
    """The id of a payload that is not quite JSON, as common encoders write it: ``NaN`` or
    ``Infinity`` (Python's ``json.dumps`` by default), a byte-order mark, UTF-16.

    Refused either way, but numbered: left out of the acknowledgement, it would hold the watermark
    below it for good and the gateway would re-send it forever (the stdlib parser accepts these;
    it runs only for dead letters).
    """
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, dict):
        return None
    epoch, seq = doc.get("epoch"), doc.get("seq")
    if isinstance(epoch, str) and type(seq) is int:
        return _MessageId(epoch, seq)
    return None


def is_epoch(text: str) -> bool:
    return 8 <= len(text) <= 64 and all(c.isascii() and (c.isalnum() or c == "-") for c in text)


def to_datetime(ms: int) -> datetime:
    return _UNIX + timedelta(milliseconds=ms)


def _clean(text: str) -> str:
    return text.replace("\x00", "\\0")  # PostgreSQL text cannot hold NUL


def _conflict(a: Accepted) -> Rejected:
    """A message id seen before with other contents: kept once per distinct copy."""
    reason = (
        f"seq: conflicting duplicate: (gateway {a.gateway!r}, epoch {a.epoch!r}, seq {a.seq}) was "
        "stored before with different contents; a message id is used once, this copy is not stored"
    )
    key = f"conflict:{a.gateway}:{a.epoch}:{a.seq}:{a.digest:x}"
    return Rejected(a.inbound, reason, a.site, a.gateway, a.inbound.payload, key)


def _resident_reason(a: Accepted, resident: str, where: tuple[str, str | None] | None) -> str:
    if where is None:
        return f"resident: {resident!r} is not a registered resident"
    home, station = where
    return (
        f"resident: {resident!r} lives at site {home!r}"
        + (f" and attends station {station!r}" if station else "")
        + f"; a gateway of site {a.site!r} may only name residents of its own site"
        " (their home, or a station they attend)"
    )


def _real(x: float) -> float:
    """``x`` as the ``real`` (32-bit) column holds it: a confidence the protocol allows below the
    smallest 32-bit float (``1e-50``) is 0.0 here, where PostgreSQL refused it ("value out of
    range: underflow") and the event was dead-lettered, and in a storm every batch it was in was
    written again one message at a time."""
    return float(struct.unpack("f", struct.pack("f", x))[0])


def _event_row(a: Accepted) -> dict[str, Any]:
    """An event's columns, and its alert_work payload: the gateway and site with the event."""
    ev = a.message
    assert isinstance(ev, Event)
    work = {"gateway": a.gateway, "site": a.site, **msgspec.structs.asdict(ev)}
    return {
        "ts": to_datetime(ev.t),
        "gateway": a.gateway,
        "site": a.site,
        "epoch": ev.epoch,
        "seq": ev.seq,
        "sensor": ev.sensor,
        "kind": ev.kind,
        "confidence": _real(ev.confidence),
        "resident": ev.resident,
        "evidence": _JSON.encode(ev.evidence).decode(),
        "work": "event",
        "payload": _JSON.encode(work).decode(),
    }


def _reject(a: Accepted, reason: str, unacknowledged: bool = False) -> Rejected:
    """A dead letter of an accepted message. ``unacknowledged``: its gateway gets no ack (unknown,
    disabled, another site's), so it re-sends the same bytes for ever: one dead letter for them all."""
    key = retained_key(a.inbound) if a.inbound.retain or unacknowledged else None
    return Rejected(a.inbound, reason, a.site, a.gateway, a.inbound.payload, key)


class Store:
    """One connection, owned by the writer thread; reconnects on demand.

    ``acks_after_commit``: the acknowledgement watermark is advanced in a transaction of its own
    after the messages' commit, not inside it. The watermark row of a (gateway, epoch) is locked
    until the commit that advances it returns, so inside the commit an alarm would wait for a
    telemetry commit of the same gateway on another connection (a large COPY and its fsync), and
    two workers' telemetry commits of the same gateways would wait for each other; after it, only
    the acknowledgement waits. ``write(..., defer_acks=True)`` leaves even that to the caller
    (:meth:`advance_acks`, which the worker runs on a connection and thread of their own).
    """

    def __init__(self, url: str, *, acks_after_commit: bool = False) -> None:
        self.url = url
        self.acks_after_commit = acks_after_commit
        self.conn: psycopg.Connection[Any] | None = None
        self._changed: set[str] = set()  # gateways named by NOTIFY gateway_registry since last applied
        self._reload = True  # a new connection may have missed notifications: reload the registry

    # Connection -----------------------------------------------------------------------------

    def connect(self) -> psycopg.Connection[Any]:
        if self.conn is not None and not self.conn.closed:
            return self.conn
        try:
            self.conn = psycopg.connect(self.url, autocommit=True, **CONNECT_OPTIONS)
            self.conn.add_notify_handler(lambda n: self._changed.add(n.payload))
            self.conn.execute(f"LISTEN {REGISTRY_CHANNEL}")
        except psycopg.Error as exc:
            self.close()
            raise StoreUnavailable(str(exc).strip()) from exc
        self._reload = True
        return self.conn

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(psycopg.Error):
                self.conn.close()
            self.conn = None

    def _lost(self, exc: Exception) -> StoreUnavailable:
        self.close()
        return StoreUnavailable(str(exc).strip() or type(exc).__name__)

    def ping(self) -> None:
        try:
            self.connect().execute("SELECT 1")
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise self._lost(exc) from exc

    # Registry -------------------------------------------------------------------------------

    def load_registry(self) -> dict[str, str]:
        try:
            conn = self.connect()
            self._changed.clear()  # this read is newer than any notification received so far
            rows = conn.execute(LOAD_REGISTRY).fetchall()
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise self._lost(exc) from exc
        self._reload = False
        return dict(rows)

    def load_simulated_sites(self) -> set[str]:
        """Sites whose gateways are simulated: their clock is a simulator's, not the wall's."""
        try:
            rows = self.connect().execute(LOAD_SIMULATED_SITES).fetchall()
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise self._lost(exc) from exc
        return {r[0] for r in rows}

    def _apply_notifications(self, conn: psycopg.Connection[Any], registry: Registry) -> None:
        """Called inside the batch transaction: its BEGIN delivered every NOTIFY committed before."""
        if self._reload:
            registry.replace(self.load_registry(), self.load_simulated_sites())
        elif self._changed:
            changed, self._changed = self._changed, set()
            registry.forget(changed)

    def _verify(
        self, conn: psycopg.Connection[Any], batch: Batch, registry: Registry
    ) -> tuple[list[Accepted], list[Rejected]]:
        """Each message's gateway must be registered, enabled and at the topic's site; a gateway not
        (or not so) in the cache is read again, it may have been registered since."""
        self._apply_notifications(conn, registry)
        sites = registry.sites
        unsure = {a.gateway for a in batch.accepted if sites.get(a.gateway) != a.site}
        disabled: set[str] = set()
        if unsure:
            rows = conn.execute(RECHECK_GATEWAYS, (list(unsure),)).fetchall()
            disabled = {gw for gw, _site, off in rows if off}
            found = {gw: site for gw, site, off in rows if not off}
            registry.update(found, unsure - set(found))
            sites = registry.sites
        good: list[Accepted] = []
        dead = list(batch.rejected)
        for a in batch.accepted:
            site = sites.get(a.gateway)
            if site == a.site:
                good.append(a)
            elif a.gateway in disabled:
                reason = f"topic.gateway: gateway {a.gateway!r} is disabled; its messages are refused"
                dead.append(_reject(a, reason, unacknowledged=True))
            elif site is None:
                dead.append(_reject(a, f"topic.gateway: unknown gateway {a.gateway!r}", unacknowledged=True))
            else:
                reason = f"topic.site: gateway {a.gateway!r} is registered to site {site!r}, not {a.site!r}"
                dead.append(_reject(a, reason, unacknowledged=True))
        return self._check_residents(conn, good, dead)

    def _check_residents(
        self, conn: psycopg.Connection[Any], good: list[Accepted], dead: list[Rejected]
    ) -> tuple[list[Accepted], list[Rejected]]:
        """An event may name only a resident of its gateway's site (home, or a station they attend)."""
        named = {a.message.resident for a in good if isinstance(a.message, Event) and a.message.resident}
        if not named:
            return good, dead
        homes = {r[0]: (r[1], r[2]) for r in conn.execute(RESIDENT_SITES, {"ids": list(named)})}
        kept = []
        for a in good:
            resident = a.message.resident if isinstance(a.message, Event) else None
            where = homes.get(resident) if resident else None
            if resident is None or (where is not None and a.site in where):
                kept.append(a)
            else:
                dead.append(_reject(a, _resident_reason(a, resident, where)))
        return kept, dead

    # Liveness -------------------------------------------------------------------------------

    def heartbeat(self, *, client_id: str, host: str, pid: int) -> dict[str, float]:
        """Record this worker alive; return every other worker's seconds since it was last alive."""
        try:
            conn = self.connect()
            with conn.transaction():
                conn.execute(UPSERT_WORKER, {"client_id": client_id, "host": host[:200], "pid": pid})
                rows = conn.execute(SILENT_WORKERS, {"client_id": client_id}).fetchall()
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise self._lost(exc) from exc
        return {cid: float(s) for cid, s in rows}

    def last_alive(self, *, client_id: str) -> tuple[str, int, float] | None:
        """Host, pid and seconds since ``client_id`` last recorded itself alive (None: never)."""
        try:
            row = (
                self.connect()
                .execute(
                    "SELECT host, pid, extract(epoch FROM now() - seen_at) FROM ingest_workers"
                    " WHERE client_id = %s",
                    (client_id,),
                )
                .fetchone()
            )
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise self._lost(exc) from exc
        return None if row is None else (str(row[0]), int(row[1]), float(row[2]))

    def mark_stopped(self, *, client_id: str, pid: int) -> None:
        """A worker that stopped keeps its record (peers read its silence: its session may hold a
        backlog) but no longer names a process: its client id may be taken again at once."""
        try:
            self.connect().execute(
                "UPDATE ingest_workers SET pid = 0 WHERE client_id = %s AND pid = %s", (client_id, pid)
            )
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise self._lost(exc) from exc

    def forget_worker(self, *, client_id: str) -> None:
        """A retired worker's session is gone: it holds nothing any more."""
        try:
            self.connect().execute("DELETE FROM ingest_workers WHERE client_id = %s", (client_id,))
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise self._lost(exc) from exc

    # Batches --------------------------------------------------------------------------------

    def write(self, batch: Batch, registry: Registry, *, defer_acks: bool = False) -> WriteResult:
        """Commit one batch, or raise :class:`StoreUnavailable` having committed nothing.

        A missing time partition is created and the batch retried. Data the database refuses
        (rare: e.g. a NUL escape in an event's evidence) is isolated message by message, and the
        refused ones become dead letters, so one bad message cannot block the stream.

        With ``defer_acks`` the watermarks are not advanced at all: ``result.pending`` says what
        to pass to :meth:`advance_acks` (on any store) once the messages are committed.
        """
        result = self._write(batch, registry, defer=defer_acks or self.acks_after_commit)
        if self.acks_after_commit and not defer_acks and result.pending:
            # The messages are committed; their watermark follows in a short transaction of its
            # own, which may wait for another commit of the same gateway.
            result.acks = self.advance_acks(result.pending)
            result.pending = AckWork()
        return result

    def _write(self, batch: Batch, registry: Registry, *, defer: bool) -> WriteResult:
        try:
            return self._write_retrying_partitions(batch, registry, defer)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise self._lost(exc) from exc
        except psycopg.Error as exc:
            if len(batch) == 1:
                return self._refused(batch, registry, exc, defer)
            log.warning("batch of %d messages refused (%s); writing one by one", len(batch), exc)
            total = WriteResult()
            items: list[Accepted | Rejected] = [*batch.accepted, *batch.rejected]
            for item in items:
                single = Batch()
                single.add(item)
                total.add(self._write(single, registry, defer=defer))
            return total

    def advance_acks(self, work: AckWork) -> dict[tuple[str, str, str], int]:
        """Advance the watermarks of already committed messages, in a transaction of their own."""
        if not work:
            return {}
        try:
            conn = self.connect()
            for attempt in range(3):
                try:
                    return self._advance_acks(conn, work)  # each turn an implicit transaction
                except errors.DeadlockDetected:
                    if attempt == 2:
                        raise
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise self._lost(exc) from exc
        raise AssertionError("unreachable")

    def _refused(self, batch: Batch, registry: Registry, exc: psycopg.Error, defer: bool) -> WriteResult:
        if batch.rejected:  # the dead letter itself was refused: nothing sensible is left to do
            log.error("dead letter refused by the database, dropped: %s (%s)", batch.rejected[0].reason, exc)
            return WriteResult()
        a = batch.accepted[0]
        reason = f"database refused the message: {_clean(str(exc).strip())}"
        dead = Batch()
        dead.add(Rejected(a.inbound, reason, a.site, a.gateway, a.inbound.payload))
        return self._write(dead, registry, defer=defer)

    def _write_retrying_partitions(self, batch: Batch, registry: Registry, defer: bool) -> WriteResult:
        conn = self.connect()
        first: WriteResult | None = None  # what the events statement committed, kept across retries
        for attempt in range(3):
            try:
                if first is None and self._events_alone(batch, registry):
                    first, rest = self._write_events_tx(conn, batch, registry, defer)
                    if rest is None:
                        return first
                    batch = rest  # a gateway the statement refused: read again, written below
                with conn.transaction():
                    done = self._write_tx(conn, batch, registry, defer)
                if first is not None:
                    first.add(done)
                    return first
                return done
            except errors.CheckViolation as exc:
                if "no partition" not in str(exc) or attempt == 2:
                    raise
                self._ensure_partitions(conn, batch)
            except errors.DeadlockDetected:
                # Two workers storing copies of the same messages (every worker receives every
                # event) lock ids and watermarks in one sorted order, so this should not happen;
                # if it does, the transaction was rolled back and is simply tried again.
                if attempt == 2:
                    raise
                log.warning("deadlock with another worker; batch of %d retried", len(batch))
        raise AssertionError("unreachable")

    def _ensure_partitions(self, conn: psycopg.Connection[Any], batch: Batch) -> None:
        spans: dict[str, tuple[int, int]] = {}
        table_of = {"telemetry": "readings", "event": "events", "status": "gateway_status"}
        for a in batch.accepted:
            table = table_of[a.kind]
            lo, hi = spans.get(table, (a.ts_lo, a.ts_hi))
            spans[table] = (min(lo, a.ts_lo), max(hi, a.ts_hi))
        for table, (lo, hi) in spans.items():
            maintain.ensure_partitions(conn, to_datetime(lo), to_datetime(hi), tables=[table])

    def _write_tx(
        self, conn: psycopg.Connection[Any], batch: Batch, registry: Registry, defer: bool
    ) -> WriteResult:
        good, dead = self._verify(conn, batch, registry)
        result = WriteResult(dead=dead)
        fresh: list[Accepted] = []
        seen: dict[tuple[str, str, int], int] = {}
        # Sorted: two workers inserting the same ids lock them in the same order, never a cycle.
        for a in sorted(good, key=lambda a: (a.gateway, a.epoch, a.seq)):
            key = (a.gateway, a.epoch, a.seq)
            if key not in seen:
                seen[key] = a.digest
                fresh.append(a)
            elif same_contents(a, seen[key]):
                result.duplicates += 1
            else:
                dead.append(_conflict(a))
        if fresh:
            new = set(
                conn.execute(
                    INSERT_IDS,
                    {
                        "gateways": [a.gateway for a in fresh],
                        "epochs": [a.epoch for a in fresh],
                        "seqs": [a.seq for a in fresh],
                        "digests": [a.digest for a in fresh],
                    },
                ).fetchall()
            )
            if len(new) < len(fresh):
                again = [a for a in fresh if (a.gateway, a.epoch, a.seq) not in new]
                conflicts = self._conflicts(conn, again)
                result.duplicates += len(again) - len(conflicts)
                dead.extend(conflicts)
                fresh = [a for a in fresh if (a.gateway, a.epoch, a.seq) in new]
            self._note_unknown_sensors(conn, [a for a in good if a.new_sensors])
        result.ids_at = time.time()
        telemetry = [a for a in fresh if a.kind == "telemetry"]
        if telemetry:
            with conn.cursor().copy(COPY_READINGS) as copy:
                copy.write(b"".join([COPY_HEADER, *(a.rows for a in telemetry), COPY_TRAILER]))
            result.readings = sum(a.n_rows for a in telemetry)
        events = [a for a in fresh if a.kind == "event"]
        if events:
            self._write_events(conn, events)
            result.events = len(events)
        statuses = [a for a in fresh if a.kind == "status"]
        if statuses:
            self._write_statuses(conn, statuses)
            result.statuses = len(statuses)
        result.messages = len(fresh)
        return self._finish(conn, result, good, registry, defer)

    def _finish(
        self,
        conn: psycopg.Connection[Any],
        result: WriteResult,
        good: list[Accepted],
        registry: Registry,
        defer: bool,
    ) -> WriteResult:
        """The end of a batch's transaction: its dead letters, their ids, the watermarks' work."""
        dead = result.dead
        if dead:
            with conn.cursor() as cur:
                cur.executemany(
                    INSERT_DEAD,
                    [
                        {
                            "topic": _clean(r.inbound.topic),
                            "payload": r.payload,
                            "reason": _clean(r.reason),
                            "site": r.site,
                            "gateway": r.gateway,
                            "dedup_key": r.dedup_key,
                        }
                        for r in dead
                    ],
                )
        refused = refused_ids(dead, registry)
        if refused:  # with the dead letters: the watermark may pass them whenever it moves
            ids = sorted((gw, ep, seq) for _, gw, ep, seq in refused)
            conn.execute(
                INSERT_REFUSED,
                {"gateways": [i[0] for i in ids], "epochs": [i[1] for i in ids], "seqs": [i[2] for i in ids]},
            )
        work = ack_work(good, refused)
        if defer:
            result.pending = work
        else:
            result.acks = self._advance_acks(conn, work)
        result.written_at = time.time()
        return result

    def _conflicts(self, conn: psycopg.Connection[Any], again: list[Accepted]) -> list[Rejected]:
        """Duplicates whose contents differ from the stored message's: dead letters, once each.

        An identical redelivery is the normal case and stays silent. A row stored before digests
        existed (NULL) cannot be compared and counts as identical.
        """
        ids: dict[str, list[Any]] = {"gateways": [], "epochs": [], "seqs": []}
        for a in again:
            ids["gateways"].append(a.gateway)
            ids["epochs"].append(a.epoch)
            ids["seqs"].append(a.seq)
        stored = {(g, e, q): d for g, e, q, d in conn.execute(STORED_DIGESTS, ids)}
        out = []
        for a in again:
            digest = stored.get((a.gateway, a.epoch, a.seq))
            if digest is None or same_contents(a, digest):
                continue
            out.append(_conflict(a))
        return out

    def _note_unknown_sensors(self, conn: psycopg.Connection[Any], items: list[Accepted]) -> None:
        """Sensor ids this worker sees for the first time: listed in unknown_sensors unless registered."""
        pairs = sorted({(a.gateway, s) for a in items for s in a.new_sensors})  # one lock order: no deadlock
        if pairs:
            conn.execute(
                UNKNOWN_SENSORS, {"gateways": [g for g, _ in pairs], "sensors": [s for _, s in pairs]}
            )

    def _advance_acks(self, conn: psycopg.Connection[Any], work: AckWork) -> dict[tuple[str, str, str], int]:
        """Move each (gateway, epoch) watermark of ``work`` past what is now contiguously stored.

        A message's ``low`` moves the watermark to just below it first (nothing below will come).
        Each turn is one round trip and, on the autocommit connection of :meth:`advance_acks`,
        one implicit transaction: the statements up to the pipeline's Sync (or the caller's
        transaction). An explicit BEGIN and COMMIT would be two more round trips, each a sleep and
        a wake-up of the thread. The statements stay prepared: sent as one simple query instead,
        the server planned them at every turn, about 1 ms of its CPU (docs/performance.md, ingest,
        sixth pass).
        """
        if not work:
            return {}
        sites = {key: entry[0] for key, entry in work.keys.items()}
        lows = {key: entry[2] for key, entry in work.keys.items()}
        todo = {key: entry[1] + ACK_SLACK for key, entry in work.keys.items()}
        out: dict[tuple[str, str, str], int] = {}
        while todo:
            keys = sorted(todo)  # one lock order for every worker: no deadlock cycle
            params = {
                "gateways": [g for g, _ in keys],
                "epochs": [e for _, e in keys],
                "lows": [lows[k] for k in keys],
                "ns": [todo[k] for k in keys],
            }
            with conn.pipeline():
                conn.execute(ACK_LOCK, params)
                if any(lows[k] is not None for k in keys):
                    conn.execute(ACK_RAISE, params)
                cur = conn.execute(ACK_ADVANCE, params)
            rows = cur.fetchall()
            for gw, ep, seq, _ in rows:
                if seq >= 0:  # -1: nothing of the epoch covered yet, and no valid ack (seq >= 0)
                    out[(sites[(gw, ep)], gw, ep)] = int(seq)
            # a whole window contiguous: the run may go on (another worker stored the rest)
            todo = {(gw, ep): 4 * todo[(gw, ep)] for gw, ep, _, more in rows if more}
        return out

    def _write_events(self, conn: psycopg.Connection[Any], events: list[Accepted]) -> None:
        rows = [_event_row(a) for a in events]
        with conn.pipeline(), conn.cursor() as cur:  # both in one round trip
            cur.executemany(INSERT_EVENT, rows)
            cur.executemany(INSERT_WORK, rows)

    # Events alone: one statement, its own transaction ----------------------------------------

    def _events_alone(self, batch: Batch, registry: Registry) -> bool:
        """A batch :data:`WRITE_EVENTS` can write: events only, ids distinct, every gateway known here.

        Anything else (telemetry or status, a dead letter already, two copies of one id, a gateway
        the cache is unsure of or a notification named) takes :meth:`_write_tx`, whose order of
        checks then decides exactly as it always has.
        """
        if batch.rejected or not batch.accepted:
            return False
        self._apply_notifications(self.connect(), registry)
        sites = registry.sites
        keys = set()
        for a in batch.accepted:
            if a.kind != "event" or sites.get(a.gateway) != a.site:
                return False
            keys.add((a.gateway, a.epoch, a.seq))
        return len(keys) == len(batch.accepted)

    def _write_events_tx(
        self, conn: psycopg.Connection[Any], batch: Batch, registry: Registry, defer: bool
    ) -> tuple[WriteResult, Batch | None]:
        """Commit a batch of events in one round trip: :data:`WRITE_EVENTS` alone on the autocommit
        connection is its own transaction, committed when its answer arrives.

        The statement repeats the registry's and the residents' checks in its own snapshot, so no
        cache decides alone and none needs a notification: a resident who moved home is read as
        they are now. What it did not store is not in ``ingested_messages``, so whatever comes
        after it (rare) is safe to do in a transaction of its own before anything is acknowledged:
        a crash in between redelivers those messages and they are judged again. The rare cases:
        dead letters (a resident of another site, a conflicting duplicate) and a copy another
        transaction committed while this one waited, here; a gateway that failed the check
        (changed since the cache last heard of it) is forgotten and its messages are returned for
        :meth:`_write_tx`, which reads it again.
        """
        events = sorted(batch.accepted, key=lambda a: (a.gateway, a.epoch, a.seq))  # INSERT_IDS' lock order
        rows = [_event_row(a) for a in events]
        params = {
            "gateways": [a.gateway for a in events],
            "epochs": [a.epoch for a in events],
            "seqs": [a.seq for a in events],
            "digests": [a.digest for a in events],
            "sites": [a.site for a in events],
            "residents": [r["resident"] for r in rows],
            "ts": [r["ts"] for r in rows],
            "sensors": [r["sensor"] for r in rows],
            "kinds": [r["kind"] for r in rows],
            "confidences": [r["confidence"] for r in rows],
            "evidence": [r["evidence"] for r in rows],
            "payloads": [r["payload"] for r in rows],
            "new_sensors": [bool(a.new_sensors) for a in events],
        }
        found = conn.execute(WRITE_EVENTS, params, prepare=True).fetchall()
        result = WriteResult(ids_at=time.time())
        verdict = {(a.gateway, a.epoch, a.seq): row for a, row in zip(events, found, strict=True)}
        changed = {a.gateway for a in events if not verdict[(a.gateway, a.epoch, a.seq)][1]}
        rest: Batch | None = None
        if changed:
            registry.forget(changed)
            rest = Batch()
            for a in batch.accepted:
                if a.gateway in changed:
                    rest.add(a)
        good: list[Accepted] = []
        for a in batch.accepted:  # batch order, as _check_residents: the dead letters' order
            if a.gateway in changed:
                continue
            _i, _gw_ok, known, home, station, resident_ok = verdict[(a.gateway, a.epoch, a.seq)][:6]
            if resident_ok:
                good.append(a)
            else:
                assert isinstance(a.message, Event) and a.message.resident is not None
                where = (home, station) if known else None
                result.dead.append(_reject(a, _resident_reason(a, a.message.resident, where)))
        again: list[Accepted] = []
        for a, row in zip(events, found, strict=True):
            _i, gw_ok, _known, _home, _station, resident_ok, new, seen, stored = row[:9]
            if not (gw_ok and resident_ok):
                continue
            if new:
                result.messages += 1
            elif not seen:  # another transaction committed it while this one waited
                again.append(a)
            elif stored is None or same_contents(a, stored):
                result.duplicates += 1
            else:
                result.dead.append(_conflict(a))
        result.events = result.messages
        if not (again or result.dead):
            self._finish(conn, result, good, registry, defer)  # deferred: nothing more to write
            return result, rest
        with conn.transaction():
            if again:
                conflicts = self._conflicts(conn, again)
                result.duplicates += len(again) - len(conflicts)
                result.dead.extend(conflicts)
            self._finish(conn, result, good, registry, defer)
        return result, rest

    def _write_statuses(self, conn: psycopg.Connection[Any], statuses: list[Accepted]) -> None:
        rows = []
        for a in statuses:
            st = a.message
            assert isinstance(st, Status)
            sensors = _JSON.encode(st.sensors).decode()
            outbox = _JSON.encode(st.outbox).decode()
            work = {
                "gateway": a.gateway,
                "site": a.site,
                "t": st.t,
                "ts": a.ts_lo,
                "state": st.state,
                "version": st.version,
                "clock_ok": st.clock_ok,
                "retained": a.inbound.retain,
                "sensors": msgspec.to_builtins(st.sensors),
                "outbox": st.outbox,
            }
            rows.append(
                {
                    "ts": to_datetime(a.ts_lo),
                    "reported": to_datetime(st.t),  # the gateway's own clock (a simulator's, if simulated)
                    "gateway": a.gateway,
                    "site": a.site,
                    "state": st.state,
                    "clock_ok": st.clock_ok,
                    "version": st.version,
                    "config_revision": st.config_revision,
                    "config_error": st.config_error,
                    "retained": a.inbound.retain,
                    "sensors": sensors,
                    "outbox": outbox,
                    "work": "status",
                    "payload": _JSON.encode(work).decode(),
                }
            )
        with conn.pipeline(), conn.cursor() as cur:  # the three in one round trip
            cur.executemany(INSERT_STATUS, rows)
            cur.executemany(UPDATE_GATEWAY, rows)
            cur.executemany(INSERT_WORK, rows)
