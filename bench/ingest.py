"""Ingest speed, measured side by side with this machine's limits, in one run.

(a) limits: binary COPY of the same rows into the same ``readings`` table (batches of 10k and 50k
    rows, one commit each), and Mosquitto's delivery rate of the same messages to a bare QoS 1
    subscriber;
(b) end to end: Python publishers -> Mosquitto -> ``eldercare ingest`` (1 and 2 workers) ->
    ``readings``: the rate with publishers flat out, the drain rate of a pre-loaded broker, and
    publish-to-commit latency p50/p99 at offered loads (fractions of the flat-out rate).

Everything runs on this machine: its own Mosquitto on a free port (generated config:
``max_inflight_messages 1000``, ``max_queued_messages`` high, no persistence) and a database it
creates and drops on the PostgreSQL server of ``--pg-url``. The shared broker is never touched.

    python bench/ingest.py                 # table (markdown)
    python bench/ingest.py --json          # the same numbers as JSON
    python bench/ingest.py --quick         # shorter runs, for a smoke test

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


def _publisher(
    port: int, part: int, parts: int, epoch: str, messages: int, rate: float | None, out: Any
) -> None:
    """Publish ``messages`` of this part's gateways, flat out or at ``rate`` msg/s; report times."""
    import paho.mqtt.client as mqtt

    gws = [g for g in range(GATEWAYS) if g % parts == part]
    t0 = int(time.time() * 1000)
    encoded = []
    for i in range(messages):
        g = gws[i % len(gws)]
        gw, site = gw_name(g)
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
    out.put({"part": part, "start": start, "done": done, "sent": list(zip(keys, sent, strict=True))})


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
    port: int, epoch: str, messages: int, publishers: int, rate: float | None
) -> list[dict[str, Any]]:
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
        conn.execute("TRUNCATE readings, ingested_messages")
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
    build = 0.0
    for b in range(rows // batch):
        parts = []
        for i in range(per):
            g = (b * per + i) % GATEWAYS
            gw, site = gw_name(g)
            body = payload("raw-copy-epoch", b * per + i, t0 + i)
            started = time.perf_counter()
            item = v.check(Inbound(f"{ROOT}/{site}/{gw}/telemetry", body))
            build += time.perf_counter() - started
            parts.append(item.rows)  # type: ignore[union-attr]
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
        "decode_validate_rows_us_per_message": build / messages * 1e6,
    }


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
        self, db_url: str, mqtt_url: str, workers: int, log_dir: Path, batch_rows: int, batch_ms: int
    ) -> None:
        self.workers = workers
        self.commit_log = log_dir / f"commits-{workers}w"
        self.port = free_port()
        self.env = {
            **os.environ,
            "ELDERCARE_DATABASE_URL": db_url,
            "ELDERCARE_MQTT_URL": mqtt_url,
            "ELDERCARE_MQTT_TOPIC_ROOT": ROOT,
            "ELDERCARE_INGEST_CLIENT_ID": f"bench-ingest-{workers}w-0",
            # A group per run: a stopped worker's persistent session stays a member of its group and
            # would keep receiving its share (see docs/operations.md, "scaling down").
            "ELDERCARE_INGEST_SHARED_GROUP": f"bench{workers}w",
            "ELDERCARE_INGEST_BATCH_ROWS": str(batch_rows),
            "ELDERCARE_INGEST_BATCH_MS": str(batch_ms),
            "ELDERCARE_METRICS_PORT": str(self.port),
            "ELDERCARE_LOG_LEVEL": "WARNING",
        }
        self.log = log_dir / f"ingest-{workers}w.log"
        self.proc: subprocess.Popen[bytes] | None = None

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
        import paho.mqtt.client as mqtt

        from eldercare.ingest.worker import client_id_for

        for i in range(self.workers):
            c = mqtt.Client(
                mqtt.CallbackAPIVersion.VERSION2,
                client_id=client_id_for(self.env["ELDERCARE_INGEST_CLIENT_ID"], i),
                protocol=mqtt.MQTTv5,
            )
            c.connect("127.0.0.1", port, clean_start=True)
            c.loop_start()
            time.sleep(0.2)
            c.disconnect()
            c.loop_stop()

    def commits(self, epoch: str) -> dict[tuple[str, int], float]:
        out: dict[tuple[str, int], float] = {}
        for i in range(self.workers):
            path = self.commit_log.with_name(f"{self.commit_log.name}.{i}")
            if not path.exists():
                continue
            for line in path.read_text().splitlines():
                gw, ep, seq, _received, committed = line.split()
                if ep == epoch:
                    out[(gw, int(seq))] = float(committed)
        return out


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
    mode: str  # flat_out | drain | offered
    offered_readings_per_s: float | None
    landed_readings_per_s: float
    p50_ms: float | None = None
    p99_ms: float | None = None
    messages: int = 0


