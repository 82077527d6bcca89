"""All SQL of the platform's API, one module per area; functions take keyword-only arguments.

Scope fragments here express design.md's access rules in SQL, so that lists are filtered in the
database and a single resident's visibility is one indexed lookup. Their parameters are named
``scope_uid``, ``scope_pid`` and always passed through :func:`scope_params`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from psycopg import sql

if TYPE_CHECKING:
    from eldercare.platform.access import Principal


class RepoError(Exception):
    """A storage-level refusal the API turns into a 4xx answer."""


def scope_params(user: Principal) -> dict[str, Any]:
    return {"scope_uid": user.id, "scope_pid": user.provider_id}


def resident_scope(user: Principal, alias: str = "r") -> sql.Composable:
    """A boolean SQL expression: resident ``alias`` is visible to ``user``."""
    r = sql.Identifier(alias)
    if user.role == "admin":
        return sql.SQL("true")
    if user.role == "tester":
        return sql.SQL("{r}.simulated").format(r=r)
    if user.role == "family":
        return sql.SQL(
            "EXISTS (SELECT 1 FROM family_links fl_s WHERE fl_s.resident_id = {r}.id"
            " AND fl_s.user_id = %(scope_uid)s)"
        ).format(r=r)
    if user.role == "care_worker":
        return sql.SQL(
            "({r}.home_care_provider_id = %(scope_pid)s OR {r}.institution_provider_id = %(scope_pid)s"
            " OR EXISTS (SELECT 1 FROM sites st_s WHERE st_s.id = {r}.station_site_id"
            " AND st_s.provider_id = %(scope_pid)s)"
            " OR EXISTS (SELECT 1 FROM care_assignments ca_s WHERE ca_s.resident_id = {r}.id"
            " AND ca_s.user_id = %(scope_uid)s))"
        ).format(r=r)
    return sql.SQL("false")


def site_scope(user: Principal, alias: str = "s") -> sql.Composable:
    """A boolean SQL expression: site ``alias`` is visible to ``user`` (family: none)."""
    s = sql.Identifier(alias)
    if user.role == "admin":
        return sql.SQL("true")
    if user.role == "tester":
        return sql.SQL("{s}.simulated").format(s=s)
    if user.role == "care_worker":
        return sql.SQL(
            "({s}.provider_id = %(scope_pid)s OR EXISTS (SELECT 1 FROM residents r_s"
            " WHERE (r_s.home_site_id = {s}.id OR r_s.station_site_id = {s}.id) AND {rs}))"
        ).format(s=s, rs=resident_scope(user, "r_s"))
    return sql.SQL("false")
