"""The uplink: one paho-mqtt 2.x client to the platform's broker.

paho's network thread does nothing but turn callbacks into items on the agent's inbox
(``connected``, ``disconnected``, ``ack`` with the message id, ``config`` and ``platform_ack``
with the payload); the agent's loop does the work. paho keeps the messages it was handed and
resends them itself after a reconnect; the agent bounds how many are unacknowledged (see
:mod:`eldercare.edge.agent`). Reconnects back off as :func:`backoff_delay` says: capped low
(``reconnect_fast_max_s``) for the first attempts after a loss, so a broker restart costs a
gateway seconds, then doubling up to ``reconnect_max_s``; each wait is scaled by a random factor
in [0.5, 1] so that a neighbourhood of gateways does not reconnect in lockstep.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import socket
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt

from eldercare.edge.config import BrokerConfig, GatewayFile
from eldercare.edge.errors import GatewayConfigError
from eldercare.protocol import topic

log = logging.getLogger(__name__)

UNREACHABLE_WARN_S = 60.0  # a broker that cannot be reached is logged at most this often


@dataclass(frozen=True, slots=True)
class NetEvent:
    kind: str  # connected | disconnected | ack | config | platform_ack
    mid: int = 0
    payload: bytes = b""
    reason: str = ""


def backoff_delay(b: BrokerConfig, failures: int, rand: float) -> float:
    """The wait before reconnect attempt ``failures`` (0: the first after a loss); ``rand`` in [0, 1).

    ``reconnect_min_s * 2**failures``, capped at ``reconnect_fast_max_s`` for the first
    ``reconnect_fast_attempts`` and at ``reconnect_max_s`` after them, times 0.5 + rand / 2."""
    fast = failures < b.reconnect_fast_attempts
    cap = min(b.reconnect_fast_max_s, b.reconnect_max_s) if fast else b.reconnect_max_s
    return min(cap, b.reconnect_min_s * 2 ** min(failures, 30)) * (0.5 + rand / 2)


def check_tls_files(b: BrokerConfig) -> None:
    """Load the TLS files as paho will: one that is no certificate or key is a
    :class:`GatewayConfigError` (``eldercare edge check`` says it), not a traceback at start."""
    try:
        context = ssl.create_default_context(cafile=str(b.ca_file) if b.ca_file else None)
        if b.cert_file:
            context.load_cert_chain(str(b.cert_file), str(b.key_file) if b.key_file else None)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        files = ", ".join(str(f) for f in (b.ca_file, b.cert_file, b.key_file) if f) or "the system CAs"
        msg = f"broker: cannot use the TLS files ({files}): {exc}"
        raise GatewayConfigError(msg) from None


def ack_topic(gw: GatewayFile) -> str:
    """``{root}/{site}/{gateway}/ack``: where ingest says what it has stored (retained)."""
    return f"{gw.topic_root}/{gw.site}/{gw.gateway}/ack"


class Uplink:
    """Owns the paho client; callbacks only enqueue."""

    def __init__(
        self,
        gw: GatewayFile,
        inbox: queue.Queue[Any],
        will_payload: bytes,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.gw = gw
        self.inbox = inbox
        self.rand = rand
        root = gw.topic_root
        self.telemetry_topic = topic(gw.site, gw.gateway, "telemetry", root)
        self.event_topic = topic(gw.site, gw.gateway, "event", root)
        self.status_topic = topic(gw.site, gw.gateway, "status", root)
        self.config_topic = topic(gw.site, gw.gateway, "config", root)
        self.ack_topic = ack_topic(gw)
        self.want_acks = gw.outbox.ack != "broker"
        b = gw.broker
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=gw.client_id, clean_session=True)
        c.max_inflight_messages_set(b.max_inflight)
        c.max_queued_messages_set(0)  # the agent bounds what it hands over
        user, pw = b.credentials
        if user:
            c.username_pw_set(user, pw)
        if b.tls:
            check_tls_files(b)
            c.tls_set(
                ca_certs=str(b.ca_file) if b.ca_file else None,
                certfile=str(b.cert_file) if b.cert_file else None,
                keyfile=str(b.key_file) if b.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
            c.tls_insecure_set(b.tls_insecure)
        c.will_set(self.status_topic, will_payload, qos=1, retain=True)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_connect_fail = self._on_connect_fail
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        self.client = c
        self.connected = False
        self.failures = 0
        self.next_delay = 0.0
        self.delays: list[float] = []  # the waits chosen so far (tests and benchmarks read them)
        self._unreachable_warned: float | None = None  # when a failed connect was last logged

    def _backoff(self) -> None:
        """Set paho's next wait (:func:`backoff_delay`)."""
        delay = backoff_delay(self.gw.broker, self.failures, self.rand())
        self.failures += 1
        self.next_delay = delay
        if len(self.delays) < 1000:
            self.delays.append(delay)
        # paho waits min_delay after a loss (its own doubling restarts on every set)
        self.client.reconnect_delay_set(delay, delay)  # type: ignore[arg-type]

    def start(self) -> None:
        first = backoff_delay(self.gw.broker, 0, self.rand())
        self.client.reconnect_delay_set(first, first)  # type: ignore[arg-type]
        self.client.connect_async(
            self.gw.broker.host, self.gw.broker.port, keepalive=self.gw.broker.keepalive_s
        )
        self.client.loop_start()

    def stop(self, offline_payload: bytes | None = None, timeout: float = 2.0) -> None:
        """Say offline (a clean disconnect does not fire the Last Will) and stop."""
        if offline_payload is not None and self.connected:
            info = self.client.publish(self.status_topic, offline_payload, qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout)
        self.client.disconnect()
        self.client.loop_stop()

    def publish(self, topic_name: str, payload: bytes, retain: bool = False) -> int:
        """Hand one QoS 1 message to paho; returns its message id."""
        info = self.client.publish(topic_name, payload, qos=1, retain=retain)
        return int(info.mid)

    # paho callbacks (network thread): enqueue only -----------------------------------------

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
        if rc.is_failure:
            log.warning("broker refused the connection: %s", rc)
            return
        self.connected = True
        self.failures = 0
        self._unreachable_warned = None
        sock = client.socket()
        if isinstance(sock, socket.socket):  # paho leaves Nagle on: small PUBLISHes would wait
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.want_acks:
            client.subscribe([(self.config_topic, 1), (self.ack_topic, 1)])
        else:
            client.subscribe(self.config_topic, qos=1)
        self.inbox.put(NetEvent("connected"))

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
        self.connected = False
        self._backoff()
        self.inbox.put(NetEvent("disconnected", reason=str(rc)))

    def _on_connect_fail(self, _c: Any, _u: Any) -> None:
        # paho retries silently: a broker down, a wrong host or port, a certificate the gateway does
        # not trust all looked like a healthy agent. paho calls this inside its `except OSError`.
        now = time.monotonic()
        if self._unreachable_warned is None or now - self._unreachable_warned >= UNREACHABLE_WARN_S:
            self._unreachable_warned = now
            why = sys.exc_info()[1]
            b = self.gw.broker
            log.warning(
                "cannot connect to the broker at %s:%s: %s; retrying (the outbox keeps everything)",
                b.host,
                b.port,
                why or "connection failed",
            )
        self._backoff()

    def _on_publish(self, _c: Any, _u: Any, mid: int, _rc: Any, _p: Any = None) -> None:
        self.inbox.put(NetEvent("ack", mid=mid))

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == self.config_topic:
            self.inbox.put(NetEvent("config", payload=bytes(msg.payload)))
        elif msg.topic == self.ack_topic:
            self.inbox.put(NetEvent("platform_ack", payload=bytes(msg.payload)))
