"""Latency against throughput of edge telemetry batching (size bound x time bound).

For each offered rate and each (telemetry_batch_max, telemetry_batch_ms) pair, runs an agent
process fed by the simulated driver's counter at that rate against a real broker, and reports
what a subscriber sees: reading latency (arrival minus the reading's stamp) p50/p99, messages
per second, wire bytes per reading, and the agent's CPU%. See docs/edge.md, "Batching".

    python bench/edge_batching.py [--seconds 5] [--broker 127.0.0.1:1883] [--json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from edge_footprint import Counter, run_agent

RATES = (10, 150, 1500)  # readings/s: a quiet home; raw wearable streaming; a busy station gateway
BATCHES = ((1, 100), (10, 200), (50, 200), (50, 1000), (200, 1000))


def one(broker: str, rate: float, batch_max: int, batch_ms: int, seconds: float) -> dict[str, Any]:
    root = f"bench-batching/{uuid.uuid4().hex[:8]}"
    counter = Counter(broker, root)
    with tempfile.TemporaryDirectory() as tmp:
        gw = {
            "site": "bench",
            "gateway": "gw-1",
            "topic_root": root,
            "broker": {"url": f"mqtt://{broker}"},
            "outbox": {"path": str(Path(tmp) / "outbox.sqlite3")},
            "config": {"telemetry_batch_max": batch_max, "telemetry_batch_ms": batch_ms, "heartbeat_s": 3600},
            "drivers": [{"type": "simulated", "name": "sim", "counter": {"sensor": "c-1", "rate_hz": rate}}],
        }
        res = run_agent(gw, seconds, warmup=1.5)
    time.sleep(0.3)
    counter.close()
    lat = np.array(counter.latencies) if counter.latencies else np.array([np.nan])
    tele = counter.kinds.get("telemetry", 0)
    return {
        "rate": rate,
        "batch_max": batch_max,
        "batch_ms": batch_ms,
        "latency_p50_ms": round(float(np.nanpercentile(lat, 50)), 1),
        "latency_p99_ms": round(float(np.nanpercentile(lat, 99)), 1),
        "messages_per_s": round(tele / seconds, 1),
        "readings_per_message": round(counter.readings / max(tele, 1), 1),
        "bytes_per_reading": round(counter.bytes / max(counter.readings, 1), 1),
        "agent_cpu_percent": res["cpu_percent_one_core"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--broker", default="127.0.0.1:1883")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = [one(args.broker, r, bm, bms, args.seconds) for r in RATES for bm, bms in BATCHES]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    cols = list(rows[0])
    print(" | ".join(cols))
    print(" | ".join("---" for _ in cols))
    for row in rows:
        print(" | ".join(str(row[c]) for c in cols))


if __name__ == "__main__":
    main()
