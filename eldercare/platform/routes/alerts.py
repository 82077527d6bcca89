"""Alerts: list, detail with trail and evidence, acknowledge, resolve with an outcome, notes."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

from eldercare.platform import access, read_audit
from eldercare.platform.deps import ConnDep, CurrentUser, RouteDep, roles
from eldercare.platform.errors import ApiError, not_found
from eldercare.platform.repo import alerts as alerts_repo
from eldercare.platform.repo import audit as audit_repo
from eldercare.platform.repo import users as users_repo
from eldercare.platform.routes import ERRORS, ApiRoute
from eldercare.platform.schemas import (
    AckIn,
    AlertDetail,
    AlertKind,
    AlertOut,
    AlertState,
    DbId,
    NoteIn,
    NotificationOut,
    ResolveIn,
    TrailOut,
)

router = APIRouter(route_class=ApiRoute, prefix="/alerts", tags=["alerts"], responses=ERRORS)
Resolver = Annotated[
    access.Principal, Depends(roles("admin", "care_worker", "tester", action="resolve alerts"))
]


async def visible_alert(alert_id: DbId, user: CurrentUser, conn: ConnDep, request: Request) -> dict[str, Any]:
    """The alert if the caller may see it (alerts stream of its resident, or its site); else 404.

    A dependency, so scope is checked before the request body is validated: an out-of-scope
    caller learns nothing, not even which fields the body would need.
    """
    route = f"{request.method} {request.url.path}"
    alert = await alerts_repo.get(conn, alert_id=alert_id)
    if alert is None:
        raise not_found("alert", alert_id)
    try:
        if alert["resident_id"]:
            await access.require_resident_access(conn, user, alert["resident_id"], "alerts", route=route)
        elif alert["site_id"]:
            await access.require_site_access(conn, user, alert["site_id"], route=route)
        elif not user.is_admin:
            raise not_found("alert", alert_id)
    except ApiError as exc:
        raise not_found("alert", alert_id) from exc
    return alert


VisibleAlert = Annotated[dict[str, Any], Depends(visible_alert)]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CURSOR = re.compile(r"(-?[0-9]{1,19})\.([0-9]{1,19})")  # ASCII digits, as cursor_of writes them


def cursor_of(alert: dict[str, Any]) -> str:
    """``<opened_at in µs since the epoch>.<id>``: where the alert stands in newest-first order."""
    return f"{(alert['opened_at'] - _EPOCH) // timedelta(microseconds=1)}.{alert['id']}"


def parse_cursor(text: str) -> tuple[datetime, int]:
    """The ``(opened_at, id)`` a cursor names; ValueError for anything :func:`cursor_of` cannot give."""
    m = _CURSOR.fullmatch(text)
    if m is None or int(m[2]) > 2**63 - 1:
        raise ValueError("not a cursor of this list")
    try:
        return _EPOCH + timedelta(microseconds=int(m[1])), int(m[2])
    except OverflowError:
        raise ValueError("not a cursor of this list") from None


def _valid_cursor(text: str) -> str:
    try:
        parse_cursor(text)
    except ValueError:  # worded by the catalogue, not pydantic's "Value error, ..." in English
        raise PydanticCustomError("cursor_invalid", "not a cursor of this list") from None
    return text


Cursor = Annotated[str, AfterValidator(_valid_cursor)]


@router.get("", response_model=list[AlertOut])
async def list_alerts(
    request: Request,
    user: CurrentUser,
    conn: ConnDep,
    route: RouteDep,
    state: AlertState | None = None,
    kind: AlertKind | None = None,
    site: str | None = None,
    resident: str | None = None,
    tier: Annotated[int | None, Query(ge=1, le=100)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[
        Cursor | None,
        Query(max_length=40, description="Page on: the `cursor` of the previous page's last alert"),
    ] = None,
) -> list[AlertOut]:
    """Alerts the caller may see, newest first; filter by state, kind, site, resident and tier.

    Pages by keyset: each alert carries its ``cursor``; ``before`` set to the last one's gives the
    next page (a page shorter than ``limit`` is the last). A console that polls gets the same
    answer many times: that listing is audited once (see :mod:`eldercare.platform.read_audit`).
    """
    rows = await alerts_repo.list_visible(
        conn, user_id=user.id, role=user.role, provider_id=user.provider_id, state=state, kind=kind,
        site=site, resident=resident, tier=tier, limit=limit,
        before=parse_cursor(before) if before is not None else None,
    )  # fmt: skip
    ids = [r["id"] for r in rows]
    if read_audit.listings(request).first_time(user.id, f"{route}?{request.url.query}", ids):
        await audit_repo.write(
            conn, user_id=user.id, username=user.username, action="list:alerts", route=route,
            detail={"alerts": ids},
        )  # fmt: skip
    return [_out(r) for r in rows]


def _out(alert: dict[str, Any] | None) -> AlertOut:
    """An alert as answered, with its ``cursor`` (the ack and resolve answers gave ``""``, which
    no list takes as ``before``)."""
    assert alert is not None
    return AlertOut.model_validate(alert | {"cursor": cursor_of(alert)})


async def _as_seen_by(
    conn: ConnDep, user: access.Principal, trail: list[dict[str, Any]], sent: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Trail and notifications with people shown as ``access.person_label`` decides for ``user``."""
    if user.role != "family":
        return trail, sent
    names = {t["actor"] for t in trail if t["actor"]} | {n["username"] for n in sent if n["username"]}
    for t in trail:
        names |= set((t["detail"] or {}).get("users") or [])
    known = await users_repo.people(conn, usernames=sorted(names))

    def label(name: str | None) -> str | None:
        return access.person_label(user, known.get(name or ""), name)

    trail = [
        t | {"actor": label(t["actor"])}
        | ({"detail": t["detail"] | {"users": [label(u) for u in t["detail"]["users"]]}}
           if (t["detail"] or {}).get("users") else {})
        for t in trail
    ]  # fmt: skip

    def seen(n: dict[str, Any]) -> dict[str, Any]:
        mine = n["username"] == user.username
        out = n | {"username": label(n["username"]) if mine else None}
        if n["channel"] == "email" and not mine:  # someone else's e-mail address: the person instead
            out["target"] = label(n["username"]) or ""
        return out

    return trail, [seen(n) for n in sent]


