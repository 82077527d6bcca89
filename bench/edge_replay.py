"""How fast the edge outbox fills and drains: group-commit write rate and replay after an outage.

1. Write rate: readings into ``pending`` in commits of ``--commit`` rows, then sealed into
   50-reading messages, with ``synchronous`` FULL and NORMAL (fsync cost on this disk).
2. Replay: an outbox holding ``--messages`` sealed telemetry messages (as after a long outage) is
   handed to an agent process connected to the broker; time until a subscriber has them all.

    python bench/edge_replay.py [--messages 5000] [--broker 127.0.0.1:1883] [--json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from edge_footprint import Counter, run_agent

from eldercare.edge.config import OutboxConfig
from eldercare.edge.outbox import Outbox

T0 = int(time.time() * 1000)  # created now: the outbox sheds telemetry older than max_age_s


def fill(path: Path, messages: int, commit_rows: int, synchronous: str) -> dict[str, Any]:
    ob = Outbox(path, OutboxConfig(path=path, synchronous=synchronous))  # type: ignore[arg-type]
    n = messages * 50
    t = time.perf_counter()
    for start in range(0, n, commit_rows):
        ob.add_readings(
            [
                (T0 + i, "pir-kitchen", "motion", float(i % 2))
                for i in range(start, min(n, start + commit_rows))
            ]
        )
    t_write = time.perf_counter() - t
    t = time.perf_counter()
    ob.seal_batches(50, T0)  # all in one commit, as the agent seals what is due
    t_seal = time.perf_counter() - t
    ob.close()
    return {
        "synchronous": synchronous,
        "commit_rows": commit_rows,
        "readings": n,
        "write_readings_per_s": round(n / t_write),
        "seal_messages_per_s": round(messages / t_seal),
        "file_mib": round(sum(p.stat().st_size for p in path.parent.glob(path.name + "*")) / 2**20, 1),
    }


def replay(broker: str, messages: int) -> dict[str, Any]:
    root = f"bench-replay/{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "outbox.sqlite3"
        fill(path, messages, 1000, "normal")
        counter = Counter(broker, root)
        gw = {
            "site": "bench",
            "gateway": "gw-1",
            "topic_root": root,
            "broker": {"url": f"mqtt://{broker}"},
            "outbox": {"path": str(path)},
            "config": {"heartbeat_s": 3600},
        }
        import threading

        done = threading.Event()
        t0 = time.monotonic()
        elapsed: dict[str, float] = {}

        def watch() -> None:
            import sqlite3

            con = sqlite3.connect(path, timeout=0.1)
            while not done.is_set():
                if "drained" not in elapsed:
                    try:
                        if con.execute("SELECT count(*) FROM messages").fetchone()[0] == 0:
                            elapsed["drained"] = time.monotonic() - t0
                    except sqlite3.Error:
                        pass
                if counter.kinds.get("telemetry", 0) >= messages:
                    elapsed["s"] = time.monotonic() - t0
                    con.close()
                    return
                time.sleep(0.01)

        w = threading.Thread(target=watch, daemon=True)
        w.start()
        res = run_agent(gw, seconds=max(15.0, messages / 300), warmup=0.5)
        done.set()
        counter.close()
    s = elapsed.get("s", float("nan"))
    return {
        "messages": messages,
        "received": counter.kinds.get("telemetry", 0),
        "seconds_incl_start": round(s, 2),
        "outbox_drained_s_incl_start": round(elapsed.get("drained", float("nan")), 2),
        "messages_per_s": round(messages / s) if s == s else 0,
        "readings_per_s": round(messages * 50 / s) if s == s else 0,
        "agent_cpu_percent": res["cpu_percent_one_core"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--broker", default="127.0.0.1:1883")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    writes = []
    for sync in ("full", "normal"):
        for rows in (1, 50, 1000):
            with tempfile.TemporaryDirectory() as tmp:
                m = 200 if rows == 1 else 2000
                writes.append(fill(Path(tmp) / "o.sqlite3", m, rows, sync))
    out = {"writes": writes, "replay": replay(args.broker, args.messages)}
    if args.json:
        print(json.dumps(out, indent=2))
        return
    cols = list(writes[0])
    print(" | ".join(cols))
    print(" | ".join("---" for _ in cols))
    for row in writes:
        print(" | ".join(str(row[c]) for c in cols))
    print()
    print("replay:", out["replay"])


if __name__ == "__main__":
    main()
