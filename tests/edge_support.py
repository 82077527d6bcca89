"""Shared helpers for the edge tests: a subscriber, a private mosquitto, gateway files.

Imported by tests/test_edge_*.py (pytest puts tests/ on sys.path); the fixtures are in
tests/edge_fixtures.py.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from eldercare.edge.config import GatewayFile, build_gateway_file
from eldercare.embedded import free_port

REPO = Path(__file__).resolve().parents[1]


class Mosquitto:
    """A private mosquitto on its own port that a test may stop and start (with persistence,
    so a subscriber's QoS 1 session survives the restart like a production broker's)."""

    def __init__(self, workdir: Path, extra: str = "", autosave_s: int = 1) -> None:
        self.port = free_port()
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf = self.dir / "mosquitto.conf"
        # as root, mosquitto would switch to the "mosquitto" user and could not write its store here
        user = f"user {getpass.getuser()}\n" if os.geteuid() == 0 else ""
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {self.dir}/\nautosave_interval {autosave_s}\n{user}{extra}"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen(
            [exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                return
            time.sleep(0.05)
        msg = "private mosquitto did not start"
        raise RuntimeError(msg)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # saves its persistence file
            self.proc.wait(10)
        self.proc = None

    def kill(self) -> None:
        """``kill -9``: whatever was not yet autosaved is gone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


