"""Best-effort publishing of a gateway's retained config topic (the edge picks it up on connect)."""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any
from urllib.parse import unquote, urlsplit

from eldercare.config import Settings

log = logging.getLogger(__name__)


class _AfterDisconnect(logging.Filter):
    """paho 2.2's ``publish.single`` logs ERROR "Client is not connected" on its last loop turn,
    after its own clean disconnect: every successful publish looked like a failure to operators."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Client is not connected")


logging.getLogger("paho.mqtt.client").addFilter(_AfterDisconnect())  # only publish.single logs there


def _broker(settings: Settings) -> tuple[str, int, bool, Any]:
    if settings.mqtt_url is None:
        return "127.0.0.1", 1883, False, None
    u = urlsplit(settings.mqtt_url.get_secret_value())
    tls = u.scheme in ("mqtts", "ssl")
    auth: Any = None
    if u.username:
        auth = {"username": unquote(u.username), "password": unquote(u.password or "")}
    return u.hostname or "127.0.0.1", u.port or (8883 if tls else 1883), tls, auth


def publish_retained(settings: Settings, topic: str, payload: bytes, timeout: float = 5.0) -> None:
    """One retained QoS 1 publish (paho ``single``); raises OSError/ValueError on failure."""
    import paho.mqtt.publish as publish

    host, port, tls, auth = _broker(settings)
    tls_args: dict[str, Any] | None = None
    if tls:
        tls_args = {"ca_certs": str(settings.mqtt_ca_file) if settings.mqtt_ca_file else None}
        if settings.mqtt_cert_file:
            tls_args["certfile"] = str(settings.mqtt_cert_file)
            tls_args["keyfile"] = str(settings.mqtt_key_file) if settings.mqtt_key_file else None
        tls_args["cert_reqs"] = ssl.CERT_NONE if settings.mqtt_tls_insecure else ssl.CERT_REQUIRED
    publish.single(
        topic,
        payload,
        qos=1,
        retain=True,
        hostname=host,
        port=port,
        auth=auth,
        tls=tls_args,  # type: ignore[arg-type]
        keepalive=max(5, int(timeout)),
    )


async def publish_config(settings: Settings, topic: str, payload: bytes) -> bool:
    """Publish off the event loop; a failure is logged, not raised (the database copy stands)."""
    try:
        await asyncio.wait_for(asyncio.to_thread(publish_retained, settings, topic, payload), timeout=10)
    except (OSError, ValueError, TimeoutError) as exc:
        log.warning("config for %s not published: %s", topic, exc)
        return False
    log.info("published retained config to %s (%s bytes)", topic, len(payload))
    return True
