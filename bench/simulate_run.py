"""A live direct-mode run against a real broker: messages/s, readings/s, lag and memory by homes and speed.

    python bench/simulate_run.py [--homes 1000] [--speeds 60,600,3600] [--seconds 15] [--json]

Needs the broker of ELDERCARE_MQTT_URL (default mqtt://127.0.0.1:1883); nothing is written to a
database (the manifest is planned in memory). Retained status messages are left under a
``bench-sim-*`` topic root.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import uuid

from eldercare.config import Settings
from eldercare.simulators import neighbourhood as nb
from eldercare.simulators.runner import Runner, RunOptions


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--homes", type=int, default=1000)
    ap.add_argument("--speeds", default="60,600,3600")
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    url = os.environ.get("ELDERCARE_MQTT_URL", "mqtt://127.0.0.1:1883")
    p = nb.plan(1, args.homes, 0, now=time.time(), roster_days=1)
    m = nb.manifest(p, topic_root="bench", created_at=time.time(), start=time.time())
    rows = []
    for speed in (float(s) for s in args.speeds.split(",")):
        settings = Settings(mqtt_url=url, mqtt_topic_root=f"bench-sim-{uuid.uuid4().hex[:6]}/v1")  # type: ignore[arg-type]
        st = Runner(settings, m, RunOptions(speed=speed, duration=args.seconds, live=False)).run()
        wall = st["wall_seconds"] or 1.0
        rows.append(
            {
                "homes": args.homes,
                "speed": speed,
                "msg_per_s": round(st["messages"] / wall),
                "readings_per_s": round(st["readings"] / wall),
                "achieved_speed": round(st["sim_seconds"] / wall, 1),
                "rss_mb": st["rss_mb"],
                "rss_growth_mb": st["rss_growth_mb"],
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(
        f"{'homes':>6}{'speed':>8}{'achieved':>10}{'msg/s':>8}{'readings/s':>12}"
        f"{'RSS MB':>8}{'growth MB':>11}"
    )
    for r in rows:
        print(
            f"{r['homes']:>6}{r['speed']:>8g}{r['achieved_speed']:>10}{r['msg_per_s']:>8}{r['readings_per_s']:>12}"
            f"{r['rss_mb']:>8}{r['rss_growth_mb']:>11}"
        )


if __name__ == "__main__":
    main()
