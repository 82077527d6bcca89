"""Registering a gateway, one way for the API (``POST /gateways``) and the CLI (``eldercare gateways add``).

The gateway's MQTT password is made here and returned once (only its hashes are stored); its
revision-0 config (the sensors registered with it) is stored and published retained on its config
topic at once, so a gateway that connects finds it waiting.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from eldercare import protocol
from eldercare.config import Settings
from eldercare.platform import broker_auth, broker_sync, security
from eldercare.platform.publish import publish_config
from eldercare.platform.repo import registry
from eldercare.platform.repo.connections import Conn


class ProvisionError(ValueError):
    """A gateway that cannot be registered as asked; names the field. ``key`` (``error.<key>`` in
    the message catalogue) words the reason for the API's readers; without one, ``reason`` is
    shown as it is (the wire protocol's own texts)."""

    def __init__(self, field: str, reason: str, key: str | None = None) -> None:
        self.field, self.reason, self.key = field, reason, key
        super().__init__(f"{field}: {reason}")


@dataclass
class Provisioned:
    gateway: dict[str, Any]
    password: str  # shown once
    config: dict[str, Any]
    topic_prefix: str
    broker_updated: bool | None  # None: this platform does not manage the broker's files
    published: bool  # the revision-0 config reached the broker (retained)


async def new_password(settings: Settings | None = None) -> tuple[str, str, str]:
    """A random password, its argon2 hash and its Mosquitto hash (for the broker's password file).

    argon2 on the bounded hashing pool, as every hash the API makes (429 when it is full)."""
    password = secrets.token_urlsafe(24)
    pw_hash = await security.hash_password_async(password, settings)
    return password, pw_hash, broker_auth.mosquitto_hash(password)


def sensor_config(sensors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Registry sensors as the config's ``sensors`` list."""
    out = []
    for s in sensors:
        item = {"id": s["id"], "kind": s["kind"], "room": s.get("room"), "resident": s.get("resident_id")}
        if (s.get("meta") or {}).get("sample_hz"):
            item["sample_hz"] = s["meta"]["sample_hz"]
        out.append(item)
    return out


def check_ids(gateway_id: str, site_id: str) -> None:
    if not protocol.is_identifier(site_id):
        raise ProvisionError("site_id", "not a valid identifier", "invalid.identifier")
    if not protocol.is_identifier(gateway_id):
        raise ProvisionError("id", "not a valid identifier", "invalid.identifier")
    if gateway_id in broker_auth.SERVICE_USERS:
        raise ProvisionError("id", "reserved for a broker service account", "invalid.reserved_id")
    if not broker_auth.valid_username(gateway_id):  # the id is the MQTT username
        raise ProvisionError("id", "':' cannot stand in an MQTT username", "invalid.colon_in_id")


async def provision(
    conn: Conn,
    settings: Settings,
    *,
    gateway_id: str,
    site_id: str,
    description: str | None = None,
    sensors: list[dict[str, Any]] | None = None,
) -> Provisioned:
    """Register the gateway and its sensors, update the broker's accounts, publish config 0."""
    check_ids(gateway_id, site_id)
    sensors = sensors or []
    password, pw_hash, broker_hash = await new_password(settings)
    try:
        msg = protocol.decode_config(json.dumps({"v": 1, "revision": 0, "sensors": sensor_config(sensors)}))
    except protocol.ProtocolError as exc:
        raise ProvisionError(f"sensors ({exc.field})", exc.reason) from None
    config = json.loads(protocol.encode(msg))
    gw = await registry.provision_gateway(
        conn,
        gateway={
            "id": gateway_id,
            "site_id": site_id,
            "mqtt_username": gateway_id,
            "mqtt_password_hash": pw_hash,
            "broker_password_hash": broker_hash,
            "description": description,
            "config": config,
        },
        sensors=sensors,
    )
    updated = await broker_sync.sync_quietly(conn, settings)
    topic = protocol.topic(site_id, gateway_id, "config", root=settings.mqtt_topic_root)
    published = await publish_config(settings, topic, json.dumps(config).encode())
    prefix = f"{settings.mqtt_topic_root}/{site_id}/{gateway_id}/"
    return Provisioned(gw, password, config, prefix, updated, published)
