"""Sign in, refresh, and the signed-in user's own account."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.security import OAuth2PasswordRequestForm

from eldercare.platform import access, security
from eldercare.platform.deps import ConnDep, CurrentUser, SettingsDep, StateDep
from eldercare.platform.errors import ApiError
from eldercare.platform.repo import audit as audit_repo
from eldercare.platform.repo import users as users_repo
from eldercare.platform.routes import ERRORS, ApiRoute
from eldercare.platform.schemas import ErrorOut, LocaleIn, PasswordIn, RefreshIn, TokenOut, UserOut

router = APIRouter(route_class=ApiRoute, prefix="/auth", tags=["auth"], responses=ERRORS)


@router.post("/token", response_model=TokenOut, responses={429: {"model": ErrorOut}})
async def token(
    request: Request,
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    settings: SettingsDep,
    state: StateDep,
) -> TokenOut:
    """OAuth2 password flow: a short-lived access token and a refresh token (rate-limited; 429
    also when too many sign-ins are being checked at once)."""
    sent = await request.form()
    twice = sorted({k for k in sent if len(sent.getlist(k)) > 1})
    if twice:  # which one counts? A proxy reads the first username, the form the last
        raise RequestValidationError(
            [{"type": "duplicate_field", "loc": ("body", k), "msg": "", "input": None} for k in twice]
        )
    ip = security.client_address(request, settings)
    pair = await security.login(
        state.pool, settings, username=form.username, password=form.password, client_ip=ip
    )
    return TokenOut(
        access_token=pair.access_token, refresh_token=pair.refresh_token, expires_in=pair.expires_in
    )


@router.post("/refresh", response_model=TokenOut)
async def refresh(body: RefreshIn, conn: ConnDep, settings: SettingsDep) -> TokenOut:
    """Trade a refresh token for a new pair; the old refresh token stops working."""
    pair = await security.refresh(conn, settings, refresh_token=body.refresh_token)
    return TokenOut(
        access_token=pair.access_token, refresh_token=pair.refresh_token, expires_in=pair.expires_in
    )


@router.post("/logout", status_code=204)
async def logout(user: CurrentUser, conn: ConnDep) -> None:
    """Revoke every token of the signed-in user: refresh tokens and access tokens alike."""
    await users_repo.revoke_all_tokens(conn, user_id=user.id)
    await audit_repo.write(
        conn, user_id=user.id, username=user.username, action="sign_out", route="POST /api/v1/auth/logout"
    )


@router.get("/me", response_model=UserOut)
async def me(user: CurrentUser, conn: ConnDep) -> UserOut:
    row = await users_repo.get_user(conn, user_id=user.id)
    return UserOut.model_validate(row)


@router.put("/me/locale", response_model=UserOut)
async def change_locale(body: LocaleIn, request: Request, user: CurrentUser, conn: ConnDep) -> UserOut:
    """Switch the language of the consoles and of API messages (zh-CN or en)."""
    access.require_writable(user, "own_account", body.model_fields_set)
    row = await users_repo.update_user(conn, user_id=user.id, locale=body.locale)
    request.state.locale = body.locale
    return UserOut.model_validate(row)


@router.put("/me/password", status_code=204, responses={429: {"model": ErrorOut}})
async def change_password(
    body: PasswordIn, request: Request, user: CurrentUser, conn: ConnDep, settings: SettingsDep
) -> None:
    """Change the own password; every token is revoked (sign in again elsewhere).

    Wrong ``current_password`` guesses count like failed sign-ins of this account from this
    address (429 with Retry-After once they pass the limit).
    """
    access.require_writable(user, "own_account", body.model_fields_set)
    ip = security.client_address(request, settings)
    await security.check_throttle(conn, username=user.username, client_ip=ip)
    current = await users_repo.get_password_hash(conn, user_id=user.id)
    if current is None or not await security.verify_password_async(current, body.current_password, settings):
        await users_repo.record_login_attempt(conn, username=user.username, client_ip=ip, ok=False)
        await audit_repo.write(
            conn, user_id=user.id, username=user.username, action="password:wrong_current",
            route="PUT /api/v1/auth/me/password", detail={"ip": ip},
        )  # fmt: skip
        raise ApiError(403, "auth.wrong_password")
    new_hash = await security.hash_password_async(body.new_password, settings)
    await users_repo.update_user(conn, user_id=user.id, password_hash=new_hash)
    await users_repo.revoke_all_tokens(conn, user_id=user.id)
    await audit_repo.write(
        conn, user_id=user.id, username=user.username, action="password:changed",
        route="PUT /api/v1/auth/me/password", detail={"ip": ip},
    )  # fmt: skip
