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

The outbox belongs to one thread (the agent's loop); it is not safe to share.
"""

from __future__ import annotations

import logging
import secrets
import sqlite3
from collections.abc import Iterable, Sequence
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
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={self.cfg.synchronous.upper()}")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            msg = f"cannot open outbox {self.path}: {exc}"
            raise OutboxError(msg) from exc
        with self._tx():
            if self.get_meta("epoch") is None:
                self._set_meta("epoch", new_epoch())
                self._set_meta("next_seq", "0")
        self.epoch = str(self.get_meta("epoch"))
        self._next_seq = int(self.get_meta("next_seq") or 0)
        n, size = self._db.execute("SELECT count(*), coalesce(sum(size), 0) FROM messages").fetchone()
        self.n_messages, self.n_bytes = int(n), int(size)
        self.n_pending = int(self._db.execute("SELECT count(*) FROM pending").fetchone()[0])
        self.shed_messages = int(self.get_meta("shed_messages") or 0)

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
        payload = msgspec.json.encode({"v": 1, "epoch": self.epoch, "seq": seq, **fields})
        protocol.decode("event", payload)  # refuse what the platform would dead-letter
        prio = PRIORITY_ALARM if fields.get("kind") in ALARM_KINDS else PRIORITY_EVENT
        with self._tx():
            self._insert(seq, "event", prio, now_ms, payload)
        return seq

    def _insert(self, seq: int, kind: str, priority: int, now_ms: int, payload: bytes) -> None:
        self._db.execute(
            "INSERT INTO messages (seq, kind, priority, created_ms, size, payload) VALUES (?, ?, ?, ?, ?, ?)",
            (seq, kind, priority, now_ms, len(payload), payload),
        )
        self._set_meta("next_seq", str(seq + 1))
        self._next_seq = seq + 1
        self.n_messages += 1
        self.n_bytes += len(payload)

    # sending ---------------------------------------------------------------------------------

    def next_batch(
        self, exclude: Iterable[int], limit: int, max_priority: int = PRIORITY_TELEMETRY
    ) -> list[Outgoing]:
        """The next messages to send, in (priority, seq) order, skipping those in flight."""
        if limit <= 0:
            return []
        ex = list(exclude)
        marks = ",".join("?" * len(ex))
        where = f"priority <= ? AND seq NOT IN ({marks})" if ex else "priority <= ?"
        rows = self._db.execute(
            f"SELECT seq, kind, priority, payload FROM messages WHERE {where} ORDER BY priority, seq LIMIT ?",
            (max_priority, *ex, limit),
        ).fetchall()
        return [Outgoing(int(s), str(k), int(p), bytes(b)) for s, k, p, b in rows]

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
        }

    def close(self) -> None:
        self._db.close()


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
                return
            except sqlite3.Error:
                self._rollback()
                raise
        self._rollback()

    def _rollback(self) -> None:
        for name, value in zip(self._COUNTERS, self.saved, strict=True):
            setattr(self.owner, name, value)
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")
