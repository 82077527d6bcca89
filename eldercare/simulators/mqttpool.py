"""Many paho-mqtt clients driven by one thread through a selector: one connection per gateway.

A real gateway has its own MQTT identity, its own retained status and its own Last Will, so the
simulator opens one connection per simulated gateway. A thread per client (paho's
``loop_start``) does not scale to a thousand gateways on two cores; instead one loop reads every
socket through :mod:`selectors` and writes whatever paho still has queued. Publishing happens only
from that same thread. Each client counts its unacknowledged QoS 1 messages so that the caller
can hold back (paho's own queue is unbounded and fails silently past 65,535 message ids), and
counts a message as ``sent`` only when the broker has acknowledged it. A connection that cannot
be re-established is tried again by :meth:`Pool.poll` with the edge agent's backoff
(:func:`eldercare.edge.connection.backoff_delay`), until it is back; paho keeps the messages
published meanwhile and sends them after the reconnect.
"""

from __future__ import annotations

import contextlib
import logging
import random
import selectors
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from eldercare.config import Settings, broker_address
from eldercare.edge.config import BrokerConfig
from eldercare.edge.connection import backoff_delay

log = logging.getLogger(__name__)


class BrokerError(RuntimeError):
    """The broker could not be reached or refused a connection."""


class Conn:
    """One client: a gateway's connection (or the simulator's own control connection)."""

    def __init__(
        self,
        client_id: str,
        settings: Settings,
        *,
        username: str | None = None,
        password: str | None = None,
        will: tuple[str, bytes] | None = None,
        on_message: Callable[[str, bytes], None] | None = None,
    ) -> None:
        self.client_id = client_id
        self.connected = False
        self.refused: str | None = None
        self.unacked = 0  # handed to paho (sent or queued while disconnected), not acknowledged
        self.sent = 0  # acknowledged by the broker (PUBACK)
        self.failures = 0  # reconnect attempts failed in a row
        self.retry_at = 0.0
        self.subscriptions: list[str] = []
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311, clean_session=True
        )
        c.max_queued_messages_set(0)
        host, port, tls, user, pw = broker_address(settings)
        self.host, self.port, self.keepalive = host, port, settings.mqtt_keepalive_s
        if username or user:
            c.username_pw_set(username or user, password if username else pw)
        if tls:
            c.tls_set(
                ca_certs=str(settings.mqtt_ca_file) if settings.mqtt_ca_file else None,
                certfile=str(settings.mqtt_cert_file) if settings.mqtt_cert_file else None,
                keyfile=str(settings.mqtt_key_file) if settings.mqtt_key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
            c.tls_insecure_set(settings.mqtt_tls_insecure)
        if will:
            c.will_set(will[0], will[1], qos=1, retain=True)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        if on_message is not None:
            c.on_message = lambda _c, _u, msg: on_message(msg.topic, bytes(msg.payload))
        self.client = c

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any = None) -> None:
        if rc.is_failure:
            self.refused = str(rc)
            return
        self.connected = True
        self.failures = 0
        for t in self.subscriptions:
            client.subscribe(t, qos=1)

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any = None
    ) -> None:
        self.connected = False  # paho keeps what is unacknowledged and sends it after a reconnect

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, rc: Any, props: Any = None) -> None:
        self.unacked = max(0, self.unacked - 1)
        self.sent += 1

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        if info.rc == mqtt.MQTT_ERR_SUCCESS or info.rc == mqtt.MQTT_ERR_NO_CONN:
            self.unacked += 1  # NO_CONN: paho queued it for the reconnect
        else:
            log.warning("publish on %s failed: %s", self.client_id, mqtt.error_string(info.rc))


