"""Care-quality report: how fast the care chain answers, and how often alarms were false."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi import APIRouter

from eldercare.platform.deps import ConnDep, RouteDep, StaffUser
from eldercare.platform.errors import ApiError
from eldercare.platform.repo import audit, report
from eldercare.platform.routes import ERRORS, ApiRoute
from eldercare.platform.schemas import CareQualityOut, Instant

router = APIRouter(route_class=ApiRoute, prefix="/reports", tags=["reports"], responses=ERRORS)


@router.get("/care-quality", response_model=CareQualityOut)
async def care_quality(
    user: StaffUser,
    conn: ConnDep,
    route: RouteDep,
    since: Instant | None = None,
    until: Instant | None = None,
    provider_id: str | None = None,
) -> CareQualityOut:
    """Time to acknowledge / resolve per tier and provider; false-alarm share per detector and resident.

    Care workers see the residents their provider serves; simulated alerts are left out.
    """
    until = until or datetime.now(UTC)
    since = since or until - timedelta(days=30)
    if not since < until:
        raise ApiError(422, "invalid.since_until", at="since")
    data = await report.care_quality(conn, user=user, since=since, until=until, provider_id=provider_id)
    await audit.write(
        conn, user_id=user.id, username=user.username, action="read:care_quality", route=route,
        detail={"since": since.isoformat(), "until": until.isoformat(), "provider_id": provider_id},
    )  # fmt: skip
    return CareQualityOut(since=since, until=until, **data)
