"""A resident's inactivity limits as the care team sees them, sets them and undoes changes to them.

A new home is watched from its first hour with starting limits: the population's, or the ones a
care worker sets for this resident ("bathroom: alert after 45 min"); the detector moves to the
home's own limits as days of history accrue (``learning.own_share``). Outcome feedback on an alert
(false alarm: limits longer; confirmed: shorter) is a change too. Every change is listed with who
made it and why, and any can be undone.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, Field

from eldercare.models.inactivity import InactivityDetector, InactivityError
from eldercare.models.inactivity_profile import LIMIT_ROOMS, population_limits
from eldercare.platform import access
from eldercare.platform.access import ResidentAccess
from eldercare.platform.deps import ConnDep, CurrentUser, RouteDep, resident_admin
from eldercare.platform.engine.inactivity import DETECTOR, starting_limits
from eldercare.platform.errors import ApiError, not_found
from eldercare.platform.repo import thresholds as repo
from eldercare.platform.routes import ERRORS, ApiRoute
from eldercare.platform.schemas import DbId, Strict

router = APIRouter(route_class=ApiRoute, prefix="/residents", tags=["residents"], responses=ERRORS)

LimitsRead = Annotated[ResidentAccess, Depends(resident_admin("read_limits"))]
LimitsWrite = Annotated[ResidentAccess, Depends(resident_admin("update_limits"))]
MIN_LIMIT_S = 5 * 60
MAX_LIMIT_S = 24 * 3600


class RoomLimit(BaseModel):
    room: str
    population_s: tuple[float, float] = Field(
        description="The population's limit over the day (lowest, highest)"
    )
    starting_s: float | None = Field(
        description="This resident's starting limit set by the care team, if any"
    )
    in_effect_s: float | None = Field(
        description="The limit in effect at the home's present hour (null: not fitted)"
    )


class Learning(BaseModel):
    days: float = Field(description="Days of this home's history the detector has learned from")
    grace_days: float
    own_share: float = Field(description="0: the starting limits; 1: entirely the home's own")
    fitted_at: datetime | None
    pending: bool = Field(description="Changed limits not yet applied (at the engine's next check)")


class Change(BaseModel):
    id: int
    at: datetime
    source: str = Field(description="feedback (an alert's outcome), limits (set by the care team), undo")
    actor: str | None = Field(description="Who: the user who resolved the alert or changed the limits")
    alert_id: int | None
    outcome: str | None
    before: dict[str, Any]
    after: dict[str, Any]
    undoes: int | None
    undone_by: int | None


class LimitsOut(BaseModel):
    resident_id: str
    sensitivity: float = Field(description="Divides every limit: below 1 after false alarms (longer limits)")
    learning: Learning
    rooms: list[RoomLimit]
    changes: list[Change]


class LimitsIn(Strict):
    limits: dict[str, float | None] = Field(
        description=f"Seconds by room ({', '.join(LIMIT_ROOMS)}); null: back to the population's",
        examples=[{"bathroom": 2700}],
        # what put_limits accepts, said in the schema (it offered any name and any number)
        json_schema_extra={
            "propertyNames": {"enum": list(LIMIT_ROOMS)},
            "additionalProperties": {
                "anyOf": [
                    {"type": "number", "minimum": MIN_LIMIT_S, "maximum": MAX_LIMIT_S},
                    {"type": "null"},
                ]
            },
        },
    )


def _view(resident: str, row: dict[str, Any], changes: list[dict[str, Any]]) -> LimitsOut:
    state = row.get("state") or {}
    det = None
    if state.get("detector"):
        try:
            det = InactivityDetector.from_dict(state["detector"])
            det.sensitivity = float(row["sensitivity"])
        except InactivityError:
            det = None
    fitted = det is not None and det.profile_ is not None
    clock = state.get("clock")
    home_s = float(clock[1]) if clock else time.time()  # a simulated home's own time
    effect = det.limits_at(home_s) if det is not None and fitted else {}
    mine = starting_limits(row.get("limits"))
    pop = population_limits()
    rooms = [
        RoomLimit(room=r, population_s=pop[r], starting_s=mine.get(r), in_effect_s=effect.get(r))
        for r in LIMIT_ROOMS
    ]
    days = det.profile_.days if det is not None and det.profile_ is not None else 0.0
    learning = Learning(
        days=round(days, 2),
        grace_days=det.grace_days if det is not None else InactivityDetector().grace_days,
        own_share=round(det.own_share(), 3) if det is not None and fitted else 0.0,
        fitted_at=row.get("fitted_at"),
        pending=det is None or det.starting_limits != mine,
    )
    out = [Change(**{**c, "actor": c.get("actor_name") or c.get("actor")}) for c in changes]
    return LimitsOut(
        resident_id=resident,
        sensitivity=float(row["sensitivity"]),
        learning=learning,
        rooms=rooms,
        changes=out,
    )


async def _current(conn: Any, resident: str) -> LimitsOut:
    row = await repo.settings(conn, resident=resident, detector=DETECTOR)
    changes = await repo.changes(conn, resident=resident, detector=DETECTOR)
    return _view(resident, row, changes)


@router.get("/{resident_id}/inactivity-limits", response_model=LimitsOut)
async def get_limits(grant: LimitsRead, conn: ConnDep) -> LimitsOut:
    """The resident's limits: starting (population's or the care team's), in effect now, how far
    learned, and the history of changes (outcome feedback, the care team's, undos)."""
    return await _current(conn, grant.resident_id)


@router.put("/{resident_id}/inactivity-limits", response_model=LimitsOut)
async def put_limits(
    grant: LimitsWrite, body: LimitsIn, user: CurrentUser, conn: ConnDep, route: RouteDep
) -> LimitsOut:
    """Set (or clear, with null) the resident's starting limits by room; applied at the next check."""
    for room, value in body.limits.items():
        if room not in LIMIT_ROOMS:
            raise ApiError(422, "invalid.limit_room", field=f"limits.{room}", rooms=", ".join(LIMIT_ROOMS))
        if value is not None and not MIN_LIMIT_S <= value <= MAX_LIMIT_S:
            raise ApiError(
                422, "invalid.limit_seconds", field=f"limits.{room}", low=MIN_LIMIT_S, high=MAX_LIMIT_S
            )
    rid = grant.resident_id
    async with conn.transaction():
        change = await repo.set_limits(
            conn, resident=rid, detector=DETECTOR, limits=body.limits, actor=user.id
        )
        await access.audit_change(
            conn, user, "update:inactivity_limits", target=f"resident:{rid}", resident_id=rid, route=route,
            extra={"limits": body.limits, "change": change},
        )  # fmt: skip
    return await _current(conn, rid)


@router.post("/{resident_id}/inactivity-limits/changes/{change_id}/undo", response_model=LimitsOut)
async def undo_change(
    grant: LimitsWrite,
    change_id: Annotated[DbId, Path(description="The change to undo")],
    user: CurrentUser,
    conn: ConnDep,
    route: RouteDep,
) -> LimitsOut:
    """Undo one change (its inverse applied to the limits as they are now; later changes stay)."""
    rid = grant.resident_id
    async with conn.transaction():
        try:
            new = await repo.undo(conn, resident=rid, detector=DETECTOR, change=change_id, actor=user.id)
        except repo.AlreadyUndone:
            raise ApiError(409, "limits.undone", id=change_id) from None
        if new is None:
            raise not_found("change", change_id)
        await access.audit_change(
            conn, user, "undo:inactivity_limits", target=f"resident:{rid}", resident_id=rid, route=route,
            extra={"undoes": change_id, "change": new},
        )  # fmt: skip
    return await _current(conn, rid)
