"""Gateways (provisioning with one-time MQTT credentials, retained config) and their sensors."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Query

from eldercare import protocol
from eldercare.platform import access, broker_sync, provisioning
from eldercare.platform import device_health as health
from eldercare.platform.access import Principal
from eldercare.platform.deps import AdminUser, ConnDep, RegistryReader, RouteDep, SettingsDep
from eldercare.platform.errors import ApiError, not_found
from eldercare.platform.publish import publish_config
from eldercare.platform.repo import registry
from eldercare.platform.routes import ERRORS, ApiRoute
from eldercare.platform.schemas import (
    GatewayConfigIn,
    GatewayConfigOut,
    GatewayCredentials,
    GatewayIn,
    GatewayOut,
    GatewayProvisioned,
    HomeHealthOut,
    SensorIn,
    SensorOut,
    SensorPatch,
    UnknownSensorOut,
)

router = APIRouter(route_class=ApiRoute, prefix="/gateways", tags=["gateways"], responses=ERRORS)


async def _gateway(conn: ConnDep, user: Principal, gateway_id: str) -> dict[str, Any]:
    row = await registry.get_gateway(conn, user=user, gateway_id=gateway_id)
    if row is None:
        raise not_found("gateway", gateway_id)
    return row


_sensor_config = provisioning.sensor_config


def _validated(config: dict[str, Any]) -> dict[str, Any]:
    """The config as wire protocol v1 accepts it, or 422 naming the field."""
    try:
        msg = protocol.decode_config(json.dumps(config))
    except protocol.ProtocolError as exc:
        raise ApiError(
            422, "invalid.config", at=f"config.{exc.field}", field=exc.field, reason=exc.reason
        ) from None
    return json.loads(protocol.encode(msg))  # type: ignore[no-any-return]


def _credentials(
    settings: SettingsDep, gw: dict[str, Any], password: str, broker_updated: bool | None
) -> GatewayCredentials:
    prefix = f"{settings.mqtt_topic_root}/{gw['site_id']}/{gw['id']}/"
    return GatewayCredentials(
        mqtt_username=gw["mqtt_username"],
        mqtt_password=password,
        topic_prefix=prefix,
        broker_updated=broker_updated,
    )


_new_password = provisioning.new_password


@router.get("", response_model=list[GatewayOut])
async def list_gateways(
    user: RegistryReader, conn: ConnDep, route: RouteDep, site_id: str | None = Query(default=None)
) -> list[GatewayOut]:
    rows = await registry.list_gateways(conn, user=user, site_id=site_id)
    await access.audit_change(
        conn,
        user,
        "list:gateways",
        target="gateways",
        route=route,
        extra={"gateways": [r["id"] for r in rows]},
    )
    return [GatewayOut.model_validate(r) for r in rows]


@router.post("", response_model=GatewayProvisioned, status_code=201)
async def provision_gateway(
    user: AdminUser, body: GatewayIn, conn: ConnDep, settings: SettingsDep, route: RouteDep
) -> GatewayProvisioned:
    """Register a gateway: returns its MQTT credentials ONCE (only a hash is kept) and its config,
    which is also published (retained) on the gateway's config topic as revision 0."""
    access.require_writable(user, "gateway", body.model_fields_set)
    try:
        done = await provisioning.provision(
            conn,
            settings,
            gateway_id=body.id,
            site_id=body.site_id,
            description=body.description,
            sensors=[s.model_dump() for s in body.sensors],
        )
    except provisioning.ProvisionError as exc:
        raise ApiError(422, exc.key or "invalid.value", field=exc.field, reason=exc.reason) from None
    await access.audit_change(
        conn, user, "create:gateway", target=f"gateway:{body.id}",
        new={**done.gateway, "mqtt_password": "issued"},
        fields=("site_id", "description", "mqtt_username", "mqtt_password"), route=route,
        extra={"sensors": [s.id for s in body.sensors]},
    )  # fmt: skip
    return GatewayProvisioned(
        gateway=GatewayOut.model_validate(done.gateway),
        credentials=_credentials(settings, done.gateway, done.password, done.broker_updated),
        config=done.config,
    )


