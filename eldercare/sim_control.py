"""Talking to a running simulation: ``eldercare simulate trigger`` sends, the runner answers.

Requests go to ``{root}/_sim/control`` (QoS 1) as JSON ``{"id", "resident", "kind", "duration_s",
"room", "sensor"}``; the runner answers on ``{root}/_sim/ack`` with ``{"id", "ok", "truth",
"clock"}`` (the run's clock, as in its truth file) or ``{"id", "ok": false, "error"}``. A run
that does not have the resident adds ``"absent": true``: several runs can share a topic root, and
the trigger waits for the one that has them (their refusal is said only if none answers otherwise).
``_sim`` is not a valid site id, so these topics never mix with gateway traffic.
"""

from __future__ import annotations

import json
import queue
import time
import uuid
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from eldercare.config import Settings, broker_address


class NoRunnerError(RuntimeError):
    """No running simulation answered the trigger. ``why`` names the case (``broker``,
    ``subscription``, ``timeout``, ``refused``) and ``params`` its details, so the API can say it in
    the reader's language; ``str()`` is the English sentence the CLI prints."""

    def __init__(self, message: str, why: str, **params: Any) -> None:
        super().__init__(message)
        self.why, self.params = why, params


def send_trigger(
    settings: Settings, root: str, request: dict[str, Any], timeout: float = 5.0
) -> dict[str, Any]:
    """Send one trigger and wait for the runner's answer; raises if none comes or it refuses."""
    host, port, tls, user, pw = broker_address(settings)
    req = {**request, "id": uuid.uuid4().hex}
    answers: queue.Queue[dict[str, Any]] = queue.Queue()
    subscribed: queue.Queue[bool] = queue.Queue()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sim-trigger-{req['id'][:8]}")
    if user:
        c.username_pw_set(user, pw)
    if tls:
        c.tls_set(ca_certs=str(settings.mqtt_ca_file) if settings.mqtt_ca_file else None)
        c.tls_insecure_set(settings.mqtt_tls_insecure)

    def on_connect(client: mqtt.Client, *_: Any) -> None:
        client.subscribe(f"{root}/_sim/ack", qos=1)

    def on_subscribe(*_: Any) -> None:
        subscribed.put(True)

    def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            d = json.loads(msg.payload)
        except (ValueError, RecursionError):  # not an answer of ours
            return
        if isinstance(d, dict) and d.get("id") == req["id"]:
            answers.put(d)

    c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
    try:
        c.connect(host, port, keepalive=30)
    except OSError as exc:
        raise NoRunnerError(
            f"cannot connect to MQTT broker {host}:{port}: {exc}", "broker", address=f"{host}:{port}"
        ) from None
    c.loop_start()
    try:
        try:
            subscribed.get(timeout=timeout)
        except queue.Empty:
            raise NoRunnerError("the broker did not confirm the subscription", "subscription") from None
        c.publish(f"{root}/_sim/control", json.dumps(req), qos=1).wait_for_publish(timeout)
        deadline = time.monotonic() + timeout
        absent: dict[str, Any] | None = None
        while True:
            try:
                answer = answers.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                if absent is not None:  # every run that answered is without that resident
                    answer = absent
                    break
                raise NoRunnerError(
                    f"no running simulation under {root}/ answered within {timeout:.0f} s",
                    "timeout",
                    seconds=f"{timeout:.0f}",
                ) from None
            if not answer.get("absent"):
                break
            absent = answer
    finally:
        c.disconnect()
        c.loop_stop()
    if not answer.get("ok"):
        raise NoRunnerError(
            f"the simulation refused: {answer.get('error')}", "refused", error=str(answer.get("error"))
        )
    return answer