def e2e_run(
    ingest: Ingest,
    broker: Broker,
    url: str,
    messages: int,
    publishers: int,
    rate_msgs: float | None,
    mode: str,
) -> Run:
    epoch = f"bench-{uuid.uuid4().hex[:12]}"
    reset(url)
    if mode == "drain":
        ingest.stop()  # its session stays subscribed on the broker and collects the messages
    results = publish(broker.port, epoch, messages, publishers, rate_msgs)
    total = sum(len(r["sent"]) for r in results)
    if mode == "drain":
        ingest.start()
    wait_stored(url, total)
    commits = ingest.commits(epoch)
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
    lat = sorted((commits[k] - t) * 1000 for k, t in sent.items() if k in commits)
    p50 = lat[len(lat) // 2]
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    offered = rate_msgs * READINGS_PER_MESSAGE if rate_msgs else None
    return Run(ingest.workers, mode, offered, landed, p50, p99, total)


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


# Main -----------------------------------------------------------------------------------------------


@dataclass
class Report:
    machine: dict[str, Any]
    raw_copy_10k_rows_per_s: float = 0
    raw_copy_50k_rows_per_s: float = 0
    datetime_copy_10k_rows_per_s: float = 0
    decode_validate_rows_us_per_message: float = 0
    broker_bare_subscriber_readings_per_s: float = 0
    runs: list[Run] = field(default_factory=list)
    goal: dict[str, Any] = field(default_factory=dict)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--pg-url",
        default=os.environ.get("ELDERCARE_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    ap.add_argument("--seconds", type=float, default=8.0, help="length of each publishing run")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument(
        "--loads", default="0.25,0.5,0.75", help="offered loads as fractions of the flat-out rate"
    )
    ap.add_argument("--publishers", type=int, default=2)
    ap.add_argument("--batch-rows", type=int, default=5000)
    ap.add_argument("--batch-ms", type=int, default=200)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    seconds = 3.0 if args.quick else args.seconds
    copy_rows = 200_000 if args.quick else 500_000

    report = Report(
        machine={
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_at_start": os.getloadavg()[0],  # other work on the machine skews everything
        }
    )
    tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    url = create_database(args.pg_url)
    broker = Broker(tmp)
    try:
        log = lambda *a: print(*a, file=sys.stderr, flush=True)  # noqa: E731
        c10 = raw_copy(url, copy_rows, 10_000, 3)
        report.raw_copy_10k_rows_per_s = c10["rows_per_s"]
        report.decode_validate_rows_us_per_message = c10["decode_validate_rows_us_per_message"]
        report.raw_copy_50k_rows_per_s = raw_copy(url, copy_rows, 50_000, 3)["rows_per_s"]
        report.datetime_copy_10k_rows_per_s = datetime_copy(url, copy_rows // 2, 10_000)
        log(
            f"raw COPY: {report.raw_copy_10k_rows_per_s:,.0f} rows/s (10k), "
            f"{report.raw_copy_50k_rows_per_s:,.0f} (50k)"
        )
        bare_msgs = int(20_000 * seconds / 8) * 2
        report.broker_bare_subscriber_readings_per_s = broker_rate(broker, bare_msgs, args.publishers)
        log(f"broker -> bare subscriber: {report.broker_bare_subscriber_readings_per_s:,.0f} readings/s")
        for workers in [int(w) for w in args.workers.split(",")]:
            ingest = Ingest(url, broker.url, workers, tmp, args.batch_rows, args.batch_ms)
            ingest.start()
            try:
                # Flat out: enough messages for ~seconds at the raw COPY rate.
                n = int(report.raw_copy_10k_rows_per_s * seconds / READINGS_PER_MESSAGE)
                flat = e2e_run(ingest, broker, url, n, args.publishers, None, "flat_out")
                report.runs.append(flat)
                log(f"{workers} worker(s) flat out: {flat.landed_readings_per_s:,.0f} readings/s")
                drain = e2e_run(ingest, broker, url, n, args.publishers, None, "drain")
                report.runs.append(drain)
                log(
                    f"{workers} worker(s) draining a loaded broker: "
                    f"{drain.landed_readings_per_s:,.0f} readings/s"
                )
                for load in [float(x) for x in args.loads.split(",")]:
                    rate = flat.landed_readings_per_s * load / READINGS_PER_MESSAGE
                    r = e2e_run(ingest, broker, url, int(rate * seconds), args.publishers, rate, "offered")
                    report.runs.append(r)
                    log(
                        f"{workers} worker(s) at {load:.0%}: {r.landed_readings_per_s:,.0f} readings/s, "
                        f"p50 {r.p50_ms:.0f} ms, p99 {r.p99_ms:.0f} ms"
                    )
            finally:
                ingest.stop()
                ingest.forget_sessions(broker.port)
    finally:
        broker.stop()
        drop_database(args.pg_url, url)
        shutil.rmtree(tmp, ignore_errors=True)

    report.machine["load_average_at_end"] = os.getloadavg()[0]
    two = [r for r in report.runs if r.workers == 2]
    if two:
        best = max(r.landed_readings_per_s for r in two if r.mode == "flat_out")
        half = [
            r
            for r in two
            if r.mode == "offered"
            and r.offered_readings_per_s
            and abs(r.offered_readings_per_s / best - 0.5) < 0.01
        ]
        report.goal = {
            "e2e_2_workers_vs_raw_copy": best / report.raw_copy_10k_rows_per_s,
            "target_ratio": 0.7,
            "p99_ms_at_half_load": half[0].p99_ms if half else None,
            "target_p99_ms": 1000,
        }
    if args.json:
        print(json.dumps(asdict(report), indent=2))
    else:
        print(render(report))


def render(r: Report) -> str:
    lines = [
        f"Machine: {r.machine['cpus']} CPUs, Python {r.machine['python']}, load average "
        f"{r.machine['load_average_at_start']:.1f} at start, "
        f"{r.machine.get('load_average_at_end', 0):.1f} at end.",
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
        f"Decode + validate + build COPY rows: {r.decode_validate_rows_us_per_message:.1f} µs per "
        f"{READINGS_PER_MESSAGE}-reading message.",
        "",
        "| workers | run | offered readings/s | landed readings/s | publish-to-commit p50 / p99 |",
        "| --- | --- | --- | --- | --- |",
    ]
    for run in r.runs:
        offered = f"{run.offered_readings_per_s:,.0f}" if run.offered_readings_per_s else "flat out"
        if run.mode == "drain":
            offered = "broker pre-loaded"
        lat = f"{run.p50_ms:.0f} / {run.p99_ms:.0f} ms" if run.p50_ms is not None else "-"
        lines.append(f"| {run.workers} | {run.mode} | {offered} | {run.landed_readings_per_s:,.0f} | {lat} |")
    if r.goal:
        g = r.goal
        p99 = g["p99_ms_at_half_load"]
        lines += [
            "",
            f"2 workers flat out / raw COPY (10k): {g['e2e_2_workers_vs_raw_copy']:.0%} (goal >= 70%); "
            f"p99 at half load: {'-' if p99 is None else f'{p99:.0f}'} ms (goal < 1000 ms).",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
