"""The audit trail: who read or changed which resident's data (admin only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from eldercare.platform.deps import AdminUser, ConnDep
from eldercare.platform.repo import audit
from eldercare.platform.routes import ERRORS, ApiRoute
from eldercare.platform.schemas import AuditOut, DbId, Instant

router = APIRouter(route_class=ApiRoute, prefix="/audit", tags=["audit"], responses=ERRORS)


@router.get("", response_model=list[AuditOut])
async def search_audit(
    _: AdminUser,
    conn: ConnDep,
    resident_id: str | None = None,
    user_id: DbId | None = None,
    since: Instant | None = None,
    before_id: Annotated[
        DbId | None, Query(description="Page on: the smallest id of the previous page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AuditOut]:
    """Newest first."""
    rows = await audit.search(
        conn, resident_id=resident_id, user_id=user_id, since=since, limit=limit, before_id=before_id
    )
    return [AuditOut.model_validate(r) for r in rows]