@router.get("/health", response_model=list[HomeHealthOut])
async def device_health(user: RegistryReader, conn: ConnDep, route: RouteDep) -> list[HomeHealthOut]:
    """Device health per home (gateway online, last heard, clock skew; sensors' battery and link),
    the homes needing attention first."""
    rows = await registry.gateways_health(conn, user=user)
    await access.audit_change(
        conn, user, "list:device-health", target="gateways", route=route,
        extra={"gateways": [r["id"] for r in rows]},
    )  # fmt: skip
    return [HomeHealthOut.model_validate(h) for h in health.homes(rows)]


@router.get("/unknown-sensors", response_model=list[UnknownSensorOut])
async def unknown_sensors(_: AdminUser, conn: ConnDep) -> list[UnknownSensorOut]:
    """Sensor ids gateways sent that nobody registered (their data is stored): register them with
    POST /gateways/{id}/sensors, or remove them from the gateway."""
    return [UnknownSensorOut.model_validate(r) for r in await registry.list_unknown_sensors(conn)]


@router.get("/{gateway_id}", response_model=GatewayOut)
async def get_gateway(user: RegistryReader, gateway_id: str, conn: ConnDep, route: RouteDep) -> GatewayOut:
    row = await _gateway(conn, user, gateway_id)
    await access.audit_change(conn, user, "read:gateway", target=f"gateway:{gateway_id}", route=route)
    return GatewayOut.model_validate(row)


@router.delete("/{gateway_id}", status_code=204)
async def delete_gateway(
    user: AdminUser, gateway_id: str, conn: ConnDep, settings: SettingsDep, route: RouteDep
) -> None:
    """Remove a gateway; the broker drops its account (and its connection) on reload."""
    async with conn.transaction():
        old = await registry.delete_returning(conn, table="gateways", key={"id": gateway_id})
        if old is None:
            raise not_found("gateway", gateway_id)
        await access.audit_change(
            conn,
            user,
            "delete:gateway",
            target=f"gateway:{gateway_id}",
            old=old,
            fields=("site_id",),
            route=route,
        )
    await broker_sync.sync_quietly(conn, settings)


@router.post("/{gateway_id}/credentials", response_model=GatewayCredentials)
async def rotate_credentials(
    user: AdminUser, gateway_id: str, conn: ConnDep, settings: SettingsDep, route: RouteDep
) -> GatewayCredentials:
    """Issue a new MQTT password (shown once); the broker refuses the old one once it has reloaded."""
    gw = await _gateway(conn, user, gateway_id)
    password, pw_hash, broker_hash = await _new_password(settings)
    async with conn.transaction():
        await registry.set_gateway_password(
            conn, gateway_id=gateway_id, password_hash=pw_hash, broker_hash=broker_hash
        )
        await access.audit_change(
            conn, user, "issue:gateway_credentials", target=f"gateway:{gateway_id}",
            fields=("mqtt_password",), route=route,
        )  # fmt: skip
    return _credentials(settings, gw, password, await broker_sync.sync_quietly(conn, settings))


@router.get("/{gateway_id}/config", response_model=GatewayConfigOut)
async def get_config(user: RegistryReader, gateway_id: str, conn: ConnDep) -> GatewayConfigOut:
    gw = await _gateway(conn, user, gateway_id)
    return GatewayConfigOut(gateway_id=gateway_id, revision=gw["config_revision"], config=gw["config"])


