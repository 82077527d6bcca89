"""The platform's one-shot retained publish (a gateway's config): no error logged on success."""

from __future__ import annotations

import logging
import threading

import paho.mqtt.client as mqtt
import pytest
from fix_mqtt import host_port

from eldercare.config import Settings
from eldercare.platform.publish import publish_retained


def test_a_successful_publish_logs_no_error(
    settings: Settings, mqtt_url: str, topic_root: str, caplog: pytest.LogCaptureFixture
) -> None:
    topic = f"{topic_root}/home-1/gw-1/config"
    with caplog.at_level(logging.DEBUG):
        publish_retained(settings, topic, b'{"v": 1}')
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    got: list[bytes] = []
    seen = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_message = lambda _c, _u, msg: (got.append(msg.payload), seen.set())
    client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
    host, port = host_port(mqtt_url)
    client.connect(host, port)
    client.loop_start()
    try:
        assert seen.wait(10), "the retained config never arrived"
        assert got == [b'{"v": 1}']
    finally:
        client.publish(topic, b"", qos=1, retain=True).wait_for_publish(10)  # clear the retained copy
        client.disconnect()
        client.loop_stop()
