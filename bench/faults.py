"""Replays faults of issue 20 against real edge agents and a private Mosquitto, and counts losses.

Each gateway is a real :class:`eldercare.edge.agent.Agent` (outbox on disk, its own uplink) fed a
counter (0, 1, 2, ... at ``--rate`` Hz) and an SOS press every few seconds: any gap or repeat in
what is stored is a lost or duplicated reading. Except in ``dead-worker`` (the real pipeline),
the platform side is a stand-in for ingest that behaves as ingest does with end-to-end
acknowledgement: a persistent QoS 1 session on every gateway's telemetry and event, "stored" =
first copy of each ``(gateway, epoch, seq)`` kept, and, every 200 ms, the retained ``.../ack``
with the highest contiguous seq of each epoch, never below the gateway's ``low`` - 1. (It is not
the database: the real ingest's side is tested in its own tests; this isolates the gateway.)

Faults (``--faults``, all by default; each of issue 20's six is replayed):

* ``broker-kill`` -- ingest stopped 10 s while the gateways send, then the broker ``kill -9``ed
  (persistence on, ``autosave_interval 60`` as deployed) and started again, then ingest;
* ``corrupt-outbox`` -- the agents crashed, garbage written over the first page of their outbox
  files, restarted (the damaged file is moved aside: what it held undelivered is lost by design);
* ``lost-wal`` -- the agents crashed with an un-checkpointed WAL, restarted without it (what the
  WAL held undelivered is lost; what matters is that no later reading is taken for a duplicate:
  "seq conflicts" counts seqs stored twice with different contents);
* ``full-disk`` -- the outboxes live on a 32 MB tmpfs (root only: it is mounted by the bench) that
  is filled for 10 s, then freed. (Each outbox's WAL grows up to 4 MB between checkpoints: a
  smaller file system fills up by itself.)
* ``dead-worker`` -- the real pipeline: two ``eldercare ingest`` workers on a shared subscription
  writing to a fresh PostgreSQL database, and ``eldercare serve`` (the alert engine); one worker is
  ``kill -9``ed for ``--dead-s`` (90 s) and then started again. Counted from the database; also
  when the living worker's ``/metrics`` showed the dead one (``eldercare_ingest_silent_peers``),
  when the alert engine opened the operators' alert for it (and cleared it after the restart),
  and each SOS press -> its alert (opened or detected again);
* ``broker-outage`` -- the broker ``kill -9``ed, down ``--outage-s`` (20 s), started again: when
  each agent is connected again (counted from the broker accepting connections), and the SOS
  pressed meanwhile;
* ``simulator-outage`` -- the simulators' publishers (:mod:`eldercare.simulators.mqttpool`, one
  connection per gateway) across a broker outage (clean stop, ``--outage-s``): every message they
  count as sent must be stored, and when each is connected again (they replace the agents here).

The gateway faults run with ``ack = "platform"`` and, for comparison, ``ack = "broker"``
(deletion on PUBACK, the behaviour before); ``dead-worker`` with ``platform`` only. Per fault
and mode it prints readings generated vs stored, duplicates stored (a reading stored twice), SOS
presses vs stored, press-to-stored delay of the SOS, SOS -> alert (``dead-worker``: the only one
with the alert engine) and what the fault measured besides.
Bounded: ``--gateways`` (default 4, at most 50), ``--rate`` (default 50 Hz, at most 500), 127.0.0.1.
``full-disk`` mounts a tmpfs and needs root; without root (or where ``mount`` is refused) it runs on
an injected quota: for 10 s every write of each agent's outbox fails with SQLite's full-disk error
(``SQLITE_FULL``), as on a full disk (the note column says which ran).
``--port-base N`` takes every port from N on (brokers, ``/metrics``, ``serve``) instead of free ones.

    python bench/faults.py [--gateways 4] [--rate 50] [--faults broker-kill,dead-worker,...]
    python bench/faults.py --pg-url postgresql://postgres@127.0.0.1:5432/postgres --port-base 18100
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import paho.mqtt.client as mqtt
import psycopg
from psycopg import sql
from pydantic import SecretStr

from eldercare.config import Settings
from eldercare.db.migrate import upgrade
from eldercare.edge.agent import Agent
from eldercare.edge.config import build_gateway_file
from eldercare.edge.drivers import Sample
from eldercare.edge.drivers.simulated import SimulatedDriver
from eldercare.embedded import free_port
from eldercare.simulators.mqttpool import Conn, Pool

FAULTS = (
    "broker-kill",
    "dead-worker",
    "corrupt-outbox",
    "lost-wal",
    "full-disk",
    "broker-outage",
    "simulator-outage",
)
PORTS: list[int] = []  # --port-base: the next port to hand out


def port() -> int:
    """A port for something this bench starts: from ``--port-base`` on, else a free one."""
    if PORTS:
        PORTS[0] += 1
        return PORTS[0] - 1
    return free_port()


class Broker:
    """A private Mosquitto with persistence saved every 60 s (the deployed setting)."""

    def __init__(self, workdir: Path) -> None:
        self.port = port()
        user = "user root\n" if os.geteuid() == 0 else ""
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {workdir}/\nautosave_interval 60\nmax_queued_messages 100000\n{user}"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen([exe, "-c", str(self.conf)], stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                return
            time.sleep(0.02)
        raise RuntimeError("mosquitto did not start")

    def kill(self, sig: str = "KILL") -> None:
        if self.proc is not None:
            if sig == "KILL":
                self.proc.kill()
            else:
                self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


class Ingest:
    """Stores the first copy of each (gateway, epoch, seq); acks contiguous seqs every 200 ms."""

    def __init__(self, port: int, root: str) -> None:
        self.port, self.root = port, root
        self.client_id = f"faults-ingest-{uuid.uuid4().hex[:8]}"
        self.stored: dict[tuple[str, str], dict[int, bytes]] = {}
        self.conflicts = 0  # a seq stored with other contents: a reading dropped as a false duplicate
        self.sos_stored: dict[tuple[str, int], float] = {}  # (gateway, press t) -> arrival (wall s)
        self.lock = threading.Lock()
        self.acked: dict[tuple[str, str], int] = {}
        self.lows: dict[tuple[str, str], int] = {}  # the highest ``low`` seen per epoch
        self.client: mqtt.Client | None = None
        self._stop = threading.Event()
        self._acker: threading.Thread | None = None

    def start(self) -> None:
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=False)
        ready = threading.Event()
        c.on_connect = lambda cl, *_: cl.subscribe(
            [(f"{self.root}/+/+/telemetry", 1), (f"{self.root}/+/+/event", 1)]
        )
        c.on_subscribe = lambda *_: ready.set()
        c.on_message = self._on_message
        c.reconnect_delay_set(0.1, 1)  # type: ignore[arg-type]
        c.connect("127.0.0.1", self.port)
        c.loop_start()
        ready.wait(10)
        self.client = c
        self._stop.clear()
        self._acker = threading.Thread(target=self._ack_loop, daemon=True)
        self._acker.start()

    def stop(self) -> None:
        self._stop.set()
        if self._acker is not None:
            self._acker.join()
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()
            self.client = None

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        gw = msg.topic.split("/")[-2]
        p = json.loads(msg.payload)
        with self.lock:
            seqs = self.stored.setdefault((gw, p["epoch"]), {})
            if p.get("low") is not None:
                self.lows[(gw, p["epoch"])] = max(p["low"], self.lows.get((gw, p["epoch"]), 0))
            old = seqs.get(p["seq"])
            if old is None:
                seqs[p["seq"]] = bytes(msg.payload)
                if p.get("kind") == "sos":
                    self.sos_stored[(gw, p["t"])] = time.time()
            elif old != bytes(msg.payload):
                self.conflicts += 1

    def _ack_loop(self) -> None:
        while not self._stop.wait(0.2):
            with self.lock:
                keys = list(self.stored)
                tops = {}
                for key in keys:
                    seqs = self.stored[key]
                    low = self.lows.get(key)
                    top = self.acked.get(key, min(seqs) - 1 if low is None else low - 1)
                    if low is not None:
                        top = max(top, low - 1)  # as ingest: nothing below low will come
                    while top + 1 in seqs:
                        top += 1
                    if top != self.acked.get(key):
                        tops[key] = top
                self.acked.update(tops)
            for (gw, epoch), top in tops.items():
                payload = json.dumps({"v": 1, "epoch": epoch, "seq": top}).encode()
                if self.client is not None:
                    self.client.publish(f"{self.root}/home-{gw}/{gw}/ack", payload, qos=1, retain=True)

    def readings(self, gw: str) -> list[float]:
        with self.lock:
            out = []
            for (g, _), seqs in self.stored.items():
                if g == gw:
                    for b in seqs.values():
                        p = json.loads(b)
                        out += [r["value"] for r in p.get("readings", []) if r["sensor"] == "counter-1"]
            return out


class Database:
    """A fresh migrated database with each home, its gateway and its resident registered."""

    def __init__(self, pg_url: str, n: int) -> None:
        self.admin = pg_url
        self.name = f"bench_faults_{uuid.uuid4().hex[:8]}"
        parts = urlsplit(pg_url)
        self.url = urlunsplit(parts._replace(path=f"/{self.name}"))
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))
        upgrade(self.url)
        with psycopg.connect(self.url) as conn, conn.transaction():
            for i in range(n):
                gw, site = f"gw-{i}", f"home-gw-{i}"
                conn.execute("INSERT INTO sites (id, kind, name) VALUES (%s, 'home', %s)", (site, site))
                conn.execute(
                    "INSERT INTO gateways (id, site_id, mqtt_username, mqtt_password_hash)"
                    " VALUES (%s, %s, %s, 'x')",
                    (gw, site, gw),
                )
                conn.execute(
                    "INSERT INTO residents (id, name, home_site_id) VALUES (%s, %s, %s)",
                    (f"res-{i}", f"R{i}", site),
                )

    def query(self, q: str, *args: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url) as conn:
            return conn.execute(q, args).fetchall()

    def drop(self) -> None:
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name)))


def _env(db: Database, broker_port: int, root: str, **extra: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("ELDERCARE_")},
        "ELDERCARE_DATABASE_URL": db.url,
        "ELDERCARE_MQTT_URL": f"mqtt://127.0.0.1:{broker_port}",
        "ELDERCARE_MQTT_TOPIC_ROOT": root,
        **extra,
    }


class Process:
    """``python -m eldercare.cli <args>`` with its output in a log file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args, self.env, self.log = args, env, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "eldercare.cli", *self.args],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return self

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""
    except OSError:
        return 0, ""


