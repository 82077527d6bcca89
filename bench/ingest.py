"""Ingest speed, measured side by side with this machine's limits, in one run.

(a) limits: binary COPY of the same rows into the same ``readings`` table (batches of 10k and 50k
    rows, one commit each), and Mosquitto's delivery rate of the same messages to a bare QoS 1
    subscriber;
(b) end to end: Python publishers -> Mosquitto -> ``eldercare ingest`` (1 and 2 workers) ->
    ``readings``: the rate with publishers flat out, the drain rate of a pre-loaded broker,
    publish-to-commit latency p50/p99 at offered loads (fractions of the flat-out rate), and the
    publish-to-commit latency of events (SOS) sent while telemetry runs at half load;
(c) optionally (``--dedup-rows``), what one batch's dedup and acknowledgement watermark cost as
    ``ingested_messages`` grows to each of those sizes, with the plan of the dedup insert;
(d) optionally (``--profile``), one worker flat out under py-spy: CPU by stage and thread.

The goals (issue 24) are printed at the end as one table, each measured value beside its target
with the ratio and the machine's load average after the run it comes from.

Everything runs on this machine: its own Mosquitto on a free port (generated config:
``max_inflight_messages 1000``, ``max_queued_messages`` high, no persistence) and a database it
creates and drops on the PostgreSQL server of ``--pg-url``. The shared broker is never touched.

    python bench/ingest.py --quick         # the goals in one command, ~3 min: 2 workers, 3 s runs
    python bench/ingest.py                 # everything: 1 and 2 workers, drain runs (markdown)
    python bench/ingest.py --json          # the same numbers as JSON
    python bench/ingest.py --workers 2 --skip-drain --profile   # the goals, longer runs, a profile
    python bench/ingest.py --quick --writers 1,2   # 1 and 2 commits in flight, at the same rates
    python bench/ingest.py --dedup-rows 0,10000000,100000000 --workers ''   # only the dedup scaling

Results are in docs/performance.md ("Ingest").
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec
import psycopg
from psycopg import sql

READINGS_PER_MESSAGE = 50
GATEWAYS = 200
ROOT = "bench/eldercare/v1"
MIX = [
    ("pir-kitchen", "motion"),
    ("pir-living", "motion"),
    ("door-front", "contact"),
    ("bed-1", "in_bed"),
    ("plug-kettle", "power"),
    ("env-living", "temperature"),
    ("env-living", "humidity"),
    ("wearable-1", "heart_rate"),
    ("wearable-1", "steps"),
    ("wearable-1", "battery"),
]


def gw_name(g: int) -> tuple[str, str]:
    return f"gw-{g:04d}", f"home-{g:04d}"


def payload(epoch: str, seq: int, t0: int, n: int = READINGS_PER_MESSAGE) -> bytes:
    readings = []
    for i in range(n):
        sensor, metric = MIX[i % len(MIX)]
        readings.append(
            {"t": t0 + i * 20, "sensor": sensor, "metric": metric, "value": float((seq * 7 + i) % 100)}
        )
    return msgspec.json.encode({"v": 1, "epoch": epoch, "seq": seq, "readings": readings})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Own broker --------------------------------------------------------------------------------------


class Broker:
    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        conf = tmp / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence false\n"
            "max_inflight_messages 1000\n"
            "max_queued_messages 10000000\n"
            "max_queued_bytes 0\n"
            "set_tcp_nodelay true\n"
            "log_type error\n"
        )
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen(
            [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


# Publishers and a bare subscriber (separate processes) --------------------------------------------


def event_payload(epoch: str, seq: int, t: int) -> bytes:
    body = {"v": 1, "epoch": epoch, "seq": seq, "t": t, "sensor": "sos-hall", "kind": "sos"}
    return msgspec.json.encode(body)


def _publisher(
    port: int,
    part: int,
    parts: int,
    epoch: str,
    messages: int,
    rate: float | None,
    out: Any,
    events: bool = False,
) -> None:
    """Publish ``messages`` of this part's gateways, flat out or at ``rate`` msg/s; report times."""
    import paho.mqtt.client as mqtt

    gws = [g for g in range(GATEWAYS) if g % parts == part]
    t0 = int(time.time() * 1000)
    encoded = []
    for i in range(messages):
        g = gws[i % len(gws)]
        gw, site = gw_name(g)
        if events:
            encoded.append((f"{ROOT}/{site}/{gw}/event", event_payload(epoch, i // len(gws), t0 + i)))
            continue
        encoded.append((f"{ROOT}/{site}/{gw}/telemetry", payload(epoch, i // len(gws), t0 + i)))
    acked = [0]
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{uuid.uuid4().hex[:8]}")
    c.on_publish = lambda *_a: acked.__setitem__(0, acked[0] + 1)
    c.connect("127.0.0.1", port)
    c.loop_start()
    sent: list[float] = []
    start = time.time()
    for i, (topic, body) in enumerate(encoded):
        if rate:
            ahead = start + i / rate - time.time()
            if ahead > 0:
                time.sleep(ahead)
        while i - acked[0] > 20_000:  # paho's 16-bit message ids: never 65,535 outstanding
            time.sleep(0.001)
        sent.append(time.time())
        c.publish(topic, body, qos=1)
    while acked[0] < len(encoded):
        time.sleep(0.005)
    done = time.time()
    c.disconnect()
    c.loop_stop()
    keys = [(gw_name(gws[i % len(gws)])[0], i // len(gws)) for i in range(messages)]
    out.put(
        {
            "part": part,
            "events": events,
            "start": start,
            "done": done,
            "sent": list(zip(keys, sent, strict=True)),
        }
    )


def _subscriber(port: int, expect: int, ready: Any, out: Any) -> None:
    import paho.mqtt.client as mqtt

    got = [0, 0.0, 0.0]

    def on_message(_c: Any, _u: Any, _m: Any) -> None:
        now = time.time()
        if got[0] == 0:
            got[1] = now
        got[0] += 1
        got[2] = now

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-bare-sub", protocol=mqtt.MQTTv5)
    c.on_message = on_message
    c.on_subscribe = lambda *_a: ready.set()
    c.connect("127.0.0.1", port)
    c.subscribe(f"{ROOT}/+/+/telemetry", qos=1)
    c.loop_start()
    deadline = time.time() + 120
    while got[0] < expect and time.time() < deadline:
        time.sleep(0.01)
    c.disconnect()
    c.loop_stop()
    out.put({"count": got[0], "first": got[1], "last": got[2]})


def publish(
    port: int,
    epoch: str,
    messages: int,
    publishers: int,
    rate: float | None,
    events: tuple[str, int, float] | None = None,
) -> list[dict[str, Any]]:
    """Telemetry from ``publishers`` processes; ``events`` (epoch, count, rate): SOS from one more."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    per = messages // publishers
    procs = [
        ctx.Process(
            target=_publisher,
            args=(port, p, publishers, epoch, per, rate / publishers if rate else None, out),
        )
        for p in range(publishers)
    ]
    if events is not None:
        ev_epoch, ev_count, ev_rate = events
        procs.append(
            ctx.Process(target=_publisher, args=(port, 0, 1, ev_epoch, ev_count, ev_rate, out, True))
        )
    for p in procs:
        p.start()
    results = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    return results


# Database -----------------------------------------------------------------------------------------


def create_database(server: str) -> str:
    from eldercare.db.migrate import upgrade

    name = f"bench_ingest_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = urlsplit(server)._replace(path=f"/{name}").geturl()
    upgrade(url)
    with psycopg.connect(url, autocommit=True) as conn:
        for g in range(GATEWAYS):
            gw, site = gw_name(g)
            conn.execute("INSERT INTO sites (id, kind, name) VALUES (%s, 'home', %s)", (site, site))
            conn.execute(
                "INSERT INTO gateways (id, site_id, mqtt_username, mqtt_password_hash)"
                " VALUES (%s, %s, %s, 'x')",
                (gw, site, gw),
            )
    return url


def drop_database(server: str, url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def reset(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE readings, events, alert_work, ingested_messages, ingest_acks")
        conn.execute("CHECKPOINT")


def count(url: str, what: str = "ingested_messages") -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(what))).fetchone()
        return int(row[0]) if row else 0


def raw_copy(url: str, rows: int, batch: int, repeat: int) -> dict[str, float]:
    """The same rows ingest writes, prepared in memory, COPYed in ``batch``-row transactions."""
    from eldercare.ingest.batch import COPY_HEADER, COPY_TRAILER, Inbound, Registry, Validator
    from eldercare.ingest.store import COPY_READINGS

    reg = Registry({gw_name(g)[0]: gw_name(g)[1] for g in range(GATEWAYS)})
    v = Validator(ROOT, reg)
    t0 = int(time.time() * 1000)
    per = batch // READINGS_PER_MESSAGE
    chunks = []
    inbound = []
    for b in range(rows // batch):
        for i in range(per):
            gw, site = gw_name((b * per + i) % GATEWAYS)
            body = payload("raw-copy-epoch", b * per + i, t0 + i)
            inbound.append(Inbound(f"{ROOT}/{site}/{gw}/telemetry", body))
    # Thread CPU time as well as wall time: on a loaded machine the wall clock mostly measures
    # the other processes (93 µs "per message" in one run whose CPU time was 35 µs).
    cpu, wall = time.thread_time(), time.perf_counter()
    items = [v.check(m) for m in inbound]
    cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
    for b in range(rows // batch):
        parts = [item.rows for item in items[b * per : (b + 1) * per]]  # type: ignore[union-attr]
        chunks.append(b"".join([COPY_HEADER, *parts, COPY_TRAILER]))
    rates = []
    for _ in range(repeat):
        reset(url)
        with psycopg.connect(url, autocommit=True) as conn:
            started = time.perf_counter()
            for chunk in chunks:
                with conn.transaction(), conn.cursor().copy(COPY_READINGS) as copy:
                    copy.write(chunk)
            rates.append(rows / (time.perf_counter() - started))
    messages = rows // READINGS_PER_MESSAGE
    return {
        "rows_per_s": statistics.median(rates),
        "decode_validate_rows_us_per_message": cpu / messages * 1e6,
        "decode_validate_rows_wall_us_per_message": wall / messages * 1e6,
    }


def commit_latency(url: str, commits: int = 300) -> tuple[float, float, str]:
    """p50 and p99 of one small transaction (an insert and its COMMIT) from this client, and
    the server's ``synchronous_commit``: the part of any publish-to-commit latency that is the
    database's durability, not ingest."""
    lat = []
    with psycopg.connect(url, autocommit=True) as conn:
        setting = str(conn.execute("SHOW synchronous_commit").fetchone()[0])  # type: ignore[index]
        conn.execute("CREATE TABLE bench_commit_probe (i int)")
        try:
            for i in range(commits):
                started = time.perf_counter()
                with conn.transaction():
                    conn.execute("INSERT INTO bench_commit_probe VALUES (%s)", (i,))
                lat.append((time.perf_counter() - started) * 1000)
        finally:
            conn.execute("DROP TABLE bench_commit_probe")
    p50, p99 = percentiles(lat)
    return p50, p99, setting


def datetime_copy(url: str, rows: int, batch: int) -> float:
    """For comparison: psycopg ``write_row`` with ``datetime`` objects built from the milliseconds."""
    from datetime import UTC, datetime

    t0 = int(time.time() * 1000)
    msgs = [msgspec.json.decode(payload("dt", i, t0 + i)) for i in range(batch // READINGS_PER_MESSAGE)]
    reset(url)
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(rows // batch):
            with (
                conn.transaction(),
                conn.cursor().copy(
                    "COPY readings (ts, gateway_id, sensor_id, metric, value) FROM STDIN (FORMAT BINARY)"
                ) as copy,
            ):
                copy.set_types(["timestamptz", "text", "text", "text", "float8"])
                for m in msgs:
                    for r in m["readings"]:
                        ts = datetime.fromtimestamp(r["t"] / 1000, UTC)
                        copy.write_row((ts, "gw-0000", r["sensor"], r["metric"], r["value"]))
    return rows / (time.perf_counter() - started)


# Ingest process ---------------------------------------------------------------------------------


class Ingest:
    def __init__(
        self,
        db_url: str,
        mqtt_url: str,
        workers: int,
        log_dir: Path,
        batch_rows: int,
        writers: int | None = None,
    ) -> None:
        self.workers = workers
        self.writers = writers  # ELDERCARE_INGEST_WRITERS; None: as configured (the default)
        tag = f"{workers}w" + (f"{writers}c" if writers else "")
        self.commit_log = log_dir / f"commits-{tag}"
        self.port = free_port()
        self.env = {
            **os.environ,
            "ELDERCARE_DATABASE_URL": db_url,
            "ELDERCARE_MQTT_URL": mqtt_url,
            "ELDERCARE_MQTT_TOPIC_ROOT": ROOT,
            "ELDERCARE_INGEST_CLIENT_ID": f"bench-ingest-{tag}-0",
            # A group per run: a stopped worker's persistent session stays a member of its group and
            # would keep receiving its share (see docs/operations.md, "scaling down").
            "ELDERCARE_INGEST_SHARED_GROUP": f"bench{tag}",
            "ELDERCARE_INGEST_BATCH_ROWS": str(batch_rows),
            "ELDERCARE_METRICS_PORT": str(self.port),
            "ELDERCARE_LOG_LEVEL": "WARNING",
            **({"ELDERCARE_INGEST_WRITERS": str(writers)} if writers else {}),
        }
        self.log = log_dir / f"ingest-{tag}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def who(self) -> str:
        return f"{self.workers}" + (f" ({self.writers} writers)" if self.writers else "")

    def start(self) -> None:
        args = [
            sys.executable,
            "-m",
            "eldercare.cli",
            "ingest",
            "run",
            "--workers",
            str(self.workers),
            "--commit-log",
            str(self.commit_log),
        ]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(args, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if all(self._healthy(self.port + i) for i in range(self.workers)):
                return
            time.sleep(0.1)
        raise RuntimeError(f"ingest did not become healthy; see {self.log}")

    @staticmethod
    def _healthy(port: int) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)

    def forget_sessions(self, port: int) -> None:
        """Connect once per worker client id with a clean start: the broker drops the sessions."""

        from eldercare.ingest.mqtt import EVENT_SUFFIX
        from eldercare.ingest.worker import client_id_for

        for i in range(self.workers):
            for suffix in ("", EVENT_SUFFIX):
                self._forget(port, client_id_for(self.env["ELDERCARE_INGEST_CLIENT_ID"], i) + suffix)

    @staticmethod
    def _forget(port: int, client_id: str) -> None:
        import paho.mqtt.client as mqtt

        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        c.connect("127.0.0.1", port, clean_start=True)
        c.loop_start()
        time.sleep(0.2)
        c.disconnect()
        c.loop_stop()

    def commits(self, epoch: str) -> dict[tuple[str, int], float]:
        return {k: c for k, (_r, c) in self.received_commits(epoch).items()}

    def received_commits(self, epoch: str) -> dict[tuple[str, int], tuple[float, float]]:
        """(received by a worker, committed) of each message: the first commit's."""
        return {k: (t[0], t[1]) for k, t in self.traces(epoch).items()}

    def traces(self, epoch: str) -> dict[tuple[str, int], tuple[float, ...]]:
        """(received, committed, then the worker's stages if logged: picked from the inbox, added
        to the open batch, batch taken by the writer) of each message: the first commit's."""
        out: dict[tuple[str, int], tuple[float, ...]] = {}
        for i in range(self.workers):
            path = self.commit_log.with_name(f"{self.commit_log.name}.{i}")
            if not path.exists():
                continue
            for line in path.read_text().splitlines():
                gw, ep, seq, *times = line.split()
                if ep == epoch:  # the first commit: every worker stores (or skips) each event
                    key = (gw, int(seq))
                    t = tuple(float(x) for x in times)
                    if t[1] < out.get(key, (0.0, float("inf")))[1]:
                        out[key] = t
        return out


# received->picked->added->taken->committed; "database" split in three: taken->ids inserted (BEGIN,
# registry, dedup insert), ids->rows written (COPY or INSERT), rows->committed (COMMIT: the WAL flush)
WORKER_STAGES = ("inbox", "validate", "writer wake", "database", "dedup", "rows", "commit")
_STAGE_SPANS = [(0, 2), (2, 3), (3, 4), (4, 1), (4, 5), (5, 6), (6, 1)]
BATCH_STAGE = "messages in its commit"  # not a time: how many messages the commit held


def stage_percentiles(traces: dict[tuple[str, int], tuple[float, ...]]) -> dict[str, tuple[float, float]]:
    """p50 / p99 ms of each stage of a message's time inside a worker (from the commit log)."""
    full = [t for t in traces.values() if len(t) >= 5]
    if not full:
        return {}
    out = {}
    for name, (a, b) in zip(WORKER_STAGES, _STAGE_SPANS, strict=True):
        if all(len(t) > max(a, b) for t in full):
            out[name] = percentiles([(t[b] - t[a]) * 1000 for t in full])
    # the size of the commit each message rode in (a commit: one (taken, committed) pair)
    sizes: dict[tuple[float, float], int] = {}
    for t in full:
        sizes[(t[4], t[1])] = sizes.get((t[4], t[1]), 0) + 1
    out[BATCH_STAGE] = percentiles([float(sizes[(t[4], t[1])]) for t in full])
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and all its descendants so far (Linux ``/proc``)."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
            for task in Path(f"/proc/{p}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except (OSError, ValueError):
            continue
    return total


def wait_stored(url: str, expected: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while count(url) < expected:
        if time.monotonic() > deadline:
            msg = f"only {count(url)} of {expected} messages stored after {timeout} s"
            raise RuntimeError(msg)
        time.sleep(0.05)


@dataclass
class Run:
    workers: int
    mode: str  # flat_out | drain | offered | events
    offered_readings_per_s: float | None
    landed_readings_per_s: float
    p50_ms: float | None = None
    p99_ms: float | None = None
    messages: int = 0
    load: float | None = None  # offered as a fraction of the flat-out rate
    event_p50_ms: float | None = None
    event_p99_ms: float | None = None
    events: int = 0
    # the same latency in two parts: publish -> a worker received it, received -> committed
    deliver_p50_ms: float | None = None
    deliver_p99_ms: float | None = None
    ingest_p50_ms: float | None = None
    ingest_p99_ms: float | None = None
    event_ingest_p99_ms: float | None = None
    # CPU time of the ingest processes (all workers, all threads) per message stored: what the
    # worker costs, much less sensitive to the other processes on the machine than a rate
    ingest_cpu_us_per_message: float | None = None
    load_average: float = 0.0  # the machine's 1-minute load average at the end of the run
    # received-to-commit by stage inside the worker (WORKER_STAGES): p50, p99 ms
    stages_ms: dict[str, tuple[float, float]] = field(default_factory=dict)
    event_stages_ms: dict[str, tuple[float, float]] = field(default_factory=dict)  # the event thread's
    writers: int | None = None  # ELDERCARE_INGEST_WRITERS of the run (None: as configured)
    # what ingest's database sessions were doing while active (pg_stat_activity sampled every
    # 10 ms): "statement: wait event" -> share of the samples; "running" = on a CPU or waiting for one
    backend_waits: dict[str, float] = field(default_factory=dict)

    def who(self) -> str:
        return f"{self.workers}" + (f" ({self.writers} writers)" if self.writers else "")


class BackendSampler:
    """Samples what ingest's sessions in the bench database are doing, every 10 ms, on a thread."""

    QUERY = r"""
        SELECT substring(query FROM '^\s*(\w+)'), coalesce(wait_event_type || ': ' || wait_event, 'running')
        FROM pg_stat_activity
        WHERE application_name = 'eldercare-ingest' AND datname = current_database() AND state = 'active'
    """

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        self.counts: dict[str, int] = {}
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.done.wait(0.01):
            for statement, what in self.conn.execute(self.QUERY).fetchall():
                key = f"{(statement or '?').upper()}: {what}"
                self.counts[key] = self.counts.get(key, 0) + 1

    def stop(self) -> dict[str, float]:
        self.done.set()
        self.thread.join()
        self.conn.close()
        n = sum(self.counts.values()) or 1
        return {k: c / n for k, c in sorted(self.counts.items(), key=lambda kv: -kv[1])}


def percentiles(lat: list[float]) -> tuple[float, float]:
    lat = sorted(lat)
    return lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))]


def e2e_run(ingest: Ingest, *args: Any, **kwargs: Any) -> Run:
    run = _e2e_run(ingest, *args, **kwargs)
    run.load_average = os.getloadavg()[0]
    run.writers = ingest.writers
    return run


def _e2e_run(
    ingest: Ingest,
    broker: Broker,
    url: str,
    messages: int,
    publishers: int,
    rate_msgs: float | None,
    mode: str,
    events: tuple[int, float] | None = None,
) -> Run:
    epoch = f"bench-{uuid.uuid4().hex[:12]}"
    ev_epoch = f"bench-ev-{uuid.uuid4().hex[:12]}"
    reset(url)
    if mode == "drain":
        ingest.stop()  # its session stays subscribed on the broker and collects the messages
    ev = (ev_epoch, *events) if events else None
    cpu = cpu_seconds(ingest.proc.pid) if ingest.proc is not None and mode != "drain" else None
    sampler = BackendSampler(url)
    results = publish(broker.port, epoch, messages, publishers, rate_msgs, ev)
    total = sum(len(r["sent"]) for r in results)
    if mode == "drain":
        ingest.start()
    wait_stored(url, total)
    waits = sampler.stop()
    if cpu is not None and ingest.proc is not None:
        cpu = (cpu_seconds(ingest.proc.pid) - cpu) / total * 1e6
    both = ingest.received_commits(epoch)
    commits = {k: c for k, (_r, c) in both.items()}
    ev_both = ingest.received_commits(ev_epoch)
    ev_commits = {k: c for k, (_r, c) in ev_both.items()}
    ev_sent = {key: t for r in results if r["events"] for key, t in r["sent"]}
    results = [r for r in results if not r["events"]]
    total = sum(len(r["sent"]) for r in results)
    sent = {key: t for r in results for key, t in r["sent"]}
    if mode == "drain":
        first = min(commits.values()) - 0.0
        ends = sorted(commits.values())
        # From the first commit to the last: the rate at which the backlog went in.
        span = ends[-1] - first if len(ends) > 1 else 1.0
        landed = (total - sum(1 for t in ends if t == first)) * READINGS_PER_MESSAGE / span
        return Run(ingest.workers, mode, None, landed, messages=total)
    start = min(r["start"] for r in results)
    last = max(commits.values())
    landed = total * READINGS_PER_MESSAGE / (last - start)
    p50, p99 = percentiles([(commits[k] - t) * 1000 for k, t in sent.items() if k in commits])
    offered = rate_msgs * READINGS_PER_MESSAGE if rate_msgs else None
    run = Run(ingest.workers, mode, offered, landed, p50, p99, total)
    run.ingest_cpu_us_per_message = cpu
    run.deliver_p50_ms, run.deliver_p99_ms = percentiles(
        [(both[k][0] - t) * 1000 for k, t in sent.items() if k in both]
    )
    run.ingest_p50_ms, run.ingest_p99_ms = percentiles([(c - r) * 1000 for r, c in both.values()])
    run.backend_waits = waits
    run.stages_ms = stage_percentiles(ingest.traces(epoch))
    run.event_stages_ms = stage_percentiles(ingest.traces(ev_epoch))
    if ev_sent:
        run.event_p50_ms, run.event_p99_ms = percentiles(
            [(ev_commits[k] - t) * 1000 for k, t in ev_sent.items()]
        )
        run.event_ingest_p99_ms = percentiles([(c - r) * 1000 for r, c in ev_both.values()])[1]
        run.events = len(ev_sent)
    return run


def broker_rate(broker: Broker, messages: int, publishers: int) -> float:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    ready = ctx.Event()
    sub = ctx.Process(target=_subscriber, args=(broker.port, messages, ready, out))
    sub.start()
    ready.wait(10)
    publish(broker.port, "bare-subscriber", messages, publishers, None)
    r = out.get(timeout=300)
    sub.join()
    return r["count"] * READINGS_PER_MESSAGE / max(r["last"] - r["first"], 1e-9)


# Profile -----------------------------------------------------------------------------------------

# Where a worker's threads spend their time: the first matching frame (innermost first) names it.
STAGES = [
    ("ack watermark", ("_advance_acks",)),
    ("dedup ids (INSERT ... ON CONFLICT)", ("_write_tx (eldercare/ingest/store.py:{ids})",)),
    (
        "COPY readings",
        ("copy (psycopg", "write (psycopg/copy", "_write_end", "Copy.__exit__", "__exit__ (psycopg/copy"),
    ),
    ("events, alert_work", ("_write_events",)),
    ("status", ("_write_statuses",)),
    ("registry check", ("_verify", "_refresh_registry", "load_registry")),
    ("commit", ("transaction", "_commit_gen", "commit (psycopg")),
    (
        "PUBACK (MQTT ack after commit)",
        (
            "MqttSource.ack",
            "ack (eldercare/ingest/mqtt.py",
            "ack_many (eldercare/ingest/mqtt.py",
        ),
    ),
    (
        "ack publishing",
        ("AckPublisher", "_run (eldercare/ingest/mqtt.py", "publish_retained", "_out_flush", "_out_done"),
    ),
    ("metrics, commit log", ("_account",)),
    ("build COPY rows", ("readings (eldercare/ingest/batch.py",)),
    ("decode + validate", ("decode (eldercare/protocol.py", "check (eldercare/ingest/batch.py", "_check (")),
    ("batch hand-over", ("_add (eldercare/ingest/worker.py",)),
    (
        "MQTT receive (paho)",
        ("_on_message", "_on_publish", "_packet_read", "_handle_publish", "loop_read", "_sock_recv"),
    ),
    ("MQTT loop (paho)", ("paho",)),
]


def classify(stack: list[str], ids_line: int) -> str:
    for name, needles in STAGES:
        needles = tuple(n.replace("{ids}", str(ids_line)) for n in needles)
        for frame in reversed(stack):
            if any(n in frame for n in needles):
                return name
    return "other"


def thread_of(stack: list[str]) -> str:
    text = ";".join(stack)
    for name, needle in (
        ("writer (telemetry commits)", "_write_loop"),
        ("events", "_event_loop"),
        ("watermarks", "_watermark_loop"),
        ("main (decode, validate)", "_batch_loop"),
        ("acks", "AckPublisher"),
        ("paho network", "paho"),
    ):
        if needle in text:
            return name
    return "other"


IDLE_LEAVES = ("wait (threading.py", "get (queue.py", "select (selectors.py", "_loop (paho", "sleep")


def profile(pid: int, out: Path, *, idle: bool) -> subprocess.Popen[bytes]:
    """py-spy (``pip install py-spy``) sampling every thread of ``pid``; stopped with SIGINT.

    Without ``idle`` only threads on a CPU are sampled (where the CPU goes); with it, waits too
    (where a thread's time goes, e.g. the writer waiting for the database)."""
    binary = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    args = [binary, "record", "--pid", str(pid), "--threads", "--nonblocking", "--rate", "100"]
    args += ["--duration", "600", "--format", "raw", "--output", str(out)]
    return subprocess.Popen(
        [*args, "--idle"] if idle else args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def summarise_profile(path: Path) -> dict[str, dict[str, float]]:
    """Samples per thread and stage."""
    import inspect

    from eldercare.ingest import store

    src, first = inspect.getsourcelines(store.Store._write_tx)
    ids_line = first + next(i for i, line in enumerate(src) if "INSERT_IDS" in line) - 1
    totals: dict[str, dict[str, float]] = {}
    for line in path.read_text().splitlines():
        stack_text, _, n = line.rpartition(" ")
        if not stack_text:
            continue
        stack = stack_text.split(";")
        per = totals.setdefault(thread_of(stack), {})
        if any(w in stack[-1] for w in IDLE_LEAVES):
            stage = "idle (waiting for work)"
        else:
            stage = classify(stack, ids_line)
        per[stage] = per.get(stage, 0) + int(n)
    return totals


# Dedup at scale ----------------------------------------------------------------------------------

FILL_GATEWAYS = 10_000  # other gateways whose histories fill ingested_messages
FILL_WEEKS = 5  # the current week and four before it: the partitions a 30-day horizon keeps
FILL_STEP = 5_000_000  # rows per INSERT while filling (progress, and no hour-long transaction)


def _fill(conn: psycopg.Connection[Any], have: int, want: int, log: Any) -> None:
    """Grow ingested_messages from ``have`` to ``want`` rows of other gateways, spread evenly over
    the last FILL_WEEKS weekly partitions (one epoch per gateway and week), each gateway's seqs
    inserted in key order as ingest does (so the index is built the way it grows in production)."""
    from datetime import UTC, date, datetime, timedelta

    monday = datetime.now(UTC).date()
    monday -= timedelta(days=monday.weekday())
    weeks: list[date] = [monday - timedelta(weeks=w) for w in range(FILL_WEEKS)]
    per_gw_before = have // (FILL_GATEWAYS * FILL_WEEKS)
    per_gw = want // (FILL_GATEWAYS * FILL_WEEKS)
    extra = per_gw - per_gw_before
    if extra <= 0:
        return
    gws_per_step = max(1, FILL_STEP // extra)
    for week in weeks:
        for g0 in range(0, FILL_GATEWAYS, gws_per_step):
            g1 = min(FILL_GATEWAYS, g0 + gws_per_step)
            conn.execute(
                "INSERT INTO ingested_messages (gateway_id, epoch, seq, week)"
                " SELECT 'fill-' || lpad(g::text, 5, '0'), 'fill-' || %(week)s::text, s, %(week)s"
                " FROM generate_series(%(g0)s, %(g1)s - 1) g, generate_series(%(s0)s, %(s1)s - 1) s",
                {"week": week, "g0": g0, "g1": g1, "s0": per_gw_before, "s1": per_gw},
            )
        log(f"  filled week {week}: {FILL_GATEWAYS * per_gw * (weeks.index(week) + 1):,} ... rows so far")


def dedup_scale(url: str, sizes: list[int], log: Any, batches: int = 40) -> list[dict[str, Any]]:
    """Store batches of 1,000 one-reading messages (200 gateways x 5 seqs) with ``ingested_messages``
    holding ``n`` rows of 10,000 other gateways over five weekly partitions: time per batch of new
    messages, and of the same batch again (all duplicates), with the plan of the dedup insert.
    One reading per message keeps COPY small, so dedup and the watermark dominate. ``sizes`` are
    reached one after the other in the same table (it only grows)."""
    from datetime import UTC, datetime, timedelta

    from eldercare.db import maintain
    from eldercare.ingest.batch import Batch, Inbound, Registry, Validator
    from eldercare.ingest.store import INSERT_IDS, Store

    out = []
    reg = Registry({gw_name(g)[0]: gw_name(g)[1] for g in range(GATEWAYS)})
    v = Validator(ROOT, reg)
    reset(url)
    have = 0
    with psycopg.connect(url, autocommit=True) as conn:
        now = datetime.now(UTC)
        maintain.ensure_partitions(conn, now - timedelta(weeks=FILL_WEEKS), now + timedelta(days=7))
    for n in sorted(sizes):
        with psycopg.connect(url, autocommit=True) as conn:
            started = time.perf_counter()
            _fill(conn, have, n, log)
            conn.execute("VACUUM ANALYZE ingested_messages")
            fill_s = time.perf_counter() - started
            have = count(url)
            # pg_total_relation_size of a partitioned parent is 0: sum the partitions
            size = conn.execute(
                "SELECT pg_size_pretty(sum(pg_total_relation_size(inhrelid)))"
                " FROM pg_inherits WHERE inhparent = 'ingested_messages'::regclass"
            ).fetchone()
        store = Store(url)
        epoch = f"scale-{uuid.uuid4().hex[:8]}"
        t0 = int(time.time() * 1000)
        new_s, dup_s = [], []
        plan: list[str] = []
        for b in range(batches):
            batch = Batch()
            for i in range(1000):
                gw, site = gw_name(i % GATEWAYS)
                body = payload(epoch, b * 5 + i // GATEWAYS, t0 + b, n=1)
                batch.add(v.check(Inbound(f"{ROOT}/{site}/{gw}/telemetry", body)))
            if b == batches - 1:
                plan = _dedup_plan(store, batch, INSERT_IDS)
            started = time.perf_counter()
            store.write(batch, reg)
            new_s.append(time.perf_counter() - started)
            started = time.perf_counter()
            r = store.write(batch, reg)
            dup_s.append(time.perf_counter() - started)
            assert r.duplicates == 1000
        store.close()
        out.append(
            {
                "rows": have,
                "size": size[0] if size else "?",
                "fill_s": fill_s,
                "new_batch_ms_median": statistics.median(new_s) * 1000,
                "duplicate_batch_ms_median": statistics.median(dup_s) * 1000,
                "plan": plan,
            }
        )
        d = out[-1]
        log(
            f"dedup with {d['rows']:,} rows ({d['size']}): new batch {d['new_batch_ms_median']:.1f} ms, "
            f"duplicate batch {d['duplicate_batch_ms_median']:.1f} ms (fill {fill_s:.0f} s)"
        )
    return out


def _dedup_plan(store: Any, batch: Any, insert_ids: str) -> list[str]:
    """EXPLAIN ANALYZE of the dedup insert for ``batch`` (rolled back): index probes, no scans."""
    conn = store.connect()
    fresh = batch.accepted
    params = {
        "gateways": [a.gateway for a in fresh],
        "epochs": [a.epoch for a in fresh],
        "seqs": [a.seq for a in fresh],
        "digests": [a.digest for a in fresh],
    }
    with conn.transaction(force_rollback=True):
        rows = conn.execute("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) " + insert_ids, params)
        return [r[0] for r in rows]


# Main -----------------------------------------------------------------------------------------------


@dataclass
class Report:
    machine: dict[str, Any]
    raw_copy_10k_rows_per_s: float = 0
    raw_copy_50k_rows_per_s: float = 0
    datetime_copy_10k_rows_per_s: float = 0
    decode_validate_rows_us_per_message: float = 0  # thread CPU time
    decode_validate_rows_wall_us_per_message: float = 0
    broker_bare_subscriber_readings_per_s: float = 0
    # one row inserted and committed, as PostgreSQL is configured (fsync of the WAL): the floor
    commit_p50_ms: float = 0
    commit_p99_ms: float = 0
    synchronous_commit: str = ""
    runs: list[Run] = field(default_factory=list)
    dedup: list[dict[str, Any]] = field(default_factory=list)
    profile: dict[str, dict[str, float]] = field(default_factory=dict)
    goal: dict[str, Any] = field(default_factory=dict)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--pg-url",
        default=os.environ.get("ELDERCARE_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    ap.add_argument("--seconds", type=float, default=8.0, help="length of each publishing run")
    ap.add_argument(
        "--workers", default=None, help="comma-separated; empty: no end-to-end runs (default 1,2; --quick: 2)"
    )
    ap.add_argument("--loads", default="0.1,0.5", help="offered loads as fractions of the flat-out rate")
    ap.add_argument("--events-rate", type=float, default=20.0, help="SOS/s sent during each offered load")
    ap.add_argument("--publishers", type=int, default=2)
    ap.add_argument("--batch-rows", type=int, default=50_000, help="ELDERCARE_INGEST_BATCH_ROWS")
    ap.add_argument(
        "--writers",
        default="",
        help="comma-separated ELDERCARE_INGEST_WRITERS, side by side at the first one's offered rates "
        "(default: as configured)",
    )
    ap.add_argument("--skip-drain", action="store_true", help="no pre-loaded broker run")
    ap.add_argument(
        "--dedup-rows", default="", help="e.g. 0,10000000: dedup cost with that many rows already stored"
    )
    ap.add_argument(
        "--profile", action="store_true", help="also: 1 worker flat out under py-spy, time per stage"
    )
    ap.add_argument("--profile-dir", type=Path, help="keep py-spy's raw (collapsed) stacks here")
    ap.add_argument(
        "--quick",
        action="store_true",
        help="what the goals need, shorter: 2 workers, 3 s runs, no drain run (about 2 minutes)",
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    seconds = 3.0 if args.quick else args.seconds
    if args.workers is None:
        args.workers = "2" if args.quick else "1,2"
    if args.quick:
        args.skip_drain = True
    copy_rows = 200_000 if args.quick else 500_000

    report = Report(
        machine={
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_at_start": os.getloadavg()[0],  # other work on the machine skews everything
            # telemetry commits in flight per worker, unless --writers says (the workers inherit it)
            "ingest_writers": os.environ.get("ELDERCARE_INGEST_WRITERS", "as configured (default 1)"),
        }
    )
    if args.writers:
        report.machine["ingest_writers"] = f"{args.writers} (--writers)"
    tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    url = create_database(args.pg_url)
    broker = Broker(tmp)
    log = lambda *a: print(*a, file=sys.stderr, flush=True)  # noqa: E731
    workers_list = [int(w) for w in args.workers.split(",") if w.strip()]
    try:
        if args.dedup_rows:
            report.dedup = dedup_scale(url, [int(x) for x in args.dedup_rows.split(",")], log)
        if workers_list or args.profile:
            limits(report, url, broker, copy_rows, seconds, args.publishers, log)
        if args.profile:
            report.profile = profile_flat_out(report, url, broker, tmp, seconds, args, log)
        writers_list: list[int | None] = [int(w) for w in args.writers.split(",") if w.strip()] or [None]
        for workers in workers_list:
            reference = None  # with several --writers: every one offered the first one's loads
            for writers in writers_list:
                ingest = Ingest(url, broker.url, workers, tmp, args.batch_rows, writers)
                ingest.start()
                try:
                    flat = e2e_runs(report, ingest, broker, url, seconds, args, log, reference)
                    reference = reference or flat
                finally:
                    ingest.stop()
                    ingest.forget_sessions(broker.port)
    finally:
        broker.stop()
        drop_database(args.pg_url, url)
        shutil.rmtree(tmp, ignore_errors=True)

    report.machine["load_average_at_end"] = os.getloadavg()[0]
    report.goal = goals(report)
    if args.json:
        print(json.dumps(asdict(report), indent=2))
    else:
        print(render(report))


def limits(
    report: Report, url: str, broker: Broker, copy_rows: int, seconds: float, publishers: int, log: Any
) -> None:
    c10 = raw_copy(url, copy_rows, 10_000, 3)
    report.raw_copy_10k_rows_per_s = c10["rows_per_s"]
    report.decode_validate_rows_us_per_message = c10["decode_validate_rows_us_per_message"]
    report.decode_validate_rows_wall_us_per_message = c10["decode_validate_rows_wall_us_per_message"]
    report.raw_copy_50k_rows_per_s = raw_copy(url, copy_rows, 50_000, 3)["rows_per_s"]
    report.datetime_copy_10k_rows_per_s = datetime_copy(url, copy_rows // 2, 10_000)
    log(
        f"raw COPY: {report.raw_copy_10k_rows_per_s:,.0f} rows/s (10k), "
        f"{report.raw_copy_50k_rows_per_s:,.0f} (50k)"
    )
    report.commit_p50_ms, report.commit_p99_ms, report.synchronous_commit = commit_latency(url)
    log(
        f"one-row commit: p50 {report.commit_p50_ms:.1f} ms, p99 {report.commit_p99_ms:.1f} ms "
        f"(synchronous_commit {report.synchronous_commit})"
    )
    bare_msgs = int(20_000 * seconds / 8) * 2
    report.broker_bare_subscriber_readings_per_s = broker_rate(broker, bare_msgs, publishers)
    log(f"broker -> bare subscriber: {report.broker_bare_subscriber_readings_per_s:,.0f} readings/s")


def profile_flat_out(
    report: Report, url: str, broker: Broker, tmp: Path, seconds: float, args: Any, log: Any
) -> dict[str, dict[str, float]]:
    ingest = Ingest(url, broker.url, 1, tmp, args.batch_rows)
    ingest.start()
    try:
        assert ingest.proc is not None
        where = args.profile_dir or tmp
        where.mkdir(parents=True, exist_ok=True)
        cpu_out, wall_out = where / "profile-cpu.raw", where / "profile-wall.raw"
        spies = [profile(ingest.proc.pid, cpu_out, idle=False), profile(ingest.proc.pid, wall_out, idle=True)]
        n = int(report.raw_copy_10k_rows_per_s * seconds / READINGS_PER_MESSAGE)
        run = e2e_run(ingest, broker, url, n, args.publishers, None, "flat_out")
        for spy in spies:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
        log(f"profiled 1 worker flat out: {run.landed_readings_per_s:,.0f} readings/s")
        if not cpu_out.exists() or not wall_out.exists():
            log(f"py-spy wrote nothing: {spies[0].stderr.read().decode() if spies[0].stderr else ''}")
            return {}
        cpu: dict[str, float] = {}
        for stages in summarise_profile(cpu_out).values():  # the whole process: one GIL
            for stage, k in stages.items():
                cpu[stage] = cpu.get(stage, 0) + k
        wall = summarise_profile(wall_out)
        return {
            "CPU of the whole worker process (all threads, idle excluded)": cpu,
            "time of the writer thread (waits for the database included)": wall.get(
                "writer (telemetry commits)", {}
            ),
            "time of the main thread (decode, validate)": wall.get("main (decode, validate)", {}),
        }
    finally:
        ingest.stop()
        ingest.forget_sessions(broker.port)


def e2e_runs(
    report: Report,
    ingest: Ingest,
    broker: Broker,
    url: str,
    seconds: float,
    args: Any,
    log: Any,
    reference: float | None = None,
) -> float:
    """Flat out, then the offered loads as fractions of ``reference`` (readings/s; None: of this
    flat-out rate). Returns the flat-out rate."""
    workers = ingest.who()
    # Flat out: enough messages for ~seconds at the raw COPY rate.
    n = int(report.raw_copy_10k_rows_per_s * seconds / READINGS_PER_MESSAGE)
    flat = e2e_run(ingest, broker, url, n, args.publishers, None, "flat_out")
    report.runs.append(flat)
    log(
        f"{workers} worker(s) flat out: {flat.landed_readings_per_s:,.0f} readings/s, "
        f"ingest CPU {flat.ingest_cpu_us_per_message or 0:.0f} µs per message"
    )
    if not args.skip_drain:
        drain = e2e_run(ingest, broker, url, n, args.publishers, None, "drain")
        report.runs.append(drain)
        log(f"{workers} worker(s) draining a loaded broker: {drain.landed_readings_per_s:,.0f} readings/s")
    for load in [float(x) for x in args.loads.split(",")]:
        rate = (reference or flat.landed_readings_per_s) * load / READINGS_PER_MESSAGE
        events = (max(1, int(args.events_rate * seconds)), args.events_rate) if args.events_rate else None
        r = e2e_run(ingest, broker, url, int(rate * seconds), args.publishers, rate, "offered", events)
        r.load = load
        report.runs.append(r)
        ev = f", events p50 {r.event_p50_ms:.0f} / p99 {r.event_p99_ms:.0f} ms" if r.events else ""
        log(
            f"{workers} worker(s) at {load:.0%}: {r.landed_readings_per_s:,.0f} readings/s, "
            f"p50 {r.p50_ms:.0f} ms, p99 {r.p99_ms:.0f} ms{ev}"
        )
    return flat.landed_readings_per_s


def goals(report: Report) -> dict[str, Any]:
    """Issue 24's targets, from the 2-worker runs of this report, each with the load it ran at."""
    from eldercare.config import Settings

    default = Settings.model_fields["ingest_writers"].default
    two = [r for r in report.runs if r.workers == 2 and r.writers in (None, default)]
    flat = max((r for r in two if r.mode == "flat_out"), key=lambda r: r.landed_readings_per_s, default=None)
    if flat is None or not report.raw_copy_10k_rows_per_s:
        return {}

    def at(load: float) -> Run | None:
        return next((r for r in two if r.mode == "offered" and r.load == load), None)

    half, tenth = at(0.5), at(0.1)
    ratio = flat.landed_readings_per_s / report.raw_copy_10k_rows_per_s
    bare = flat.landed_readings_per_s / max(report.broker_bare_subscriber_readings_per_s, 1)

    def latency(name: str, run: Run | None, value: float | None, target: float) -> dict[str, Any]:
        return {
            "name": name,
            "value": value,
            "value_text": f"{value:.0f} ms" if value is not None else "-",
            "target": target,
            "target_text": f"<= {target:.0f} ms",
            "higher_is_better": False,
            "load": run.load_average if run else 0.0,
        }

    return {
        "rows": [
            {
                "name": "2 workers flat out / raw binary COPY (10k-row commits)",
                "value": ratio,
                # context: when the broker path itself is slower than COPY (a busy machine), that is the limit
                "value_text": f"{ratio:.0%} ({flat.landed_readings_per_s:,.0f} readings/s; "
                f"{bare:.0%} of the bare subscriber)",
                "target": 0.8,
                "target_text": ">= 80%",
                "higher_is_better": True,
                "load": flat.load_average,
            },
            latency("p99 publish-to-commit at half load", half, half.p99_ms if half else None, 50),
            latency("p99 publish-to-commit at 10% load", tenth, tenth.p99_ms if tenth else None, 20),
            latency("event p99 with telemetry at half load", half, half.event_p99_ms if half else None, 20),
        ],
    }


def render(r: Report) -> str:
    m = r.machine
    lines = [
        f"Machine: {m['cpus']} CPUs, Python {m['python']}, load average "
        f"{m['load_average_at_start']:.1f} at start, {m.get('load_average_at_end', 0):.1f} at end; "
        f"ELDERCARE_INGEST_WRITERS {m.get('ingest_writers', '-')}.",
    ]
    if r.raw_copy_10k_rows_per_s:
        lines += [
            "",
            "| limit | readings/s |",
            "| --- | --- |",
            f"| binary COPY of the same rows, 10k-row commits | {r.raw_copy_10k_rows_per_s:,.0f} |",
            f"| binary COPY of the same rows, 50k-row commits | {r.raw_copy_50k_rows_per_s:,.0f} |",
            "| COPY with `datetime` objects and `write_row`, 10k-row commits | "
            f"{r.datetime_copy_10k_rows_per_s:,.0f} |",
            f"| Mosquitto -> bare Python subscriber (QoS 1, {READINGS_PER_MESSAGE} readings/message) | "
            f"{r.broker_bare_subscriber_readings_per_s:,.0f} |",
            "",
            f"Decode + validate + build COPY rows: {r.decode_validate_rows_us_per_message:.1f} µs of CPU "
            f"({r.decode_validate_rows_wall_us_per_message:.1f} µs wall) per {READINGS_PER_MESSAGE}-reading "
            "message.",
            "",
            f"One-row transaction (insert + COMMIT) from a client: p50 {r.commit_p50_ms:.1f} ms, "
            f"p99 {r.commit_p99_ms:.1f} ms, with synchronous_commit = {r.synchronous_commit} "
            "(the database's share of every publish-to-commit latency).",
        ]
    if r.runs:
        lines += [
            "",
            "| workers | run | offered readings/s | landed readings/s | publish-to-commit p50 / p99 "
            "| of which publish-to-received / received-to-commit p99 "
            "| events (SOS) p50 / p99 (received-to-commit p99) | ingest CPU per message "
            "| load average after |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
    for run in r.runs:
        offered = f"{run.offered_readings_per_s:,.0f}" if run.offered_readings_per_s else "flat out"
        if run.mode == "drain":
            offered = "broker pre-loaded"
        if run.load is not None:
            offered += f" ({run.load:.0%})"
        lat = f"{run.p50_ms:.0f} / {run.p99_ms:.0f} ms" if run.p50_ms is not None else "-"
        ev = f"{run.event_p50_ms:.0f} / {run.event_p99_ms:.0f} ms" if run.event_p99_ms is not None else "-"
        if run.event_ingest_p99_ms is not None:
            ev += f" ({run.event_ingest_p99_ms:.0f} ms)"
        split = "-"
        if run.deliver_p99_ms is not None and run.ingest_p99_ms is not None:
            split = f"{run.deliver_p99_ms:.0f} / {run.ingest_p99_ms:.0f} ms"
        cpu = f"{run.ingest_cpu_us_per_message:.0f} µs" if run.ingest_cpu_us_per_message is not None else "-"
        lines.append(
            f"| {run.who()} | {run.mode} | {offered} | {run.landed_readings_per_s:,.0f} | {lat} | {split} "
            f"| {ev} | {cpu} | {run.load_average:.1f} |"
        )
    staged = [run for run in r.runs if run.stages_ms]
    if staged:
        lines += [
            "",
            "Received-to-commit by stage inside the worker (commit log), p50 / p99 ms: "
            + ", ".join(WORKER_STAGES)
            + ".",
            "",
            "| workers | run | " + " | ".join(WORKER_STAGES) + f" | {BATCH_STAGE} |",
            "| --- | --- |" + " --- |" * (len(WORKER_STAGES) + 1),
        ]
        for run in staged:
            what = f"{run.load:.0%}" if run.load is not None else run.mode
            for label, st in (("", run.stages_ms), (", events", run.event_stages_ms)):
                if st:
                    cells = " | ".join(
                        f"{st[s][0]:.1f} / {st[s][1]:.1f}" if s in st else "-" for s in WORKER_STAGES
                    )
                    if BATCH_STAGE in st:
                        cells += f" | {st[BATCH_STAGE][0]:.0f} / {st[BATCH_STAGE][1]:.0f}"
                    lines.append(f"| {run.who()} | {what}{label} | {cells} |")
    sampled = [run for run in r.runs if run.backend_waits and run.mode == "offered"]
    if sampled:
        lines += [
            "",
            "What ingest's database sessions did while active, offered loads (pg_stat_activity every "
            "10 ms; share of samples, the six largest; running: on a CPU or waiting for one):",
            "",
        ]
        for run in sampled:
            top = ", ".join(f"{k} {v:.0%}" for k, v in list(run.backend_waits.items())[:6])
            lines.append(f"- {run.who()} at {run.load:.0%}: {top}")
    if r.dedup:
        lines += [
            "",
            "| rows in ingested_messages (size) | 1,000 new messages: store + commit | "
            "the same 1,000 again (duplicates) |",
            "| --- | --- | --- |",
        ]
        for d in r.dedup:
            new, dup = d["new_batch_ms_median"], d["duplicate_batch_ms_median"]
            lines.append(f"| {d['rows']:,.0f} ({d['size']}) | {new:.1f} ms | {dup:.1f} ms |")
        lines += ["", f"Plan of the dedup insert with {r.dedup[-1]['rows']:,.0f} rows stored:", ""]
        lines += ["    " + p for p in r.dedup[-1]["plan"]]
    for thread, stages in r.profile.items():
        total = sum(stages.values())
        if total < 10:
            continue
        lines += ["", f"Profile, {thread} ({total:,.0f} samples):", ""]
        lines += ["| stage | share |", "| --- | --- |"]
        for stage, n in sorted(stages.items(), key=lambda kv: -kv[1]):
            lines.append(f"| {stage} | {n / total:.0%} |")
    if r.goal:
        lines += [
            "",
            f"Goals of issue 24, all from this run (load average {m['load_average_at_start']:.1f} at start, "
            f"{m.get('load_average_at_end', 0):.1f} at end, on {m['cpus']} CPUs):",
            "",
            "| goal | measured | target | measured / target | met | load average after the run |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for goal in r.goal["rows"]:
            v, t = goal["value"], goal["target"]
            if v is None:
                lines.append(f"| {goal['name']} | not measured | {goal['target_text']} | - | - | - |")
                continue
            met = v >= t if goal["higher_is_better"] else v <= t
            lines.append(
                f"| {goal['name']} | {goal['value_text']} | {goal['target_text']} | {v / t:.2f} "
                f"| {'yes' if met else 'NO'} | {goal['load']:.1f} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
