"""One ingest worker (a handful of threads) and the supervisor that runs N of them as processes.

Threads of a worker: the network threads of its two MQTT connections fill two inboxes
(:mod:`.mqtt`): events (fall, SOS) in one, everything else in the other. The main thread validates
telemetry and status into the open batch; a writer thread commits it and then acknowledges it
to the broker (PUBACK). A watermark thread then advances the gateways' acknowledgement watermarks
of what was committed, on a database connection of its own, and hands them to the publisher of
the acknowledgements to gateways; it also records the worker's heartbeat and reloads the
registry, so that a commit never waits for any of these. This is a **group commit**:
a writer takes the open batch the moment it is free and the batch holds anything, so an idle
worker commits each message at once and a loaded one forms large batches by itself (whatever
arrived while the commits were in flight). There are ``ingest_writers`` writers (1 by default),
each with a database connection of its own: with two, a batch does not wait for the previous
commit's WAL flush to return before its own COPY starts. A batch only grows while every writer is busy,
bounded by rows (``ingest_batch_rows``), bytes (``ingest_batch_bytes``) and Receive Maximum
shared among the writers' batches and the open one (so the next batch can fill while they
commit); at the bound the main thread stops reading and the broker holds the rest. No timer
anywhere.

Commits in flight at once may return in any order; nothing depends on their order. Each writer
PUBACKs exactly the messages of its own commit, after it returned; the ids of a redelivered message
committed by one writer while another holds it are settled by ``ingested_messages`` (the second
insert waits for the first transaction, then finds the id: a duplicate); a watermark only moves
over what is committed (:data:`.store.ACK_ADVANCE` reads ``ingested_messages``), so a later batch
committed first leaves it below the earlier batch's gap until that one's commit moves it. A
worker killed with two commits in flight leaves each committed or not, as a whole; what was not
acknowledged the broker delivers again.

Events take their own fast path: a thread with its own database connection validates and
commits them (group committed the same way among themselves, the gateways in turn and at most
``EVENT_BATCH_BYTES`` of them per commit), so a fall is never queued behind telemetry, neither in
the inbox nor behind a large COPY, nor an SOS behind another gateway's storm of large events.
Every worker receives every event (see :func:`.mqtt.event_subscriptions`); copies are deduplicated
by the same ``ingested_messages`` key.

Nothing is acknowledged before its commit, so the broker's Receive Maximum bounds what is in
memory and a database outage simply stops the flow until writes succeed again. After a commit the
worker also tells each gateway how far its epoch is stored (``.../ack``, see :mod:`.mqtt`).
"""

from __future__ import annotations

import gc
import logging
import os
import queue
import re
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from eldercare.config import Settings
from eldercare.ingest.batch import (
    Accepted,
    Batch,
    Ignored,
    Inbound,
    Limits,
    Registry,
    Rejected,
    Validator,
    retained_key,
)
from eldercare.ingest.errors import IngestError, StoreUnavailable
from eldercare.ingest.metrics import Metrics, MetricsServer
from eldercare.ingest.mqtt import (
    EVENT_GENERATIONS,
    EVENT_SUFFIX,
    WAKE,
    AckPublisher,
    MqttSource,
    event_subscriptions,
)
from eldercare.ingest.store import AckWork, Store, WriteResult

log = logging.getLogger(__name__)

BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 10.0
_INDEX = re.compile(r"\[\d+\]")
RETIRE_IDLE_S = 3.0  # a retiring worker leaves after this long without a message
DRAIN_AT_ONCE = 200  # messages validated per turn before the batch lock is taken
EVENT_BATCH_BYTES = 1 << 20  # an events commit takes the gateways in turn up to this much payload
SILENT_HEARTBEATS = 3  # a peer not seen for this many heartbeats is stopped or dead
# How long a thread may keep the GIL while another waits for it (CPython's default: 5 ms). The
# network and event threads release it at every system call and then wait for it behind the
# decoding and writing threads, up to this long each time, several times per message; a fall
# waiting 5 ms at each of a dozen steps is the tail the issue 24 bench measured. 1 ms costs the
# CPU-bound threads a few more switches.
GIL_SWITCH_S = 0.001
# Telemetry's watermarks advance at most once per this fraction of the ack interval (events': at
# once): a gateway's acknowledgement is then at most half an interval later than it could be.
WATERMARK_PACE = 0.5
ACKS_ON_STOP_S = 2.0  # at most this long for the broker to take the last acknowledgements to gateways


