"""Residents, their family links (with consent per viewer and stream) and their care team."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from eldercare.platform import access
from eldercare.platform.access import ResidentAccess
from eldercare.platform.deps import (
    AdminUser,
    ConnDep,
    CurrentUser,
    RouteDep,
    resident_access,
    resident_admin,
)
from eldercare.platform.errors import ApiError, not_found
from eldercare.platform.repo import alerts as alerts_repo
from eldercare.platform.repo import audit, registry
from eldercare.platform.repo import users as users_repo
from eldercare.platform.routes import ERRORS, ApiRoute
from eldercare.platform.schemas import (
    CareAssignmentIn,
    CareAssignmentOut,
    ConsentIn,
    DbId,
    FamilyLinkIn,
    FamilyLinkOut,
    OnDutyOut,
    ResidentIn,
    ResidentOut,
    ResidentPatch,
)

router = APIRouter(route_class=ApiRoute, prefix="/residents", tags=["residents"], responses=ERRORS)

ProfileRead = Annotated[ResidentAccess, Depends(resident_access("profile"))]
ProfileWrite = Annotated[ResidentAccess, Depends(resident_admin("update_resident"))]
CareTeamRead = Annotated[ResidentAccess, Depends(resident_admin("read_care_team"))]


def _out(row: dict, role: str) -> ResidentOut:  # type: ignore[type-arg]
    out = ResidentOut.model_validate(row)
    if role == "family":
        out.notes = None  # care notes are for the care team
    return out


@router.get("", response_model=list[ResidentOut])
async def list_residents(
    request: Request,
    user: CurrentUser,
    conn: ConnDep,
    site_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after: Annotated[str | None, Query(description="Page on: the last id of the previous page")] = None,
) -> list[ResidentOut]:
    """Residents in the caller's scope (family: their relatives), ordered by id."""
    rows = await registry.list_residents(conn, user=user, site_id=site_id, limit=limit, after=after)
    await audit.write(
        conn,
        user_id=user.id,
        username=user.username,
        action="list:profile",
        route=f"GET {request.url.path}",
        detail={"residents": [r["id"] for r in rows]},
    )
    return [_out(r, user.role) for r in rows]


@router.post("", response_model=ResidentOut, status_code=201)
async def create_resident(user: AdminUser, body: ResidentIn, conn: ConnDep, route: RouteDep) -> ResidentOut:
    fields = body.model_dump()
    access.require_writable(user, "resident", body.model_fields_set)
    async with conn.transaction():
        row = await registry.insert(conn, table="residents", fields=fields)
        await access.audit_change(
            conn, user, "create:resident", target=f"resident:{row['id']}", new=row, fields=fields,
            resident_id=row["id"], route=route,
        )  # fmt: skip
    return ResidentOut.model_validate(row)


@router.get("/{resident_id}", response_model=ResidentOut)
async def get_resident(grant: ProfileRead, user: CurrentUser, conn: ConnDep) -> ResidentOut:
    row = await registry.get_resident(conn, resident_id=grant.resident_id)
    if row is None:
        raise not_found("resident", grant.resident_id)
    return _out(row, user.role)


@router.patch("/{resident_id}", response_model=ResidentOut)
async def update_resident(
    grant: ProfileWrite, body: ResidentPatch, user: CurrentUser, conn: ConnDep, route: RouteDep
) -> ResidentOut:
    """Change fields of the record; which ones a role may change is listed in docs/api.md."""
    fields = body.model_dump(exclude_unset=True)
    access.require_writable(user, "resident", fields)
    rid = grant.resident_id
    async with conn.transaction():
        pair = await registry.change(conn, table="residents", key={"id": rid}, fields=fields)
        if pair is None:
            raise not_found("resident", rid)
        await access.audit_change(
            conn, user, "update:resident", target=f"resident:{rid}", old=pair[0], new=pair[1],
            fields=fields, resident_id=rid, route=route,
        )  # fmt: skip
    return _out(pair[1], user.role)


@router.get("/{resident_id}/family", response_model=list[FamilyLinkOut])
async def list_family(grant: CareTeamRead, conn: ConnDep) -> list[FamilyLinkOut]:
    """Family members linked to the resident, each with the consent recorded for them."""
    rows = await users_repo.list_family(conn, resident_id=grant.resident_id)
    return [FamilyLinkOut.model_validate(r) for r in rows]


@router.put("/{resident_id}/family/{user_id}", response_model=FamilyLinkOut)
async def link_family(
    grant: ProfileWrite, user_id: DbId, body: FamilyLinkIn, user: CurrentUser, conn: ConnDep, route: RouteDep
) -> FamilyLinkOut:
    """Link a family account to the resident (or update the link), with its consent."""
    access.require_writable(user, "family_link", body.model_fields_set)
    if body.user_id != user_id:
        raise ApiError(422, "invalid.user_mismatch", at="user_id")
    member = await users_repo.get_user(conn, user_id=user_id)
    if (
        member is not None
        and not user.is_admin
        and await users_repo.family_linked_outside_scope(conn, user=user, member_id=user_id)
    ):  # another provider's relative: as if there were no such account (ids were tried one by one)
        raise not_found("user", user_id)
    if member is None or member["role"] != "family":
        raise ApiError(422, "invalid.user_role", at="user_id", role="family")
    row = await users_repo.upsert_family_link(
        conn,
        resident_id=grant.resident_id,
        user_id=user_id,
        relation=body.relation,
        is_primary=body.is_primary,
        consent={str(k): v for k, v in body.consent.items()},
    )
    await audit.write(
        conn,
        user_id=user.id,
        username=user.username,
        action="link:family",
        resident_id=grant.resident_id,
        route=route,
        detail={
            "family_user": user_id,
            "relation": body.relation,
            "is_primary": body.is_primary,
            "consent": {str(k): v for k, v in body.consent.items()},
        },
    )
    return FamilyLinkOut.model_validate(row)


