"""The alert engine's set-aside work: items it failed to process, for an admin to look at and retry."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from eldercare.platform.deps import AdminUser, ConnDep
from eldercare.platform.errors import not_found
from eldercare.platform.repo import work as work_repo
from eldercare.platform.routes import ERRORS, ApiRoute
from eldercare.platform.schemas import DbId, FailedWorkOut

router = APIRouter(route_class=ApiRoute, prefix="/engine", tags=["engine"], responses=ERRORS)


@router.get("/failed-work", response_model=list[FailedWorkOut])
async def list_failed_work(
    _: AdminUser,
    conn: ConnDep,
    before_id: Annotated[
        DbId | None, Query(description="Page on: the smallest id of the previous page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[FailedWorkOut]:
    """Events and statuses the engine set aside after its last attempt failed, newest first, each
    with the error; every one also raised a ``work_failed`` alert for the admins."""
    rows = await work_repo.failed_work(conn, limit=limit, before_id=before_id)
    return [FailedWorkOut.model_validate(r) for r in rows]


@router.post("/failed-work/{work_id}/retry", response_model=dict[str, int])
async def retry_failed_work(work_id: DbId, _: AdminUser, conn: ConnDep) -> dict[str, int]:
    """Put a set-aside item back on the queue (once whatever made it fail is fixed)."""
    async with conn.transaction():
        if not await work_repo.retry_failed_work(conn, work_id=work_id):
            raise not_found("failed work item", work_id)
    return {"id": work_id}