def take_in_turn(waiting: dict[str, deque[Inbound]], max_bytes: int) -> list[Inbound]:
    """The next events commit: the gateways' waiting events in turn (each topic's oldest, then each
    one's second, ...) until ``max_bytes`` of payload (at least one event); the rest waits.

    Every event queued went into one commit: behind 200 falls of one gateway with 250 KB of
    evidence each (50 MB in one transaction), another home's SOS was stored, and its alert raised,
    36 s later. In turns, it is in the next commit, beside at most ``max_bytes`` of the others.
    """
    taken: list[Inbound] = []
    size = 0
    while waiting and (not taken or size < max_bytes):
        for topic in list(waiting):
            if taken and size >= max_bytes:
                break
            line = waiting[topic]
            m = line.popleft()
            if not line:
                del waiting[topic]
            taken.append(m)
            size += len(m.payload)
    return taken


def client_id_for(base: str, index: int) -> str:
    """Worker ``index``'s fixed client id: ``eldercare-ingest-0`` -> ``-1``, ``-2``...; else ``base-i``."""
    if index == 0:
        return base
    m = re.fullmatch(r"(.*?)(\d+)", base)
    if m:
        return f"{m.group(1)}{int(m.group(2)) + index}"
    return f"{base}-{index}"


class Worker:
    """Receive, validate, group-commit, acknowledge; :meth:`stop` makes :meth:`run` return."""

    def __init__(
        self,
        settings: Settings,
        *,
        db_url: str,
        mqtt_url: str,
        index: int = 0,
        metrics_port: int | None = None,
        commit_log: Path | None = None,
        retire: bool = False,
    ) -> None:
        self.settings = settings
        self.retire = retire
        self.abandoned = False  # some received messages were left unacknowledged
        self.failed = False  # a writer or the event thread died of an error: the worker stopped for it
        self.retired = False  # retiring: its sessions drained and ended
        self.index = index
        self.client_id = client_id_for(settings.ingest_client_id, index)
        self.metrics = Metrics(str(index))
        self.registry = Registry()
        limits = Limits(
            max_payload_bytes=settings.ingest_max_payload_bytes,
            readings_days=settings.retention_readings_days,
            events_days=settings.retention_events_days,
        )
        self.validator = Validator(settings.mqtt_topic_root, self.registry, limits)
        self.event_validator = Validator(settings.mqtt_topic_root, self.registry, limits)
        self.stores = [Store(db_url) for _ in range(settings.ingest_writers)]
        self.event_store = Store(db_url)
        # Watermarks move on a connection and thread of their own, after the messages' commit: a
        # commit never waits for another worker's commit of the same gateways (their watermark rows
        # would be locked until it returns), and the next group commit never waits for the acks.
        self.ack_store = Store(db_url)
        self.ack_work = AckWork()
        self.ack_urgent = False
        self.ack_cond = threading.Condition()
        self.ack_closing = False
        self.inbox: queue.Queue[Inbound | None] = queue.Queue(
            maxsize=max(2 * settings.ingest_receive_maximum, 100)
        )
        self.urgent: queue.Queue[Inbound | None] = queue.Queue()  # bounded by Receive Maximum
        self._up = {"shared": False, "events": False}
        self.source = MqttSource(
            settings,
            mqtt_url,
            self.client_id,
            self.inbox,
            lambda up: self._set_up("shared", up),
            retire=retire,
            urgent=self.urgent,
        )
        self.event_source = MqttSource(
            settings,
            mqtt_url,
            self.client_id + EVENT_SUFFIX,
            self.urgent,
            lambda up: self._set_up("events", up),
            retire=retire,
            topics=event_subscriptions(settings),
            generations=EVENT_GENERATIONS,
        )
        self.acks = AckPublisher(
            self.source.client, settings.mqtt_topic_root, settings.ingest_ack_interval_ms / 1000
        )
        # The open batch, shared by the main thread (adds) and the writers (each takes it whole).
        self.lock = threading.Condition()
        self.batch = Batch()
        self.batch_bytes = 0
        self.committing = 0  # writers with a commit in flight
        self.closing = False  # the main thread is done: the writers commit what is left and end
        self.stopping = threading.Event()
        if retire and metrics_port is None:
            metrics_port = 0  # a retiring worker exits when drained: no /healthz, and no port taken
        self.metrics_port = (
            settings.metrics_port + index if metrics_port is None and settings.metrics_port else metrics_port
        )
        self.server: MetricsServer | None = None
        self._commit_log: TextIO | None = open(commit_log, "a", encoding="utf-8") if commit_log else None  # noqa: SIM115
        self._log_lock = threading.Lock()
        self._received = {
            k: self.metrics.received.labels(kind=k)
            for k in ("telemetry", "event", "status", "invalid", "ignored")
        }
        self._next_heartbeat = 0.0
        self._refresh_retry_at = 0.0

    # Life cycle ------------------------------------------------------------------------------

    def stop(self) -> None:
        self.stopping.set()
        self.urgent.put(WAKE)

    def _set_up(self, which: str, up: bool) -> None:
        """Healthy (for /healthz) only while both connections are subscribed."""
        self._up[which] = up
        self.metrics.set_mqtt(all(self._up.values()))

    def run(self) -> None:
        if self.metrics_port:
            # on the HTTP host setting (127.0.0.1 unless configured), not on every interface
            host = self.settings.http_host
            try:
                self.server = MetricsServer(self.metrics, host, self.metrics_port).start()
            except OSError as exc:  # one readable line, not a traceback (nor a restart every second)
                msg = (
                    f"cannot serve /metrics on {host}:{self.metrics_port}: {exc.strerror or exc} "
                    "(ELDERCARE_METRICS_PORT; worker i uses port + i; 0 turns it off)"
                )
                raise IngestError(msg) from None
            log.info("metrics on %s:%d/metrics and /healthz", self.settings.http_host, self.server.port)
        writers = [
            threading.Thread(
                target=self._or_stop,
                args=(self._write_loop, store),
                name=f"ingest-writer-{self.index}-{i}",
                daemon=True,
            )
            for i, store in enumerate(self.stores)
        ]
        events = threading.Thread(
            target=self._or_stop, args=(self._event_loop,), name=f"ingest-events-{self.index}", daemon=True
        )
        watermarks = threading.Thread(
            target=self._watermark_loop, name=f"ingest-watermarks-{self.index}", daemon=True
        )
        try:
            if not self._wait_for_database():
                return
            # Everything alive now (modules, clients, the registry) lives as long as the process:
            # out of the collector's sight. A full collection otherwise walks all of it with the
            # GIL held, tens of milliseconds during which no thread of the worker moves.
            gc.freeze()
            for writer in writers:
                writer.start()
            events.start()
            watermarks.start()
            self.acks.start()
            self.event_source.start()
            self.source.start()
            log.info(
                "ingest worker %s started (group commit, %d writers, at most %d rows / %d bytes per commit)",
                self.client_id,
                len(self.stores),
                self.settings.ingest_batch_rows,
                self.settings.ingest_batch_bytes,
            )
            if self.settings.ingest_batch_ms is not None:
                log.warning(
                    "ELDERCARE_INGEST_BATCH_MS is deprecated and ignored: ingest commits as soon as "
                    "the previous commit returned (group commit); remove the setting"
                )
            self._batch_loop()
        finally:
            with self.lock:
                self.closing = True
                self.lock.notify_all()
            self.urgent.put(WAKE)
            for t in (*writers, events):
                if t.is_alive():
                    t.join()
            with self.ack_cond:  # the last watermarks, then their acknowledgements below
                self.ack_closing = True
                self.ack_cond.notify()
            if watermarks.is_alive():
                watermarks.join()
            drained = (
                self.retire
                and not self.abandoned
                and self.source.connected.is_set()
                and self.event_source.connected.is_set()
                and self.inbox.empty()
                and self.urgent.empty()
            )
            self.acks.stop()
            self._await_acks_published(ACKS_ON_STOP_S)
            self.source.stop(forget_session=drained)
            self.event_source.stop(forget_session=drained)
            if self.retire:
                log.info(
                    "retired %s: session %s", self.client_id, "forgotten" if drained else "kept (not drained)"
                )
                if drained:
                    self._forget_self()
                self.retired = bool(drained)
            if not self.retired:
                self._mark_stopped()
            for store in self.stores:
                store.close()
            self.event_store.close()
            self.ack_store.close()
            if self.server is not None:
                self.server.stop()
            if self._commit_log is not None:
                self._commit_log.close()
            log.info("ingest worker %s stopped", self.client_id)

    def _or_stop(self, loop: Callable[..., None], *args: Any) -> None:
        """Run a writer's or the event thread's loop; an error in it stops the worker, loudly.

        Left dead, the thread would hold its batch unacknowledged while the worker looked healthy:
        with one writer the open batch then filled and the worker hung; with two, half its commits
        went on. Stopped, its process exits non-zero (the supervisor starts it again) and the broker
        delivers what was not acknowledged to whoever takes the session."""
        try:
            loop(*args)
        except BaseException:
            log.critical("%s failed; stopping the worker", threading.current_thread().name, exc_info=True)
            self.failed = self.abandoned = True
            self.stop()

    def _await_acks_published(self, timeout: float) -> None:
        """Give the broker a moment to take the last acknowledgements to gateways (their PUBACKs)."""
        deadline = time.monotonic() + timeout
        while (
            self.source.connected.is_set()
            and self.source.client.publish_pending()
            and time.monotonic() < deadline
        ):
            time.sleep(0.01)

    def _wait_for_database(self) -> bool:
        delay = BACKOFF_MIN_S
        while not self.stopping.is_set():
            try:
                store = self.stores[0]
                self.registry.replace(store.load_registry(), store.load_simulated_sites())
                self.metrics.set_db(None)
                return True
            except StoreUnavailable as exc:
                self.metrics.set_db(str(exc))
                log.warning("database unavailable, retrying in %.1f s: %s", delay, exc)
                self.stopping.wait(delay)
                delay = min(delay * 2, BACKOFF_MAX_S)
        return False

    # Main thread: validate into the open batch -----------------------------------------------

    def _batch_loop(self) -> None:
        get, get_nowait = self.inbox.get, self.inbox.get_nowait
        check = self.validator.check
        last_seen = time.monotonic()
        while not self.stopping.is_set():
            if self.retire:
                if not (self.source.connected.is_set() and self.event_source.connected.is_set()):
                    last_seen = time.monotonic()  # the session delivers only once we are back
                elif self._retire_done(last_seen):
                    break
            try:
                m = get(timeout=0.25)
            except queue.Empty:
                continue
            if m is None:
                continue
            last_seen = time.monotonic()
            m.picked = time.time()
            items = [check(m)]
            size = len(m.payload)
            for _ in range(DRAIN_AT_ONCE):  # whatever is already waiting, validated outside the lock
                try:
                    m = get_nowait()
                except queue.Empty:
                    break
                if m is not None:
                    m.picked = time.time()
                    items.append(check(m))
                    size += len(m.payload)
            self._add(items, size)

    def _count(self, items: list[Accepted | Rejected | Ignored]) -> None:
        """Received messages by kind, one increment per kind and call (a metric takes a lock)."""
        kinds: dict[str, int] = {}
        for item in items:
            if isinstance(item, Accepted):
                kind = item.kind
            elif isinstance(item, Rejected):
                kind = "invalid"
            else:
                kind = "ignored"
                self.metrics.ignored.labels(why=item.why).inc()
            kinds[kind] = kinds.get(kind, 0) + 1
        for kind, n in kinds.items():
            self._received[kind].inc(n)

    def _retire_done(self, last_seen: float) -> bool:
        """A retiring worker is done once its session has delivered nothing for a while."""
        with self.lock:
            idle = not len(self.batch) and not self.committing
        if not idle or not self.inbox.empty() or not self.urgent.empty():
            return False
        return time.monotonic() - last_seen >= RETIRE_IDLE_S

    def _full(self) -> bool:
        s, b = self.settings, self.batch
        return (
            b.rows >= s.ingest_batch_rows
            or self.batch_bytes >= s.ingest_batch_bytes
            or len(b) >= max(1, s.ingest_receive_maximum // (len(self.stores) + 1))
        )

    def _add(self, items: list[Accepted | Rejected | Ignored], size: int) -> None:
        with self.lock:
            # At the bound the batch waits for the writer; so do we, and the broker holds the rest.
            while self._full() and not self.stopping.is_set():
                self.lock.wait(0.5)
            now = time.time()
            for item in items:
                item.inbound.added = now
                self.batch.add(item)
            self._count(items)
            self.batch_bytes += size
            self.lock.notify()  # the writer, if it waits for work
        self.metrics.queue_depth.set(self.inbox.qsize())

    # Writer threads: take the open batch, commit, acknowledge ----------------------------------

    def _write_loop(self, store: Store) -> None:
        busy = False
        while True:
            with self.lock:
                if busy:
                    self.committing -= 1
                    busy = False
                    self.lock.notify_all()
                while not len(self.batch) and not self.closing:
                    self.lock.wait()
                if not len(self.batch):
                    return  # closing, nothing left
                batch, self.batch, self.batch_bytes = self.batch, Batch(), 0
                self.committing += 1
                busy = True
                self.lock.notify_all()
            self._commit(store, batch, taken=time.time())

    def _next_refresh(self, every: float) -> float:
        """When the registry is read again (it may have been, by a commit that was told to)."""
        return max(self.registry.loaded_at + every, self._refresh_retry_at)

    def _refresh_registry(self) -> None:
        try:
            self.registry.replace(self.ack_store.load_registry(), self.ack_store.load_simulated_sites())
            self.metrics.set_db(None, "registry")
        except StoreUnavailable as exc:
            self._refresh_retry_at = time.monotonic() + BACKOFF_MAX_S
            self.metrics.set_db(str(exc), "registry")

    def _role(self, store: Store) -> str:
        """The connection's name for /healthz's database state (each reports its own)."""
        return "events" if store is self.event_store else f"writer-{self.stores.index(store)}"

    def _commit(self, store: Store, batch: Batch, *, urgent: bool = False, taken: float = 0.0) -> None:
        delay = BACKOFF_MIN_S
        taken = taken or time.time()
        while True:
            started = time.monotonic()
            try:
                result = store.write(batch, self.registry, defer_acks=True)
                break
            except StoreUnavailable as exc:
                self.metrics.db_errors.inc()
                self.metrics.set_db(str(exc), self._role(store))
                if self.stopping.is_set():
                    self.abandoned = True
                    log.warning(
                        "stopping with the database unavailable: %d messages left for redelivery", len(batch)
                    )
                    return
                log.warning(
                    "database unavailable (%s); batch of %d messages kept, retry in %.1f s",
                    exc,
                    len(batch),
                    delay,
                )
                self.stopping.wait(delay)
                delay = min(delay * 2, BACKOFF_MAX_S)
        committed = time.time()
        self.metrics.set_db(None, self._role(store))
        # Each connection acknowledges what came in on it (an event may have come on either).
        inbound = batch.inbound()
        self.source.ack(inbound)
        self.event_source.ack(inbound)
        if result.pending:
            with self.ack_cond:
                # Work already waiting means the watermark thread already has its turn timed: a
                # wake-up per telemetry commit would only send it back to sleep (a thread switch
                # each, most of the commits at low load).
                waiting = bool(self.ack_work)
                self.ack_work.merge(result.pending)
                if urgent or not waiting:
                    self.ack_urgent = self.ack_urgent or urgent
                    self.ack_cond.notify()
        self._account(batch, result, time.monotonic() - started, committed, taken)

    # Watermark thread: advance what the commits stored, publish the acknowledgements; the
    # heartbeat and the registry's periodic reload (so that no commit ever waits for them) ---------

    def _watermark_loop(self) -> None:
        """Everything committed since the last turn in one transaction (another group commit)."""
        delay = BACKOFF_MIN_S
        refresh = self.settings.ingest_registry_refresh_s
        # Telemetry's watermarks move at most this often (events': at once). A gateway gets at
        # most one acknowledgement per ack interval anyway; a turn per commit only made more
        # transactions, each with its own WAL flush, which the next group commit waited behind.
        pace = self.settings.ingest_ack_interval_ms / 1000 * WATERMARK_PACE
        next_turn = 0.0
        while True:
            with self.ack_cond:
                while not self.ack_closing:
                    now = time.monotonic()
                    due = min(self._next_refresh(refresh), self._next_heartbeat)
                    if self.ack_work:
                        if self.ack_urgent or now >= next_turn:
                            break
                        due = min(due, next_turn)
                    if now >= due:
                        break
                    self.ack_cond.wait(due - now)
                if not self.ack_work and self.ack_closing:
                    return
            if time.monotonic() >= self._next_heartbeat:
                self._heartbeat()
            if time.monotonic() >= self._next_refresh(refresh):
                self._refresh_registry()
            with self.ack_cond:
                if not self.ack_work:
                    continue
                work, self.ack_work = self.ack_work, AckWork()
                urgent, self.ack_urgent = self.ack_urgent, False
            next_turn = time.monotonic() + pace
            try:
                acks = self.ack_store.advance_acks(work)
            except StoreUnavailable as exc:
                # The messages are stored and acknowledged to the broker; only the gateways'
                # acknowledgement waits. Kept for the next turn (or the next commit moves it).
                with self.ack_cond:
                    work.merge(self.ack_work)
                    self.ack_work = work
                    self.ack_urgent = self.ack_urgent or urgent
                    if self.ack_closing:
                        return
                log.warning("watermarks not advanced (%s); retry in %.1f s", exc, delay)
                with self.ack_cond:
                    self.ack_cond.wait(delay)  # or until closing: one last try
                delay = min(delay * 2, BACKOFF_MAX_S)
                continue
            delay = BACKOFF_MIN_S
            self.acks.offer(acks, urgent=urgent)

    def _account(
        self, batch: Batch, result: WriteResult, seconds: float, committed: float, taken: float
    ) -> None:
        m = self.metrics
        m.batches.inc()
        m.batch_seconds.observe(seconds)
        m.batch_rows.observe(batch.rows)
        m.lag_seconds.observe(committed - batch.oldest_received())
        m.stored_messages.inc(result.messages)
        m.stored_readings.inc(result.readings)
        m.stored_events.inc(result.events)
        m.stored_statuses.inc(result.statuses)
        m.duplicates.inc(result.duplicates)
        for r in result.dead:
            # "readings[17].value" -> "readings[].value": one series per field, not per index
            m.dead_lettered.labels(field=_INDEX.sub("[]", r.reason.split(":", 1)[0])[:40]).inc()
        newest = max((a.ts_hi for a in batch.accepted if a.kind == "telemetry"), default=0)
        if newest:
            m.data_lag.set(committed - newest / 1000)
        if result.dead:
            log.info(
                "%d messages dead-lettered, first: %s: %s",
                len(result.dead),
                result.dead[0].inbound.topic,
                result.dead[0].reason,
            )
        if self._commit_log is not None:
            # gateway epoch seq received committed, then the stages inside the worker: taken from
            # the inbox, put in the open batch, batch taken by the writer (events: their thread),
            # ids inserted, rows written (then COMMIT)
            tail = f"{taken:.6f} {result.ids_at or taken:.6f} {result.written_at or committed:.6f}\n"
            lines = [
                f"{a.gateway} {a.epoch} {a.seq} {a.inbound.received:.6f} {committed:.6f} "
                f"{a.inbound.picked or a.inbound.received:.6f} {a.inbound.added or a.inbound.received:.6f} "
                + tail
                for a in batch.accepted
            ]
            with self._log_lock:
                self._commit_log.write("".join(lines))
                self._commit_log.flush()

    # Event thread: the fast path -------------------------------------------------------------------

    def _event_loop(self) -> None:
        check = self.event_validator.check
        waiting: dict[str, deque[Inbound]] = {}  # by gateway topic, in arrival order
        while True:
            if not waiting:
                m = self.urgent.get()  # WAKE (None) at stop
                if m is not None:
                    waiting.setdefault(m.topic, deque()).append(m)
            while True:
                try:
                    m = self.urgent.get_nowait()
                except queue.Empty:
                    break
                if m is not None:
                    waiting.setdefault(m.topic, deque()).append(m)
            batch = Batch()
            items: list[Accepted | Rejected | Ignored] = []
            for m in take_in_turn(waiting, EVENT_BATCH_BYTES):
                m.picked = time.time()
                item = check(m)
                if isinstance(item, Rejected) and item.dedup_key is None:
                    # every worker receives every event: dead-lettered once, whichever worker; and
                    # under the key of its retained replay, so junk left retained on an event topic
                    # that first arrived live is not dead-lettered again after a restart
                    item.dedup_key = retained_key(m)
                m.added = time.time()
                batch.add(item)
                items.append(item)
            if len(batch):
                self._count(items)
                self._commit(self.event_store, batch, urgent=True)
            if self.closing and self.urgent.empty() and not waiting:
                return

    def _heartbeat(self) -> None:
        """Record this worker alive; report peers that are not (their sessions hold a backlog)."""
        beat = self.settings.ingest_heartbeat_s
        self._next_heartbeat = time.monotonic() + beat
        try:
            peers = self.ack_store.heartbeat(
                client_id=self.client_id, host=socket.gethostname(), pid=os.getpid()
            )
        except StoreUnavailable:
            return  # the writer reports the database; liveness waits for its return
        expiry = self.settings.ingest_session_expiry_s
        self.metrics.set_peers(peers, silent_after=SILENT_HEARTBEATS * beat, session_expiry=expiry)

    def _mark_stopped(self) -> None:
        try:
            self.event_store.mark_stopped(client_id=self.client_id, pid=os.getpid())
        except Exception as exc:  # stopping whatever broke: the record only frees the id sooner
            log.warning("could not record %s as stopped in ingest_workers: %s", self.client_id, exc)

    def _forget_self(self) -> None:
        try:
            self.event_store.forget_worker(client_id=self.client_id)
        except StoreUnavailable as exc:
            log.warning("could not remove %s from ingest_workers: %s", self.client_id, exc)


# Processes ------------------------------------------------------------------------------------


def run_worker(
    settings: Settings,
    *,
    db_url: str,
    mqtt_url: str,
    index: int = 0,
    commit_log: Path | None = None,
    install_signals: bool = True,
    retire: bool = False,
) -> None:
    """Run one worker in this process until SIGTERM/SIGINT (or, retiring, until drained)."""
    path = commit_log.with_name(f"{commit_log.name}.{index}") if commit_log else None
    sys.setswitchinterval(GIL_SWITCH_S)
    worker = Worker(settings, db_url=db_url, mqtt_url=mqtt_url, index=index, commit_log=path, retire=retire)
    if install_signals:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: worker.stop())
    worker.run()
    if worker.failed:
        raise SystemExit(1)
    if retire and not worker.retired:  # a script retiring workers must not take this for done
        msg = (
            f"{worker.client_id} is not retired: not everything its session delivered was committed "
            "and acknowledged (database or broker unavailable?); its session is kept: run this again"
        )
        raise IngestError(msg)


