"""The ingest worker's CPU per message at a fixed, low offered rate: its fixed costs per commit.

At a low rate every message is a commit of its own, so what one costs the worker's process (all
threads: MQTT, validation, writer, event and watermark threads) is the per-commit overhead: round
trips, thread hand-overs, bookkeeping. Process CPU time depends far less on the machine's other
load than a latency or a rate does, so this compares two versions of the code on a busy machine
(repeat and take the median). One worker, its own Mosquitto and database as in ``ingest.py``;
no commit log (a deployment writes none).

    python bench/ingest_cpu.py                       # telemetry 100 msg/s, SOS 50/s, 3 rounds
    python bench/ingest_cpu.py --rate 200 --seconds 10 --rounds 5
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest import (  # the bench's own module next to this one
    Broker,
    Ingest,
    cpu_seconds,
    create_database,
    drop_database,
    publish,
    reset,
    wait_stored,
)


class QuietIngest(Ingest):
    """The bench's ingest process without its commit log (whose writing is not the worker's cost)."""

    def start(self) -> None:
        args = [sys.executable, "-m", "eldercare.cli", "ingest", "run", "--workers", str(self.workers)]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(args, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._healthy(self.port):
                return
            time.sleep(0.1)
        raise RuntimeError(f"ingest did not become healthy; see {self.log}")

    def batches(self) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            text = r.read().decode()
        m = re.search(r"^eldercare_ingest_batches_total(?:\{[^}]*\})? (\S+)$", text, re.M)
        return float(m.group(1)) if m else 0.0


def one(ingest: QuietIngest, broker: Broker, url: str, rate: float, seconds: float, events: bool) -> tuple:
    """CPU µs per message and per commit, and messages per commit, of one run at ``rate`` msg/s."""
    assert ingest.proc is not None
    reset(url)
    n = int(rate * seconds)
    epoch = f"cpu-{uuid.uuid4().hex[:12]}"
    cpu, commits = cpu_seconds(ingest.proc.pid), ingest.batches()
    if events:  # SOS only, from one publisher (publish's ``events`` rides beside telemetry: none here)
        publish(broker.port, epoch, 0, 1, None, (epoch, n, rate))
    else:
        publish(broker.port, epoch, n, 1, rate)
    if events:
        _wait_events(url, n)
    else:
        wait_stored(url, n)
    time.sleep(0.5)  # the watermark turn and acknowledgements after the last commit
    cpu = cpu_seconds(ingest.proc.pid) - cpu
    commits = ingest.batches() - commits
    return cpu / n * 1e6, cpu / max(commits, 1) * 1e6, n / max(commits, 1)


def _wait_events(url: str, n: int) -> None:
    from ingest import count

    deadline = time.monotonic() + 120
    while count(url, "events") < n:
        if time.monotonic() > deadline:
            raise RuntimeError("events not stored")
        time.sleep(0.05)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--pg-url",
        default=os.environ.get("ELDERCARE_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    ap.add_argument("--rate", type=float, default=100.0, help="telemetry messages/s (50 readings each)")
    ap.add_argument("--event-rate", type=float, default=50.0, help="SOS/s, in a run of their own")
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-cpu-"))
    url = create_database(args.pg_url)
    broker = Broker(tmp)
    load0 = os.getloadavg()[0]
    out: dict[str, list[tuple]] = {"telemetry": [], "SOS": []}
    idle = 0.0
    try:
        ingest = QuietIngest(url, broker.url, 1, tmp, 50_000)
        ingest.start()
        try:
            one(ingest, broker, url, args.rate, 1.0, False)  # warm up: connections, partitions, caches
            idle = cpu_seconds(ingest.proc.pid) if ingest.proc else 0.0
            time.sleep(args.seconds)
            idle = (cpu_seconds(ingest.proc.pid) if ingest.proc else 0.0) - idle
            for _ in range(args.rounds):
                out["telemetry"].append(one(ingest, broker, url, args.rate, args.seconds, False))
                out["SOS"].append(one(ingest, broker, url, args.event_rate, args.seconds, True))
        finally:
            ingest.stop()
    finally:
        broker.stop()
        drop_database(args.pg_url, url)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"load average {load0:.1f} at start, {os.getloadavg()[0]:.1f} at end; {args.rounds} rounds")
    print(f"idle: {idle / args.seconds * 1000:.1f} ms of CPU per second")
    for name, rate in (("telemetry", args.rate), ("SOS", args.event_rate)):
        rows = out[name]
        per_msg = [r[0] for r in rows]
        per_commit = [r[1] for r in rows]
        size = [r[2] for r in rows]
        print(
            f"{name} at {rate:g}/s: worker CPU per message median {statistics.median(per_msg):.0f} µs "
            f"(runs {', '.join(f'{x:.0f}' for x in per_msg)}); "
            f"per commit {statistics.median(per_commit):.0f} µs; "
            f"messages per commit {statistics.median(size):.2f}"
        )


if __name__ == "__main__":
    main()