@router.put("/{gateway_id}/config", response_model=GatewayConfigOut)
async def put_config(
    user: AdminUser,
    gateway_id: str,
    body: GatewayConfigIn,
    conn: ConnDep,
    settings: SettingsDep,
    route: RouteDep,
) -> GatewayConfigOut:
    """Store a new config (revision + 1) and publish it retained on the gateway's config topic.

    Without ``sensors`` the registry's sensors are filled in. Publishing is best effort: the
    answer says whether it reached the broker; the stored config is the source of truth.
    """
    gw = await _gateway(conn, user, gateway_id)
    access.require_writable(user, "gateway", body.model_fields_set)
    config = {k: v for k, v in body.config.items() if k not in ("v", "revision")}
    if "sensors" not in config:
        config["sensors"] = _sensor_config(await registry.list_sensors(conn, gateway_id=gateway_id))
    full = _validated({"v": 1, "revision": gw["config_revision"] + 1, **config})
    row = await registry.set_gateway_config(
        conn, gateway_id=gateway_id, config=full, expected_revision=body.expected_revision
    )
    if row is None:
        raise ApiError(409, "invalid.config_changed")
    await access.audit_change(
        conn, user, "update:gateway_config", target=f"gateway:{gateway_id}",
        old={"config": gw["config"]}, new={"config": row["config"]}, fields=("config",), route=route,
    )  # fmt: skip
    topic = protocol.topic(row["site_id"], gateway_id, "config", root=settings.mqtt_topic_root)
    published = await publish_config(settings, topic, json.dumps(row["config"]).encode())
    return GatewayConfigOut(
        gateway_id=gateway_id, revision=row["config_revision"], config=row["config"], published=published
    )


@router.get("/{gateway_id}/sensors", response_model=list[SensorOut])
async def list_sensors(user: RegistryReader, gateway_id: str, conn: ConnDep) -> list[SensorOut]:
    await _gateway(conn, user, gateway_id)
    return [SensorOut.model_validate(r) for r in await registry.list_sensors(conn, gateway_id=gateway_id)]


@router.post("/{gateway_id}/sensors", response_model=SensorOut, status_code=201)
async def add_sensor(
    user: AdminUser, gateway_id: str, body: SensorIn, conn: ConnDep, route: RouteDep
) -> SensorOut:
    await _gateway(conn, user, gateway_id)
    access.require_writable(user, "sensor", body.model_fields_set)
    fields = body.model_dump()
    async with conn.transaction():
        row = await registry.insert(conn, table="sensors", fields={**fields, "gateway_id": gateway_id})
        await access.audit_change(
            conn, user, "create:sensor", target=f"sensor:{gateway_id}/{body.id}", new=row, fields=fields,
            route=route,
        )  # fmt: skip
    return SensorOut.model_validate(row)


@router.patch("/{gateway_id}/sensors/{sensor_id}", response_model=SensorOut)
async def update_sensor(
    user: AdminUser, gateway_id: str, sensor_id: str, body: SensorPatch, conn: ConnDep, route: RouteDep
) -> SensorOut:
    fields = body.model_dump(exclude_unset=True)
    access.require_writable(user, "sensor", fields)
    key = {"gateway_id": gateway_id, "id": sensor_id}
    async with conn.transaction():
        pair = await registry.change(conn, table="sensors", key=key, fields=fields)
        if pair is None:
            raise not_found("sensor", sensor_id)
        await access.audit_change(
            conn, user, "update:sensor", target=f"sensor:{gateway_id}/{sensor_id}", old=pair[0],
            new=pair[1], fields=fields, route=route,
        )  # fmt: skip
    return SensorOut.model_validate(pair[1])


@router.delete("/{gateway_id}/sensors/{sensor_id}", status_code=204)
async def delete_sensor(
    user: AdminUser, gateway_id: str, sensor_id: str, conn: ConnDep, route: RouteDep
) -> None:
    async with conn.transaction():
        old = await registry.delete_returning(
            conn, table="sensors", key={"gateway_id": gateway_id, "id": sensor_id}
        )
        if old is None:
            raise not_found("sensor", sensor_id)
        await access.audit_change(
            conn, user, "delete:sensor", target=f"sensor:{gateway_id}/{sensor_id}", old=old,
            fields=("kind", "room", "resident_id"), route=route,
        )  # fmt: skip
