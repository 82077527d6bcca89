"""One ingest worker (three threads) and the supervisor that runs N of them as processes.

Threads of a worker: paho's network thread fills the inbox (:mod:`.mqtt`); the main thread
validates messages into a batch; the writer thread commits batches and then acknowledges them.
The batch is handed over when it is due (``ingest_batch_rows`` rows or ``ingest_batch_ms`` old)
*and* the writer is free: while the writer commits, the next batch keeps growing, so batches
grow with the load instead of paying a commit per 5,000 rows at peak (performance notes: a
fixed cap cost ~25%). Nothing is acknowledged before its commit, so the broker's ReceiveMaximum
bounds what is in memory and a database outage simply stops the flow until writes succeed again.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import signal
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from eldercare.config import Settings
from eldercare.ingest.batch import Accepted, Batch, Ignored, Inbound, Limits, Registry, Validator
from eldercare.ingest.errors import StoreUnavailable
from eldercare.ingest.metrics import Metrics, MetricsServer
from eldercare.ingest.mqtt import MqttSource
from eldercare.ingest.store import Store, WriteResult

log = logging.getLogger(__name__)

HARD_CAP_FACTOR = 20  # a batch never exceeds this many times ingest_batch_rows
BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 10.0
_INDEX = re.compile(r"\[\d+\]")
RETIRE_IDLE_S = 3.0  # a retiring worker leaves after this long without a message


def client_id_for(base: str, index: int) -> str:
    """Worker ``index``'s fixed client id: ``eldercare-ingest-0`` -> ``-1``, ``-2``...; else ``base-i``."""
    if index == 0:
        return base
    m = re.fullmatch(r"(.*?)(\d+)", base)
    if m:
        return f"{m.group(1)}{int(m.group(2)) + index}"
    return f"{base}-{index}"


