"""The edge agent's loop: drivers in, outbox on disk, platform out.

One thread owns all state (outbox, clock guard, batcher, check-ins). Drivers and paho's network
thread only put items on :attr:`Agent.inbox`. Each turn of the loop takes everything waiting,
handles it, commits the readings it produced in one transaction (group commit), then runs the
timers (heartbeat, batches, check-ins, bounds) and lets its :class:`SendWindow` hand paho the
next messages (``sending.py``: the window, alarms ahead of telemetry, the broker's and the
platform's acknowledgements, resends, events sent from memory while the disk refuses them).
"""

from __future__ import annotations

import hashlib
import logging
import math
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from eldercare import protocol
from eldercare.edge import checkin, status
from eldercare.edge.batching import Batcher
from eldercare.edge.checkin import CheckIns, HomeContext, Suspect, combine_confidence
from eldercare.edge.clock import ClockGuard, Held
from eldercare.edge.config import GatewayFile, newer_remote_config, refusal
from eldercare.edge.connection import NetEvent, Uplink
from eldercare.edge.drivers import AccChunk, Action, Driver, Health, Sample, load_driver
from eldercare.edge.falls import FallWatch, StreamLike, WearLike, open_wear_tracker
from eldercare.edge.outbox import Outbox, is_corruption
from eldercare.edge.sending import SendWindow

log = logging.getLogger(__name__)

LOW_BATTERY, BATTERY_OK = 0.15, 0.20
VITALS_REPEAT_S = 300.0
STATUS_MIN_GAP_S = 2.0
WEAR_CHECK_S = 5.0  # s of signal between judgements of a wearable's wear state (a minute of stillness)
MAX_TURN_ITEMS = 5000
MEMORY_ROWS_MAX = 200_000  # readings kept in memory while the disk refuses them (~40 MB)
WRITE_RETRY_S = 1.0  # after a failed outbox write (full disk, I/O error)
REFUSAL_LOG_EVERY_S = 60.0  # while writes keep failing, one log line this often
PROMPT = "Are you OK? Press your button or say 'I'm fine'. / 您还好吗？请按按钮或说“我没事”。"


class _Sink:
    """What drivers put items into: the inbox, never blocking the driver."""

    def __init__(self, inbox: queue.Queue[Any]) -> None:
        self.inbox = inbox
        self.dropped = 0

    def put(self, item: Any) -> None:
        try:
            self.inbox.put_nowait(item)
        except queue.Full:
            self.dropped += 1
            if self.dropped in (1, 10, 100) or self.dropped % 1000 == 0:
                log.warning("agent inbox full: %s driver items dropped so far", self.dropped)


def registration(gw: GatewayFile) -> str:
    """Which registration a stored config came with: its site, gateway id and credentials (hashed).
    A config revision counts within one registration (protocol section 8)."""
    user, password = gw.broker.credentials
    who = "\0".join((gw.site, gw.gateway, user or "", password or ""))
    return hashlib.sha256(who.encode()).hexdigest()