class Pool:
    """Connections and the selector loop that serves them."""

    def __init__(self) -> None:
        self.sel = selectors.DefaultSelector()
        self.conns: list[Conn] = []
        self._socks: dict[Conn, socket.socket] = {}
        self._last_misc = 0.0
        self.pending: deque[Conn] = deque()
        self.retrying: list[Conn] = []  # reconnects that failed, tried again by poll()
        self.backoff = BrokerConfig()  # the edge agent's reconnect schedule

    def add(self, conn: Conn, *, connect: bool = True) -> None:
        self.conns.append(conn)
        if connect:
            self.connect(conn)

    def connect(self, conn: Conn) -> None:
        try:
            conn.client.connect(conn.host, conn.port, keepalive=conn.keepalive)
        except OSError as exc:
            raise BrokerError(f"cannot connect to MQTT broker {conn.host}:{conn.port}: {exc}") from None
        self._register(conn)

    def reconnect(self, conn: Conn) -> bool:
        """Try once now; on failure :meth:`poll` tries again after a jittered backoff."""
        if conn in self.retrying:
            self.retrying.remove(conn)
        try:
            conn.client.reconnect()
        except OSError as exc:
            delay = self._retry_later(conn)
            if conn.failures in (1, 10) or conn.failures % 100 == 0:
                log.warning("reconnect of %s failed (%s); trying again in %.1f s", conn.client_id, exc, delay)
            return False
        self._register(conn)
        return True

    def _retry_later(self, conn: Conn) -> float:
        delay = backoff_delay(self.backoff, conn.failures, random.random())
        conn.failures += 1
        conn.retry_at = time.monotonic() + delay
        if conn not in self.retrying:
            self.retrying.append(conn)
        return delay

    def _register(self, conn: Conn) -> None:
        sock = conn.client.socket()
        if sock is None:
            return
        old = self._socks.pop(conn, None)
        if old is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(old)
        stale = self.sel.get_map().get(sock.fileno())
        if stale is not None:
            # paho closed another connection's socket on its own (keepalive, write error) and the
            # kernel gave its descriptor to this one: forget that one and reconnect it later
            self.sel.unregister(stale.fileobj)
            self._lost(stale.data)
        self.sel.register(sock, selectors.EVENT_READ, conn)  # type: ignore[arg-type]
        self._socks[conn] = sock  # type: ignore[assignment]

    def _lost(self, conn: Conn) -> None:
        """A connection that broke: no longer polled, reconnected by the runner (``pending``)."""
        self.drop(conn)
        if conn not in self.pending:
            self.pending.append(conn)
        self._retry_later(conn)  # poll() reconnects it if the caller does not do it first

    def drop(self, conn: Conn) -> None:
        """Cut the connection without a DISCONNECT, as a power cut would: the broker sends the Will."""
        sock = self._socks.pop(conn, None)
        if sock is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(sock)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        conn.connected = False
        self.retrying = [c for c in self.retrying if c is not conn]  # a deliberate cut stays cut

    def wait_connected(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.poll(0.05)
            refused = [c for c in self.conns if c.refused]
            if refused:
                raise BrokerError(f"broker refused {refused[0].client_id}: {refused[0].refused}")
            if all(c.connected for c in self.conns if c in self._socks):
                return
        missing = sum(1 for c in self.conns if c in self._socks and not c.connected)
        raise BrokerError(f"{missing} connection(s) got no CONNACK within {timeout:.0f} s")

    def poll(self, timeout: float) -> None:
        """Write what is queued, read what arrived (acks, messages), keep connections alive."""
        for conn in list(self._socks):
            if conn.client.want_write():
                conn.client.loop_write()
        for key, _ in self.sel.select(timeout):
            conn = key.data
            rc = conn.client.loop_read(max_packets=100)
            if rc != mqtt.MQTT_ERR_SUCCESS and rc != mqtt.MQTT_ERR_AGAIN:
                log.warning("connection %s lost: %s", conn.client_id, mqtt.error_string(rc))
                self._lost(conn)
        now = time.monotonic()
        for conn in [c for c in self.retrying if c.retry_at <= now]:
            self.reconnect(conn)
        if now - self._last_misc >= 1.0:
            self._last_misc = now
            for conn in list(self._socks):
                conn.client.loop_misc()
                if conn.client.socket() is None:  # paho gave up on it (keepalive): reconnect it
                    log.warning("connection %s closed by the client library", conn.client_id)
                    self._lost(conn)

    @property
    def unacked(self) -> int:
        return sum(c.unacked for c in self.conns)

    def close(self) -> None:
        for conn in list(self._socks):
            try:
                conn.client.disconnect()
                conn.client.loop_write()
            except OSError:
                pass
        self.sel.close()
