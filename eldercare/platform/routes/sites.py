"""Sites: homes, community stations, institutions."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter

from eldercare.platform.deps import AdminUser, ConnDep, RegistryReader
from eldercare.platform.errors import not_found
from eldercare.platform.repo import registry
from eldercare.platform.routes import ERRORS
from eldercare.platform.schemas import SiteIn, SiteOut, SitePatch

router = APIRouter(prefix="/sites", tags=["sites"], responses=ERRORS)


@router.get("", response_model=list[SiteOut])
async def list_sites(
    user: RegistryReader, conn: ConnDep, kind: Literal["home", "station", "institution"] | None = None
) -> list[SiteOut]:
    """Sites in scope (care workers: where their residents live or attend; testers: simulated)."""
    return [SiteOut.model_validate(r) for r in await registry.list_sites(conn, user=user, kind=kind)]


@router.post("", response_model=SiteOut, status_code=201)
async def create_site(_: AdminUser, body: SiteIn, conn: ConnDep) -> SiteOut:
    return SiteOut.model_validate(await registry.insert(conn, table="sites", fields=body.model_dump()))


@router.get("/{site_id}", response_model=SiteOut)
async def get_site(user: RegistryReader, site_id: str, conn: ConnDep) -> SiteOut:
    row = await registry.get_site(conn, user=user, site_id=site_id)
    if row is None:
        raise not_found("site", site_id)
    return SiteOut.model_validate(row)


@router.patch("/{site_id}", response_model=SiteOut)
async def update_site(_: AdminUser, site_id: str, body: SitePatch, conn: ConnDep) -> SiteOut:
    fields = body.model_dump(exclude_unset=True)
    row = await registry.update(conn, table="sites", key={"id": site_id}, fields=fields)
    if row is None:
        raise not_found("site", site_id)
    return SiteOut.model_validate(row)


@router.delete("/{site_id}", status_code=204)
async def delete_site(_: AdminUser, site_id: str, conn: ConnDep) -> None:
    """Delete an empty site (409 while residents or gateways still refer to it)."""
    if not await registry.delete(conn, table="sites", key={"id": site_id}):
        raise not_found("site", site_id)
