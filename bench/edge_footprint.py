"""Footprint of the edge agent: a home with 10 fixed sensors and a 50 Hz wearable.

Runs the agent in its own process (what a gateway runs: ``eldercare.edge.agent.Agent`` with the
simulated driver's synthetic home, the fall detector on the wearable stream, the outbox on disk)
against a real broker, samples the process's RSS and CPU time from /proc, and counts what a
subscriber receives. Goal (issue 4): well under 60 MB RSS and a few % of one core.

    python bench/edge_footprint.py [--seconds 60] [--broker 127.0.0.1:1883] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

AGENT = (
    "import json, logging, sys\n"
    "logging.basicConfig(level=logging.WARNING)\n"
    "from eldercare.edge.config import build_gateway_file\n"
    "from eldercare.edge.agent import Agent\n"
    "Agent(build_gateway_file(json.loads(sys.argv[1]))).run(float(sys.argv[2]))\n"
)
# RSS once the agent's modules are imported, before it runs (what the imports alone cost)
IMPORTS = (
    "import eldercare.edge.agent, eldercare.edge.drivers.zigbee2mqtt\n"
    "from eldercare.edge.falls import open_stream\n"
    "open_stream('auto')\n"
    "print([int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmRSS')][0])\n"
)
TICK = os.sysconf("SC_CLK_TCK")

HOME_SENSORS = [
    {"id": "wearable-1", "kind": "wearable", "resident": "res-1", "sample_hz": 50},
    {"id": "pir-kitchen", "kind": "pir", "room": "kitchen"},
    {"id": "pir-living", "kind": "pir", "room": "living"},
    {"id": "pir-bedroom", "kind": "pir", "room": "bedroom"},
    {"id": "pir-bathroom", "kind": "pir", "room": "bathroom"},
    {"id": "door-front", "kind": "door", "room": "hall"},
    {"id": "bed-1", "kind": "bed", "room": "bedroom"},
    {"id": "plug-kettle", "kind": "plug", "room": "kitchen"},
    {"id": "plug-tv", "kind": "plug", "room": "living"},
    {"id": "env-1", "kind": "env", "room": "living"},
    {"id": "sos-1", "kind": "sos", "room": "bedroom", "resident": "res-1"},
]


def gateway_dict(workdir: Path, broker: str, root: str, **config: Any) -> dict[str, Any]:
    return {
        "site": "bench-home",
        "gateway": "gw-1",
        "topic_root": root,
        "broker": {"url": f"mqtt://{broker}"},
        "outbox": {"path": str(workdir / "outbox.sqlite3")},
        "config": {"heartbeat_s": 60, **config},
        "sensors": HOME_SENSORS,
        "drivers": [{"type": "simulated", "name": "sim", "synthetic": True, "event_period_s": 20.0}],
    }


def proc_sample(pid: int) -> tuple[float, float, float]:
    """(RSS MiB, private anonymous RSS MiB, CPU seconds user+system) of a process."""
    with open(f"/proc/{pid}/status") as f:
        status = {line.split(":")[0]: line.split()[1] for line in f if line.startswith(("VmRSS", "RssAnon"))}
    rss_kb, anon_kb = int(status["VmRSS"]), int(status.get("RssAnon", 0))
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / TICK
    return rss_kb / 1024, anon_kb / 1024, cpu


class Counter:
    """Subscribes to the bench's root and counts messages, readings and latency."""

    def __init__(self, broker: str, root: str) -> None:
        host, port = broker.split(":")
        self.lock = threading.Lock()
        self.messages = self.readings = self.bytes = 0
        self.latencies: list[float] = []
        self.kinds: dict[str, int] = {}
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        c.on_connect = lambda cl, *_: cl.subscribe(f"{root}/#", qos=1)
        c.on_message = self._on_message
        c.connect(host, int(port))
        c.loop_start()
        self.client = c

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        now = time.time() * 1000
        kind = msg.topic.rsplit("/", 1)[-1]
        with self.lock:
            self.messages += 1
            self.bytes += len(msg.payload)
            self.kinds[kind] = self.kinds.get(kind, 0) + 1
            if kind == "telemetry":
                p = json.loads(msg.payload)
                self.readings += len(p["readings"])
                self.latencies += [now - r["t"] for r in p["readings"]]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def run_agent(gw: dict[str, Any], seconds: float, warmup: float = 5.0) -> dict[str, Any]:
    """Run an agent process for ``seconds``; RSS peak and CPU% after ``warmup``."""
    proc = subprocess.Popen([sys.executable, "-c", AGENT, json.dumps(gw), str(seconds)])
    rss_peak, anon_peak, samples = 0.0, 0.0, []
    t_start = time.monotonic()
    try:
        while proc.poll() is None:
            try:
                rss, anon, cpu = proc_sample(proc.pid)
            except (FileNotFoundError, ProcessLookupError, KeyError):
                break
            rss_peak, anon_peak = max(rss_peak, rss), max(anon_peak, anon)
            samples.append((time.monotonic() - t_start, cpu, rss))
            time.sleep(0.5)
    finally:
        proc.wait(seconds + 30)
    steady = [s for s in samples if s[0] >= warmup]
    cpu_pct = 0.0
    if len(steady) >= 2:
        cpu_pct = 100 * (steady[-1][1] - steady[0][1]) / (steady[-1][0] - steady[0][0])
    return {
        "rss_peak_mib": round(rss_peak, 1),
        "rss_end_mib": round(samples[-1][2], 1) if samples else 0.0,
        "private_anon_peak_mib": round(anon_peak, 1),
        "cpu_percent_one_core": round(cpu_pct, 2),
        "startup_cpu_s": round(steady[0][1], 2) if steady else 0.0,  # CPU used by the end of warm-up
        "exit_code": proc.returncode,
    }


def import_rss_mib() -> float:
    out = subprocess.run([sys.executable, "-c", IMPORTS], capture_output=True, text=True, check=True)
    return round(int(out.stdout.split()[-1]) / 1024, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--broker", default="127.0.0.1:1883")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    root = f"bench-edge/{uuid.uuid4().hex[:8]}"
    counter = Counter(args.broker, root)
    with tempfile.TemporaryDirectory() as tmp:
        result = run_agent(gateway_dict(Path(tmp), args.broker, root), args.seconds)
        time.sleep(0.5)
        counter.close()
        files = Path(tmp).glob("outbox.sqlite3*")
        result["outbox_file_kib"] = round(sum(p.stat().st_size for p in files) / 1024, 1)
    result.update(
        import_rss_mib=import_rss_mib(),
        seconds=args.seconds,
        sensors=len(HOME_SENSORS),
        wearable_hz=50,
        messages_received=counter.messages,
        readings_received=counter.readings,
        by_kind=counter.kinds,
    )
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"edge agent, home of {len(HOME_SENSORS)} sensors incl. a 50 Hz wearable, {args.seconds:.0f} s")
    for k in (
        "rss_peak_mib",
        "rss_end_mib",
        "import_rss_mib",
        "private_anon_peak_mib",
        "cpu_percent_one_core",
        "startup_cpu_s",
        "outbox_file_kib",
        "messages_received",
        "readings_received",
        "by_kind",
        "exit_code",
    ):
        print(f"  {k:24} {result[k]}")


if __name__ == "__main__":
    main()
