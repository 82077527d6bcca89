"""Accounts (admin only): create, list, change role or provider, disable, reset password."""

from __future__ import annotations

from fastapi import APIRouter, Query

from eldercare.platform import access, security
from eldercare.platform.deps import AdminUser, ConnDep, RouteDep, SettingsDep
from eldercare.platform.errors import not_found
from eldercare.platform.repo import users as users_repo
from eldercare.platform.routes import ERRORS, ApiRoute
from eldercare.platform.schemas import DbId, Role, UserIn, UserOut, UserPatch

router = APIRouter(route_class=ApiRoute, prefix="/users", tags=["users"], responses=ERRORS)


@router.get("", response_model=list[UserOut])
async def list_users(
    _: AdminUser, conn: ConnDep, role: Role | None = None, provider_id: str | None = Query(default=None)
) -> list[UserOut]:
    rows = await users_repo.list_users(conn, role=role, provider_id=provider_id)
    return [UserOut.model_validate(r) for r in rows]


@router.post("", response_model=UserOut, status_code=201)
async def create_user(
    user: AdminUser, body: UserIn, conn: ConnDep, route: RouteDep, settings: SettingsDep
) -> UserOut:
    """Create an account; care workers need the provider that employs them."""
    access.require_writable(user, "user", body.model_fields_set)
    fields = body.model_dump(exclude={"password"})
    pw_hash = await security.hash_password_async(body.password, settings)
    async with conn.transaction():
        row = await users_repo.create_user(conn, password_hash=pw_hash, **fields)
        await access.audit_change(
            conn, user, "create:user", target=f"user:{row['id']}", new={**row, "password": "set"},
            fields=[*fields, "password"], route=route,
        )  # fmt: skip
    return UserOut.model_validate(row)


@router.get("/{user_id}", response_model=UserOut)
async def get_user(_: AdminUser, user_id: DbId, conn: ConnDep) -> UserOut:
    row = await users_repo.get_user(conn, user_id=user_id)
    if row is None:
        raise not_found("user", user_id)
    return UserOut.model_validate(row)


@router.patch("/{user_id}", response_model=UserOut)
async def update_user(
    user: AdminUser, user_id: DbId, body: UserPatch, conn: ConnDep, route: RouteDep, settings: SettingsDep
) -> UserOut:
    """Change fields; a new password or disabling the account revokes the user's tokens."""
    access.require_writable(user, "user", body.model_fields_set)
    fields = body.model_dump(exclude_unset=True, exclude={"password"})
    audited = list(fields)
    if body.password is not None:
        fields["password_hash"] = await security.hash_password_async(body.password, settings)
        audited.append("password")
    async with conn.transaction():
        old = await users_repo.get_user(conn, user_id=user_id)
        row = await users_repo.update_user(conn, user_id=user_id, **fields)
        if row is None:
            raise not_found("user", user_id)
        if body.password is not None or body.active is False:
            await users_repo.revoke_all_tokens(conn, user_id=user_id)
        await access.audit_change(
            conn, user, "update:user", target=f"user:{user_id}", old=old, new=row, fields=audited, route=route
        )
    return UserOut.model_validate(row)


@router.delete("/{user_id}", status_code=204)
async def disable_user(user: AdminUser, user_id: DbId, conn: ConnDep, route: RouteDep) -> None:
    """Disable (not erase: the audit trail and alert history keep referring to the account)."""
    async with conn.transaction():
        if not await users_repo.delete_user(conn, user_id=user_id):
            raise not_found("user", user_id)
        await users_repo.revoke_all_tokens(conn, user_id=user_id)
        await access.audit_change(
            conn, user, "disable:user", target=f"user:{user_id}", old={"active": True}, new={"active": False},
            fields=("active",), route=route,
        )  # fmt: skip
