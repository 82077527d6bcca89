"""How fast gateways come back after a broker outage: 200 real uplinks against a private Mosquitto.

Each gateway is the edge agent's own :class:`eldercare.edge.connection.Uplink` (paho client, Last
Will, the agent's backoff), without drivers or outbox: what is measured is the reconnect alone.
The broker is ``kill -9``ed, stays down ``--outage`` seconds, and is started again; the bench
records when each uplink is connected again, counted from the moment the broker accepts
connections. It runs the backoff of this release and, for comparison, the old one (1 s doubling
to 60 s, no fast phase). Bounded: ``--gateways`` (default 200, at most 1000) on 127.0.0.1 only.

    python bench/edge_reconnect.py [--gateways 200] [--outage 30] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from eldercare.edge.config import build_gateway_file
from eldercare.edge.connection import Uplink
from eldercare.embedded import free_port

BACKOFFS: dict[str, dict[str, Any]] = {
    "this release": {},  # the defaults: 0.5 s doubling, capped 2 s for 10 attempts, then 10 s
    "before (1 s doubling to 60 s)": {
        "reconnect_min_s": 1.0,
        "reconnect_max_s": 60.0,
        "reconnect_fast_attempts": 0,
    },
}


class Broker:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        conf = workdir / "mosquitto.conf"
        user = "user root\n" if os.geteuid() == 0 else ""
        conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n{user}")
        self.conf = conf
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen([exe, "-c", str(self.conf)], stderr=subprocess.DEVNULL)
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                return time.monotonic()
            time.sleep(0.01)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


def uplinks(n: int, port: int, backoff: dict[str, Any]) -> list[Uplink]:
    out = []
    root = f"bench-reconnect/{uuid.uuid4().hex[:8]}"
    for i in range(n):
        gw = build_gateway_file(
            {
                "site": f"home-{i}",
                "gateway": f"gw-{i}",
                "topic_root": root,
                "broker": {"url": f"mqtt://127.0.0.1:{port}", "keepalive_s": 30, **backoff},
            }
        )
        out.append(Uplink(gw, queue.Queue(), b'{"v": 1, "t": 0, "state": "offline"}'))
    return out


def wait_all(ups: list[Uplink], connected: bool, timeout: float) -> dict[int, float]:
    """Monotonic time at which each uplink was first seen in the wanted state (10 ms polling)."""
    seen: dict[int, float] = {}
    deadline = time.monotonic() + timeout
    while len(seen) < len(ups) and time.monotonic() < deadline:
        now = time.monotonic()
        for i, u in enumerate(ups):
            if i not in seen and u.connected == connected:
                seen[i] = now
        time.sleep(0.01)
    return seen


def scenario(name: str, backoff: dict[str, Any], n: int, outage: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as d:
        broker = Broker(Path(d))
        broker.start()
        ups = uplinks(n, broker.port, backoff)
        for u in ups:
            u.start()
        try:
            up = wait_all(ups, True, 60)
            assert len(up) == n, f"only {len(up)} of {n} connected"
            broker.kill()
            wait_all(ups, False, 30)
            time.sleep(outage)
            back = broker.start()
            seen = wait_all(ups, True, 120)
            delays = sorted(t - back for t in seen.values())
        finally:
            for u in ups:
                with contextlib.suppress(Exception):
                    u.stop(timeout=0.2)
            broker.kill()

    def pct(p: float) -> float:
        return round(delays[min(len(delays) - 1, int(p * len(delays)))], 2) if delays else float("nan")

    return {
        "backoff": name,
        "gateways": n,
        "outage_s": outage,
        "reconnected": len(delays),
        "p50_s": pct(0.5),
        "p90_s": pct(0.9),
        "max_s": round(delays[-1], 2) if delays else float("nan"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gateways", type=int, default=200)
    ap.add_argument("--outage", type=float, default=30.0)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if not 1 <= a.gateways <= 1000 or not 0 <= a.outage <= 300:
        sys.exit("--gateways must be 1-1000 and --outage 0-300 s")
    rows = [scenario(name, b, a.gateways, a.outage) for name, b in BACKOFFS.items()]
    load = os.getloadavg()[0]
    if a.json:
        print(json.dumps({"rows": rows, "load1": load}))
        return
    print(f"{a.gateways} gateways, broker kill -9, down {a.outage:.0f} s, load average {load:.1f}")
    print("| backoff | reconnected | after the broker is back p50 / p90 / max s |")
    print("| --- | --- | --- |")
    for r in rows:
        spread = f"{r['p50_s']} / {r['p90_s']} / {r['max_s']}"
        print(f"| {r['backoff']} | {r['reconnected']} of {r['gateways']} | {spread} |")


if __name__ == "__main__":
    main()