class Agent:
    """A gateway's edge agent. ``run()`` blocks; ``start()``/``stop()`` run it in a thread."""

    def __init__(
        self,
        gw: GatewayFile,
        *,
        drivers: list[Driver] | None = None,
        fall_stream: Callable[[], StreamLike] | None = None,
        wall: Callable[[], float] = time.time,
        mono: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] | None = None,
    ) -> None:
        self.gw = gw
        self.inbox: queue.Queue[Any] = queue.Queue(maxsize=200_000)
        self.sink = _Sink(self.inbox)
        self.drivers = drivers if drivers is not None else [load_driver(e, gw) for e in gw.drivers]
        self.falls = FallWatch(gw.fall, fall_stream)
        self._wall, self._mono = wall, mono
        self._rand = rand
        self._stop = threading.Event()
        self.connected_once = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    # lifecycle ---------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Ask the loop to finish its turn and shut down cleanly (signal handlers call this)."""
        self._stop.set()

    def driver(self, name: str) -> Driver:
        return next(d for d in self.drivers if d.name == name)

    def start(self) -> None:
        def target() -> None:
            try:
                self.run()
            except BaseException as exc:  # surfaced to the caller by stop()
                self.error = exc
                log.exception("edge agent stopped by an error")

        self._thread = threading.Thread(target=target, name="edge-agent", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.request_stop()
        if self._thread is not None:
            self._thread.join(timeout)
        if self.error is not None:
            raise self.error

    def run(self, duration_s: float | None = None) -> None:
        self._setup()
        end = None if duration_s is None else self._mono() + duration_s
        try:
            while not self._stop.is_set() and (end is None or self._mono() < end):
                try:
                    self._turn()
                except sqlite3.Error as exc:
                    if is_corruption(exc):
                        self._replace_outbox(str(exc))
                        continue
                    self._write_failed(exc)
        finally:
            self._shutdown()

    # setup and shutdown ------------------------------------------------------------------

    def _setup(self) -> None:
        gw = self.gw
        self.outbox = Outbox(gw.outbox.path, gw.outbox)
        last_good = self.outbox.get_meta("last_good_ms")
        self.clock = ClockGuard(gw.clock, int(last_good) if last_good else None, self._wall, self._mono)
        self.started = self._mono()
        self.config = gw.initial_config()
        self.config_error: str | None = None  # why the last pushed config was refused (status)
        stored = self.outbox.get_meta("config")
        held_for = self.outbox.get_meta("config_for")
        if stored and held_for not in (None, registration(gw)):
            # a new site, id or password: the gateway was registered again, whose revisions start
            # at 0 (protocol section 8); the old revision would refuse every config up to it
            log.info("stored remote config belongs to an earlier registration; using the gateway file")
            stored = None
        if stored:
            try:  # as when it was pushed: a config of thresholds only keeps the file's sensors
                self.config = newer_remote_config(stored.encode(), self.config)
            except protocol.ProtocolError:
                log.warning("stored remote config no longer valid; using the gateway file")
        self.sensors = {s.id: s for s in self.config.sensors}
        now = self._mono()
        self.batcher = Batcher(
            self.config.telemetry_batch_max, self.config.telemetry_batch_ms, self.outbox.n_pending, now
        )
        self.checkins = CheckIns(self.config.checkin_window_s)
        self.context = HomeContext(keep_s=max(900.0, gw.fall.context_window_s * 2))
        self.sensor_status: dict[str, dict[str, Any]] = {}
        self.held = Held(gw.clock.hold_max)
        self.rows: list[tuple[int, str, str, float]] = []
        self.write_retry_at = -math.inf
        self.writes_refused = False  # the last outbox write failed: the status says what waits
        self.refused_since = self.refusal_logged = 0.0  # (monotonic) this run of refusals, its last log
        self.refusals = 0
        self.rows_dropped = 0  # readings dropped from memory while the disk refused them
        self.sending = SendWindow(gw, self.outbox, mono=self._mono, now_ms=self._now_ms, now=now)
        self.disk_free: int | None = None
        self.disk_low = False
        self.connected = False
        self.status_dirty = False
        self.last_status = -math.inf
        self.next_heartbeat = now
        self.next_bounds = now
        self.next_persist = now + 60
        self.wear: dict[str, tuple[WearLike | None, float]] = {}  # tracker, when it was last judged
        self.bad_names: set[str] = set()
        self.low_battery: set[str] = set()
        self.vitals_sent: dict[tuple[str, str], float] = {}
        if self._rand is not None:
            self.uplink = Uplink(gw, self.inbox, self._status_payload("offline"), rand=self._rand)
        else:
            self.uplink = Uplink(gw, self.inbox, self._status_payload("offline"))
        self.uplink.start()
        for d in self.drivers:
            d.apply_config(self.config)
            d.start(self.sink)
        log.info(
            "edge agent %s/%s up: epoch %s, next seq %s, %s messages waiting",
            gw.site,
            gw.gateway,
            self.outbox.epoch,
            self.outbox.next_seq,
            self.outbox.n_messages,
        )

    def _shutdown(self) -> None:
        for d in self.drivers:
            try:
                d.stop()
            except Exception:
                log.exception("driver %s failed to stop", d.name)
        try:
            self._drain_inbox_once()
            self._commit_rows()
            self.outbox.seal_batches(self.config.telemetry_batch_max, self._now_ms())
            # give in-flight and ready messages a moment; whatever is left stays on disk
            deadline = self._mono() + 2.0
            self._send()
            while self._mono() < deadline and self.connected and self.sending.inflight:
                self._send()
                self._drain_inbox_once(timeout=0.05)
                self.sending.delete_acked()
            self._persist_clock()
        except sqlite3.Error as exc:  # a full disk at shutdown: say what is lost, stop anyway
            log.error(
                "outbox write failed at shutdown (%s): %s readings and %s events sent from memory not stored",
                exc,
                len(self.rows),
                len(self.sending.memory),
            )
        finally:
            self.uplink.stop(self._status_payload("offline"))
            self.outbox.close()

    # the loop ----------------------------------------------------------------------------

    def _turn(self) -> None:
        now = self._mono()
        wake = min(
            x
            for x in (
                now + 0.5,
                self.batcher.deadline(),
                self.checkins.next_deadline(),
                self.next_heartbeat,
                self.write_retry_at if self.write_retry_at > now else None,
            )
            if x is not None
        )
        self._drain_inbox_once(timeout=max(0.0, wake - now))
        if self._mono() >= self.write_retry_at:
            self._retry_writes()
        self._timers(self._mono())
        if self.sending.acked:
            self.sending.dirty = True
        if self.sending.dirty:
            self._send()  # refill the window first: the delete's fsync overlaps the round trip
        self.sending.delete_acked()
        if self.status_dirty and self.connected and self._mono() - self.last_status >= STATUS_MIN_GAP_S:
            self._publish_status()

    def _retry_writes(self) -> None:
        """Store what waits in memory. A refusal ends only this step, not the turn: the turn's
        timers, sends and status still run, so a full disk is reported however often it refuses."""
        try:
            self.sending.store_memory()
            self._commit_rows()
        except sqlite3.Error as exc:
            if is_corruption(exc):
                raise
            self._write_failed(exc)
            return
        if self.writes_refused:
            self.writes_refused, self.status_dirty = False, True
            log.info(
                "outbox writes accepted again after %.0f s (%d refused)",
                self._mono() - self.refused_since,
                self.refusals,
            )

    def _write_failed(self, exc: sqlite3.Error) -> None:
        """Disk full, I/O error: keep running; readings not yet stored stay in memory and events
        leave from memory; writes are tried again after WRITE_RETRY_S.

        The first refusal is logged, then one line a minute while they go on: a line per retry
        (every second) filled the gateway's log, often on the very disk that is full."""
        now = self._mono()
        if not self.writes_refused:
            self.refused_since, self.refusals, self.refusal_logged = now, 0, now
            log.error("outbox write failed, retrying every %s s: %s", WRITE_RETRY_S, exc)
        elif now - self.refusal_logged >= REFUSAL_LOG_EVERY_S:
            self.refusal_logged = now
            log.error(
                "outbox writes still refused after %.0f s (%d tries): %s",
                now - self.refused_since,
                self.refusals + 1,
                exc,
            )
        self.refusals += 1
        self.write_retry_at = now + WRITE_RETRY_S
        if not self.writes_refused:
            self.writes_refused, self.status_dirty = True, True
        self._check_disk()

    def _drain_inbox_once(self, timeout: float = 0.0) -> None:
        try:
            item = self.inbox.get(timeout=timeout) if timeout > 0 else self.inbox.get_nowait()
        except queue.Empty:
            return
        n = 0
        while True:
            self._handle(item)
            n += 1
            if n >= MAX_TURN_ITEMS:
                return
            try:
                item = self.inbox.get_nowait()
            except queue.Empty:
                return

    def _handle(self, item: Any) -> None:
        if isinstance(item, Sample):
            self._on_sample(item)
        elif isinstance(item, AccChunk):
            self._on_acc(item)
        elif isinstance(item, NetEvent):
            self._on_net(item)
        elif isinstance(item, Action):
            self._on_action(item)
        elif isinstance(item, Health):
            self._on_health(item)
        else:
            log.warning("unknown inbox item %r", type(item).__name__)

    def _commit_rows(self) -> None:
        if self.rows:
            self.outbox.add_readings(self.rows)
            self.batcher.added(len(self.rows), self._mono())
            self.rows = []

    def _timers(self, now: float) -> None:
        if now >= self.next_heartbeat:
            self._reading(self.gw.gateway, "heartbeat", round(now - self.started, 1))
            self.next_heartbeat = now + self.config.heartbeat_s
            self.status_dirty = True
            if now >= self.write_retry_at:  # a disk that refuses is not asked again before its time
                self._retry_writes()
        self._clock_changes()
        if self.held and self.clock.now_ms() is not None:
            self._release_held()
        for s in self.checkins.expired(now):
            self._emit_fall(s)
        now_ms = self._now_ms()
        mono = self._mono()
        if self.batcher.due(mono) and mono >= self.write_retry_at:
            # every batch that is due in one commit; a remainder smaller than a batch waits for
            # its own time bound unless the time bound is what made the batch due
            by_age = (
                self.batcher.first is not None and (mono - self.batcher.first) * 1000 >= self.batcher.max_ms
            )
            sealed = self.outbox.seal_batches(self.config.telemetry_batch_max, now_ms, partial=by_age)
            if not sealed and by_age:
                self.batcher.count, self.batcher.first = 0, None
            self.batcher.sealed(sum(n for _, n in sealed), mono)
            self.sending.dirty = self.sending.dirty or bool(sealed)
        if now >= self.next_bounds:
            self.next_bounds = now + 5.0
            self._check_disk()
            if self.outbox.enforce_bounds(now_ms):
                # the next message sealed carries a ``low`` past the shed seqs: the platform's
                # acknowledgement passes the gap (no new epoch needed)
                self.status_dirty = True
        self.sending.check_resend(now)
        if now >= self.next_persist:
            self._persist_clock()
            self.next_persist = now + 60.0
        if now - self.last_status >= self.gw.status_interval_s:
            self.status_dirty = True

    # sending ---------------------------------------------------------------------------

    def _send(self) -> None:
        """Hand the broker what fits in the window (nothing while disconnected)."""
        self.sending.dirty = True
        if self.connected:
            self.sending.send(self.uplink)

    def _replace_outbox(self, reason: str) -> None:
        """A damaged outbox: move it aside, go on with a new file and epoch (docs/edge.md)."""
        log.error("the outbox is damaged (%s): moving it aside and starting a new one", reason)
        self.outbox.replace_damaged(reason)
        self.sending.new_outbox()
        self.batcher.count, self.batcher.first = 0, None
        self.status_dirty = True

    def _check_disk(self) -> None:
        self.disk_free = self.outbox.disk_free()
        low = self.disk_free is not None and self.disk_free < self.gw.outbox.disk_low_bytes
        if low != self.disk_low:
            self.disk_low = low
            self.status_dirty = True
            if low:
                log.warning("disk nearly full: %s bytes free for the outbox", self.disk_free)

    def _on_net(self, ev: NetEvent) -> None:
        if ev.kind == "ack":
            self.sending.on_puback(ev.mid)
        elif ev.kind == "platform_ack":
            self.sending.on_platform_ack(ev.payload)
        elif ev.kind == "connected":
            self.connected = True
            self.sending.on_connected()
            self._publish_status()
            self.connected_once.set()
            log.info("connected to %s:%s", self.gw.broker.host, self.gw.broker.port)
        elif ev.kind == "disconnected":
            self.connected = False
            log.warning("disconnected from the broker (%s); the outbox keeps everything", ev.reason)
        elif ev.kind == "config":
            self._apply_config(ev.payload)

    # readings and events -----------------------------------------------------------------

    def _now_ms(self) -> int:
        t = self.clock.now_ms()
        if t is None:
            return max(self.clock.last_good_ms or 0, self.gw.clock.not_before_ms)
        return t

    def _valid(self, sensor: str, metric: str, value: float) -> bool:
        if sensor in self.bad_names or metric in self.bad_names:
            return False
        if not protocol.is_identifier(sensor) or not protocol.is_metric(metric):
            bad = sensor if not protocol.is_identifier(sensor) else metric
            if len(self.bad_names) < 1000:  # a driver sending garbage names must not eat memory
                self.bad_names.add(bad)
            log.warning("dropping readings named %r: not a valid protocol identifier", bad)
            return False
        return math.isfinite(value) and -1e15 <= value <= 1e15

    def _low_battery(self, sensor: str, evidence: dict[str, Any]) -> None:
        """One ``low_battery`` event per sensor until its battery is good again."""
        if sensor in self.low_battery:
            return
        self.low_battery.add(sensor)
        cfg = self.sensors.get(sensor)
        self._event("low_battery", sensor, resident=cfg.resident if cfg else None, evidence=evidence)

    def _reading(self, sensor: str, metric: str, value: float, t_ms: int | None = None) -> None:
        if not self._valid(sensor, metric, value):
            return
        if t_ms is None:
            t_ms = self.clock.now_ms()
            if t_ms is None:
                self.held.reading(self._mono(), (sensor, metric, value))
                return
        self.rows.append((t_ms, sensor, metric, float(value)))
        if len(self.rows) > MEMORY_ROWS_MAX:  # the disk has refused them for a long time
            drop = len(self.rows) - MEMORY_ROWS_MAX + MEMORY_ROWS_MAX // 10
            del self.rows[:drop]
            self.rows_dropped += drop
            self.status_dirty = True
            log.error("outbox refuses writes: %s oldest readings dropped from memory", drop)

    def _event(
        self,
        kind: str,
        sensor: str,
        confidence: float = 1.0,
        resident: str | None = None,
        evidence: dict[str, Any] | None = None,
        at_mono: float | None = None,
        t_ms: int | None = None,
    ) -> None:
        """Store an event stamped ``t_ms`` (a driver's own time of the press) or the gateway's clock."""
        fields: dict[str, Any] = {"sensor": sensor, "kind": kind, "confidence": round(confidence, 4)}
        if resident:
            fields["resident"] = resident
        if evidence:
            fields["evidence"] = evidence
        mono = self._mono() if at_mono is None else at_mono
        t = t_ms if t_ms is not None else self.clock.ms_at(mono)
        if t is None:
            self.held.event(mono, fields)  # events are held without bound
            return
        self._store_event({"t": t, **fields})

    def _store_event(self, fields: dict[str, Any]) -> None:
        try:
            seq = self.outbox.add_event(fields, self._now_ms())
        except protocol.ProtocolError as exc:
            log.error("event %s not stored, it breaks the protocol: %s", fields.get("kind"), exc)
            return
        except sqlite3.Error as exc:
            # the disk refused it: sent from memory at once, stored when the disk takes it
            self.sending.from_memory(fields, exc)
            self.status_dirty = True
            self._send()
            if is_corruption(exc):
                raise
            return
        log.info("event %s from %s stored as seq %s", fields["kind"], fields["sensor"], seq)
        self._send()  # alarms do not wait for the end of the turn

    def _release_held(self) -> None:
        n = len(self.held)
        for kind, t, data in self.held.release(self.clock.ms_at):
            if kind == "r":
                self.rows.append((t, *data))
            else:
                self._store_event({"t": t, **data})
        if self.held:
            return  # the clock failed again midway: the rest waits, as before
        self._commit_rows()
        log.info("clock good again: %s held readings/events stamped and stored", n)

    def _clock_changes(self) -> None:
        for ch in self.clock.changes:
            self.status_dirty = True
            if not ch.ok:
                log.warning("clock problem: %s", ch.reason)
                self._event(
                    "clock_error", self.gw.gateway, evidence={"reason": ch.reason, "wall_ms": ch.wall_ms}
                )
            else:
                log.info("clock trusted again")
        self.clock.changes.clear()

    def _persist_clock(self) -> None:
        if self.clock.last_good_ms is not None:
            self.outbox.set_meta("last_good_ms", str(self.clock.last_good_ms))

    def _on_sample(self, s: Sample) -> None:
        self._reading(s.sensor, s.metric, s.value, s.t_ms)
        self._seen(s.sensor)
        cfg = self.sensors.get(s.sensor)
        if cfg is not None and cfg.kind in ("pir", "door", "bed"):
            self.context.add(self._mono(), cfg.kind, cfg.room, s.value)
        resident = cfg.resident if cfg else None
        if s.metric == "press" and s.value >= 0.5:
            self._event("sos", s.sensor, resident=resident, t_ms=s.t_ms)
        rng = self.config.vitals_ranges.get(s.metric)
        if rng is not None and not rng[0] <= s.value <= rng[1]:
            key, now = (s.sensor, s.metric), self._mono()
            if now - self.vitals_sent.get(key, -math.inf) >= VITALS_REPEAT_S:
                self.vitals_sent[key] = now
                ev = {"metric": s.metric, "value": s.value, "low": rng[0], "high": rng[1]}
                self._event("vitals", s.sensor, resident=resident, evidence=ev, t_ms=s.t_ms)

    def _on_action(self, a: Action) -> None:
        if a.action == "sos":
            self._on_sample(Sample(a.sensor, "press", 1.0))
            return
        cfg = self.sensors.get(a.sensor)
        if cfg is not None and cfg.kind == "wearable":
            answered = self.checkins.answer(wearable=a.sensor)
        elif cfg is not None and cfg.resident:
            answered = self.checkins.answer(resident=cfg.resident)
        else:
            answered = self.checkins.answer()
        now = self._mono()
        for s in answered:
            after = round(now - (s.deadline - self.checkins.window_s), 1)
            ev = {"checkin": {"answered_by": a.sensor, "after_s": after, "window_s": self.checkins.window_s}}
            self._event("fall_cancelled", s.wearable, s.confidence, s.resident, ev, at_mono=s.impact_mono)
            log.info("check-in for %s answered by %s after %s s", s.wearable, a.sensor, after)

    def _on_health(self, h: Health) -> None:
        st = self.sensor_status.setdefault(h.sensor, {})
        if h.battery is not None and st.get("battery") != h.battery:
            st["battery"] = h.battery
            self.status_dirty = True
            self._reading(h.sensor, "battery", h.battery)
            if h.battery < LOW_BATTERY:
                self._low_battery(h.sensor, {"battery": h.battery})
            elif h.battery >= BATTERY_OK:
                self.low_battery.discard(h.sensor)
        if h.battery_low is not None and st.get("battery_low") != h.battery_low:
            st["battery_low"] = h.battery_low
            self._reading(h.sensor, "battery_low", 1.0 if h.battery_low else 0.0)
            if h.battery_low:
                self._low_battery(h.sensor, {"battery_low": True})
            elif not h.battery_low and st.get("battery", 1.0) >= BATTERY_OK:
                self.low_battery.discard(h.sensor)
        if h.online is not None and st.get("online") != h.online:
            st["online"] = h.online
            self.status_dirty = True
        if h.via is not None and st.get("via") != h.via:
            st["via"] = h.via
            self.status_dirty = True

    def _seen(self, sensor: str) -> None:
        t = self.clock.now_ms()
        if t is not None:
            self.sensor_status.setdefault(sensor, {})["last_seen"] = t

    # falls -------------------------------------------------------------------------------

    def _on_acc(self, c: AccChunk) -> None:
        if len(c.t) == 0:
            return
        now = self._mono()
        self._seen(c.sensor)
        self._wear(c.sensor, c.t, c.acc)
        if self.config.stream_raw_acc:
            self._raw_acc(c)
        found = self.falls.push(c.sensor, c.t, c.acc, now)
        cfg = self.sensors.get(c.sensor)
        for impact_mono, confidence in found:
            if confidence < self.config.fall_threshold:
                continue
            s = self.checkins.start(
                c.sensor,
                cfg.resident if cfg else None,
                -1,
                impact_mono,
                confidence,
                now,
                room=self.context.room_at(impact_mono),
            )
            if s is None:
                continue
            log.warning("suspected fall on %s (confidence %.2f): checking in", c.sensor, confidence)
            for d in self.drivers:
                try:
                    d.prompt(c.sensor, s.resident, PROMPT)
                except Exception:
                    log.exception("driver %s could not prompt", d.name)

    def _wear(self, sensor: str, t: np.ndarray, acc: np.ndarray) -> None:
        """``status.sensors[wearable].wear``: not_worn once it lies still as a table (taken off, put
        down), worn again as soon as it moves like a device on a body; a change re-publishes status."""
        tracker, judged = self.wear.get(sensor) or (open_wear_tracker(), -math.inf)
        if tracker is None:
            self.wear[sensor] = (None, judged)
            return
        tracker.add(t, acc)
        t_end = float(t[-1])  # judged every few seconds of the signal's own time
        if abs(t_end - judged) < WEAR_CHECK_S:
            self.wear[sensor] = (tracker, judged)
            return
        self.wear[sensor] = (tracker, t_end)
        state = "not_worn" if tracker.not_worn else "worn"
        st = self.sensor_status.setdefault(sensor, {})
        if st.get("wear") == state:
            return
        st["wear"] = state
        t_ms = self.clock.now_ms()
        st["not_worn_since"] = (
            t_ms - int(tracker.after_s * 1000) if state == "not_worn" and t_ms is not None else None
        )
        self.status_dirty = True
        log.info("wearable %s: %s", sensor, state.replace("_", " "))

    def _raw_acc(self, c: AccChunk) -> None:
        """``stream_raw_acc``: the samples as readings (not held while the clock is bad)."""
        t_now = self.clock.now_ms()
        if t_now is None:
            return
        ts = (t_now - (float(c.t[-1]) - np.asarray(c.t)) * 1000).astype(np.int64)
        for i, axis in enumerate(("acc_x", "acc_y", "acc_z")):
            vals = np.round(np.asarray(c.acc)[:, i], 4)
            self.rows.extend(
                zip(ts.tolist(), [c.sensor] * len(ts), [axis] * len(ts), vals.tolist(), strict=True)
            )

    def _emit_fall(self, s: Suspect) -> None:
        until = self._mono()
        after = self.context.after(s.impact_mono + checkin.SETTLE_S, until)
        conf, context = combine_confidence(s.confidence, s.room, after, self.context.has_pir)
        evidence = {
            "context": context,
            "checkin": {"window_s": self.checkins.window_s, "answered": False},
            "acc": self.falls.evidence(s.wearable, s.impact_mono, self.clock.ms_at),
        }
        log.warning("fall on %s not answered: reporting (confidence %.2f)", s.wearable, conf)
        self._event("fall", s.wearable, conf, s.resident, evidence, at_mono=s.impact_mono)

    # status and config -------------------------------------------------------------------

    def _status_payload(self, state: str) -> bytes:
        return status.encode(
            state,
            t_ms=self._now_ms(),
            sensors=status.sensors(self.sensor_status),
            clock_ok=self.clock.ok,
            outbox=status.outbox_counters(
                self.outbox.stats(),
                unstored_events=len(self.sending.memory),
                unstored_readings=len(self.rows),
                dropped_readings=self.rows_dropped,
                disk_low=self.disk_low,
                disk_free=self.disk_free,
                platform_acks=self.sending.platform_acks,
                resends=self.sending.resends,
            ),
            config_revision=self.config.revision,
            config_error=self.config_error,
        )

    def _publish_status(self) -> None:
        if not self.connected:
            return
        self.uplink.client.publish(
            self.uplink.status_topic, self._status_payload("online"), qos=1, retain=True
        )
        self.last_status = self._mono()
        self.status_dirty = False

    def _apply_config(self, payload: bytes) -> None:
        if not payload.strip():
            return  # the retained config was cleared: keep what we have
        try:
            cfg = newer_remote_config(payload, self.config)
        except protocol.ProtocolError as exc:
            log.warning("remote config rejected, keeping revision %s: %s", self.config.revision, exc)
            self.config_error = refusal(payload, exc)
            self._event(
                "config_rejected",
                self.gw.gateway,
                evidence={"field": exc.field, "reason": exc.reason, "kept_revision": self.config.revision},
            )
            self._commit_rows()
            self.status_dirty = True
            return
        if self.config_error is not None:
            self.config_error = None
            self.status_dirty = True
        if cfg == self.config:
            return
        self._use_config(cfg)
        self.outbox.set_meta("config", payload.decode("utf-8"))
        self.outbox.set_meta("config_for", registration(self.gw))
        log.info("remote config revision %s applied", cfg.revision)
        self.status_dirty = True

    def _use_config(self, cfg: protocol.GatewayConfig) -> None:
        self.config = cfg
        self.sensors = {s.id: s for s in cfg.sensors}
        self.batcher.max_readings = cfg.telemetry_batch_max
        self.batcher.max_ms = cfg.telemetry_batch_ms
        self.checkins.window_s = cfg.checkin_window_s
        self.next_heartbeat = min(self.next_heartbeat, self._mono() + cfg.heartbeat_s)
        for d in self.drivers:
            d.apply_config(cfg)
