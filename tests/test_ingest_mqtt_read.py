"""Ingest's lean MQTT receive path: packets cut from a byte stream however it is split.

No broker: the client's socket read is replaced by a list of chunks, so every split of the stream
(inside the fixed header, the topic, the properties, the payload) is tried.
"""

from __future__ import annotations

import struct
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from eldercare.ingest.mqtt import ChunkedClient


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 127, n >> 7
        out.append(byte | (128 if n else 0))
        if not n:
            return bytes(out)


def publish_packet(
    topic: bytes, payload: bytes, mid: int, *, v5: bool, props: bytes = b"", retain: bool = False
) -> bytes:
    body = struct.pack("!H", len(topic)) + topic + struct.pack("!H", mid)
    if v5:
        body += _varint(len(props)) + props
    body += payload
    return bytes([0x32 | int(retain)]) + _varint(len(body)) + body


class _Sock:
    def close(self) -> None:
        pass


def client(v5: bool, chunks: list[bytes]) -> tuple[ChunkedClient, list[tuple[Any, ...]]]:
    c = ChunkedClient(
        mqtt.CallbackAPIVersion.VERSION2, client_id="t", protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311
    )
    got: list[tuple[Any, ...]] = []
    c.publish_hook = lambda *a: got.append(a)
    feed = list(chunks)

    def recv(_n: int) -> bytes:
        if not feed:
            raise BlockingIOError
        return feed.pop(0)

    c._sock_recv = recv  # type: ignore[method-assign]
    c._sock = _Sock()  # type: ignore[assignment]  # "connected": the handlers check only for None
    return c, got


def drain(c: ChunkedClient, rounds: int) -> list[mqtt.MQTTErrorCode]:
    return [c._packet_read() for _ in range(rounds)]


@pytest.mark.parametrize("v5", [True, False], ids=["v5", "v311"])
def test_every_split_of_the_stream_gives_the_same_messages(v5: bool) -> None:
    big = b"x" * 300  # a remaining length of two bytes
    props = b"\x01\x01" if v5 else b""  # payload format indicator: skipped
    stream = (
        publish_packet(b"eldercare/v1/h/g/telemetry", b'{"a":1}', 7, v5=v5, props=props)
        + publish_packet(b"eldercare/v1/h/g/status", big, 65535, v5=v5, retain=True)
        + publish_packet(b"t", b"", 1, v5=v5)
    )
    want = [
        (b"eldercare/v1/h/g/telemetry", b'{"a":1}', 7, 1, False),
        (b"eldercare/v1/h/g/status", big, 65535, 1, True),
        (b"t", b"", 1, 1, False),
    ]
    for cut in range(1, len(stream)):
        c, got = client(v5, [stream[:cut], stream[cut:]])
        codes = drain(c, 3)
        assert got == want, cut
        assert mqtt.MQTTErrorCode.MQTT_ERR_PROTOCOL not in codes
        assert c.buffered() == 0
    c, got = client(v5, [bytes([b]) for b in stream])  # a byte at a time
    drain(c, len(stream) + 1)
    assert got == want


def test_a_publish_whose_topic_runs_past_its_packet_is_a_protocol_error() -> None:
    good = publish_packet(b"a/b", b"p", 1, v5=True)
    bad = bytearray(good)
    bad[2:4] = struct.pack("!H", 200)  # topic length beyond the packet
    c, got = client(True, [bytes(bad) + good])
    assert c._packet_read() == mqtt.MQTTErrorCode.MQTT_ERR_PROTOCOL
    assert got == []


def test_acks_of_a_commit_go_out_as_one_write() -> None:
    c, _ = client(True, [])
    queued: list[bytes] = []
    c._packet_queue = lambda _cmd, packet, *_a, **_k: queued.append(bytes(packet))  # type: ignore[method-assign]
    c.ack_many([1, 2, 65535])
    assert queued == [b"\x40\x02\x00\x01" + b"\x40\x02\x00\x02" + b"\x40\x02\xff\xff"]
    c.ack_many([])
    assert len(queued) == 1


def _queued(c: ChunkedClient) -> list[bytes]:
    queued: list[bytes] = []
    c._packet_queue = lambda _cmd, packet, *_a, **_k: queued.append(bytes(packet))  # type: ignore[method-assign]
    return queued


@pytest.mark.parametrize("v5", [True, False], ids=["v5", "v311"])
def test_acknowledgements_to_gateways_are_retained_qos1_within_the_brokers_window(v5: bool) -> None:
    c, _ = client(v5, [])
    queued = _queued(c)
    c.publish_retained([(b"r/s/g1/ack", b"A1")])
    assert queued == []  # no CONNACK yet: nothing goes out
    c.publish_retained([(b"r/s/g1/ack", b"A2"), (b"r/s/g2/ack", b"B"), (b"r/s/g3/ack", b"C")])
    c.publish_open(2)  # the broker's Receive Maximum
    one = publish_packet(b"r/s/g1/ack", b"A2", 1, v5=v5, retain=True)  # the newer of g1 only
    two = publish_packet(b"r/s/g2/ack", b"B", 2, v5=v5, retain=True)
    assert queued == [one + two]  # one write, QoS 1 and retain set, the same bytes paho would send
    assert c.publish_pending() == 3
    puback = b"\x40\x03\x00\x01\x10" if v5 else b"\x40\x02\x00\x01"  # v5: "no matching subscribers"
    feed = [puback + b"\x40\x02\x00\x63"]  # and a PUBACK of an id not ours: paho's business
    c._sock_recv = lambda _n: feed.pop(0) if feed else (_ for _ in ()).throw(BlockingIOError())  # type: ignore[method-assign]
    drain(c, 2)
    assert queued[1:] == [publish_packet(b"r/s/g3/ack", b"C", 3, v5=v5, retain=True)]
    assert c.publish_pending() == 2 and c.publish_refused == 0


def test_unacknowledged_acknowledgements_go_again_after_a_reconnect_newest_per_topic() -> None:
    c, _ = client(True, [])
    queued = _queued(c)
    c.publish_open(10)
    c.publish_retained([(b"g1", b"old"), (b"g2", b"x")])
    c.publish_retained([(b"g1", b"new")])
    assert len(queued) == 2
    c._sock_close()  # the connection drops with all three in flight
    c.publish_retained([(b"g2", b"y")])  # a newer one for g2 waits meanwhile
    assert len(queued) == 2
    c.publish_open(10)
    assert queued[2] == publish_packet(b"g1", b"new", 4, v5=True, retain=True) + publish_packet(
        b"g2", b"y", 5, v5=True, retain=True
    )
