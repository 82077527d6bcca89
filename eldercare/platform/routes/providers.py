"""Providers of the care chain, their members and on-call rosters."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from eldercare.platform import access, security
from eldercare.platform.access import Principal
from eldercare.platform.deps import AdminUser, ConnDep, RouteDep, SettingsDep, StaffUser
from eldercare.platform.errors import ApiError, not_found
from eldercare.platform.repo import registry
from eldercare.platform.repo import users as users_repo
from eldercare.platform.routes import ERRORS, ApiRoute
from eldercare.platform.schemas import DbId, Instant, ProviderIn, ProviderOut, ShiftIn, ShiftOut, UserOut

router = APIRouter(route_class=ApiRoute, prefix="/providers", tags=["providers"], responses=ERRORS)


async def _visible(conn: ConnDep, user: Principal, provider_id: str) -> dict:  # type: ignore[type-arg]
    row = await registry.get_provider(conn, user=user, provider_id=provider_id)
    if row is None:
        raise not_found("provider", provider_id)
    return row


@router.get("", response_model=list[ProviderOut])
async def list_providers(user: StaffUser, conn: ConnDep) -> list[ProviderOut]:
    """All providers (admin) or the caller's own (care worker)."""
    return [ProviderOut.model_validate(r) for r in await registry.list_providers(conn, user=user)]


def _out(row: dict[str, Any]) -> ProviderOut:
    """A stored row as shown: whether a webhook secret is set, never the secret."""
    if "webhook_secret" in row:
        row = row | {"webhook_secret_set": bool(row["webhook_secret"])}
    return ProviderOut.model_validate(row)


async def _check_webhook(body: ProviderIn, settings: SettingsDep) -> None:
    if body.webhook_url:
        problem = await security.webhook_problem(body.webhook_url, settings)
        if problem:
            raise ApiError(422, f"webhook.{problem}", at="webhook_url")


@router.post("", response_model=ProviderOut, status_code=201)
async def create_provider(
    user: AdminUser, body: ProviderIn, conn: ConnDep, route: RouteDep, settings: SettingsDep
) -> ProviderOut:
    access.require_writable(user, "provider", body.model_fields_set)
    await _check_webhook(body, settings)
    fields = body.model_dump()
    async with conn.transaction():
        row = await registry.insert(conn, table="providers", fields=fields)
        await access.audit_change(
            conn, user, "create:provider", target=f"provider:{row['id']}", new=row, fields=fields, route=route
        )
    return _out(row)


@router.get("/{provider_id}", response_model=ProviderOut)
async def get_provider(user: StaffUser, provider_id: str, conn: ConnDep) -> ProviderOut:
    return ProviderOut.model_validate(await _visible(conn, user, provider_id))


@router.put("/{provider_id}", response_model=ProviderOut)
async def update_provider(
    user: AdminUser, provider_id: str, body: ProviderIn, conn: ConnDep, route: RouteDep, settings: SettingsDep
) -> ProviderOut:
    """Replace the provider's fields; the webhook secret only when the body names it."""
    access.require_writable(user, "provider", body.model_fields_set)
    await _check_webhook(body, settings)
    fields = body.model_dump(exclude={"id"})
    if "webhook_secret" not in body.model_fields_set:
        # the secret is never shown, so an edit form cannot send it back: absent means "keep it";
        # only an explicit value (or null) replaces it
        del fields["webhook_secret"]
    async with conn.transaction():
        pair = await registry.change(conn, table="providers", key={"id": provider_id}, fields=fields)
        if pair is None:
            raise not_found("provider", provider_id)
        await access.audit_change(
            conn, user, "update:provider", target=f"provider:{provider_id}", old=pair[0], new=pair[1],
            fields=fields, route=route,
        )  # fmt: skip
    return _out(pair[1])


@router.delete("/{provider_id}", status_code=204)
async def delete_provider(user: AdminUser, provider_id: str, conn: ConnDep, route: RouteDep) -> None:
    async with conn.transaction():
        old = await registry.delete_returning(conn, table="providers", key={"id": provider_id})
        if old is None:
            raise not_found("provider", provider_id)
        await access.audit_change(
            conn, user, "delete:provider", target=f"provider:{provider_id}", old=old, fields=("name",),
            route=route,
        )  # fmt: skip


@router.get("/{provider_id}/members", response_model=list[UserOut])
async def list_members(user: StaffUser, provider_id: str, conn: ConnDep) -> list[UserOut]:
    """The provider's staff (care workers, nurses, station staff)."""
    await _visible(conn, user, provider_id)
    rows = await users_repo.list_users(conn, provider_id=provider_id)
    return [UserOut.model_validate(r) for r in rows]


@router.get("/{provider_id}/shifts", response_model=list[ShiftOut])
async def list_shifts(
    user: StaffUser,
    provider_id: str,
    conn: ConnDep,
    start: Instant | None = None,
    end: Instant | None = None,
) -> list[ShiftOut]:
    """The on-call roster; the escalation engine picks the person on duty from it."""
    await _visible(conn, user, provider_id)
    rows = await registry.list_shifts(conn, provider_id=provider_id, start=start, end=end)
    return [ShiftOut.model_validate(r) for r in rows]


@router.post("/{provider_id}/shifts", response_model=ShiftOut, status_code=201)
async def create_shift(
    user: StaffUser, provider_id: str, body: ShiftIn, conn: ConnDep, route: RouteDep
) -> ShiftOut:
    """Put a member on duty (admin, or a member of the same provider)."""
    await _visible(conn, user, provider_id)
    access.require_writable(user, "shift", body.model_fields_set)
    if body.ends_at <= body.starts_at:
        raise ApiError(422, "invalid.ends_before_start", at="ends_at")
    member = await users_repo.get_user(conn, user_id=body.user_id)
    if member is None or member["provider_id"] != provider_id:
        raise ApiError(422, "invalid.not_member", at="user_id", provider=provider_id)
    fields = {
        "provider_id": provider_id,
        "user_id": body.user_id,
        "starts_at": body.starts_at,
        "ends_at": body.ends_at,
    }
    async with conn.transaction():
        row = await registry.insert(conn, table="oncall_shifts", fields=fields)
        await access.audit_change(
            conn, user, "create:shift", target=f"shift:{row['id']}", new=row, fields=fields, route=route
        )
    return ShiftOut.model_validate(await registry.get_shift(conn, shift_id=row["id"]))


@router.delete("/{provider_id}/shifts/{shift_id}", status_code=204)
async def delete_shift(
    user: StaffUser, provider_id: str, shift_id: DbId, conn: ConnDep, route: RouteDep
) -> None:
    await _visible(conn, user, provider_id)
    async with conn.transaction():
        old = await registry.delete_returning(
            conn, table="oncall_shifts", key={"id": shift_id, "provider_id": provider_id}
        )
        if old is None:
            raise not_found("shift", shift_id)
        await access.audit_change(
            conn, user, "delete:shift", target=f"shift:{shift_id}", old=old,
            fields=("provider_id", "user_id", "starts_at", "ends_at"), route=route,
        )  # fmt: skip
