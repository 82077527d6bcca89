"""The role x route matrix (issue 19): every operation of the OpenAPI document, called by every
kind of user and by a stranger. No answer is a 5xx; a stranger gets 401 everywhere but sign-in;
a role that may not call an operation gets 403 (or 404 for what is outside its scope) whatever
it sends, never a validation message; an operation missing from :data:`ALLOWED` fails the test,
so a new route must say who may call it."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from platform_seed import World

if TYPE_CHECKING:
    from platform_api_support import Api

pytest_plugins = ["platform_api_support"]

A, W, F, T = "admin", "care_worker", "family", "tester"
ALL = frozenset({A, W, F, T})
STAFF = frozenset({A, W})
IDENTITIES = {
    "admin": A,
    "worker1": W,
    "worker2": W,
    "station1": W,
    "nurse1": W,
    "family1": F,
    "family2": F,
    "tester": T,
}
PUBLIC = {("post", "/api/v1/auth/token"), ("post", "/api/v1/auth/refresh")}
# (method regex, path regex) -> roles that may call it (scope may still answer 404)
ALLOWED: list[tuple[str, str, frozenset[str]]] = [
    (".*", r"/auth/.*", ALL),
    (".*", r"/users(/.*)?", frozenset({A})),
    ("get", r"/providers(/\{provider_id\}(/members|/shifts)?)?", STAFF),
    ("post|delete", r"/providers/\{provider_id\}/shifts(/\{shift_id\})?", STAFF),
    ("post|put|delete", r"/providers(/\{provider_id\})?", frozenset({A})),
    ("get", r"/sites(/\{site_id\})?", frozenset({A, W, T})),
    ("post|patch|delete", r"/sites(/\{site_id\})?", frozenset({A})),
    ("get", r"/residents", ALL),
    ("post", r"/residents", frozenset({A})),
    ("get", r"/residents/\{resident_id\}(/on-duty|/timeline|/summary)?", ALL),
    ("patch", r"/residents/\{resident_id\}", STAFF),
    (".*", r"/residents/\{resident_id\}/(family|care-team|inactivity-limits).*", STAFF),
    ("get", r"/gateways.*", frozenset({A, W, T})),
    ("post|put|patch|delete", r"/gateways.*", frozenset({A})),
    ("get", r"/policies(/\{policy_id\})?", STAFF),
    ("post|put|delete", r"/policies(/\{policy_id\})?", frozenset({A})),
    ("get", r"/reports/.*", STAFF),
    ("get", r"/audit", frozenset({A})),
    (".*", r"/sim/.*", frozenset({A, T})),
    ("get", r"/alerts(/\{alert_id\})?", ALL),
    ("post", r"/alerts/\{alert_id\}/(ack|notes)", ALL),
    ("post", r"/alerts/\{alert_id\}/resolve", frozenset({A, W, T})),
    (".*", r"/engine/failed-work.*", frozenset({A})),
]


def _allowed(method: str, path: str) -> frozenset[str]:
    short = path.removeprefix("/api/v1")
    for m, p, roles in ALLOWED:
        if re.fullmatch(m, method) and re.fullmatch(p, short):
            return roles
    raise AssertionError(f"{method.upper()} {path} is not in ALLOWED: say who may call it")


def _path(template: str, world: World) -> str:
    values = {
        "resident_id": "res-1",
        "site_id": "no-such-site",  # writes must never touch the seeded world
        "gateway_id": "gw-home-1",
        "provider_id": "hc-1",
        "user_id": "999999",  # no such account: disabling or unlinking must touch no one
        "policy_id": "999999",
        "alert_id": "999999",
        "shift_id": "999999",
        "sensor_id": "no-such-sensor",
        "work_id": "999999",
        "change_id": "999999",
    }
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], template)


def _call(api: Api, who: str | None, method: str, path: str) -> Any:
    kw: dict[str, Any] = {}
    if method in ("post", "put", "patch"):
        kw["json"] = {}
    headers = api.as_(who) if who else {}
    r = api.client.request(method.upper(), path, headers=headers, **kw)
    if who and path.endswith("/auth/logout"):
        api.login(who)  # the logout revoked the cached token
        api._tokens.pop(who, None)
    return r


def test_role_route_matrix(api: Api, world: World) -> None:
    spec = api.client.get("/openapi.json").json()
    operations = [
        (m, p)
        for p, ops in spec["paths"].items()
        for m in ops
        if m in ("get", "post", "put", "patch", "delete")
    ]
    assert len(operations) > 50
    failures = []
    for method, template in operations:
        allowed = _allowed(method, template)
        path = _path(template, world)
        r = _call(api, None, method, path)
        if r.status_code >= 500 or ((method, template) not in PUBLIC and r.status_code != 401):
            failures.append(f"stranger {method.upper()} {path}: {r.status_code}")
        for who, role in IDENTITIES.items():
            r = _call(api, who, method, path)
            if r.status_code >= 500 or not r.headers["content-type"].startswith("application/json"):
                failures.append(f"{who} {method.upper()} {path}: {r.status_code} {r.text[:80]}")
            elif role not in allowed and r.status_code not in (403, 404):
                failures.append(f"{who} ({role}) {method.upper()} {path}: {r.status_code}, expected 403/404")
    assert not failures, "\n".join(failures)
