"""The broker side of a worker: one paho-mqtt 2.x client whose thread only fills a bounded queue.

MQTT v5 with a persistent session (``clean_start=False`` and a session expiry) under a fixed client
id, QoS 1 and manual acknowledgement: a message is PUBACKed only when the writer has committed
it, so whatever was received but not committed when a worker dies is redelivered by the broker.
``ReceiveMaximum`` caps the unacknowledged messages the broker sends us, which bounds the queue
and is the backpressure: while the database is down nothing is acked and the broker keeps the rest.

Acknowledgements are sent only on the connection a message came in on (``generation``): after a
reconnect the broker redelivers the unacknowledged ones with the same packet ids, and an ack for
the old copy could otherwise acknowledge a different, newer message with a reused id.

A worker has two connections. Telemetry and status arrive through shared subscriptions
(``$share/<group>/<root>/+/+/telemetry``...; see :func:`subscriptions`): each message goes to one
worker. Events (fall, SOS) arrive on a second connection (client id ``<id>-events``) with a plain
subscription: every worker receives every event, so an alarm reaches the database while any
worker lives, and it never waits for a slot in an in-flight window full of telemetry; the copies
of different workers are deduplicated like any redelivery. The event connection counts its
generations from :data:`EVENT_GENERATIONS`, so a message's generation also says which connection
must acknowledge it.

:class:`AckPublisher` tells gateways what is stored (wire protocol v1, "Acknowledgements").
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import socket
import ssl
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.exception import MalformedPacket
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from eldercare.config import Settings
from eldercare.ingest.batch import Inbound
from eldercare.ingest.errors import BrokerError
from eldercare.protocol import Ack, encode, subscription, subscription_all, subscription_shape

log = logging.getLogger(__name__)

UNREACHABLE_WARN_S = 30.0  # an unreachable broker is logged at most this often per connection
EVENT_SUFFIX = "-events"  # the event connection's client id: the worker's plus this
EVENT_GENERATIONS = 1 << 40  # the event connection counts its generations from here
EVENT_TOPIC_SUFFIX = "/event"
ACK_SUFFIX = "/ack"  # the topic level of the platform's acknowledgements to gateways
WAKE = None  # put in an inbox to wake its reader without a message
ACK_INTERVAL_S = 0.2  # at most one acknowledgement per gateway this often (events: at once)


RECV_CHUNK = 65_536  # bytes read from the broker's socket at once
_PUBACK = struct.Struct("!BBH")  # fixed header (PUBACK, remaining length 2) and the packet id
_PUBLISH, _PUBACK_CMD = 0x30, 0x40
_PUBLISH_Q1_RETAINED = _PUBLISH | 1 << 1 | 1  # QoS 1, retain
_U16 = struct.Struct("!H")
# Retained QoS 1 publishes of ours in flight at most (below the broker's Receive Maximum, which
# MQTT 3.1.1 does not tell): the rest wait, newest per topic only, for a broker's PUBACK.
ACK_WINDOW_MAX = 1000
# topic, payload, packet id, qos, retain
PublishHook = Callable[[bytes, bytes, int, int, bool], None]


class ChunkedClient(mqtt.Client):
    """paho-mqtt's client with a lean receive path and acknowledgements in bulk, for ingest.

    paho reads every packet with at least three ``recv()`` calls (the command byte, the length
    bytes one by one, then the rest), after one ``select()`` per packet, and turns each PUBLISH
    into an ``MQTTMessage`` with a parsed v5 ``Properties`` object, a topic match against the
    filtered callbacks and two locks: in the profiles of a worker flat out (docs/performance.md,
    "Ingest") that was about a third of the worker's CPU. Here one ``recv()`` of up to 64 KiB fills
    a buffer, every complete packet in it is cut out in one pass, and a QoS 1 PUBLISH goes straight
    to :attr:`publish_hook` as (topic, payload, packet id, qos, retain): ingest needs none of its
    properties. Every other packet (CONNACK, SUBACK, PINGRESP, QoS 0 and 2 PUBLISH...) is handed
    to paho's own handling unchanged. :meth:`ack_many` sends the PUBACKs of a whole commit as one
    write instead of one queued packet, one wake-up byte and one ``send()`` per message. The
    socket has ``TCP_NODELAY``: a PUBACK is never held back by Nagle's algorithm waiting for the
    broker's TCP acknowledgement of the previous one.

    :meth:`publish_retained` is the same for what ingest publishes (the gateways'
    acknowledgements, retained, QoS 1): paho's ``publish()`` built an ``MQTTMessage``, took its
    locks, woke its network thread and sent each with a ``send()`` of its own, then handled the
    broker's PUBACK through its generic path, about 50 µs of CPU per acknowledgement. Here the
    PUBLISH packets of one turn are built in one pass and queued as one write, and the broker's
    PUBACKs are cut from the receive buffer. The packets on the wire are the same (QoS 1, retain,
    packet ids from paho's own generator); at most the broker's Receive Maximum are in flight,
    and what is unacknowledged when the connection drops is sent again after the next CONNACK
    unless a newer one of the same topic waits (a watermark only moves up).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rbuf = bytearray()
        self.publish_hook: PublishHook | None = None
        self._out_lock = threading.Lock()
        self._out_open = False  # CONNACK received on the current connection
        self._out_window = 0
        self._out_waiting: dict[bytes, bytes] = {}  # topic -> payload, oldest first
        self._out_inflight: dict[int, tuple[bytes, bytes]] = {}  # packet id -> (topic, payload)
        self.publish_refused = 0  # PUBACKs of ours with a failure reason code (v5)

    def _create_socket_connection(self) -> socket.socket:
        sock = super()._create_socket_connection()
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _packet_read(self) -> mqtt.MQTTErrorCode:
        """One ``recv()``, then every complete packet in the buffer; MQTT_ERR_AGAIN when done."""
        try:
            data = self._sock_recv(RECV_CHUNK)
        except BlockingIOError:
            return mqtt.MQTTErrorCode.MQTT_ERR_AGAIN
        except OSError as err:
            self._easy_log(mqtt.MQTT_LOG_ERR, "failed to receive on socket: %s", err)
            return mqtt.MQTTErrorCode.MQTT_ERR_CONN_LOST
        if not data:
            return mqtt.MQTTErrorCode.MQTT_ERR_CONN_LOST
        with self._msgtime_mutex:
            self._last_bytes_received = mqtt.time_func()
        buf = self._rbuf
        buf += data
        pos, end = 0, len(buf)
        v5 = self._protocol == mqtt.MQTTv5
        hook = self.publish_hook
        inflight = self._out_inflight
        freed = False
        try:
            while end - pos >= 2:
                cmd = buf[pos]
                length, mult, i = 0, 1, pos + 1
                while True:  # remaining length: 1-4 bytes, 7 bits each
                    if i >= end:
                        return mqtt.MQTTErrorCode.MQTT_ERR_AGAIN
                    byte = buf[i]
                    length += (byte & 127) * mult
                    i += 1
                    if not byte & 128:
                        break
                    mult *= 128
                    if i - pos > 4:
                        return mqtt.MQTTErrorCode.MQTT_ERR_PROTOCOL
                if end - i < length:
                    return mqtt.MQTTErrorCode.MQTT_ERR_AGAIN
                pos = i + length
                qos = (cmd >> 1) & 3
                if cmd & 0xF0 == _PUBLISH and qos == 1 and hook is not None:
                    at = self._publish_payload_at(buf, i, pos, v5)
                    if at < 0:
                        self._easy_log(mqtt.MQTT_LOG_ERR, "Received malformed PUBLISH packet")
                        return mqtt.MQTTErrorCode.MQTT_ERR_PROTOCOL
                    tlen = buf[i] << 8 | buf[i + 1]
                    mid = buf[i + 2 + tlen] << 8 | buf[i + 3 + tlen]
                    hook(bytes(buf[i + 2 : i + 2 + tlen]), bytes(buf[at:pos]), mid, qos, bool(cmd & 1))
                    continue
                if cmd == _PUBACK_CMD and length >= 2 and inflight:
                    mid = buf[i] << 8 | buf[i + 1]
                    if self._out_done(mid, buf[i + 2] if length > 2 else 0):
                        freed = True
                        continue
                rc = self._handle_other(cmd, length, buf[i:pos])
                if rc != mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS or self._sock is None:
                    return rc
            return mqtt.MQTTErrorCode.MQTT_ERR_AGAIN
        finally:
            del buf[:pos]
            if freed and self._out_waiting:
                with self._out_lock:
                    self._out_flush()

    @staticmethod
    def _publish_payload_at(buf: bytearray, start: int, end: int, v5: bool) -> int:
        """Where a QoS 1 PUBLISH's payload starts (after topic, packet id and v5 properties), -1 if
        the packet is malformed."""
        if end - start < 4:
            return -1
        tlen = buf[start] << 8 | buf[start + 1]
        at = start + 2 + tlen + 2  # topic, then the packet id
        if at > end or (tlen == 0 and not v5):
            return -1
        if v5:  # properties: skipped (a variable byte integer, then that many bytes)
            plen, mult = 0, 1
            for _ in range(4):
                if at >= end:
                    return -1
                byte = buf[at]
                at += 1
                plen += (byte & 127) * mult
                if not byte & 128:
                    break
                mult *= 128
            else:
                return -1
            at += plen
            if at > end:
                return -1
        return at

    def _handle_other(self, cmd: int, length: int, packet: bytearray) -> mqtt.MQTTErrorCode:
        """A packet the fast path does not take, through paho's own handling."""
        self._in_packet = {
            "command": cmd,
            "have_remaining": 1,
            "remaining_count": [],
            "remaining_mult": 1,
            "remaining_length": length,
            "packet": packet,
            "to_process": 0,
            "pos": 0,
        }
        try:
            rc = self._packet_handle()
        except MalformedPacket as exc:
            self._easy_log(mqtt.MQTT_LOG_DEBUG, "Received malformed packet: %s", exc)
            rc = mqtt.MQTTErrorCode.MQTT_ERR_PROTOCOL
        self._in_packet = {
            "command": 0,
            "have_remaining": 0,
            "remaining_count": [],
            "remaining_mult": 1,
            "remaining_length": 0,
            "packet": bytearray(b""),
            "to_process": 0,
            "pos": 0,
        }
        return rc

    def ack_many(self, mids: list[int]) -> None:
        """PUBACK these QoS 1 packet ids, in one write."""
        if mids:
            pack = _PUBACK.pack
            self._packet_queue(_PUBACK_CMD, b"".join([pack(_PUBACK_CMD, 2, mid) for mid in mids]), 0, 0)

    def buffered(self) -> int:
        """Bytes received from the socket and not yet cut into packets."""
        return len(self._rbuf)

    # Our own retained QoS 1 publishes -----------------------------------------------------------

    def publish_retained(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        """Publish (topic, payload) pairs retained with QoS 1, as one write: a newer payload of a
        topic still waiting replaces the older one."""
        with self._out_lock:
            waiting = self._out_waiting
            for topic, payload in items:
                waiting.pop(topic, None)
                waiting[topic] = payload
            self._out_flush()

    def publish_open(self, receive_maximum: int | None) -> None:
        """The connection is up (CONNACK): send what waits, at most ``receive_maximum`` in flight."""
        with self._out_lock:
            self._out_window = min(receive_maximum or ACK_WINDOW_MAX, ACK_WINDOW_MAX)
            self._out_open = True
            self._out_flush()

    def publish_pending(self) -> int:
        """Our publishes not yet acknowledged by the broker (waiting or in flight)."""
        with self._out_lock:
            return len(self._out_waiting) + len(self._out_inflight)

    def _out_flush(self) -> None:
        """Send what the window allows, in one write (``_out_lock`` held)."""
        waiting, inflight = self._out_waiting, self._out_inflight
        room = self._out_window - len(inflight)
        if not self._out_open or not waiting or room <= 0:
            return
        v5 = self._protocol == mqtt.MQTTv5
        pack = _U16.pack
        out = bytearray()
        while waiting and room > 0:
            topic = next(iter(waiting))
            payload = waiting.pop(topic)
            mid = self._mid_generate()
            while mid in inflight:  # only after 65,535 ids with one still unacknowledged
                mid = self._mid_generate()
            inflight[mid] = (topic, payload)
            room -= 1
            body = pack(len(topic)) + topic + pack(mid) + (b"\0" if v5 else b"") + payload
            out.append(_PUBLISH_Q1_RETAINED)
            n = len(body)
            while True:  # remaining length: 7 bits a byte
                byte, n = n & 127, n >> 7
                out.append(byte | 128 if n else byte)
                if not n:
                    break
            out += body
        self._packet_queue(_PUBLISH_Q1_RETAINED, bytes(out), 0, 1)

    def _out_done(self, mid: int, reason: int) -> bool:
        """A broker's PUBACK: True if it was for one of ours."""
        with self._out_lock:
            item = self._out_inflight.pop(mid, None)
        if item is None:
            return False
        if reason >= 0x80:
            self.publish_refused += 1
            self._easy_log(mqtt.MQTT_LOG_ERR, "broker refused publish to %r: reason 0x%02x", item[0], reason)
        return True

    def _sock_close(self) -> None:
        self._rbuf = bytearray()  # a new connection starts with a new stream
        with self._out_lock:
            # Unacknowledged publishes go again after the next CONNACK, newest per topic only.
            self._out_open = False
            waiting, inflight = self._out_waiting, self._out_inflight
            for topic, payload in reversed(list(inflight.values())):
                if topic not in waiting:
                    waiting[topic] = payload
            inflight.clear()
        super()._sock_close()


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


UPLINK_SHARED = ("telemetry", "status")  # what the shared subscription brings; events: their own


def subscriptions(settings: Settings) -> list[str]:
    """Only what ingest stores: telemetry and status, shared among the workers (events come on
    each worker's own connection, :func:`event_subscriptions`), and the topic shapes no
    platform topic has (``<root>/x``, ``<root>/x/y``, four levels or more), so a message on a
    wrong level is still dead-lettered rather than missed.

    Not ``<root>/#`` and not ``<root>/+/+/+``: those bring back every acknowledgement ingest
    publishes on ``.../ack`` and every retained ``.../config``, i.e. about one message more in
    for every message stored (docs/performance.md, "Ingest"). A wrong kind at the third level
    (``.../Telemetry``) is therefore not seen; the broker's ACL refuses it anyway
    (docs/protocol.md, section 11).
    """
    # shared subscriptions are an MQTT v5 feature; a 3.1.1 worker subscribes alone
    group = (settings.ingest_shared_group or None) if settings.mqtt_protocol == "5" else None
    root = settings.mqtt_topic_root
    shapes = [f"{root}/+", f"{root}/+/+", f"{root}/+/+/+/+/#"]
    return [subscription(kind, root, group) for kind in UPLINK_SHARED] + [
        subscription_shape(shape, group) for shape in shapes
    ]


def legacy_subscriptions(settings: Settings) -> list[str]:
    """What earlier versions subscribed to (everything under the root), left in a persistent
    session the broker kept: unsubscribed at every connect, or its copies would still come."""
    group = (settings.ingest_shared_group or None) if settings.mqtt_protocol == "5" else None
    return [subscription_all(settings.mqtt_topic_root, group)]


def event_subscriptions(settings: Settings) -> list[str]:
    """Events, never shared: every worker stores every event (the copies are duplicates)."""
    return [subscription("event", settings.mqtt_topic_root)]


class MqttSource:
    """Receives ``topics`` into ``inbox``; :meth:`ack` acknowledges committed messages."""

    def __init__(
        self,
        settings: Settings,
        url: str,
        client_id: str,
        inbox: queue.Queue[Inbound | None],
        on_state: Callable[[bool], None] | None = None,
        *,
        retire: bool = False,
        topics: list[str] | None = None,
        urgent: queue.Queue[Inbound | None] | None = None,
        generations: int = 0,
    ) -> None:
        self.settings = settings
        self.topics = subscriptions(settings) if topics is None else topics
        self.legacy = legacy_subscriptions(settings) if topics is None else []
        self._legacy_mid: int | None = None
        self.urgent = urgent  # events go here instead of the inbox
        self.control_prefix = settings.mqtt_topic_root + "/_"  # the platform's own (_sim/ack...)
        self.address = parse_mqtt_url(url)
        self.client_id = client_id
        self.inbox = inbox
        self.on_state = on_state
        self.retire = retire  # leave the shared group: unsubscribe, drain the session, forget it
        self.generation = generations
        self.connected = threading.Event()
        self._full_warned = 0.0
        self._unreachable_warned: float | None = None  # a refused TCP connect: warned at most every 30 s
        self.closing = False
        self.v5 = settings.mqtt_protocol == "5"
        if self.v5:
            c = ChunkedClient(
                mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, manual_ack=True
            )
        else:  # persistent session the 3.1.1 way
            c = ChunkedClient(
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
            try:
                c.tls_set(
                    ca_certs=str(s.mqtt_ca_file) if s.mqtt_ca_file else None,
                    certfile=str(s.mqtt_cert_file) if s.mqtt_cert_file else None,
                    keyfile=str(s.mqtt_key_file) if s.mqtt_key_file else None,
                    cert_reqs=ssl.CERT_REQUIRED,
                )
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError: a file that is no PEM
                named = {"CA": s.mqtt_ca_file, "CERT": s.mqtt_cert_file, "KEY": s.mqtt_key_file}
                used = ", ".join(f"ELDERCARE_MQTT_{n}_FILE={f}" for n, f in named.items() if f)
                why = (exc.strerror if isinstance(exc, OSError) else None) or exc
                msg = f"cannot use the TLS files ({used or 'the system CAs'}): {why}"
                raise BrokerError(msg) from None
            c.tls_insecure_set(s.mqtt_tls_insecure)
        c.reconnect_delay_set(1, 30)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_connect_fail = self._on_connect_fail
        c.on_message = self._on_message  # QoS 0 and 2 (which ingest never asks for)
        c.publish_hook = self._on_publish  # QoS 1: everything ingest subscribes to
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
        """PUBACK committed messages received on the current connection (in one write); returns how
        many."""
        gen = self.generation
        mids = [m.mid for m in items if m.qos == 1 and m.generation == gen]
        self.client.ack_many(mids)
        n = len(mids)
        for m in items:
            if m.qos == 2 and m.generation == gen:
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

    def _on_connect(self, client: mqtt.Client, _u: Any, flags: Any, rc: Any, props: Any = None) -> None:
        if rc.is_failure:
            log.warning("broker refused ingest client %s: %s", self.client_id, rc)
            return
        self.generation += 1
        self._unreachable_warned = None
        self.client.publish_open(getattr(props, "ReceiveMaximum", None))
        log.info(
            "connected to %s:%s as %s (session present: %s)",
            self.address.host,
            self.address.port,
            self.client_id,
            getattr(flags, "session_present", None),
        )
        if self.legacy:
            # a session kept from an earlier version may still hold them (unsubscribing is harmless)
            self._legacy_mid = client.unsubscribe(self.legacy)[1]
        if self.retire:
            client.unsubscribe(self.topics)
        else:
            subs = self.topics
            if self.v5:
                client.subscribe([(sub, SubscribeOptions(qos=1)) for sub in subs])
            else:
                client.subscribe([(sub, 1) for sub in subs])

    def _on_unsubscribe(self, _c: Any, _u: Any, mid: int, _codes: Any, _p: Any = None) -> None:
        if mid == self._legacy_mid:
            return
        log.info("%s left the shared subscriptions; draining what its session holds", self.client_id)
        self._set_state(True)

    def _on_subscribe(self, _c: Any, _u: Any, _mid: int, codes: list[Any], _p: Any = None) -> None:
        failed = [str(c) for c in codes if c.is_failure]
        if failed:
            log.error("broker refused the ingest subscriptions %s: %s", self.topics, failed)
            return
        self._set_state(True)  # healthy only once the subscriptions are in place

    def _on_connect_fail(self, _c: Any, _u: Any) -> None:
        # paho retries a refused or unreachable broker silently; say so, or nothing shows why
        now = time.monotonic()
        if self._unreachable_warned is None or now - self._unreachable_warned >= UNREACHABLE_WARN_S:
            self._unreachable_warned = now
            a = self.address
            why = sys.exc_info()[1]  # paho calls this inside its `except OSError` (refused, TLS, ...)
            log.warning(
                "cannot reach the broker at %s:%s as %s: %s; retrying",
                a.host,
                a.port,
                self.client_id,
                why or "connection failed",
            )

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
        self.generation += 1  # acks of what is in flight would go to the wrong connection
        if self.closing:  # our own stop (SIGTERM, retire): nothing for an operator to look into
            log.info("%s disconnected from the broker (stopping)", self.client_id)
        else:
            log.warning("disconnected from the broker: %s", rc)
        self._set_state(False)

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        self._on_publish(bytes(msg._topic), bytes(msg.payload), msg.mid, msg.qos, msg.retain)

    def _on_publish(self, raw_topic: bytes, payload: bytes, mid: int, qos: int, retain: bool) -> None:
        if self.closing:
            return  # not acknowledged: the broker redelivers it to our next session
        try:
            topic = raw_topic.decode()
        except UnicodeDecodeError:
            topic = raw_topic.decode("utf-8", "replace")
        if topic.endswith(ACK_SUFFIX) and not topic.startswith(self.control_prefix):
            # Our own acknowledgements to gateways, which a session's old ``#`` subscription may
            # still bring back until it is gone: nothing to store, never a dead letter per ack.
            if qos > 0:
                self.client.ack(mid, qos)
            return
        item = Inbound(topic, payload, mid, qos, self.generation, time.time(), retain)
        if self.urgent is not None and topic.endswith(EVENT_TOPIC_SUFFIX):
            self.urgent.put_nowait(item)  # bounded by Receive Maximum
            return
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


# Acknowledgements to gateways -------------------------------------------------------------------


class AckThrottle:
    """Which gateways' watermarks to publish now: pure bookkeeping, the caller owns the clock.

    A gateway gets at most one acknowledgement per ``interval`` (the watermark then covers
    everything committed meanwhile), except after an event, which is acknowledged at once. A
    watermark lower than one already published for the same epoch is never published (two
    workers may finish their commits in either order).
    """

    def __init__(self, interval: float = ACK_INTERVAL_S) -> None:
        self.interval = interval
        self.pending: dict[tuple[str, str], tuple[str, int]] = {}  # (site, gateway) -> (epoch, seq)
        self.urgent: set[tuple[str, str]] = set()
        self.published: dict[tuple[str, str], tuple[str, int]] = {}
        self.sent_at: dict[tuple[str, str], float] = {}

    def offer(self, acks: dict[tuple[str, str, str], int], *, urgent: bool = False) -> None:
        for (site, gw, epoch), seq in acks.items():
            key = (site, gw)
            done = self.published.get(key)
            if done is not None and done[0] == epoch and done[1] >= seq:
                continue
            have = self.pending.get(key)
            if have is None or have[0] != epoch or have[1] < seq:
                self.pending[key] = (epoch, seq)
            if urgent:
                self.urgent.add(key)

    def due(self, now: float) -> list[tuple[str, str, str, int]]:
        """(site, gateway, epoch, seq) to publish now, marked as published."""
        out = []
        for key, (epoch, seq) in list(self.pending.items()):
            if key in self.urgent or now - self.sent_at.get(key, -math.inf) >= self.interval:
                del self.pending[key]
                self.urgent.discard(key)
                self.published[key] = (epoch, seq)
                self.sent_at[key] = now
                out.append((*key, epoch, seq))
        return out

    def next_due(self) -> float | None:
        """When the earliest pending acknowledgement may go (monotonic seconds), None if none."""
        if not self.pending:
            return None
        if self.urgent:
            return -math.inf
        return min(self.sent_at.get(k, -math.inf) + self.interval for k in self.pending)


class AckPublisher:
    """Publishes ``{"v": 1, "epoch": ..., "seq": N}`` retained, QoS 1, on ``.../{gateway}/ack``."""

    def __init__(self, client: ChunkedClient, root: str, interval: float = ACK_INTERVAL_S) -> None:
        self.client = client
        self.root = root
        self.throttle = AckThrottle(interval)
        self.cond = threading.Condition()
        self.closing = False
        self.published = 0
        self.thread = threading.Thread(target=self._run, name="ingest-acks", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        with self.cond:
            self.closing = True
            self.cond.notify()
        if self.thread.is_alive():
            self.thread.join(5)

    def offer(self, acks: dict[tuple[str, str, str], int], *, urgent: bool = False) -> None:
        if not acks:
            return
        with self.cond:
            self.throttle.offer(acks, urgent=urgent)
            self.cond.notify()

    def _run(self) -> None:
        while True:
            with self.cond:
                while not self.closing:
                    at = self.throttle.next_due()
                    now = time.monotonic()
                    if at is not None and at <= now:
                        break
                    self.cond.wait(None if at is None else at - now)
                # closing: what is pending is published once more before the connection goes
                due = self.throttle.due(math.inf if self.closing else time.monotonic())
            if due:
                root = self.root
                self.client.publish_retained(
                    [
                        (f"{root}/{site}/{gw}{ACK_SUFFIX}".encode(), encode(Ack(v=1, epoch=epoch, seq=seq)))
                        for site, gw, epoch, seq in due
                    ]
                )
                self.published += len(due)
            if self.closing:
                return
