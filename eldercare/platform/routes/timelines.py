"""Resident timelines (hourly activity per room) and daily summaries."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query

from eldercare.platform import daily
from eldercare.platform.access import RAW_STREAMS, ResidentAccess, derived_view
from eldercare.platform.deps import ConnDep, resident_access
from eldercare.platform.errors import ApiError, not_found
from eldercare.platform.repo import timeline as repo
from eldercare.platform.routes import ERRORS, ApiRoute
from eldercare.platform.schemas import Day, Instant, SleepOut, SummaryOut, TimelineCell, TimelineOut

router = APIRouter(route_class=ApiRoute, prefix="/residents", tags=["timelines"], responses=ERRORS)
MAX_DAYS = 92


@router.get("/{resident_id}/timeline", response_model=TimelineOut)
async def get_timeline(
    grant: Annotated[ResidentAccess, Depends(resident_access("activity"))],
    conn: ConnDep,
    start: Annotated[Instant | None, Query(description="Default: 24 h before end")] = None,
    end: Annotated[Instant | None, Query(description="Default: now")] = None,
    room: str | None = None,
) -> TimelineOut:
    """Hourly counts per room and sensor from the rollup; streams without consent are left out."""
    end = end or datetime.now(UTC)
    start = start or end - timedelta(days=1)
    if not start < end or end - start > timedelta(days=MAX_DAYS):
        raise ApiError(422, "invalid.range", at="start", days=MAX_DAYS)
    streams: list[str] = [str(s) for s in RAW_STREAMS if grant.allows(s)]
    rows = await repo.timeline(
        conn, resident_id=grant.resident_id, start=start, end=end, streams=streams, room=room
    )
    return TimelineOut(
        resident_id=grant.resident_id,
        start=start,
        end=end,
        hidden_streams=[s for s in RAW_STREAMS if s not in streams],
        cells=[TimelineCell.model_validate(r) for r in rows],
    )


@router.get("/{resident_id}/summary", response_model=SummaryOut)
async def get_summary(
    grant: Annotated[ResidentAccess, Depends(resident_access("summary"))],
    conn: ConnDep,
    day: Annotated[Day | None, Query(description="Local date at the home; default today")] = None,
) -> SummaryOut:
    """The day at a glance: last activity, at home or out, last night's sleep, open alerts.

    Derived from raw streams, last night's sleep (bed) and the room of the last activity
    (activity, bathroom) are shown only with consent for them, and listed in ``hidden_fields``.
    """
    home = await repo.home_of(conn, resident_id=grant.resident_id)
    if home is None:
        raise not_found("resident", grant.resident_id)
    tz = ZoneInfo(home["timezone"])
    now = datetime.now(UTC)
    day = day or now.astimezone(tz).date()
    day_start = datetime.combine(day, time(0), tz)
    day_end = min(day_start + timedelta(days=1), now)
    site = home["home_site_id"]
    last = await repo.last_sensor_activity(conn, site_id=site, since=day_end - timedelta(days=7))
    last = [r for r in last if r["ts"] <= day_end]
    motion = [r for r in last if r["kind"] in ("pir", "plug", "bed")]
    latest = max(motion, key=lambda r: r["ts"], default=None)
    doors = [r["ts"] for r in last if r["kind"] == "door"]
    where = daily.presence(latest["ts"] if latest else None, max(doors, default=None), day_end)
    night_start = day_start - timedelta(hours=6)  # 18:00 the evening before
    night_end = day_start + timedelta(hours=12)
    samples = await repo.bed_samples(
        conn, site_id=site, resident_id=grant.resident_id, start=night_start, end=min(night_end, now)
    )
    slept = daily.sleep(samples, min(night_end, now))
    sleep_out = SleepOut(**slept.__dict__) if slept else None
    sleep_out, last_room, hidden = derived_view(
        grant, sleep=sleep_out, last_room=latest["room"] if latest else None
    )
    return SummaryOut(
        resident_id=grant.resident_id,
        name=home["name"],
        day=day,
        timezone=home["timezone"],
        last_activity_at=latest["ts"] if latest else None,
        last_activity_room=last_room,
        presence=where.state,
        presence_since=where.since,
        sleep_last_night=sleep_out,
        hidden_fields=hidden,
        shared_streams=[str(s) for s in RAW_STREAMS if grant.allows(s)],
        active_hours_today=await repo.active_hours(conn, site_id=site, start=day_start, end=day_end),
        open_alerts=await repo.open_alerts(conn, resident_id=grant.resident_id),
    )
