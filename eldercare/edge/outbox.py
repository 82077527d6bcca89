"""The on-disk outbox: every reading and event is on disk before anything is sent.

One SQLite file in WAL mode holds three tables: ``meta`` (the outbox's ``epoch``, the next
``seq``, the last good clock time, the last applied remote config), ``pending`` (readings not yet
sealed into a telemetry message) and ``messages`` (sealed telemetry and events, each with its
``seq`` and its exact payload bytes, kept until the broker acknowledges them). A message's bytes
never change once sealed, so a redelivery after a crash is byte-identical and the platform's
``(gateway, epoch, seq)`` deduplication is exact.

Durability: ``synchronous=FULL`` by default. In WAL mode NORMAL already survives a killed
process, but a power cut may roll back the last commits; a sensor reading cannot be asked for
again, so FULL pays one fsync per commit and the agent amortises it by committing once per
loop turn (group commit), not per reading. NORMAL is offered for flash that must be spared.

Bounds (docs/edge.md, "Outbox bounds"): ``max_messages``, ``max_bytes`` and ``max_age_s``. When
a bound is passed, the oldest telemetry is shed first; events are never shed (they are small and
rare; if events alone pass the bound, the outbox grows and says so in the status).

Damage (docs/edge.md, "Outbox recovery"): a file SQLite calls corrupt (malformed, not a database,
or failing ``quick_check`` at open) is moved aside as ``<name>.corrupt-<time>`` (its ``-wal`` and
``-shm`` with it) and a new file with a new epoch is started; the agent goes on. A small sidecar
file ``<name>.seq`` holds the epoch and the highest ``next_seq`` ever committed, written after each
commit that used a seq and before the message is sent: if the database comes back *behind* it
(a lost or rolled-back WAL), a new epoch is started at that high-water mark, so a seq that may
have left the gateway is never reused with other contents (the platform would drop it as a
duplicate). ``next_seq`` never goes backwards.

Epochs in one file: seqs keep rising across epochs, so the messages of older epochs are exactly
those below ``epoch_start``.

The outbox belongs to one thread (the agent's loop); it is not safe to share.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from eldercare import protocol
from eldercare.edge.config import OutboxConfig
from eldercare.edge.errors import OutboxError

log = logging.getLogger(__name__)

# Lower sends first: alarms ahead of everything, then other events, then telemetry.
PRIORITY_ALARM = 0
PRIORITY_EVENT = 1
PRIORITY_TELEMETRY = 2
ALARM_KINDS = frozenset({"sos", "fall"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pending (
    id INTEGER PRIMARY KEY, t INTEGER NOT NULL, sensor TEXT NOT NULL, metric TEXT NOT NULL,
    value REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, priority INTEGER NOT NULL,
    created_ms INTEGER NOT NULL, size INTEGER NOT NULL, payload BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_order ON messages (priority, seq);
"""

Row = tuple[int, str, str, float]  # t ms, sensor, metric, value

# SQLite's primary result codes for a damaged file (sqlite3.h): SQLITE_CORRUPT, SQLITE_NOTADB.
_CORRUPT_CODES = frozenset({11, 26})
_HWM_BYTES = 96  # the sidecar is rewritten in place at a fixed size: no new blocks on a full disk