class FakeIngest:
    """Stands in for ingest: a persistent QoS 1 session on every gateway's telemetry and event
    (like ingest's), and, on request, the retained per-gateway ``.../ack`` ingest publishes after
    its commit: the highest seq of an epoch up to which every seq has been received."""

    def __init__(self, host: str, port: int, root: str, client_id: str) -> None:
        self.host, self.port, self.root, self.client_id = host, port, root, client_id
        self.received: dict[tuple[str, str, str], dict[int, bytes]] = {}  # (site, gw, epoch) -> seq
        self.copies = 0
        self.cond = threading.Condition()
        self.client: mqtt.Client | None = None

    def start(self) -> None:
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=False)
        subscribed = threading.Event()
        c.on_connect = lambda cl, *_: cl.subscribe(
            [(f"{self.root}/+/+/telemetry", 1), (f"{self.root}/+/+/event", 1)]
        )
        c.on_subscribe = lambda *_: subscribed.set()
        c.on_message = self._on_message
        c.reconnect_delay_set(0.1, 0.5)  # type: ignore[arg-type]
        c.connect(self.host, self.port)
        c.loop_start()
        assert subscribed.wait(5), "fake ingest could not subscribe"
        self.client = c

    def stop(self) -> None:
        """Disconnect; the broker keeps queueing for the session (ingest is down)."""
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()
            self.client = None

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        parts = msg.topic.split("/")
        p = json.loads(msg.payload)
        key = (parts[-3], parts[-2], p["epoch"])
        with self.cond:
            seen = self.received.setdefault(key, {})
            if p["seq"] in seen:
                assert seen[p["seq"]] == bytes(msg.payload), "a redelivered seq must be byte-identical"
                self.copies += 1
            seen[p["seq"]] = bytes(msg.payload)
            self.cond.notify_all()

    def messages(self) -> list[dict[str, Any]]:
        with self.cond:
            return [json.loads(b) for seqs in self.received.values() for _, b in sorted(seqs.items())]

    def wait_for(self, pred: Callable[[FakeIngest], bool], timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
        return True

    def contiguous(self, key: tuple[str, str, str], start: int = 0) -> int:
        with self.cond:
            seqs = self.received.get(key, {})
            top = start - 1
            while top + 1 in seqs:
                top += 1
            return top

    def ack(self, site: str, gateway: str, epoch: str, seq: int) -> None:
        payload = json.dumps({"v": 1, "epoch": epoch, "seq": seq}).encode()
        publish_retained(self.host, self.port, f"{self.root}/{site}/{gateway}/ack", payload)


def publish_retained(host: str, port: int, topic: str, payload: bytes) -> None:
    """One retained QoS 1 message from a short-lived client (as ingest would publish an ack)."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:10]}")
    c.connect(host, port)
    c.loop_start()
    try:
        c.publish(topic, payload, qos=1, retain=True).wait_for_publish(5)
    finally:
        c.disconnect()
        c.loop_stop()


class Subscriber:
    """Collects decoded messages under a topic root, in arrival order."""

    def __init__(self, host: str, port: int, root: str, client_id: str | None = None) -> None:
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self.cond = threading.Condition()
        self.root = root
        persistent = client_id is not None
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id or f"sub-{uuid.uuid4().hex[:10]}",
            clean_session=not persistent,
        )
        self.subscribed = threading.Event()
        self.client.on_connect = lambda c, *_: c.subscribe(f"{root}/#", qos=1)
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.1, 0.5)  # type: ignore[arg-type]
        self.client.connect(host, port)
        self.client.loop_start()
        assert self.subscribed.wait(5), "subscriber could not subscribe"

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        kind = msg.topic.rsplit("/", 1)[-1]
        try:
            payload = json.loads(msg.payload) if msg.payload else {}
        except (ValueError, RecursionError):  # a test's hostile payload
            payload = {"raw": msg.payload}
        with self.cond:
            self.messages.append((kind, payload))
            self.cond.notify_all()

    def of(self, kind: str) -> list[dict[str, Any]]:
        with self.cond:
            return [p for k, p in self.messages if k == kind]

    def wait_for(self, pred: Callable[[Subscriber], bool], timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
        return True

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def gateway(tmp_path: Path, root: str, port: int, host: str = "127.0.0.1", **over: Any) -> dict[str, Any]:
    """A gateway file as a dict (tests tweak it), with a simulated driver named ``sim``."""
    raw: dict[str, Any] = {
        "site": "home-1",
        "gateway": "gw-1",
        "topic_root": root,
        "broker": {"url": f"mqtt://{host}:{port}", "reconnect_min_s": 0.1, "reconnect_max_s": 0.5},
        "outbox": {"path": str(tmp_path / "outbox.sqlite3")},
        "config": {"telemetry_batch_max": 50, "telemetry_batch_ms": 100, "heartbeat_s": 3600},
        "sensors": [
            {"id": "wearable-1", "kind": "wearable", "resident": "res-1"},
            {"id": "pir-kitchen", "kind": "pir", "room": "kitchen"},
            {"id": "pir-bedroom", "kind": "pir", "room": "bedroom"},
            {"id": "bed-1", "kind": "bed", "room": "bedroom"},
            {"id": "door-front", "kind": "door", "room": "hall"},
            {"id": "sos-1", "kind": "sos", "resident": "res-1"},
        ],
        "drivers": [{"type": "simulated", "name": "sim"}],
    }
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(raw.get(k), dict):
            raw[k] = {**raw[k], **v}
        else:
            raw[k] = v
    # most tests' gateway is home-1/gw-1: on a shared broker the default client id ("home-1-gw-1")
    # would let two tests (or anyone's gateway) take each other's connection; the root is the test's
    tag = hashlib.sha256(raw["topic_root"].encode()).hexdigest()[:12]
    raw["broker"].setdefault("client_id", f"{raw['site']}-{raw['gateway']}-{tag}")
    return raw


def gw_file(raw: dict[str, Any]) -> GatewayFile:
    return build_gateway_file(raw)


def write_toml(path: Path, raw: dict[str, Any]) -> Path:
    """Enough TOML for gateway dicts (tables, arrays of tables, scalars, inline tables)."""

    def val(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{json.dumps(k)} = {val(x)}" for k, x in v.items()) + " }"
        if isinstance(v, list):
            return "[" + ", ".join(val(x) for x in v) + "]"
        raise TypeError(type(v))

    lines: list[str] = []
    for k, v in raw.items():
        if not isinstance(v, dict | list) or (isinstance(v, list) and v and not isinstance(v[0], dict)):
            lines.append(f"{k} = {val(v)}")
    for k, v in raw.items():
        if isinstance(v, dict):
            lines.append(f"[{k}]")
            lines += [f"{kk} = {val(vv)}" for kk, vv in v.items()]
        elif isinstance(v, list) and v and isinstance(v[0], dict):
            for item in v:
                lines.append(f"[[{k}]]")
                lines += [f"{kk} = {val(vv)}" for kk, vv in item.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def agent_process(config: Path, log: Path) -> subprocess.Popen[bytes]:
    """``eldercare edge run --config`` as a subprocess (so a test can kill -9 it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ELDERCARE_")}
    env["ELDERCARE_LOG_LEVEL"] = "INFO"
    return subprocess.Popen(
        [sys.executable, "-m", "eldercare.cli", "edge", "run", "--config", str(config)],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        env=env,
        cwd=REPO,
    )


def make_tls(workdir: Path) -> dict[str, Path]:
    """A throw-away CA and a server certificate for 127.0.0.1 (openssl CLI)."""
    workdir.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (workdir / n for n in ("ca.key", "ca.pem", "srv.key", "srv.csr", "srv.pem"))
    ext = workdir / "ext.cnf"
    ext.write_text("subjectAltName = IP:127.0.0.1, DNS:localhost\n")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(ca_key),
        "-out",
        str(ca),
        "-days",
        "2",
        "-subj",
        "/CN=eldercare-test-ca",
    )
    run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(key),
        "-out",
        str(csr),
        "-subj",
        "/CN=127.0.0.1",
    )
    run(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-out",
        str(cert),
        "-days",
        "2",
        "-extfile",
        str(ext),
    )
    return {"ca": ca, "cert": cert, "key": key}
