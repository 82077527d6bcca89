"""Escalation policies: ordered tiers, each with targets and an acknowledgement deadline."""

from __future__ import annotations

from fastapi import APIRouter

from eldercare.platform import access
from eldercare.platform.deps import AdminUser, ConnDep, RouteDep, StaffUser
from eldercare.platform.errors import ApiError, not_found
from eldercare.platform.repo import registry
from eldercare.platform.routes import ERRORS, ApiRoute
from eldercare.platform.schemas import DbId, PolicyIn, PolicyOut

router = APIRouter(route_class=ApiRoute, prefix="/policies", tags=["policies"], responses=ERRORS)


def _check_tiers(body: PolicyIn) -> None:
    if sorted(t.tier for t in body.tiers) != list(range(1, len(body.tiers) + 1)):
        raise ApiError(422, "invalid.tiers", at="tiers")


@router.get("", response_model=list[PolicyOut])
async def list_policies(_: StaffUser, conn: ConnDep) -> list[PolicyOut]:
    return [PolicyOut.model_validate(p) for p in await registry.list_policies(conn)]


@router.post("", response_model=PolicyOut, status_code=201)
async def create_policy(user: AdminUser, body: PolicyIn, conn: ConnDep, route: RouteDep) -> PolicyOut:
    access.require_writable(user, "policy", body.model_fields_set)
    _check_tiers(body)
    async with conn.transaction():
        pid = await registry.save_policy(
            conn,
            policy_id=None,
            name=body.name,
            tiers=[t.model_dump() for t in body.tiers],
            family_ack_stops=body.family_ack_stops,
        )
        row = await registry.get_policy(conn, policy_id=pid or 0)
        await access.audit_change(
            conn,
            user,
            "create:policy",
            target=f"policy:{pid}",
            new=row,
            fields=("name", "tiers", "family_ack_stops"),
            route=route,
        )
    return PolicyOut.model_validate(row)


@router.get("/{policy_id}", response_model=PolicyOut)
async def get_policy(_: StaffUser, policy_id: DbId, conn: ConnDep) -> PolicyOut:
    row = await registry.get_policy(conn, policy_id=policy_id)
    if row is None:
        raise not_found("policy", policy_id)
    return PolicyOut.model_validate(row)


@router.put("/{policy_id}", response_model=PolicyOut)
async def replace_policy(
    user: AdminUser, policy_id: DbId, body: PolicyIn, conn: ConnDep, route: RouteDep
) -> PolicyOut:
    """Replace name and tiers; open alerts keep their current tier and follow the new deadlines."""
    access.require_writable(user, "policy", body.model_fields_set)
    _check_tiers(body)
    tiers = [t.model_dump() for t in body.tiers]
    async with conn.transaction():
        old = await registry.get_policy(conn, policy_id=policy_id)
        saved = await registry.save_policy(
            conn, policy_id=policy_id, name=body.name, tiers=tiers, family_ack_stops=body.family_ack_stops
        )
        if saved is None:
            raise not_found("policy", policy_id)
        row = await registry.get_policy(conn, policy_id=policy_id)
        await access.audit_change(
            conn, user, "update:policy", target=f"policy:{policy_id}", old=old, new=row,
            fields=("name", "tiers", "family_ack_stops"), route=route,
        )  # fmt: skip
    return PolicyOut.model_validate(row)


@router.delete("/{policy_id}", status_code=204)
async def delete_policy(user: AdminUser, policy_id: DbId, conn: ConnDep, route: RouteDep) -> None:
    n = await registry.policy_in_use(conn, policy_id=policy_id)
    if n:
        raise ApiError(409, "conflict.in_use", kind="policy", id=str(policy_id), detail=f"{n} residents")
    async with conn.transaction():
        old = await registry.delete_returning(conn, table="escalation_policies", key={"id": policy_id})
        if old is None:
            raise not_found("policy", policy_id)
        await access.audit_change(
            conn, user, "delete:policy", target=f"policy:{policy_id}", old=old, fields=("name",), route=route
        )