def _child(settings: Settings, db_url: str, mqtt_url: str, index: int, commit_log: Path | None) -> None:
    logging.basicConfig(
        level=settings.log_level, format=f"%(asctime)s %(levelname)s ingest[{index}] %(name)s: %(message)s"
    )
    try:
        run_worker(settings, db_url=db_url, mqtt_url=mqtt_url, index=index, commit_log=commit_log)
    except IngestError as exc:
        log.error("%s", exc)
        raise SystemExit(1) from None


def supervise(
    settings: Settings, *, db_url: str, mqtt_url: str, workers: int, commit_log: Path | None = None
) -> None:
    """Run ``workers`` worker processes, restart any that dies, stop them all on SIGTERM/SIGINT."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())

    def start(i: int) -> Any:
        p = ctx.Process(target=_child, args=(settings, db_url, mqtt_url, i, commit_log), name=f"ingest-{i}")
        p.start()
        return p

    procs = {i: start(i) for i in range(workers)}
    log.info(
        "supervising %d ingest workers (pids %s)", workers, ", ".join(str(p.pid) for p in procs.values())
    )
    while not stopping.wait(0.5):
        for i, p in list(procs.items()):
            if not p.is_alive():
                log.error("ingest worker %d (pid %s) exited with %s; restarting", i, p.pid, p.exitcode)
                time.sleep(1)
                procs[i] = start(i)
    for p in procs.values():
        if p.pid is not None and p.is_alive():
            os.kill(p.pid, signal.SIGTERM)
    for p in procs.values():
        p.join(timeout=30)
        if p.is_alive():
            p.kill()