def is_corruption(exc: BaseException) -> bool:
    """Whether an SQLite error means the file is damaged (as opposed to full, locked, unwritable)."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in _CORRUPT_CODES
    text = str(exc)
    return "malformed" in text or "not a database" in text


@dataclass(frozen=True, slots=True)
class Outgoing:
    seq: int
    kind: str  # "telemetry" or "event"
    priority: int
    payload: bytes


def new_epoch() -> str:
    """A random id for a new outbox: a wiped gateway never reuses (epoch, seq)."""
    return secrets.token_hex(8)


class Outbox:
    """Durable queue of readings and messages with seq assignment, bounds and shedding."""

    def __init__(self, path: Path, cfg: OutboxConfig | None = None) -> None:
        self.cfg = cfg or OutboxConfig(path=path)
        self.path = Path(path)
        self.hwm_path = self.path.with_name(self.path.name + ".seq")
        self.quarantined: list[Path] = []
        self.reserved: set[int] = set()  # seqs of events sent from memory, not stored yet
        self.epoch_restarts: list[str] = []  # why a new epoch was started in this process
        self._hwm_fd: int | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            msg = f"cannot open outbox {self.path}: {exc}"
            raise OutboxError(msg) from exc
        try:
            self._open()
        except sqlite3.DatabaseError as exc:
            if not is_corruption(exc):
                msg = f"cannot open outbox {self.path}: {exc}"
                raise OutboxError(msg) from exc
            self._quarantine(str(exc))
            try:
                self._open()
            except sqlite3.Error as exc2:
                msg = f"cannot open outbox {self.path} even after moving the damaged file aside: {exc2}"
                raise OutboxError(msg) from exc2
        self._check_high_water()

    def _open(self) -> None:
        """Open (or create) the file, check it and load the counters; raises sqlite3 errors."""
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={self.cfg.synchronous.upper()}")
            self._db.executescript(_SCHEMA)
            problems = [r[0] for r in self._db.execute("PRAGMA quick_check").fetchall()]
            if problems != ["ok"]:
                detail = " ".join(problems)[:200]
                raise sqlite3.DatabaseError(f"database disk image is malformed: {detail}")
            with self._tx():
                if self.get_meta("epoch") is None:
                    self._set_meta("epoch", new_epoch())
                    self._set_meta("next_seq", "0")
            self.epoch = str(self.get_meta("epoch"))
            self._next_seq = int(self.get_meta("next_seq") or 0)
            self.epoch_start = int(self.get_meta("epoch_start") or 0)
            n, size = self._db.execute("SELECT count(*), coalesce(sum(size), 0) FROM messages").fetchone()
            self.n_messages, self.n_bytes = int(n), int(size)
            self.n_pending = int(self._db.execute("SELECT count(*) FROM pending").fetchone()[0])
            self.shed_messages = int(self.get_meta("shed_messages") or 0)
            top = self._db.execute("SELECT max(seq) FROM messages").fetchone()[0]
            if top is not None and int(top) >= self._next_seq:
                self._next_seq = int(top) + 1  # meta behind its own messages: never reuse a seq
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            raise

    def _quarantine(self, reason: str) -> None:
        """Move a damaged file (and its WAL and shared memory) aside, kept for inspection."""
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while target.exists():
            n += 1
            target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(self.path) + suffix)
            if src.exists():
                os.replace(src, Path(str(target) + suffix))
        self.quarantined.append(target)
        log.error(
            "outbox %s is damaged (%s): moved aside to %s; starting a new epoch", self.path, reason, target
        )

    def replace_damaged(self, reason: str) -> None:
        """Found damaged while running: move the file aside and go on with a new one and epoch."""
        with contextlib.suppress(sqlite3.Error):
            self._db.close()
        self._quarantine(reason)
        try:
            self._open()
        except sqlite3.Error as exc:
            msg = f"cannot open outbox {self.path} after moving the damaged file aside: {exc}"
            raise OutboxError(msg) from exc
        self._check_high_water()

    # epochs and the high-water mark ------------------------------------------------------------

    def _read_high_water(self) -> tuple[str, int] | None:
        try:
            epoch, seq = self.hwm_path.read_text(encoding="ascii").split()[:2]
            return epoch, int(seq)
        except (OSError, ValueError):
            return None

    def _check_high_water(self) -> None:
        hwm = self._read_high_water()
        if hwm is not None:
            epoch, seq = hwm
            if self.quarantined or epoch != self.epoch:
                reason = (
                    "damaged outbox replaced"
                    if self.quarantined
                    else f"outbox is not the one of epoch {epoch}"
                )
                self.start_epoch(reason, at_least=seq)
            elif seq > self._next_seq:
                self.start_epoch(
                    f"next_seq went back from {seq} to {self._next_seq} (lost or rolled-back WAL)",
                    at_least=seq,
                )
        elif self.quarantined:
            self.start_epoch("damaged outbox replaced")
        self._write_high_water()

    def start_epoch(self, reason: str, at_least: int = 0) -> None:
        """A new epoch from here on; seqs keep rising so older epochs' messages stay below ``epoch_start``."""
        old = self.epoch
        epoch, start = new_epoch(), max(self._next_seq, at_least)
        with self._tx():
            self._set_meta("epoch", epoch)
            self._set_meta("next_seq", str(start))
            self._set_meta("epoch_start", str(start))
            self._set_meta("epochs_started", str(int(self.get_meta("epochs_started") or 0) + 1))
        self.epoch, self.epoch_start, self._next_seq = epoch, start, start
        self.epoch_restarts.append(reason)
        self._write_high_water()
        log.warning("outbox: new epoch %s (was %s) from seq %s: %s", self.epoch, old, self._next_seq, reason)

    def _write_high_water(self) -> None:
        """Record the epoch and next_seq in the sidecar, in place (no fsync: see the module doc)."""
        data = f"{self.epoch} {self._next_seq}\n".encode().ljust(_HWM_BYTES)
        try:
            if self._hwm_fd is None:
                self._hwm_fd = os.open(self.hwm_path, os.O_WRONLY | os.O_CREAT, 0o644)
            os.pwrite(self._hwm_fd, data, 0)
        except OSError as exc:
            log.error("cannot write the outbox high-water mark %s: %s", self.hwm_path, exc)

    def reserve_seq(self) -> int:
        """A seq for a message sent before it can be stored (a full disk); recorded before use."""
        seq = self._next_seq
        self._next_seq += 1
        self._write_high_water()
        self.reserved.add(seq)
        return seq

    def release(self, seq: int) -> None:
        """A reserved seq's event will not be sent again (acknowledged): it no longer holds ``low``."""
        self.reserved.discard(seq)

    def low_water(self, seq: int) -> int:
        """The ``low`` of a message sealed now with ``seq``: the lowest seq of this epoch the
        gateway may still send (kept in the outbox, or held in memory), at most ``seq``.

        Everything of the epoch below it has been acknowledged or shed: it will never be sent
        again, so the platform's acknowledgement may pass it (wire protocol v1, section 9)."""
        row = self._db.execute("SELECT min(seq) FROM messages WHERE seq >= ?", (self.epoch_start,)).fetchone()
        low = seq if row[0] is None else min(int(row[0]), seq)
        held = [s for s in self.reserved if s >= self.epoch_start]
        return min(low, *held) if held else low

    # transactions ----------------------------------------------------------------------------

    def _tx(self) -> _Tx:
        return _Tx(self._db, self)

    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _set_meta(self, key: str, value: str) -> None:
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def set_meta(self, key: str, value: str) -> None:
        with self._tx():
            self._set_meta(key, value)

    @property
    def next_seq(self) -> int:
        return self._next_seq

    # writing ---------------------------------------------------------------------------------

    def add_readings(self, rows: Sequence[Row]) -> None:
        """Store readings durably in one commit (the agent's group commit)."""
        if not rows:
            return
        with self._tx():
            self._db.executemany("INSERT INTO pending (t, sensor, metric, value) VALUES (?, ?, ?, ?)", rows)
        self.n_pending += len(rows)

    def seal_batch(self, max_readings: int, now_ms: int) -> tuple[int, int] | None:
        """Move up to ``max_readings`` oldest pending readings into one telemetry message.

        Returns (seq, number of readings), or None when nothing is pending."""
        sealed = self.seal_batches(max_readings, now_ms, limit=1)
        return sealed[0] if sealed else None

    def seal_batches(
        self, max_readings: int, now_ms: int, limit: int = 10_000, partial: bool = True
    ) -> list[tuple[int, int]]:
        """Seal pending readings into messages of ``max_readings`` in one commit (one fsync).

        With ``partial`` False a last batch smaller than ``max_readings`` stays pending.
        Returns (seq, number of readings) per message."""
        out: list[tuple[int, int]] = []
        with self._tx():
            while len(out) < limit:
                rows = self._db.execute(
                    "SELECT id, t, sensor, metric, value FROM pending ORDER BY id LIMIT ?", (max_readings,)
                ).fetchall()
                if not rows or (len(rows) < max_readings and not partial):
                    break
                seq = self._next_seq
                msg = protocol.Telemetry(
                    v=1,
                    epoch=self.epoch,
                    seq=seq,
                    readings=[protocol.Reading(t=t, sensor=s, metric=m, value=v) for _, t, s, m, v in rows],
                    low=self.low_water(seq),
                )
                self._db.execute("DELETE FROM pending WHERE id <= ?", (rows[-1][0],))
                self._insert(seq, "telemetry", PRIORITY_TELEMETRY, now_ms, msgspec.json.encode(msg))
                self.n_pending = max(0, self.n_pending - len(rows))
                out.append((seq, len(rows)))
                if len(rows) < max_readings:
                    break
        if not out and self.n_pending and partial:
            self.n_pending = 0  # the counter had drifted: nothing is pending
        return out

    def add_event(self, fields: dict[str, Any], now_ms: int) -> int:
        """Seal one event (``t``, ``sensor``, ``kind``, ...) as its own message; returns its seq."""
        seq = self._next_seq
        low = self.low_water(seq)
        payload = msgspec.json.encode({"v": 1, "epoch": self.epoch, "seq": seq, **fields, "low": low})
        protocol.decode("event", payload)  # refuse what the platform would dead-letter
        prio = PRIORITY_ALARM if fields.get("kind") in ALARM_KINDS else PRIORITY_EVENT
        with self._tx():
            self._insert(seq, "event", prio, now_ms, payload)
        return seq

    def event_payload(self, fields: dict[str, Any], seq: int) -> tuple[bytes, int]:
        """The exact bytes and priority of an event with ``seq``; raises ProtocolError if invalid."""
        low = self.low_water(seq)
        payload = msgspec.json.encode({"v": 1, "epoch": self.epoch, "seq": seq, **fields, "low": low})
        protocol.decode("event", payload)
        prio = PRIORITY_ALARM if fields.get("kind") in ALARM_KINDS else PRIORITY_EVENT
        return payload, prio

    def store_sent(self, seq: int, priority: int, payload: bytes, now_ms: int) -> None:
        """Store an event that was sent from memory under a reserved seq (same bytes)."""
        with self._tx():
            self._insert(seq, "event", priority, now_ms, payload)
        self.reserved.discard(seq)

    def _insert(self, seq: int, kind: str, priority: int, now_ms: int, payload: bytes) -> None:
        self._db.execute(
            "INSERT INTO messages (seq, kind, priority, created_ms, size, payload) VALUES (?, ?, ?, ?, ?, ?)",
            (seq, kind, priority, now_ms, len(payload), payload),
        )
        self._next_seq = max(self._next_seq, seq + 1)
        self._set_meta("next_seq", str(self._next_seq))
        self.n_messages += 1
        self.n_bytes += len(payload)

    # sending ---------------------------------------------------------------------------------

    def next_batch(
        self,
        exclude: Iterable[int],
        limit: int,
        max_priority: int = PRIORITY_TELEMETRY,
        after: Mapping[int, int] | None = None,
        min_priority: int = PRIORITY_ALARM,
    ) -> list[Outgoing]:
        """The next messages to send, in (priority, seq) order, skipping ``exclude`` (in flight,
        a short list) and, per priority class, every seq up to ``after[priority]`` (handed over
        already: a cursor, so a large set of sent-but-unacknowledged messages costs nothing)."""
        if limit <= 0:
            return []
        ex = list(exclude)
        marks = ",".join("?" * len(ex))
        not_in = f" AND seq NOT IN ({marks})" if ex else ""
        out: list[Outgoing] = []
        for prio in range(min_priority, max_priority + 1):
            cursor = -1 if after is None else after.get(prio, -1)
            rows = self._db.execute(
                f"SELECT seq, kind, priority, payload FROM messages WHERE priority = ? AND seq > ?{not_in} "
                "ORDER BY seq LIMIT ?",
                (prio, cursor, *ex, limit - len(out)),
            ).fetchall()
            out += [Outgoing(int(q), str(k), int(p), bytes(b)) for q, k, p, b in rows]
            if len(out) >= limit:
                break
        return out

    def ack(self, seqs: Sequence[int]) -> None:
        """The broker has the messages: forget them (one commit for all).

        This commit is not fsynced even under ``synchronous=FULL``: a power cut that undoes it
        only means the messages are sent again, byte-identical, and the platform deduplicates
        them; the next fsynced commit makes it durable anyway. (Seals and events are always
        fsynced: a seq must never be sealed twice with different contents.)"""
        if not seqs:
            return
        relax = self.cfg.synchronous == "full"
        if relax:
            self._db.execute("PRAGMA synchronous=NORMAL")
        try:
            marks = ",".join("?" * len(seqs))
            with self._tx():
                sizes = self._db.execute(
                    f"SELECT count(*), coalesce(sum(size), 0) FROM messages WHERE seq IN ({marks})",
                    tuple(seqs),
                ).fetchone()
                self._db.executemany("DELETE FROM messages WHERE seq = ?", [(s,) for s in seqs])
        finally:
            if relax:
                self._db.execute("PRAGMA synchronous=FULL")
        self.n_messages -= int(sizes[0])
        self.n_bytes -= int(sizes[1])

    def ack_through(self, seq: int) -> int:
        """The platform has stored every message of the current epoch up to ``seq``: forget them.

        Not fsynced, for the same reason as :meth:`ack`. Returns how many were deleted."""
        lo = self.epoch_start
        if seq < lo:
            return 0
        relax = self.cfg.synchronous == "full"
        if relax:
            self._db.execute("PRAGMA synchronous=NORMAL")
        try:
            with self._tx():
                n, size = self._db.execute(
                    "SELECT count(*), coalesce(sum(size), 0) FROM messages WHERE seq BETWEEN ? AND ?",
                    (lo, seq),
                ).fetchone()
                if n:
                    self._db.execute("DELETE FROM messages WHERE seq BETWEEN ? AND ?", (lo, seq))
        finally:
            if relax:
                self._db.execute("PRAGMA synchronous=FULL")
        self.n_messages -= int(n)
        self.n_bytes -= int(size)
        self.reserved = {s for s in self.reserved if not lo <= s <= seq}
        return int(n)

    def disk_free(self) -> int | None:
        """Bytes free for the outbox's file system (None if it cannot be asked)."""
        try:
            return int(shutil.disk_usage(self.path.parent).free)
        except OSError:
            return None

    # bounds ----------------------------------------------------------------------------------

    def enforce_bounds(self, now_ms: int) -> int:
        """Shed the oldest telemetry while a bound is passed, and telemetry past ``max_age_s``."""
        shed = 0
        cutoff = now_ms - self.cfg.max_age_s * 1000
        oldest = self._db.execute(
            "SELECT created_ms FROM messages WHERE priority = ? ORDER BY priority, seq LIMIT 1",
            (PRIORITY_TELEMETRY,),
        ).fetchone()  # through the index: the age check costs nothing while nothing is old
        too_old = oldest is not None and oldest[0] < cutoff
        too_big = self.n_messages > self.cfg.max_messages or self.n_bytes > self.cfg.max_bytes
        if not (too_old or too_big):
            return 0
        with self._tx():
            cur = self._db.execute(
                "DELETE FROM messages WHERE priority = ? AND created_ms < ? RETURNING size",
                (PRIORITY_TELEMETRY, cutoff),
            )
            for (size,) in cur.fetchall():
                shed += 1
                self.n_messages -= 1
                self.n_bytes -= int(size)
            while self.n_messages > self.cfg.max_messages or self.n_bytes > self.cfg.max_bytes:
                over = max(self.n_messages - self.cfg.max_messages, 1)
                rows = self._db.execute(
                    "DELETE FROM messages WHERE seq IN (SELECT seq FROM messages WHERE priority = ? "
                    "ORDER BY seq LIMIT ?) RETURNING size",
                    (PRIORITY_TELEMETRY, min(max(over, 64), 10_000)),
                ).fetchall()
                if not rows:
                    break  # only events left: never shed them
                for (size,) in rows:
                    shed += 1
                    self.n_messages -= 1
                    self.n_bytes -= int(size)
            if shed:
                self.shed_messages += shed
                self._set_meta("shed_messages", str(self.shed_messages))
        if shed:
            log.warning("outbox over its bounds: shed %s oldest telemetry messages", shed)
        return shed

    def stats(self) -> dict[str, int]:
        return {
            "messages": self.n_messages,
            "bytes": self.n_bytes,
            "pending_readings": self.n_pending,
            "shed_messages": self.shed_messages,
            "next_seq": self._next_seq,
            "epoch_start": self.epoch_start,
            "quarantined": len(self.quarantined),
        }

    def close(self) -> None:
        self._db.close()
        if self._hwm_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._hwm_fd)
            self._hwm_fd = None


class _Tx:
    """``with`` block around BEGIN IMMEDIATE / COMMIT. On any failure (a COMMIT refused on a
    full disk included) it rolls back and restores the outbox's in-memory counters."""

    _COUNTERS = ("_next_seq", "n_messages", "n_bytes", "n_pending", "shed_messages")

    def __init__(self, db: sqlite3.Connection, owner: Outbox) -> None:
        self.db = db
        self.owner = owner
        self.saved: tuple[int, ...] = ()

    def __enter__(self) -> sqlite3.Connection:
        self.saved = tuple(getattr(self.owner, c, 0) for c in self._COUNTERS)
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            try:
                self.db.execute("COMMIT")
            except sqlite3.Error:
                self._rollback()
                raise
            if getattr(self.owner, "_next_seq", 0) != self.saved[0]:
                self.owner._write_high_water()  # after the commit, before the message can be sent
            return
        self._rollback()

    def _rollback(self) -> None:
        for name, value in zip(self._COUNTERS, self.saved, strict=True):
            setattr(self.owner, name, value)
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")
