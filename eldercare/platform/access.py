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

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from eldercare import i18n
from eldercare.platform.errors import ApiError, not_found, role_denied
from eldercare.platform.repo import audit as audit_repo
from eldercare.platform.repo import users as users_repo
from eldercare.platform.repo.connections import Conn

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


# Fields each role may set, per kind of record: declared once, enforced by :func:`require_writable`
# on every route that writes, listed in docs/api.md ("Who may change which fields"). A role absent
# from a record's entry may change none of its fields (the route answers 403 before that anyway).
_RESIDENT_CARE = frozenset({"name", "care_level", "phone", "emergency_contacts", "notes"})
_RESIDENT_ADMIN = _RESIDENT_CARE | {
    "id", "home_site_id", "station_site_id", "home_care_provider_id", "institution_provider_id",
    "birth_year", "sex", "escalation_policy_id", "simulated",
}  # fmt: skip
_ALL = ("admin", "care_worker", "family", "tester")
WRITABLE: dict[str, dict[str, frozenset[str]]] = {
    "resident": {"admin": _RESIDENT_ADMIN, "care_worker": _RESIDENT_CARE},
    "family_link": {
        "admin": frozenset({"user_id", "relation", "is_primary", "consent"}),
        "care_worker": frozenset({"user_id", "relation", "is_primary", "consent"}),
    },
    "care_team": {
        "admin": frozenset({"user_id", "role"}),
        "care_worker": frozenset({"user_id", "role"}),
    },
    "site": {
        "admin": frozenset(
            {"id", "kind", "name", "district", "address", "provider_id", "timezone", "layout", "simulated"}
        )
    },
    "provider": {
        "admin": frozenset({"id", "name", "kind", "district", "phone", "webhook_url", "webhook_secret"})
    },
    "shift": {
        "admin": frozenset({"user_id", "starts_at", "ends_at"}),
        "care_worker": frozenset({"user_id", "starts_at", "ends_at"}),
    },
    "user": {
        "admin": frozenset(
            {
                "username",
                "display_name",
                "password",
                "role",
                "provider_id",
                "locale",
                "phone",
                "email",
                "active",
            }
        )
    },
    "own_account": {role: frozenset({"locale", "current_password", "new_password"}) for role in _ALL},
    "gateway": {
        "admin": frozenset({"id", "site_id", "description", "sensors", "config", "expected_revision"})
    },
    "sensor": {"admin": frozenset({"id", "kind", "room", "resident_id", "meta"})},
    "policy": {"admin": frozenset({"name", "tiers", "family_ack_stops"})},
}


def writable_table() -> str:
    """:data:`WRITABLE` as the Markdown table docs/api.md carries (a test keeps them equal)."""
    lines = ["| record | role | fields it may set |", "| --- | --- | --- |"]
    for record, by_role in WRITABLE.items():
        for role in ROLES:
            if role in by_role:
                fields = ", ".join(f"`{f}`" for f in sorted(by_role[role]))
                lines.append(f"| {record} | {role} | {fields} |")
    return "\n".join(lines)


def require_writable(user: Principal, record: str, fields: Iterable[str]) -> None:
    """403 naming the fields ``user``'s role may not set on a ``record`` (see :data:`WRITABLE`)."""
    allowed = WRITABLE[record].get(user.role, frozenset())
    denied = sorted(set(fields) - allowed)
    if denied:
        raise ApiError(403, "field.denied", role=user.role, fields=", ".join(denied))


SECRET_FIELDS = frozenset(
    {"password", "password_hash", "webhook_secret", "mqtt_password", "mqtt_password_hash",
     "broker_password_hash", "current_password", "new_password", "secret"}
)  # fmt: skip
MASK = "********"


def changes(
    old: Mapping[str, Any] | None, new: Mapping[str, Any] | None, fields: Iterable[str]
) -> dict[str, dict[str, Any]]:
    """``{field: {"old": ..., "new": ...}}`` for the fields whose value differs; secrets masked.

    For the audit log: what changed, never what a secret was or became.
    """
    out: dict[str, dict[str, Any]] = {}
    for f in sorted(set(fields)):
        before = None if old is None else old.get(f)
        after = None if new is None else new.get(f)
        if before == after and f not in SECRET_FIELDS:
            continue
        if f in SECRET_FIELDS:
            out[f] = {"old": MASK, "new": MASK}  # set: recorded as changed, never shown
        else:
            out[f] = {"old": _plain(before), "new": _plain(after)}
    return out


def _plain(v: Any) -> Any:
    """A JSON-storable form of a column value (timestamps as ISO text)."""
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return v


async def audit_change(
    conn: Conn,
    user: Principal,
    action: str,
    *,
    target: str,
    old: Mapping[str, Any] | None = None,
    new: Mapping[str, Any] | None = None,
    fields: Iterable[str] = (),
    resident_id: str | None = None,
    route: str | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Write what ``user`` changed (old and new values of ``fields``) to the audit log."""
    detail: dict[str, Any] = {"target": target, **(extra or {})}
    diff = changes(old, new, fields)
    if diff:
        detail["changes"] = diff
    await audit_repo.write(
        conn,
        user_id=user.id,
        username=user.username,
        action=action,
        resident_id=resident_id,
        route=route,
        detail=detail,
    )


def room_stream(room: str | None) -> Stream:
    """The consent stream a room's activity belongs to (the same rule as the timeline's rows)."""
    return "bathroom" if room == "bathroom" else "activity"


def derived_view(
    grant: ResidentAccess, *, sleep: Any, last_room: str | None
) -> tuple[Any, str | None, list[str]]:
    """What of the data derived from raw streams the grant may see: last night's sleep comes from
    the bed sensor (stream ``bed``), the room of the last activity from motion sensors
    (``activity``, or ``bathroom`` for the bathroom). Returns (sleep, last_room, hidden fields);
    a hidden field is None, as if there were nothing to show."""
    hidden: list[str] = []
    if not grant.allows("bed"):
        sleep, hidden = None, [*hidden, "sleep_last_night"]
    if last_room is not None and not grant.allows(room_stream(last_room)):
        last_room, hidden = None, [*hidden, "last_activity_room"]
    return sleep, last_room, hidden


def person_label(viewer: Principal, person: Mapping[str, Any] | None, username: str | None) -> str | None:
    """How a person appears in an alert's trail: staff see user names; a family member sees others
    only by display name and role, the role in the viewer's language (never another relative's or a
    worker's user name)."""
    if username is None:
        return None
    if viewer.role != "family" or username == viewer.username:
        return username
    if person is None:
        return None
    return f"{person['display_name']} ({i18n.word(person['role'], viewer.locale)})"  # "Zhang Min (护理员)"


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
    conn: Conn,
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
    conn: Conn,
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
