"""Helpers for the ingest tests: registering gateways, publishing, running ingest, a pausable proxy."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec
import paho.mqtt.client as mqtt
import psycopg
from fix_db import unique_tag, url_of, url_params
from fix_mqtt import mqtt_protocol_of

from eldercare.embedded import free_port
from eldercare.ingest.batch import Batch, Inbound, Registry, Validator

EPOCH = "epoch-test-0001"


def register(db_url: str, gateways: dict[str, str]) -> None:
    """Insert sites and gateways (gateway -> site) as the platform would."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        for gw, site in gateways.items():
            conn.execute(
                "INSERT INTO sites (id, kind, name) VALUES (%s, 'home', %s) ON CONFLICT DO NOTHING",
                (site, f"site {site}"),
            )
            conn.execute(
                "INSERT INTO gateways (id, site_id, mqtt_username, mqtt_password_hash)"
                " VALUES (%s, %s, %s, 'x')",
                (gw, site, gw),
            )


def now_ms() -> int:
    return int(time.time() * 1000)


def telemetry(
    seq: int, n: int = 10, *, epoch: str = EPOCH, t0: int | None = None, sensor: str = "pir-1"
) -> bytes:
    t0 = now_ms() if t0 is None else t0
    readings = [
        {"t": t0 + i, "sensor": sensor, "metric": "motion", "value": float(seq * 1000 + i)} for i in range(n)
    ]
    return msgspec.json.encode({"v": 1, "epoch": epoch, "seq": seq, "readings": readings})


def event(seq: int, *, kind: str = "fall", epoch: str = EPOCH, **extra: Any) -> bytes:
    body = {"v": 1, "epoch": epoch, "seq": seq, "t": now_ms(), "sensor": "wearable-1", "kind": kind, **extra}
    return msgspec.json.encode(body)


def status(state: str = "online", **extra: Any) -> bytes:
    return msgspec.json.encode({"v": 1, "t": now_ms(), "state": state, **extra})


ROOT = "eldercare/v1"  # the topic root of the store tests' messages


def batch_of(registry: Registry, *messages: tuple[str, bytes], retain: bool = False) -> Batch:
    """Messages (topic under ROOT, payload) validated as ingest does, into one batch."""
    v = Validator(ROOT, registry)
    b = Batch()
    for topic, payload in messages:
        b.add(v.check(Inbound(f"{ROOT}/{topic}", payload, retain=retain)))
    return b


def dead_reasons(db_url: str) -> list[str]:
    with psycopg.connect(db_url) as conn:
        return [r[0] for r in conn.execute("SELECT reason FROM dead_letters ORDER BY id")]