class Worker:
    """Receive, validate, batch, commit, acknowledge; :meth:`stop` makes :meth:`run` return."""

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
        self.store = Store(db_url)
        self.inbox: queue.Queue[Inbound] = queue.Queue(maxsize=max(2 * settings.ingest_receive_maximum, 100))
        self.source = MqttSource(
            settings, mqtt_url, self.client_id, self.inbox, self.metrics.set_mqtt, retire=retire
        )
        self.handoff: queue.Queue[Batch | None] = queue.Queue(maxsize=1)
        self.writer_idle = threading.Event()
        self.stopping = threading.Event()
        self.metrics_port = (
            settings.metrics_port + index if metrics_port is None and settings.metrics_port else metrics_port
        )
        self.server: MetricsServer | None = None
        self._commit_log: TextIO | None = open(commit_log, "a", encoding="utf-8") if commit_log else None  # noqa: SIM115
        self._received = {
            k: self.metrics.received.labels(kind=k)
            for k in ("telemetry", "event", "status", "invalid", "ignored")
        }

    # Life cycle ------------------------------------------------------------------------------

    def stop(self) -> None:
        self.stopping.set()

    def run(self) -> None:
        if self.metrics_port:
            # on the HTTP host setting (127.0.0.1 unless configured), not on every interface
            self.server = MetricsServer(self.metrics, self.settings.http_host, self.metrics_port).start()
            log.info("metrics on %s:%d/metrics and /healthz", self.settings.http_host, self.server.port)
        writer = threading.Thread(target=self._write_loop, name=f"ingest-writer-{self.index}", daemon=True)
        try:
            if not self._wait_for_database():
                return
            writer.start()
            self.source.start()
            log.info(
                "ingest worker %s started (batch %d rows / %d ms)",
                self.client_id,
                self.settings.ingest_batch_rows,
                self.settings.ingest_batch_ms,
            )
            self._batch_loop()
        finally:
            if writer.is_alive():
                self.handoff.put(None)
                writer.join()
            drained = (
                self.retire and not self.abandoned and self.source.connected.is_set() and self.inbox.empty()
            )
            self.source.stop(forget_session=drained)
            if self.retire:
                log.info(
                    "retired %s: session %s", self.client_id, "forgotten" if drained else "kept (not drained)"
                )
            self.store.close()
            if self.server is not None:
                self.server.stop()
            if self._commit_log is not None:
                self._commit_log.close()
            log.info("ingest worker %s stopped", self.client_id)

    def _wait_for_database(self) -> bool:
        delay = BACKOFF_MIN_S
        while not self.stopping.is_set():
            try:
                self.registry.replace(self.store.load_registry())
                self.metrics.set_db(None)
                return True
            except StoreUnavailable as exc:
                self.metrics.set_db(str(exc))
                log.warning("database unavailable, retrying in %.1f s: %s", delay, exc)
                self.stopping.wait(delay)
                delay = min(delay * 2, BACKOFF_MAX_S)
        return False

    # Main thread: validate and batch ---------------------------------------------------------

    def _batch_loop(self) -> None:
        s = self.settings
        max_rows, max_age = s.ingest_batch_rows, s.ingest_batch_ms / 1000
        hard_cap = max_rows * HARD_CAP_FACTOR
        # Unacknowledged messages are capped by Receive Maximum: a batch holding all of them
        # would leave nothing to decode while it commits, so it is handed over at half.
        max_messages = max(1, s.ingest_receive_maximum // 2)
        get, get_nowait = self.inbox.get, self.inbox.get_nowait
        take = self._take
        batch = Batch()
        last_seen = time.monotonic()
        while not self.stopping.is_set():
            now = time.monotonic()
            if self.retire and not len(batch) and self.writer_idle.is_set() and self.inbox.empty():
                if not self.source.connected.is_set():
                    last_seen = now
                elif now - last_seen >= RETIRE_IDLE_S:
                    break  # the session has delivered everything it held
            if batch.due(now, max_rows, max_age):
                if self.writer_idle.is_set() or batch.rows >= hard_cap or len(batch) >= max_messages:
                    self._hand_over(batch)
                    batch = Batch()
                    continue
                timeout = 0.002  # writer busy: keep growing the batch
            elif len(batch):
                timeout = batch.opened + max_age - now
            else:
                timeout = 0.25
            try:
                m = get(timeout=timeout)
            except queue.Empty:
                continue
            last_seen = time.monotonic()
            take(batch, m)
            for _ in range(500):  # whatever is already waiting, without the timed wait
                if batch.rows >= hard_cap or len(batch) >= max_messages:
                    break
                try:
                    m = get_nowait()
                except queue.Empty:
                    break
                take(batch, m)
        if len(batch):
            self._hand_over(batch)  # received, validated: commit before leaving if the DB allows

    def _take(self, batch: Batch, m: Inbound) -> None:
        item = self.validator.check(m)
        if isinstance(item, Ignored):
            self._received["ignored"].inc()
            self.metrics.ignored.labels(why=item.why).inc()
        else:
            self._received[item.kind if isinstance(item, Accepted) else "invalid"].inc()
        batch.add(item)

    def _hand_over(self, batch: Batch) -> None:
        give_up: float | None = None
        while not self.writer_idle.wait(0.5):
            if self.stopping.is_set():
                give_up = give_up or time.monotonic() + 10
                if time.monotonic() > give_up:
                    # The writer is stuck on a dead database; these stay unacknowledged.
                    log.warning("stopping: %d messages left unacknowledged for redelivery", len(batch))
                    self.abandoned = True
                    return
        self.writer_idle.clear()
        self.metrics.queue_depth.set(self.inbox.qsize())
        self.handoff.put(batch)

    # Writer thread: commit, then acknowledge -------------------------------------------------

    def _write_loop(self) -> None:
        refresh = self.settings.ingest_registry_refresh_s
        while True:
            self.writer_idle.set()
            try:
                batch = self.handoff.get(timeout=refresh)
            except queue.Empty:
                self._refresh_registry()
                continue
            if batch is None:
                return
            if time.monotonic() - self.registry.loaded_at > refresh:
                self._refresh_registry()
            self._commit(batch)

    def _refresh_registry(self) -> None:
        try:
            self.registry.replace(self.store.load_registry())
            self.metrics.set_db(None)
        except StoreUnavailable as exc:
            self.metrics.set_db(str(exc))

    def _commit(self, batch: Batch) -> None:
        delay = BACKOFF_MIN_S
        while True:
            started = time.monotonic()
            try:
                result = self.store.write(batch, self.registry)
                break
            except StoreUnavailable as exc:
                self.metrics.db_errors.inc()
                self.metrics.set_db(str(exc))
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
        self.metrics.set_db(None)
        self.source.ack(batch.inbound())
        self._account(batch, result, time.monotonic() - started, committed)

    def _account(self, batch: Batch, result: WriteResult, seconds: float, committed: float) -> None:
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
            lines = [
                f"{a.gateway} {a.epoch} {a.seq} {a.inbound.received:.6f} {committed:.6f}\n"
                for a in batch.accepted
            ]
            self._commit_log.write("".join(lines))
            self._commit_log.flush()


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
    worker = Worker(settings, db_url=db_url, mqtt_url=mqtt_url, index=index, commit_log=path, retire=retire)
    if install_signals:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: worker.stop())
    worker.run()


def _child(settings: Settings, db_url: str, mqtt_url: str, index: int, commit_log: Path | None) -> None:
    logging.basicConfig(
        level=settings.log_level, format=f"%(asctime)s %(levelname)s ingest[{index}] %(name)s: %(message)s"
    )
    run_worker(settings, db_url=db_url, mqtt_url=mqtt_url, index=index, commit_log=commit_log)


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