@router.get("/{alert_id}", response_model=AlertDetail)
async def get_alert(alert_id: DbId, alert: VisibleAlert, user: CurrentUser, conn: ConnDep) -> AlertDetail:
    """One alert with its evidence, every transition, and who was notified when.

    Family members see other people (relatives, workers) by display name and role only.
    """
    trail, sent = await _as_seen_by(
        conn,
        user,
        await alerts_repo.trail_of(conn, alert_id=alert_id),
        await alerts_repo.notifications_of(conn, alert_id=alert_id),
    )
    return AlertDetail.model_validate(
        alert
        | {
            "trail": [TrailOut.model_validate(t) for t in trail],
            "notifications": [NotificationOut.model_validate(n) for n in sent],
        }
    )


@router.post("/{alert_id}/ack", response_model=AlertOut)
async def acknowledge(
    alert_id: DbId, alert: VisibleAlert, user: CurrentUser, conn: ConnDep, body: AckIn | None = None
) -> AlertOut:
    """Take the alert: a care worker's (or admin's, tester's) acknowledgement stops escalation.

    A family member's is recorded as ``family_seen`` (with ``on_my_way``) in the trail; the alert
    stays open and escalation to professionals goes on, unless the resident's policy says
    ``family_ack_stops``.
    """
    body = body or AckIn()
    async with conn.transaction():
        if user.role == "family" and not await alerts_repo.family_ack_stops(conn, alert_id=alert_id):
            done = await alerts_repo.mark_seen(
                conn, alert_id=alert_id, user_id=user.id, on_my_way=body.on_my_way, note=body.note
            )
        else:
            done = await alerts_repo.acknowledge(conn, alert_id=alert_id, user_id=user.id)
            if done is not None and body.note:
                await alerts_repo.add_note(conn, alert_id=alert_id, user_id=user.id, note=body.note)
    if done is None:
        raise ApiError(409, "alert.not_open", id=alert_id, state=alert["state"])
    updated = await alerts_repo.get(conn, alert_id=alert_id)
    return _out(updated)


@router.post("/{alert_id}/resolve", response_model=AlertOut)
async def resolve(
    alert_id: DbId, alert: VisibleAlert, user: Resolver, body: ResolveIn, conn: ConnDep
) -> AlertOut:
    """Close the alert with its outcome (false alarms feed back into the resident's detectors)."""
    async with conn.transaction():
        done = await alerts_repo.resolve(
            conn, alert_id=alert_id, user_id=user.id, outcome=body.outcome, note=body.note
        )
    if done is None:
        raise ApiError(409, "alert.resolved", id=alert_id)
    return _out(await alerts_repo.get(conn, alert_id=alert_id))


@router.post("/{alert_id}/notes", response_model=list[TrailOut], status_code=201)
async def add_note(
    alert_id: DbId, alert: VisibleAlert, user: CurrentUser, body: NoteIn, conn: ConnDep
) -> list[TrailOut]:
    """Add a note to the alert's trail; returns the trail (people shown as in the alert's detail)."""
    async with conn.transaction():
        await alerts_repo.add_note(conn, alert_id=alert_id, user_id=user.id, note=body.note)
    trail, _ = await _as_seen_by(conn, user, await alerts_repo.trail_of(conn, alert_id=alert_id), [])
    return [TrailOut.model_validate(t) for t in trail]
