"""Replays faults of issue 20 against real edge agents and a private Mosquitto, and counts losses.

Each gateway is a real :class:`eldercare.edge.agent.Agent` (outbox on disk, its own uplink) fed a
counter (0, 1, 2, ... at ``--rate`` Hz) and an SOS press every few seconds: any gap or repeat in
what is stored is a lost or duplicated reading. The platform side is a stand-in for ingest that
behaves as ingest does with end-to-end acknowledgement: a persistent QoS 1 session on every
gateway's telemetry and event, "stored" = first copy of each ``(gateway, epoch, seq)`` kept, and,
every 200 ms, the retained ``.../ack`` with the highest contiguous seq of each epoch. (It is not
the database: the real ingest's side is tested in its own tests; this isolates the gateway.)

Faults (``--faults``, all by default):

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

Each runs with ``ack = "platform"`` and, for comparison, ``ack = "broker"`` (deletion on PUBACK,
the behaviour before). Per fault and mode it prints readings generated vs stored, duplicates
stored (a reading stored twice), SOS presses vs stored, and press-to-stored delay of the SOS.
Bounded: ``--gateways`` (default 4, at most 50), ``--rate`` (default 50 Hz, at most 500), 127.0.0.1.

    python bench/faults.py [--gateways 4] [--rate 50] [--faults broker-kill,corrupt-outbox,lost-wal]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from eldercare.edge.agent import Agent
from eldercare.edge.config import build_gateway_file
from eldercare.edge.drivers import Sample
from eldercare.edge.drivers.simulated import SimulatedDriver
from eldercare.embedded import free_port

FAULTS = ("broker-kill", "corrupt-outbox", "lost-wal", "full-disk")


class Broker:
    """A private Mosquitto with persistence saved every 60 s (the deployed setting)."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
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
                    top = self.acked.get(key, min(seqs) - 1)
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

    def stop(self) -> None:
        self._stop.set()
        if self._feeder is not None:
            self._feeder.join()
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


def run(fault: str, ack: str, n: int, rate: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        (work / "broker").mkdir()
        broker = Broker(work / "broker")
        broker.start()
        disk = work / "disk"
        if fault == "full-disk":
            disk.mkdir()
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(disk)], check=True)
        try:
            return replay(fault, ack, n, rate, broker, disk if fault == "full-disk" else work)
        finally:
            broker.kill("TERM")
            if fault == "full-disk":
                subprocess.run(["umount", str(disk)], check=False)


def replay(fault: str, ack: str, n: int, rate: float, broker: Broker, outboxes: Path) -> dict[str, Any]:
    root = f"bench-faults/{uuid.uuid4().hex[:8]}"
    ingest = Ingest(broker.port, root)
    ingest.start()
    homes = [Home(i, broker.port, root, outboxes, ack, rate) for i in range(n)]
    for h in homes:
        h.start()
    time.sleep(3)
    inject: dict[str, Callable[[], None]] = {
        "broker-kill": lambda: broker_kill(broker, ingest),
        "corrupt-outbox": lambda: corrupt(homes),
        "lost-wal": lambda: lose_wal(homes),
        "full-disk": lambda: fill_disk(outboxes),
    }
    try:
        inject[fault]()
    finally:
        (outboxes / "filler").unlink(missing_ok=True)
    time.sleep(3)
    for h in homes:
        h.stop()
    settle = time.monotonic() + 20
    while time.monotonic() < settle and not all(
        len(set(ingest.readings(h.gw))) >= h.next_value for h in homes
    ):
        time.sleep(0.2)
    ingest.stop()
    generated = sum(h.next_value for h in homes)
    values = {h.gw: ingest.readings(h.gw) for h in homes}
    stored = sum(len(set(v)) for v in values.values())
    dupes = sum(len(v) - len(set(v)) for v in values.values())
    presses = sum(len(h.presses) for h in homes)
    delays = sorted(
        ingest.sos_stored[(h.gw, t)] - t / 1000
        for h in homes
        for t in h.presses
        if (h.gw, t) in ingest.sos_stored
    )
    return {
        "fault": fault,
        "ack": ack,
        "generated": generated,
        "stored": stored,
        "lost": generated - stored,
        "duplicates": dupes,
        "conflicts": ingest.conflicts,
        "sos": f"{len(delays)}/{presses}",
        "sos_p50_s": round(delays[len(delays) // 2], 2) if delays else None,
        "sos_max_s": round(delays[-1], 2) if delays else None,
    }


def broker_kill(broker: Broker, ingest: Ingest) -> None:
    ingest.stop()  # ingest down: the broker queues for its session (in memory until autosave)
    time.sleep(10)
    broker.kill("KILL")
    broker.start()
    ingest.start()


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gateways", type=int, default=4)
    ap.add_argument("--rate", type=float, default=50.0)
    ap.add_argument("--faults", default=",".join(FAULTS))
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    faults = [f for f in a.faults.split(",") if f]
    if not 1 <= a.gateways <= 50 or not 1 <= a.rate <= 500 or not set(faults) <= set(FAULTS):
        sys.exit(f"--gateways 1-50, --rate 1-500, --faults from {', '.join(FAULTS)}")
    rows = [run(f, ack, a.gateways, a.rate) for f in faults for ack in ("platform", "broker")]
    if a.json:
        print(json.dumps({"rows": rows, "load1": os.getloadavg()[0]}))
        return
    print(f"{a.gateways} gateways, counter at {a.rate:.0f} Hz each, load average {os.getloadavg()[0]:.1f}")
    head = ["fault", "ack", "readings generated", "stored", "lost", "duplicates", "seq conflicts"]
    head += ["SOS stored", "SOS press -> stored p50 / max s"]
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    for r in rows:
        cells = [
            r[k] for k in ("fault", "ack", "generated", "stored", "lost", "duplicates", "conflicts", "sos")
        ]
        cells.append(f"{r['sos_p50_s']} / {r['sos_max_s']}")
        print("| " + " | ".join(str(c) for c in cells) + " |")


if __name__ == "__main__":
    main()
