"""SOS press to message on the platform's broker, while telemetry batching is busy.

The agent runs in its own process with two drivers, as in a home: ``zigbee2mqtt`` (an SOS
button, reached through the local broker the way zigbee2mqtt publishes it) and ``simulated``
(a counter offering routine telemetry at ``--rate`` readings/s, batched 50 / 1000 ms). The bench
presses the button ``--presses`` times (publishes ``{"action": "single"}`` on
``zigbee2mqtt/<button>``, QoS 0 as zigbee2mqtt does) at random gaps and measures, for each, the
time until the ``sos`` event arrives at a subscriber on the platform topics: press -> bridge
topic -> agent (outbox commit, fsync) -> QoS 1 publish -> subscriber. Same clock for both ends.

    python bench/edge_sos.py [--presses 50] [--rate 150] [--broker 127.0.0.1:1883] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
from edge_footprint import AGENT


class SosWatch:
    """Subscribes to the gateway's events; records arrival time per SOS and counts telemetry."""

    def __init__(self, host: str, port: int, root: str) -> None:
        self.arrivals: list[tuple[float, dict[str, Any]]] = []
        self.telemetry = 0
        self.cond = threading.Condition()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        c.on_connect = lambda cl, *_: cl.subscribe(f"{root}/#", qos=1)
        c.on_message = self._on_message
        c.connect(host, port)
        c.loop_start()
        self.client = c

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        now = time.time()
        kind = msg.topic.rsplit("/", 1)[-1]
        with self.cond:
            if kind == "telemetry":
                self.telemetry += 1
            elif kind == "event":
                body = json.loads(msg.payload)
                if body["kind"] == "sos":
                    self.arrivals.append((now, body))
            self.cond.notify_all()

    def wait(self, n: int, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: len(self.arrivals) >= n, timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presses", type=int, default=50)
    ap.add_argument("--rate", type=float, default=150.0, help="routine telemetry, readings/s")
    ap.add_argument("--broker", default="127.0.0.1:1883")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    host, port = args.broker.split(":")[0], int(args.broker.split(":")[1])
    root = f"bench-sos/{uuid.uuid4().hex[:8]}"
    z2m_base = f"bench-z2m-{uuid.uuid4().hex[:6]}"
    watch = SosWatch(host, port, root)
    press = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    press.connect(host, port)
    press.loop_start()
    pressed: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        gw = {
            "site": "bench-home",
            "gateway": "gw-1",
            "topic_root": root,
            "broker": {"url": f"mqtt://{args.broker}"},
            "outbox": {"path": str(Path(tmp) / "outbox.sqlite3")},
            "config": {"telemetry_batch_max": 50, "telemetry_batch_ms": 1000, "heartbeat_s": 3600},
            "sensors": [{"id": "sos-1", "kind": "sos", "room": "bedroom"}],
            "drivers": [
                {
                    "type": "zigbee2mqtt",
                    "url": f"mqtt://{args.broker}",
                    "base_topic": z2m_base,
                    "devices": {"sos_button": {"sensor": "sos-1", "kind": "sos"}},
                },
                {"type": "simulated", "name": "sim", "counter": {"sensor": "c-1", "rate_hz": args.rate}},
            ],
        }
        seconds = 10 + args.presses * 0.6
        proc = subprocess.Popen([sys.executable, "-c", AGENT, json.dumps(gw), str(seconds)])
        try:
            deadline = time.monotonic() + 30
            while watch.telemetry < 3 and time.monotonic() < deadline:  # agent up, batching running
                time.sleep(0.1)
            rng = random.Random(1)
            for i in range(args.presses):
                time.sleep(rng.uniform(0.1, 0.5))  # lands anywhere inside a batch window
                pressed.append(time.time())
                press.publish(f"{z2m_base}/sos_button", b'{"action": "single", "battery": 100}', qos=0)
                if not watch.wait(i + 1, 10):
                    break
        finally:
            proc.terminate()
            proc.wait(30)
    press.disconnect()
    press.loop_stop()
    watch.close()
    n = min(len(pressed), len(watch.arrivals))
    lat = np.array([(watch.arrivals[i][0] - pressed[i]) * 1000 for i in range(n)])
    stamp = np.array([watch.arrivals[i][1]["t"] - pressed[i] * 1000 for i in range(n)])
    result = {
        "presses": len(pressed),
        "sos_events": len(watch.arrivals),
        "telemetry_messages": watch.telemetry,
        "telemetry_rate": args.rate,
        "press_to_broker_p50_ms": round(float(np.percentile(lat, 50)), 1) if n else None,
        "press_to_broker_p99_ms": round(float(np.percentile(lat, 99)), 1) if n else None,
        "press_to_broker_max_ms": round(float(lat.max()), 1) if n else None,
        "press_to_agent_stamp_p50_ms": round(float(np.percentile(stamp, 50)), 1) if n else None,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for k, v in result.items():
        print(f"  {k:28} {v}")


if __name__ == "__main__":
    main()
