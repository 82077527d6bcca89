"""The broker side of a worker: one paho-mqtt 2.x client whose thread only fills a bounded queue.

MQTT v5 with a persistent session (``clean_start=False`` and a session expiry) under a fixed client
id, QoS 1 and manual acknowledgement: a message is PUBACKed only when the writer has committed
it, so whatever was received but not committed when a worker dies is redelivered by the broker.
``ReceiveMaximum`` caps the unacknowledged messages the broker sends us, which bounds the queue
and is the backpressure: while the database is down nothing is acked and the broker keeps the rest.

Acknowledgements are sent only on the connection a message came in on (``generation``): after a
reconnect the broker redelivers the unacknowledged ones with the same packet ids, and an ack for
the old copy could otherwise acknowledge a different, newer message with a reused id.
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from eldercare.config import Settings
from eldercare.ingest.batch import Inbound
from eldercare.ingest.errors import BrokerError
from eldercare.protocol import subscription_all

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    username: str | None
    password: str | None
    tls: bool


def parse_mqtt_url(url: str) -> BrokerAddress:
    parts = urlsplit(url)
    tls = parts.scheme in {"mqtts", "ssl"}
    if not parts.hostname:
        msg = "mqtt_url has no host"
        raise BrokerError(msg)
    return BrokerAddress(
        host=parts.hostname,
        port=parts.port or (8883 if tls else 1883),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        tls=tls,
    )


def subscriptions(settings: Settings) -> list[str]:
    """Everything under the topic root, not only the three uplink kinds: a message on a wrong topic
    (``.../Telemetry``, ``.../telemetry/extra``) is dead-lettered, never silently missed."""
    # shared subscriptions are an MQTT v5 feature; a 3.1.1 worker subscribes alone
    group = (settings.ingest_shared_group or None) if settings.mqtt_protocol == "5" else None
    return [subscription_all(settings.mqtt_topic_root, group)]


class MqttSource:
    """Receives into ``inbox``; :meth:`ack` acknowledges committed messages."""

    def __init__(
        self,
        settings: Settings,
        url: str,
        client_id: str,
        inbox: queue.Queue[Inbound],
        on_state: Callable[[bool], None] | None = None,
        *,
        retire: bool = False,
    ) -> None:
        self.settings = settings
        self.address = parse_mqtt_url(url)
        self.client_id = client_id
        self.inbox = inbox
        self.on_state = on_state
        self.retire = retire  # leave the shared group: unsubscribe, drain the session, forget it
        self.generation = 0
        self.connected = threading.Event()
        self._full_warned = 0.0
        self.closing = False
        self.v5 = settings.mqtt_protocol == "5"
        if self.v5:
            c = mqtt.Client(
                mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, manual_ack=True
            )
        else:  # persistent session the 3.1.1 way
            c = mqtt.Client(
                mqtt.CallbackAPIVersion.VERSION2,
                client_id=client_id,
                protocol=mqtt.MQTTv311,
                clean_session=False,
                manual_ack=True,
            )
        a = self.address
        if a.username:
            c.username_pw_set(a.username, a.password)
        if a.tls:
            s = settings
            c.tls_set(
                ca_certs=str(s.mqtt_ca_file) if s.mqtt_ca_file else None,
                certfile=str(s.mqtt_cert_file) if s.mqtt_cert_file else None,
                keyfile=str(s.mqtt_key_file) if s.mqtt_key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
            c.tls_insecure_set(s.mqtt_tls_insecure)
        c.reconnect_delay_set(1, 30)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        c.on_unsubscribe = self._on_unsubscribe
        self.client = c

    def start(self) -> None:
        if not self.v5:
            self.client.connect_async(
                self.address.host, self.address.port, keepalive=self.settings.mqtt_keepalive_s
            )
            self.client.loop_start()
            return
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.settings.ingest_session_expiry_s
        props.ReceiveMaximum = self.settings.ingest_receive_maximum
        self.client.connect_async(
            self.address.host,
            self.address.port,
            keepalive=self.settings.mqtt_keepalive_s,
            clean_start=False,
            properties=props,
        )
        self.client.loop_start()

    def stop(self, *, forget_session: bool = False) -> None:
        """Disconnect, keeping the session (unacknowledged messages wait for our return) unless
        ``forget_session``: then the broker discards it (after a retiring worker drained it)."""
        self.closing = True
        props = None
        if forget_session and self.v5:
            props = Properties(PacketTypes.DISCONNECT)
            props.SessionExpiryInterval = 0
        try:
            self.client.disconnect(properties=props)
        finally:
            self.client.loop_stop()
        self._set_state(False)

    def ack(self, items: Iterable[Inbound]) -> int:
        """PUBACK committed messages received on the current connection; returns how many."""
        gen = self.generation
        n = 0
        for m in items:
            if m.qos > 0 and m.generation == gen:
                self.client.ack(m.mid, m.qos)
                n += 1
        return n

    # paho callbacks (network thread) -------------------------------------------------------

    def _set_state(self, up: bool) -> None:
        if up:
            self.connected.set()
        else:
            self.connected.clear()
        if self.on_state is not None:
            self.on_state(up)

    def _on_connect(self, client: mqtt.Client, _u: Any, flags: Any, rc: Any, _p: Any = None) -> None:
        if rc.is_failure:
            log.warning("broker refused ingest client %s: %s", self.client_id, rc)
            return
        self.generation += 1
        log.info(
            "connected to %s:%s as %s (session present: %s)",
            self.address.host,
            self.address.port,
            self.client_id,
            getattr(flags, "session_present", None),
        )
        if self.retire:
            client.unsubscribe(subscriptions(self.settings))
        else:
            subs = subscriptions(self.settings)
            if self.v5:
                client.subscribe([(sub, SubscribeOptions(qos=1)) for sub in subs])
            else:
                client.subscribe([(sub, 1) for sub in subs])

    def _on_unsubscribe(self, _c: Any, _u: Any, _mid: int, _codes: Any, _p: Any = None) -> None:
        log.info("%s left the shared subscriptions; draining what its session holds", self.client_id)
        self._set_state(True)

    def _on_subscribe(self, _c: Any, _u: Any, _mid: int, codes: list[Any], _p: Any = None) -> None:
        failed = [str(c) for c in codes if c.is_failure]
        if failed:
            log.error("broker refused the ingest subscriptions %s: %s", subscriptions(self.settings), failed)
            return
        self._set_state(True)  # healthy only once the subscriptions are in place

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
        self.generation += 1  # acks of what is in flight would go to the wrong connection
        log.warning("disconnected from the broker: %s", rc)
        self._set_state(False)

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        if self.closing:
            return  # not acknowledged: the broker redelivers it to our next session
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = bytes(msg._topic).decode("utf-8", "replace")
        item = Inbound(topic, bytes(msg.payload), msg.mid, msg.qos, self.generation, time.time(), msg.retain)
        try:
            self.inbox.put_nowait(item)
        except queue.Full:
            now = time.monotonic()
            if now - self._full_warned > 10:
                self._full_warned = now
                log.warning(
                    "ingest queue full (%d): broker reads paused until the writer catches up",
                    self.inbox.maxsize,
                )
            while not self.closing:
                try:
                    self.inbox.put(item, timeout=0.5)
                    return
                except queue.Full:
                    continue