@router.put("/{resident_id}/family/{user_id}/consent", response_model=FamilyLinkOut)
async def set_consent(
    grant: ProfileWrite, user_id: DbId, body: ConsentIn, user: CurrentUser, conn: ConnDep, route: RouteDep
) -> FamilyLinkOut:
    """Record which raw streams (activity, bed, bathroom, vitals) this family member may see."""
    access.require_writable(user, "family_link", body.model_fields_set)
    if not await users_repo.set_consent(
        conn,
        resident_id=grant.resident_id,
        user_id=user_id,
        consent={str(k): v for k, v in body.consent.items()},
    ):
        raise not_found("family_link", user_id)
    await audit.write(
        conn,
        user_id=user.id,
        username=user.username,
        action="consent",
        resident_id=grant.resident_id,
        route=route,
        detail={"family_user": user_id, "consent": {str(k): v for k, v in body.consent.items()}},
    )
    rows = [
        r
        for r in await users_repo.list_family(conn, resident_id=grant.resident_id)
        if r["user_id"] == user_id
    ]
    return FamilyLinkOut.model_validate(rows[0])


@router.delete("/{resident_id}/family/{user_id}", status_code=204)
async def unlink_family(
    grant: ProfileWrite, user_id: DbId, user: CurrentUser, conn: ConnDep, route: RouteDep
) -> None:
    if not await users_repo.delete_family_link(conn, resident_id=grant.resident_id, user_id=user_id):
        raise not_found("family_link", user_id)
    await access.audit_change(
        conn, user, "unlink:family", target=f"user:{user_id}", resident_id=grant.resident_id, route=route
    )


@router.get("/{resident_id}/care-team", response_model=list[CareAssignmentOut])
async def list_care_team(grant: CareTeamRead, conn: ConnDep) -> list[CareAssignmentOut]:
    rows = await users_repo.list_care_team(conn, resident_id=grant.resident_id)
    return [CareAssignmentOut.model_validate(r) for r in rows]


@router.post("/{resident_id}/care-team", response_model=list[CareAssignmentOut], status_code=201)
async def assign_worker(
    grant: ProfileWrite, body: CareAssignmentIn, user: CurrentUser, conn: ConnDep, route: RouteDep
) -> list[CareAssignmentOut]:
    """Assign a care worker (tier targets 'assigned_worker' reach them)."""
    access.require_writable(user, "care_team", body.model_fields_set)
    member = await users_repo.get_user(conn, user_id=body.user_id)
    if member is None or member["role"] != "care_worker":
        raise ApiError(422, "invalid.user_role", at="user_id", role="care_worker")
    if not user.is_admin and not await users_repo.provider_serves_resident(
        conn, provider_id=member["provider_id"], resident_id=grant.resident_id
    ):  # a worker of a provider in the resident's chain only: others' staff are not theirs to add
        raise ApiError(422, "invalid.worker_provider", at="user_id")
    await users_repo.assign_worker(conn, resident_id=grant.resident_id, user_id=body.user_id, role=body.role)
    await access.audit_change(
        conn, user, "assign:worker", target=f"user:{body.user_id}", resident_id=grant.resident_id,
        route=route, extra={"role": body.role},
    )  # fmt: skip
    rows = await users_repo.list_care_team(conn, resident_id=grant.resident_id)
    return [CareAssignmentOut.model_validate(r) for r in rows]


@router.delete("/{resident_id}/care-team/{user_id}", status_code=204)
async def unassign_worker(
    grant: ProfileWrite, user_id: DbId, user: CurrentUser, conn: ConnDep, route: RouteDep
) -> None:
    if not await users_repo.unassign_worker(conn, resident_id=grant.resident_id, user_id=user_id):
        raise not_found("user", user_id)
    await access.audit_change(
        conn, user, "unassign:worker", target=f"user:{user_id}", resident_id=grant.resident_id, route=route
    )


ON_DUTY_TARGETS = ("assigned_worker", "home_care_on_duty", "station_on_duty", "institution_on_duty")


@router.get("/{resident_id}/on-duty", response_model=list[OnDutyOut])
async def on_duty(
    grant: Annotated[ResidentAccess, Depends(resident_access("summary"))], conn: ConnDep
) -> list[OnDutyOut]:
    """The assigned care worker and whoever is on duty now at the resident's providers.

    Families may read it (it is part of the summary): it is how they reach the care team.
    """
    people = await alerts_repo.recipients(
        conn, targets=ON_DUTY_TARGETS, resident=grant.resident_id, site=None
    )
    return [
        OnDutyOut(
            display_name=p["display_name"], phone=p["phone"], provider_id=p["provider_id"], role=p["target"]
        )
        for p in people
    ]
