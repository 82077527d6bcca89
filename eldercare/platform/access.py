"""Who may see what: roles, resident scope and consent per data stream (design.md, Access).

- ``admin`` sees everything.
- ``care_worker`` sees the residents their provider serves (home care, institution, or the station
  the resident attends) and those they are assigned to.
- ``family`` sees only their own relatives, and of them by default only the profile, the daily
  summary and alerts; raw streams (activity, bed, bathroom, vitals) need the resident's consent
  recorded on the family link.
- ``tester`` sees only simulated residents and sites.

Out-of-scope resources answer 404 (existence does not leak); a role that may never do something
answers 403. Every granted access to a resident's data is written to the audit log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from psycopg import AsyncConnection

from eldercare.platform.errors import ApiError, not_found, role_denied
from eldercare.platform.repo import audit as audit_repo
from eldercare.platform.repo import users as users_repo

Role = Literal["admin", "care_worker", "family", "tester"]
ROLES: tuple[Role, ...] = ("admin", "care_worker", "family", "tester")
Stream = Literal["profile", "summary", "alerts", "activity", "bed", "bathroom", "vitals"]
STREAMS: tuple[Stream, ...] = ("profile", "summary", "alerts", "activity", "bed", "bathroom", "vitals")
RAW_STREAMS: tuple[Stream, ...] = ("activity", "bed", "bathroom", "vitals")
FAMILY_DEFAULT: frozenset[str] = frozenset({"profile", "summary", "alerts"})


@dataclass(frozen=True)
class Principal:
    """The signed-in user as the access checks need it."""

    id: int
    username: str
    display_name: str
    role: Role
    provider_id: str | None
    locale: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True)
class ResidentAccess:
    """A granted access to one resident: which raw streams the caller may see."""

    resident_id: str
    simulated: bool
    streams: frozenset[str] = field(default_factory=frozenset)

    def allows(self, stream: str) -> bool:
        return stream in self.streams


def streams_for(user: Principal, consent: dict[str, Any] | None) -> frozenset[str]:
    """The streams a user in scope may read; only family members are limited by consent."""
    if user.role != "family":
        return frozenset(STREAMS)
    granted = {k for k, v in (consent or {}).items() if v is True and k in STREAMS}
    return FAMILY_DEFAULT | granted


def require_role(user: Principal, roles: tuple[str, ...], action: str) -> None:
    if user.role not in roles:
        raise role_denied(user.role, action)


async def require_resident_access(
    conn: AsyncConnection[Any],
    user: Principal,
    resident_id: str,
    stream: Stream,
    *,
    route: str | None = None,
    action: str = "read",
) -> ResidentAccess:
    """Check scope and consent for ``stream`` of one resident, audit the access, return the grant.

    Raises 404 when the resident is missing or outside the caller's scope, 403 when in scope but
    the family member's consent does not cover the stream.
    """
    row = await users_repo.resident_visibility(conn, user=user, resident_id=resident_id)
    if row is None:
        raise not_found("resident", resident_id)
    grant = ResidentAccess(resident_id, bool(row["simulated"]), streams_for(user, row["consent"]))
    if not grant.allows(stream):
        raise ApiError(403, "consent.denied", stream=stream)
    await audit_repo.write(
        conn,
        user_id=user.id,
        username=user.username,
        action=f"{action}:{stream}",
        resident_id=resident_id,
        route=route,
    )
    return grant


async def require_site_access(
    conn: AsyncConnection[Any],
    user: Principal,
    site_id: str,
    *,
    route: str | None = None,
    action: str = "read",
) -> None:
    """Check that ``user`` may see site-level data (e.g. a device alert without a resident).

    Admin: any site; care workers: sites of the residents they serve or run by their provider;
    testers: simulated sites; family: the home sites of their own relatives. 404 otherwise.
    """
    if not await users_repo.site_visible(conn, user=user, site_id=site_id):
        raise not_found("site", site_id)
    await audit_repo.write(
        conn,
        user_id=user.id,
        username=user.username,
        action=f"{action}:site",
        route=route,
        detail={"site": site_id},
    )