def count(db_url: str, query: str, *params: Any) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(query, params or None).fetchone()
        assert row is not None
        return int(row[0])


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Publisher:
    """A QoS 1 publisher that waits for every PUBACK (MQTT v5, or 3.1.1 on a broker without v5)."""

    def __init__(self, mqtt_url: str) -> None:
        u = urlsplit(mqtt_url)
        v5 = mqtt_protocol_of(mqtt_url) == "5"
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311
        )
        self.client.connect(u.hostname or "127.0.0.1", u.port or 1883)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(10)

    def publish_many(self, items: list[tuple[str, bytes]], rate: float | None = None) -> None:
        pending = []
        start = time.monotonic()
        for i, (topic, payload) in enumerate(items):
            pending.append(self.client.publish(topic, payload, qos=1))
            if len(pending) >= 200:
                for info in pending:
                    info.wait_for_publish(10)
                pending.clear()
            if rate:
                ahead = start + (i + 1) / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
        for info in pending:
            info.wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class IngestProcess:
    """``eldercare ingest run`` as a subprocess, the way operators run it."""

    def __init__(
        self, db_url: str, mqtt_url: str, topic_root: str, tmp: Path, workers: int = 1, **env: str
    ) -> None:
        self.port = free_port() if workers == 1 else _free_port_pair()
        self.workers = workers
        tag = unique_tag()
        self.env = {
            **os.environ,
            "ELDERCARE_DATABASE_URL": db_url,
            "ELDERCARE_MQTT_URL": mqtt_url,
            "ELDERCARE_MQTT_TOPIC_ROOT": topic_root,
            "ELDERCARE_MQTT_PROTOCOL": mqtt_protocol_of(mqtt_url),  # 3.1.1 on amqtt: no MQTT 5 there
            "ELDERCARE_INGEST_CLIENT_ID": f"test-ingest-{tag}-0",
            "ELDERCARE_INGEST_SHARED_GROUP": f"g{tag}",
            "ELDERCARE_INGEST_SESSION_EXPIRY_S": "120",
            "ELDERCARE_METRICS_PORT": str(self.port),
            **env,
        }
        self.host = self.env.get("ELDERCARE_HTTP_HOST") or "127.0.0.1"  # where /metrics listens
        self.log = tmp / f"ingest-{tag}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, command: list[str] | None = None) -> IngestProcess:
        args = [sys.executable, "-m", "eldercare.cli", "ingest"]
        args += command or ["run", "--workers", str(self.workers)]
        # (a retiring worker binds no metrics port itself: the port + i of a running one may be taken)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(args, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        return self

    def ports(self) -> list[int]:
        return [self.port + i for i in range(self.workers)]

    def healthz(self, port: int | None = None) -> tuple[int, dict[str, Any]]:
        try:
            with urllib.request.urlopen(f"http://{self.host}:{port or self.port}/healthz", timeout=2) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())
        except OSError:
            return 0, {}

    def wait_healthy(self, timeout: float = 60) -> None:
        def ok() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.output()
            return all(self.healthz(p)[0] == 200 for p in self.ports())

        wait_for(ok, timeout, "ingest /healthz")

    def metrics(self, port: int | None = None) -> dict[str, float]:
        with urllib.request.urlopen(f"http://{self.host}:{port or self.port}/metrics", timeout=2) as r:
            text = r.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""


def _free_port_pair() -> int:
    for _ in range(50):
        p = free_port()
        with contextlib.suppress(OSError), socket.socket() as s:
            s.bind(("127.0.0.1", p + 1))
            return p
    raise RuntimeError("no free port pair")


class PausableProxy:
    """A forwarder to PostgreSQL that can play dead: connections cut, new ones refused.

    Stands in for "PostgreSQL stopped" without touching the shared server. It listens on TCP
    127.0.0.1 and forwards to the server of ``db_url``: a TCP one, or the Unix socket of the
    embedded one (``?host=/socket/dir``: ``<dir>/.s.PGSQL.<port>``).
    """

    def __init__(self, db_url: str) -> None:
        params = url_params(db_url)
        host = params.get("host", "").split(",")[0] or "/var/run/postgresql"
        port = int(params.get("port", "").split(",")[0] or 5432)
        self.target: tuple[str, int] | str = (
            os.path.join(host, f".s.PGSQL.{port}") if host.startswith("/") else (host, port)
        )
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.server: asyncio.base_events.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> PausableProxy:
        self.thread.start()
        self._call(self._listen())
        return self

    def url_for(self, db_url: str) -> str:
        """``db_url`` through the proxy: same user, database and options, the proxy's address."""
        return url_of({**url_params(db_url), "host": "127.0.0.1", "port": str(self.port)})

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if isinstance(self.target, str):
            return await asyncio.open_unix_connection(self.target)
        return await asyncio.open_connection(*self.target)

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    async def _listen(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await self._connect()
        except OSError:
            writer.close()
            return
        self.writers |= {writer, up_w}

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            w.close()

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))
        self.writers -= {writer, up_w}

    async def _down(self) -> None:
        assert self.server is not None
        self.server.close()
        for w in list(self.writers):
            w.transport.abort()
        self.writers.clear()
        await self.server.wait_closed()

    def down(self) -> None:
        """Cut every connection and refuse new ones, like a stopped server."""
        self._call(self._down())

    def up(self) -> None:
        self._call(self._listen())

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.down()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@contextlib.contextmanager
def publisher(mqtt_url: str) -> Iterator[Publisher]:
    p = Publisher(mqtt_url)
    try:
        yield p
    finally:
        p.close()
