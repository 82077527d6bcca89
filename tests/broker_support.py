"""A real Mosquitto with authentication, and a paho client that records what the broker answered.

Used by the broker account tests (test_broker_acl.py, test_broker_reload_script.py).
"""

from __future__ import annotations

import getpass
import os
import queue
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from fix_db import in_ci
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from eldercare.embedded import mosquitto_binary, port_open


def mosquitto_or_skip() -> str:
    """The mosquitto binary; without it skip, except under CI=true where it must be present."""
    exe = mosquitto_binary()
    if exe is None:
        if in_ci():
            pytest.fail("CI=true: the mosquitto binary is missing (apt-get install mosquitto)")
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    return exe


def conf_lines(port: int, password_file: Path, acl_file: Path) -> list[str]:
    """A listener on 127.0.0.1:port where only accounts of the two files get in."""
    lines = [
        f"listener {port} 127.0.0.1",
        "allow_anonymous false",
        f"password_file {password_file}",
        f"acl_file {acl_file}",
        "persistence false",
        "log_dest stderr",
        "log_type error",
        "log_type warning",
        "log_type notice",
    ]
    if os.geteuid() == 0:
        lines.append(f"user {getpass.getuser()}")  # else it switches to "mosquitto" and cannot read tmp_path
    return lines


def wait_for_port(proc: subprocess.Popen[bytes], port: int, log: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not port_open("127.0.0.1", port, 0.2):
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "mosquitto did not start: " + log.read_text()
        time.sleep(0.05)


@contextmanager
def mosquitto(conf: Path, port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """mosquitto -c conf, until the block ends."""
    with log.open("wb") as out:
        proc = subprocess.Popen([mosquitto_or_skip(), "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(proc, port, log)
        yield proc
    finally:
        proc.terminate()
        proc.wait(10)


class Client:
    """A paho v5 client that records its CONNACK, PUBACK reason codes and messages."""

    def __init__(self, port: int, username: str, password: str) -> None:
        self.connack: queue.Queue[ReasonCode] = queue.Queue()
        self.pubacks: dict[int, ReasonCode] = {}
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.disconnected = False
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"{username}-{time.monotonic_ns()}", protocol=mqtt.MQTTv5
        )
        c.username_pw_set(username, password)
        c.on_connect = lambda _c, _u, _f, rc, _p: self.connack.put(rc)
        c.on_publish = lambda _c, _u, mid, rc, _p: self.pubacks.__setitem__(mid, rc)
        c.on_message = lambda _c, _u, m: self.messages.put((m.topic, m.payload))
        c.on_disconnect = lambda *_a: setattr(self, "disconnected", True)
        self.c = c
        c.connect("127.0.0.1", port, keepalive=10)
        c.loop_start()
        self.rc = self.connack.get(timeout=5)

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> ReasonCode:
        info = self.c.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(5)
        deadline = time.monotonic() + 5
        while info.mid not in self.pubacks:
            assert time.monotonic() < deadline, "no PUBACK"
            time.sleep(0.01)
        return self.pubacks[info.mid]

    def subscribe(self, topic: str) -> None:
        done: queue.Queue[Any] = queue.Queue()
        self.c.on_subscribe = lambda _c, _u, _mid, rcs, _p: done.put(rcs)
        self.c.subscribe(topic, qos=1)
        done.get(timeout=5)

    def received(self, count: int | None = None, timeout: float = 5.0) -> list[tuple[str, bytes]]:
        """Messages that arrive within ``timeout``; returns early once ``count`` have come."""
        out: list[tuple[str, bytes]] = []
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0 and (count is None or len(out) < count):
            try:
                out.append(self.messages.get(timeout=left))
            except queue.Empty:
                break
        return out

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def connack(port: int, username: str, password: str) -> ReasonCode:
    client = Client(port, username, password)
    client.close()
    return client.rc


def wait_until_refused(port: int, username: str, password: str, timeout: float = 5.0) -> ReasonCode:
    """The broker reloads on SIGHUP asynchronously: poll until it refuses the credential."""
    deadline = time.monotonic() + timeout
    while True:
        rc = connack(port, username, password)
        if rc.is_failure or time.monotonic() > deadline:
            return rc
        time.sleep(0.05)
