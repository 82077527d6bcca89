"""Sites: homes, community stations, institutions."""

from __future__ import annotations

from fastapi import APIRouter

from eldercare.platform import access
from eldercare.platform.deps import AdminUser, ConnDep, RegistryReader, RouteDep
from eldercare.platform.errors import not_found
from eldercare.platform.repo import registry
from eldercare.platform.routes import ERRORS, ApiRoute
from eldercare.platform.schemas import SiteIn, SiteKind, SiteOut, SitePatch

router = APIRouter(route_class=ApiRoute, prefix="/sites", tags=["sites"], responses=ERRORS)


@router.get("", response_model=list[SiteOut])
async def list_sites(
    user: RegistryReader,
    conn: ConnDep,
    route: RouteDep,
    kind: SiteKind | None = None,
) -> list[SiteOut]:
    """Sites in scope (care workers: where their residents live or attend; testers: simulated)."""
    rows = await registry.list_sites(conn, user=user, kind=kind)
    await access.audit_change(
        conn, user, "list:sites", target="sites", route=route, extra={"sites": [r["id"] for r in rows]}
    )
    return [SiteOut.model_validate(r) for r in rows]


@router.post("", response_model=SiteOut, status_code=201)
async def create_site(user: AdminUser, body: SiteIn, conn: ConnDep, route: RouteDep) -> SiteOut:
    access.require_writable(user, "site", body.model_fields_set)
    fields = body.model_dump()
    async with conn.transaction():
        row = await registry.insert(conn, table="sites", fields=fields)
        await access.audit_change(
            conn, user, "create:site", target=f"site:{row['id']}", new=row, fields=fields, route=route
        )
    return SiteOut.model_validate(row)


@router.get("/{site_id}", response_model=SiteOut)
async def get_site(user: RegistryReader, site_id: str, conn: ConnDep, route: RouteDep) -> SiteOut:
    row = await registry.get_site(conn, user=user, site_id=site_id)
    if row is None:
        raise not_found("site", site_id)
    await access.audit_change(conn, user, "read:site", target=f"site:{site_id}", route=route)
    return SiteOut.model_validate(row)


@router.patch("/{site_id}", response_model=SiteOut)
async def update_site(
    user: AdminUser, site_id: str, body: SitePatch, conn: ConnDep, route: RouteDep
) -> SiteOut:
    fields = body.model_dump(exclude_unset=True)
    access.require_writable(user, "site", fields)
    async with conn.transaction():
        pair = await registry.change(conn, table="sites", key={"id": site_id}, fields=fields)
        if pair is None:
            raise not_found("site", site_id)
        await access.audit_change(
            conn, user, "update:site", target=f"site:{site_id}", old=pair[0], new=pair[1], fields=fields,
            route=route,
        )  # fmt: skip
    return SiteOut.model_validate(pair[1])


@router.delete("/{site_id}", status_code=204)
async def delete_site(user: AdminUser, site_id: str, conn: ConnDep, route: RouteDep) -> None:
    """Delete an empty site (409 while residents or gateways still refer to it)."""
    async with conn.transaction():
        old = await registry.delete_returning(conn, table="sites", key={"id": site_id})
        if old is None:
            raise not_found("site", site_id)
        await access.audit_change(
            conn, user, "delete:site", target=f"site:{site_id}", old=old, fields=("name", "kind"), route=route
        )