def healthy(url: str) -> bool:
    return http_get(url)[0] == 200


def metric(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def wait(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


class Home:
    """One gateway: a real agent, fed a counter and SOS presses by a thread."""

    def __init__(self, i: int, port: int, root: str, workdir: Path, ack: str, rate: float) -> None:
        self.gw = f"gw-{i}"
        self.raw: dict[str, Any] = {
            "site": f"home-{self.gw}",
            "gateway": self.gw,
            "topic_root": root,
            "broker": {"url": f"mqtt://127.0.0.1:{port}"},
            "outbox": {"path": str(workdir / f"{self.gw}.sqlite3"), "ack": ack, "ack_timeout_s": 5.0},
            "config": {"telemetry_batch_max": 50, "telemetry_batch_ms": 200, "heartbeat_s": 3600},
            "sensors": [{"id": "sos-1", "kind": "sos", "resident": f"res-{i}"}],
            "drivers": [{"type": "simulated", "name": "sim"}],
        }
        self.rate = rate
        self.next_value = 0
        self.presses: list[int] = []  # press times (ms) as stamped by the agent
        self.agent: Agent | None = None
        self._stop = threading.Event()
        self._feeder: threading.Thread | None = None

    def start(self) -> None:
        self.agent = Agent(build_gateway_file(self.raw))
        self.agent.start()
        self.agent.connected_once.wait(10)
        self._stop.clear()
        self._feeder = threading.Thread(target=self._feed, daemon=True)
        self._feeder.start()

    def _feed(self) -> None:
        assert self.agent is not None
        d = self.agent.driver("sim")
        assert isinstance(d, SimulatedDriver)
        step, last_sos = 1.0 / self.rate, time.monotonic()
        while not self._stop.wait(step):
            d.feed(Sample("counter-1", "count", float(self.next_value)))
            self.next_value += 1
            if time.monotonic() - last_sos >= 3.0:
                last_sos = time.monotonic()
                t = int(time.time() * 1000)
                self.presses.append(t)
                d.feed(Sample("sos-1", "press", 1.0, t))

    def stop_feed(self) -> None:
        """No more readings or presses; the agent goes on delivering what it holds."""
        self._stop.set()
        if self._feeder is not None:
            self._feeder.join()
            self._feeder = None

    def stop(self) -> None:
        self.stop_feed()
        if self.agent is not None:
            self.agent.stop()
            self.agent = None

    def crash_copy(self, keep_wal: bool) -> Path:
        """Stop the agent as a crash would (no flush; the outbox not closed, or SQLite would
        checkpoint the WAL into the file) and copy its files (without the WAL if not
        ``keep_wal``): the agent restarts on the copy. Readings in the inbox and what the lost part
        of the outbox held and had not delivered are lost, by design."""
        agent = self.agent
        assert agent is not None

        def crash() -> None:  # what kill -9 leaves: no flush, no drain, no clean close
            agent.uplink.client.disconnect()
            agent.uplink.client.loop_stop()

        agent._shutdown = crash  # type: ignore[method-assign]
        old = Path(self.raw["outbox"]["path"])
        new = old.with_name(f"{old.stem}-{uuid.uuid4().hex[:6]}.sqlite3")
        self.stop()
        suffixes = ["", ".seq"] + (["-wal"] if keep_wal else [])
        for suffix in suffixes:
            src = Path(str(old) + suffix)
            if src.exists():
                shutil.copy(src, Path(str(new) + suffix))
        self.raw["outbox"]["path"] = str(new)
        return new


@dataclass
class Opts:
    n: int
    rate: float
    dead_s: float
    outage_s: float
    pg_url: str


def run(fault: str, ack: str, o: Opts) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        (work / "broker").mkdir()
        broker = Broker(work / "broker")
        broker.start()
        try:
            if fault == "dead-worker":
                return dead_worker(o, broker, work)
            if fault == "simulator-outage":
                return simulator_outage(o, broker)
            if fault != "full-disk":
                return replay(fault, ack, o, broker, work)
            disk = work / "disk"
            disk.mkdir()
            mounted = os.geteuid() == 0 and (
                subprocess.run(
                    ["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(disk)],
                    check=False,
                    capture_output=True,
                ).returncode
                == 0
            )
            try:
                row = replay(fault, ack, o, broker, disk, tmpfs=mounted)
                how = "32 MB tmpfs filled" if mounted else "outbox writes refused (injected: no tmpfs)"
                row["note"] = f"{how} 10 s"
                return row
            finally:
                if mounted:
                    subprocess.run(["umount", str(disk)], check=False)
        finally:
            broker.kill("TERM")


def replay(
    fault: str, ack: str, o: Opts, broker: Broker, outboxes: Path, tmpfs: bool = False
) -> dict[str, Any]:
    root = f"bench-faults/{uuid.uuid4().hex[:8]}"
    ingest = Ingest(broker.port, root)
    ingest.start()
    homes = [Home(i, broker.port, root, outboxes, ack, o.rate) for i in range(o.n)]
    for h in homes:
        h.start()
    time.sleep(3)
    note: list[str] = []
    inject: dict[str, Callable[[], None]] = {
        "broker-kill": lambda: broker_kill(broker, ingest),
        "corrupt-outbox": lambda: corrupt(homes),
        "lost-wal": lambda: lose_wal(homes),
        "full-disk": lambda: fill_disk(outboxes) if tmpfs else inject_full(homes),
        "broker-outage": lambda: note.append(broker_outage(broker, homes, o.outage_s)),
    }
    try:
        inject[fault]()
    finally:
        (outboxes / "filler").unlink(missing_ok=True)
    time.sleep(3)
    for h in homes:
        h.stop_feed()
    settle = time.monotonic() + 30  # the agents go on: re-sending after the ack timeout (5 s)
    while time.monotonic() < settle and not all(
        len(set(ingest.readings(h.gw))) >= h.next_value for h in homes
    ):
        time.sleep(0.2)
    for h in homes:
        h.stop()
    ingest.stop()
    values = {h.gw: ingest.readings(h.gw) for h in homes}
    delays = [
        ingest.sos_stored[(h.gw, t)] - t / 1000
        for h in homes
        for t in h.presses
        if (h.gw, t) in ingest.sos_stored
    ]
    row = tally(
        fault, ack, sum(h.next_value for h in homes), values, sum(len(h.presses) for h in homes), delays
    )
    row["conflicts"] = ingest.conflicts
    row["note"] = "; ".join(note)
    return row


def tally(
    fault: str, ack: str, generated: int, values: dict[str, list[float]], presses: int, delays: list[float]
) -> dict[str, Any]:
    delays = sorted(delays)
    stored = sum(len(set(v)) for v in values.values())
    return {
        "fault": fault,
        "ack": ack,
        "generated": generated,
        "stored": stored,
        "lost": generated - stored,
        "duplicates": sum(len(v) - len(set(v)) for v in values.values()),
        "conflicts": 0,
        "sos": f"{len(delays)}/{presses}",
        "sos_p50_s": round(delays[len(delays) // 2], 2) if delays else None,
        "sos_max_s": round(delays[-1], 2) if delays else None,
        "alert": "",
        "note": "",
    }


def broker_kill(broker: Broker, ingest: Ingest) -> None:
    ingest.stop()  # ingest down: the broker queues for its session (in memory until autosave)
    time.sleep(10)
    broker.kill("KILL")
    broker.start()
    ingest.start()


def broker_outage(broker: Broker, homes: list[Home], outage_s: float) -> str:
    """Broker ``kill -9``, down ``outage_s``, started again: each agent's reconnect delay."""
    broker.kill("KILL")
    time.sleep(outage_s)
    broker.start()
    back = time.monotonic()
    seen: dict[str, float] = {}
    while len(seen) < len(homes) and time.monotonic() - back < 60:
        for h in homes:
            if h.gw not in seen and h.agent is not None and h.agent.connected:
                seen[h.gw] = time.monotonic() - back
        time.sleep(0.02)
    d = sorted(seen.values())
    if not d:
        return "no agent reconnected within 60 s"
    return (
        f"down {outage_s:.0f} s; {len(d)}/{len(homes)} agents connected again after "
        f"p50 {d[len(d) // 2]:.1f} / max {d[-1]:.1f} s"
    )


def corrupt(homes: list[Home]) -> None:
    for h in homes:
        path = h.crash_copy(keep_wal=False)
        with path.open("r+b") as f:
            f.write(os.urandom(4096))  # the header and the first page
    for h in homes:
        h.start()


def lose_wal(homes: list[Home]) -> None:
    for h in homes:
        h.crash_copy(keep_wal=False)
    for h in homes:
        h.start()


def fill_disk(disk: Path, seconds: float = 10.0) -> None:
    """Fill the file system until writes fail, keep it full for ``seconds``."""
    with (disk / "filler").open("wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 65536)
    time.sleep(seconds)


def inject_full(homes: list[Home], seconds: float = 10.0) -> None:
    """Where no tmpfs can be mounted (not root, or ``mount`` refused): an injected quota. For
    ``seconds`` every write of each agent's outbox fails with SQLite's own full-disk error
    (``SQLITE_FULL``: "database or disk is full"), then writes succeed again."""

    def full(*_a: Any, **_k: Any) -> Any:
        raise sqlite3.OperationalError("database or disk is full")

    names = ("add_readings", "seal_batches", "add_event", "store_sent")
    saved = []
    for h in homes:
        assert h.agent is not None
        ob = h.agent.outbox
        saved.append((ob, {n: getattr(ob, n) for n in names}))
        for n in names:
            setattr(ob, n, full)
    time.sleep(seconds)
    for ob, real in saved:
        for n, f in real.items():
            setattr(ob, n, f)


# The real pipeline: a dead ingest worker ------------------------------------------------------------


def dead_worker(o: Opts, broker: Broker, work: Path) -> dict[str, Any]:
    """Two real ingest workers (shared subscription) and the alert engine; one ``kill -9``ed."""
    db = Database(o.pg_url, o.n)
    root = f"bench-faults/{uuid.uuid4().hex[:8]}"
    tag = uuid.uuid4().hex[:6]
    ports = [port(), port()]
    workers = [
        Process(
            ["ingest", "run"],
            _env(
                db,
                broker.port,
                root,
                ELDERCARE_INGEST_CLIENT_ID=f"faults-{tag}-{i}",
                ELDERCARE_INGEST_SHARED_GROUP=f"faults{tag}",
                ELDERCARE_INGEST_HEARTBEAT_S="1",
                ELDERCARE_METRICS_PORT=str(ports[i]),
            ),
            work / f"ingest-{i}.log",
        ).start()
        for i in range(2)
    ]
    web = port()
    serve = Process(
        ["serve", "--host", "127.0.0.1", "--port", str(web)],
        _env(
            db,
            broker.port,
            root,
            ELDERCARE_DATA_DIR=str(work),
            ELDERCARE_ENVIRONMENT="test",
            ELDERCARE_INGEST_HEARTBEAT_S="1",
        ),
        work / "serve.log",
    ).start()
    homes: list[Home] = []
    alerts = AlertWatch(db)
    try:
        for url in [f"http://127.0.0.1:{p}/healthz" for p in ports] + [f"http://127.0.0.1:{web}/healthz"]:
            wait(functools.partial(healthy, url), 90, url)
        homes = [Home(i, broker.port, root, work, "platform", o.rate) for i in range(o.n)]
        for h in homes:
            h.start()
        alerts.start()
        time.sleep(3)
        workers[1].kill()
        killed, killed_wall = time.monotonic(), time.time()
        visible = None
        while time.monotonic() - killed < o.dead_s:
            if visible is None:
                text = http_get(f"http://127.0.0.1:{ports[0]}/metrics")[1]
                if (metric(text, "eldercare_ingest_silent_peers") or 0) >= 1:
                    visible = time.monotonic() - killed
            time.sleep(0.5)
        held = len(db.query("SELECT 1 FROM events WHERE kind = 'sos'"))
        workers[1].start()
        revived = time.time()
        time.sleep(3)
        for h in homes:
            h.stop_feed()
        generated = sum(h.next_value for h in homes)

        def values() -> dict[str, list[float]]:
            out: dict[str, list[float]] = {h.gw: [] for h in homes}
            for gw, v in db.query("SELECT gateway_id, value FROM readings WHERE sensor_id = 'counter-1'"):
                out[gw].append(v)
            return out

        with contextlib.suppress(RuntimeError):
            wait(lambda: sum(len(set(v)) for v in values().values()) >= generated, 90, "every reading")
        presses = {(h.gw, t) for h in homes for t in h.presses}
        stored = {
            (gw, int(ts.timestamp() * 1000)): at.timestamp()
            for gw, ts, at in db.query("SELECT gateway_id, ts, received_at FROM events WHERE kind = 'sos'")
        }
        with contextlib.suppress(RuntimeError):
            wait(lambda: alerts.total() >= len(presses), 30, "an alert for every SOS")
        with contextlib.suppress(RuntimeError):
            wait(lambda: "resolved" in alerts.operator, 30, "the operators' alert cleared")
        alerts.stop()
        delays = [stored[k] - k[1] / 1000 for k in presses if k in stored]
        row = tally("dead-worker", "platform", generated, values(), len(presses), delays)
        to_alert = sorted(alerts.delays(homes))
        if to_alert:
            row["alert"] = (
                f"{len(to_alert)}/{len(presses)}: {to_alert[len(to_alert) // 2]:.2f} / {to_alert[-1]:.2f}"
            )
        row["note"] = (
            f"worker 2 of 2 dead {o.dead_s:.0f} s; silent peer in /metrics after "
            f"{'never' if visible is None else f'{visible:.1f} s'}; {held} SOS stored while it was dead; "
            f"operators' alert opened {_after(alerts.operator.get('open'), killed_wall)} after the kill, "
            f"cleared {_after(alerts.operator.get('resolved'), revived)} after the restart"
        )
        return row
    finally:
        alerts.stop()
        for h in homes:
            h.stop()
        for w in workers:
            w.stop()
        serve.stop()
        db.drop()


def _after(at: float | None, since: float) -> str:
    return "never" if at is None else f"{at - since:.1f} s"


class AlertWatch:
    """Polls the SOS alerts: when each resident's detections count first reached k (the k-th
    press opens or joins the resident's open alert)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.first_seen: dict[tuple[str, int], float] = {}
        self.operator: dict[str, float] = {}  # state of the silent-worker alert -> first seen (wall s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        with psycopg.connect(self.db.url, autocommit=True) as conn:
            while not self._stop.wait(0.1):
                rows = conn.execute(
                    "SELECT resident_id, sum(detections) FROM alerts WHERE kind = 'sos' GROUP BY 1"
                ).fetchall()
                now = time.time()
                for (state,) in conn.execute(
                    "SELECT state FROM alerts WHERE starts_with(dedup_key, 'operator:ingest-worker:')"
                ).fetchall():
                    self.operator.setdefault(state, now)
                for res, n in rows:
                    for k in range(1, int(n) + 1):
                        self.first_seen.setdefault((res, k), now)

    def total(self) -> int:
        return len(self.first_seen)

    def delays(self, homes: list[Home]) -> list[float]:
        out = []
        for i, h in enumerate(homes):
            for k, t in enumerate(sorted(h.presses), start=1):
                seen = self.first_seen.get((f"res-{i}", k))
                if seen is not None:
                    out.append(seen - t / 1000)
        return out


# The simulators' publishers across an outage ---------------------------------------------------


def simulator_outage(o: Opts, broker: Broker) -> dict[str, Any]:
    """``o.n`` mqttpool connections publish numbered telemetry (``o.rate`` readings/s in 10 Hz
    messages) and an SOS every 3 s; the broker stops cleanly for ``o.outage_s`` and returns."""
    root = f"bench-faults/{uuid.uuid4().hex[:8]}"
    ingest = Ingest(broker.port, root)
    ingest.start()
    settings = Settings(mqtt_url=SecretStr(f"mqtt://127.0.0.1:{broker.port}"))
    pool = Pool()
    conns = [Conn(f"faults-sim-{root[-8:]}-{i}", settings) for i in range(o.n)]
    for c in conns:
        pool.add(c)
    pool.wait_connected()
    seq = dict.fromkeys(range(o.n), 0)
    value = dict.fromkeys(range(o.n), 0)
    presses: dict[int, list[int]] = {i: [] for i in range(o.n)}
    per_msg = max(1, round(o.rate / 10))
    phase = {"after": False}
    back = [0.0]
    reconnect: dict[int, float] = {}

    def publish_round(i: int, c: Conn, sos: bool) -> None:
        t = int(time.time() * 1000)
        readings = []
        for _ in range(per_msg):
            readings.append({"t": t, "sensor": "counter-1", "metric": "count", "value": float(value[i])})
            value[i] += 1
        body = {"v": 1, "epoch": "simulator000001", "seq": seq[i], "readings": readings}
        seq[i] += 1
        c.publish(f"{root}/home-gw-{i}/gw-{i}/telemetry", json.dumps(body).encode())
        if sos:
            presses[i].append(t)
            ev = {"v": 1, "epoch": "simulator000001", "seq": seq[i], "t": t, "sensor": "sos-1", "kind": "sos"}
            seq[i] += 1
            c.publish(f"{root}/home-gw-{i}/gw-{i}/event", json.dumps(ev).encode())

    def loop(until: float) -> None:
        last_sos = time.monotonic()
        nxt = time.monotonic()
        while time.monotonic() < until:
            pool.poll(0.01)
            now = time.monotonic()
            if phase["after"]:
                for i, c in enumerate(conns):
                    if c.connected and i not in reconnect:
                        reconnect[i] = now - back[0]
            if now >= nxt:
                nxt += 0.1
                sos = now - last_sos >= 3.0
                if sos:
                    last_sos = now
                for i, c in enumerate(conns):
                    publish_round(i, c, sos)

    loop(time.monotonic() + 3)
    stopper = threading.Thread(target=broker.kill, args=("TERM",))
    stopper.start()
    loop(time.monotonic() + o.outage_s + 0.5)
    stopper.join()
    broker.start()
    phase["after"], back[0] = True, time.monotonic()
    loop(time.monotonic() + 10)
    drain = time.monotonic() + 20
    while time.monotonic() < drain and pool.unacked:
        pool.poll(0.05)
    loop(time.monotonic() + 1)
    counted = sum(c.sent for c in conns)
    pool.close()
    settle = time.monotonic() + 20
    while time.monotonic() < settle and sum(len(set(ingest.readings(f"gw-{i}"))) for i in range(o.n)) < sum(
        value.values()
    ):
        time.sleep(0.2)
    ingest.stop()
    values = {f"gw-{i}": ingest.readings(f"gw-{i}") for i in range(o.n)}
    delays = [
        ingest.sos_stored[(f"gw-{i}", t)] - t / 1000
        for i in range(o.n)
        for t in presses[i]
        if (f"gw-{i}", t) in ingest.sos_stored
    ]
    row = tally(
        "simulator-outage", "-", sum(value.values()), values, sum(len(p) for p in presses.values()), delays
    )
    row["conflicts"] = ingest.conflicts
    messages = sum(seq.values())
    received = sum(len(s) for (gw, _), s in ingest.stored.items())
    d = sorted(reconnect.values())
    row["note"] = (
        f"broker down {o.outage_s:.0f} s; {len(d)}/{o.n} publishers back after "
        + (f"p50 {d[len(d) // 2]:.1f} / max {d[-1]:.1f} s" if d else "never")
        + f"; {counted} counted sent (PUBACK) of {messages} published, {received} received"
    )
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gateways", type=int, default=4)
    ap.add_argument("--rate", type=float, default=50.0)
    ap.add_argument("--faults", default=",".join(FAULTS))
    ap.add_argument("--dead-s", type=float, default=90.0, help="how long the ingest worker stays dead")
    ap.add_argument("--outage-s", type=float, default=20.0, help="how long the broker stays down")
    ap.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--port-base", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    faults = [f for f in a.faults.split(",") if f]
    if not 1 <= a.gateways <= 50 or not 1 <= a.rate <= 500 or not set(faults) <= set(FAULTS):
        sys.exit(f"--gateways 1-50, --rate 1-500, --faults from {', '.join(FAULTS)}")
    if a.port_base:
        PORTS.append(a.port_base)
    o = Opts(a.gateways, a.rate, a.dead_s, a.outage_s, a.pg_url)
    rows = []
    for f in faults:
        for ack in ("platform",) if f in ("dead-worker", "simulator-outage") else ("platform", "broker"):
            print(f"[{time.strftime('%H:%M:%S')}] {f} ({ack})", file=sys.stderr, flush=True)
            rows.append(run(f, ack, o))
    if a.json:
        print(json.dumps({"rows": rows, "load1": os.getloadavg()[0]}))
        return
    print(f"{a.gateways} gateways, counter at {a.rate:.0f} Hz each, load average {os.getloadavg()[0]:.1f}")
    head = ["fault", "ack", "readings generated", "stored", "lost", "duplicates", "seq conflicts"]
    head += ["SOS stored", "SOS press -> stored p50 / max s", "SOS -> alert p50 / max s", "notes"]
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    for r in rows:
        cells = [
            r[k] for k in ("fault", "ack", "generated", "stored", "lost", "duplicates", "conflicts", "sos")
        ]
        cells += [f"{r['sos_p50_s']} / {r['sos_max_s']}", r["alert"], r["note"]]
        print("| " + " | ".join(str(c) for c in cells) + " |")


if __name__ == "__main__":
    main()
