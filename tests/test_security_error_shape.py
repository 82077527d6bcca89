"""Every 422 the API gives has the documented shape (docs/api.md, "Errors"): ``detail`` naming
each field and ``errors: [{"field", "message", "type"}]``, whether request validation refused the
request or the route's own code did (a period backwards, a user of the wrong role, a config the
wire protocol refuses); and a value of the wrong JSON type in a body ("60" for a number) is one."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import eldercare.platform.routes as routes_pkg

if TYPE_CHECKING:
    from platform_api_support import Api
    from platform_seed import World

from platform_seed import PASSWORD
from test_platform_access import _path_values

pytest_plugins = ["platform_api_support"]

_RAISED_422 = re.compile(
    r'ApiError\(\s*422(?: if [^,]+ else \d+)?,\s*(f?"[^"]+"|\w+\.key or "[^"]+"|\w+\[[^]]+\])'
)

# raw key expression in routes/*.py -> walked below (the tester's refusal needs a running simulation:
# tests/test_platform_api_sim.py drives one)
WALKED = {
    '"invalid.limit_room"', '"invalid.limit_seconds"', '"invalid.ends_before_start"', '"invalid.not_member"',
    '"invalid.user_mismatch"', '"invalid.user_role"', '"invalid.tiers"', '"invalid.worker_provider"',
    '"invalid.range"', '"invalid.since_until"', '"invalid.config"', 'exc.key or "invalid.value"',
    'f"webhook.{problem}"', "NO_RUNNER[exc.why]",
}  # fmt: skip


def _shape(r: Any, field: str, kind: str) -> dict[str, Any]:
    assert r.status_code == 422, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"detail", "errors"}, body
    assert body["errors"], body
    for e in body["errors"]:
        assert set(e) == {"field", "message", "type"} and all(isinstance(v, str) and v for v in e.values()), e
        assert f"{e['field']}: " in body["detail"] or f"{e['field']}：" in body["detail"], body
    assert (body["errors"][0]["field"], body["errors"][0]["type"]) == (field, kind), body
    return body  # type: ignore[no-any-return]


def test_the_walk_below_covers_every_422_a_route_raises() -> None:
    raised: set[str] = set()
    for path in Path(routes_pkg.__file__).parent.glob("*.py"):
        raised |= set(_RAISED_422.findall(path.read_text()))
    assert raised == WALKED


def test_every_422_a_route_raises_has_the_documented_shape(api: Api, world: World) -> None:
    fam, worker2, worker1 = world.user_id("family1"), world.user_id("worker2"), world.user_id("worker1")
    limits = "/api/v1/residents/res-1/inactivity-limits"
    _shape(api.put("admin", limits, json={"limits": {"garage": 600}}), "limits.garage", "limit_room")
    _shape(api.put("admin", limits, json={"limits": {"bathroom": 1}}), "limits.bathroom", "limit_seconds")
    shift = {"user_id": worker1, "starts_at": "2026-01-02T00:00:00Z", "ends_at": "2026-01-01T00:00:00Z"}
    _shape(api.post("admin", "/api/v1/providers/hc-1/shifts", json=shift), "ends_at", "ends_before_start")
    shift = {**shift, "user_id": worker2, "ends_at": "2026-01-03T00:00:00Z"}
    _shape(api.post("admin", "/api/v1/providers/hc-1/shifts", json=shift), "user_id", "not_member")
    link = {"user_id": worker2, "relation": "son"}
    _shape(api.put("admin", f"/api/v1/residents/res-1/family/{fam}", json=link), "user_id", "user_mismatch")
    link = {"user_id": worker2, "relation": "son"}
    _shape(api.put("admin", f"/api/v1/residents/res-1/family/{worker2}", json=link), "user_id", "user_role")
    team = {"user_id": fam}
    _shape(api.post("admin", "/api/v1/residents/res-1/care-team", json=team), "user_id", "user_role")
    team = {"user_id": worker2}  # of hc-2, which does not serve res-1
    _shape(api.post("worker1", "/api/v1/residents/res-1/care-team", json=team), "user_id", "worker_provider")
    tiers = [{"tier": n, "name": f"t{n}", "targets": ["family"], "ack_timeout_s": 60} for n in (1, 3)]
    _shape(api.post("admin", "/api/v1/policies", json={"name": "gap", "tiers": tiers}), "tiers", "tiers")
    timeline = "/api/v1/residents/res-1/timeline"
    naive = {"start": "2026-01-01T00:00:00", "end": "2026-01-02T00:00:00Z"}
    _shape(api.get("admin", timeline, params=naive), "query.start", "no_timezone")
    backwards = {"start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"}
    _shape(api.get("admin", timeline, params=backwards), "start", "range")
    period = {"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}
    body = _shape(api.get("admin", "/api/v1/reports/care-quality", params=period), "since", "since_until")
    assert body["detail"] == "Invalid request: since: 'since' must be before 'until'.", body
    config = {"config": {"sensors": [{"id": "x", "kind": "no-such-kind"}]}}
    r = api.put("admin", "/api/v1/gateways/gw-home-1/config", json=config)
    assert _shape(r, r.json()["errors"][0]["field"], "config")["errors"][0]["field"].startswith("config."), (
        r.text
    )
    gateway = {"id": "eldercare-ingest", "site_id": "home-1"}
    _shape(api.post("admin", "/api/v1/gateways", json=gateway), "id", "reserved_id")
    hook = {"id": "hook-1", "name": "Hook", "kind": "home_care", "webhook_url": "http://127.0.0.1/x"}
    _shape(api.post("admin", "/api/v1/providers", json=hook), "webhook_url", "webhook_internal")


def test_a_422_in_chinese_names_its_field_once(api: Api, world: World) -> None:
    """worker1 reads zh-CN: the field is named by ``detail`` and not again inside the message."""
    r = api.put("worker1", "/api/v1/residents/res-1/inactivity-limits", json={"limits": {"garage": 600}})
    body = _shape(r, "limits.garage", "limit_room")
    assert "limits.garage" not in body["errors"][0]["message"], body
    assert body["detail"].count("limits.garage") == 1, body


def test_a_reference_the_database_refuses_has_the_documented_shape(api: Api) -> None:
    resident = {"id": "res-ref", "name": "R", "home_site_id": "no-such-site", "care_level": "independent"}
    r = api.post("admin", "/api/v1/residents", json=resident)
    assert r.status_code in (404, 422), r.text
    if r.status_code == 422:
        assert {"detail", "errors"} == set(r.json()), r.text


def _tier(**kw: Any) -> dict[str, Any]:
    return {
        "name": "p",
        "tiers": [{"tier": 1, "name": "t", "targets": ["family"], "ack_timeout_s": 60, **kw}],
    }


LIMITS = "/api/v1/residents/res-1/inactivity-limits"
CONFIG = "/api/v1/gateways/gw-home-1/config"
SITE = {"id": "s-str", "kind": "home", "name": "S"}


@pytest.mark.parametrize(
    ("path", "method", "body", "field", "kind"),
    [
        (CONFIG, "put", {"config": {}, "expected_revision": "0"}, "expected_revision", "int_type"),
        ("/api/v1/sites", "post", {**SITE, "simulated": "false"}, "simulated", "bool_type"),
        (LIMITS, "put", {"limits": {"bathroom": "2700"}}, "limits.bathroom", "float_type"),
        ("/api/v1/policies", "post", _tier(tier="1"), "tiers.0.tier", "int_type"),
        ("/api/v1/policies", "post", _tier(ack_timeout_s=60.5), "tiers.0.ack_timeout_s", "int_type"),
    ],
)
def test_a_value_of_another_json_type_is_refused_naming_the_field(
    api: Api, path: str, method: str, body: dict[str, Any], field: str, kind: str
) -> None:
    """The schema writes JSON types: ``"60"`` is not the number 60 (pydantic's lax mode took it)."""
    r = getattr(api, method)("admin", path, json=body)
    assert [(e["field"], e["type"]) for e in _shape(r, field, kind)["errors"]] == [(field, kind)], r.text


def test_an_integral_number_written_with_a_fraction_is_an_integer(api: Api) -> None:
    """JSON has one number type: ``60.0`` is the integer 60 (as JSON Schema's ``integer`` reads it,
    and as a client's float arithmetic writes it); ``60.5`` stays a 422 (above)."""
    r = api.post("admin", "/api/v1/policies", json=_tier(ack_timeout_s=60.0, tier=1.0))
    assert r.status_code == 201, r.text
    assert r.json()["tiers"][0]["ack_timeout_s"] == 60


def test_query_parameters_are_still_read_from_text(api: Api) -> None:
    r = api.get("admin", "/api/v1/alerts", params={"limit": "5"})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    "raw",
    [
        b'{"id": "dup-1", "kind": "home", "name": "Checked", "name": "Stored"}',
        b'{"id": "dup-1", "kind": "home", "name": "N", "layout": {"w": 1, "w": 2}}',
        b'{"id": "dup-1", "kind": "home", "name": "N", "layout": {"w": NaN}}',
        b'{"id": "dup-1", "kind": "home", "name": "N", "layout": {"w": -Infinity}}',
    ],
)
def test_a_body_json_reads_two_ways_or_not_at_all_is_refused(api: Api, raw: bytes) -> None:
    """Python's parser let the last of two equal keys win (a proxy checking the first one reads
    another request than the API) and took NaN and Infinity, which are not JSON."""
    json_type = {"content-type": "application/json"}
    r = api.post("admin", "/api/v1/sites", content=raw, headers=json_type)
    assert [(e["field"], e["type"]) for e in _shape(r, "body", "json_invalid")["errors"]] == [
        ("body", "json_invalid")
    ]
    assert api.get("admin", "/api/v1/sites/dup-1").status_code == 404
    # before sign-in it is the 401 any body gets
    assert api.client.post("/api/v1/sites", content=raw, headers=json_type).status_code == 401


def test_every_route_reads_json_strictly(api: Api) -> None:
    from fastapi.routing import APIRoute

    from eldercare.platform.routes import JsonRoute

    routes = [r for r in api.client.app.routes if isinstance(r, APIRoute)]
    assert routes and all(isinstance(r, JsonRoute) for r in routes), [
        r.path for r in routes if not isinstance(r, JsonRoute)
    ]


def test_a_body_that_is_not_json_is_answered_in_the_callers_language(api: Api) -> None:
    """Refused before any dependency ran, it was answered in the Accept-Language's (by default
    Chinese) to an admin whose account reads English."""
    r = api.post("admin", "/api/v1/sites", content=b"{", headers={"content-type": "application/json"})
    assert _shape(r, "body", "json_invalid")["detail"].startswith("Invalid request: body: "), r.text
    r = api.post(
        "worker1", "/api/v1/alerts/1/ack", content=b"{", headers={"content-type": "application/json"}
    )
    assert _shape(r, "body", "json_invalid")["detail"].startswith("请求无效"), r.text


@pytest.mark.parametrize("cursor", ["abc", "1.-1", "１.１", "99999999999999999999.1"])
def test_a_cursor_not_of_the_list_is_refused_in_the_readers_words(api: Api, cursor: str) -> None:
    """It said "Value error, not a cursor of this list" (pydantic's English) to every reader, and
    took digits cursor_of never writes (fullwidth ones) as a place in the list."""
    for who, words in (("admin", "not a cursor of this list"), ("worker1", "不是此列表的游标")):
        r = api.get(who, "/api/v1/alerts", params={"before": cursor})
        (problem,) = _shape(r, "query.before", "cursor_invalid")["errors"]
        assert problem["message"].startswith(words) and "Value error" not in r.text, r.text


def test_a_query_parameter_the_route_does_not_take_is_refused_after_authorization(api: Api) -> None:
    """``?status=open`` (the parameter is ``state``) answered every alert, resolved ones too: a
    misspelt filter was ignored as a misspelt body field no longer is."""
    r = api.get("admin", "/api/v1/alerts", params={"status": "open"})
    assert [(e["field"], e["type"]) for e in _shape(r, "query.status", "extra_forbidden")["errors"]] == [
        ("query.status", "extra_forbidden")
    ]
    assert api.get("admin", "/api/v1/alerts", params={"state": "open", "limit": "5"}).status_code == 200
    # who may not call the route learns nothing new: 401, 403 and 404 come first
    assert api.client.get("/api/v1/sites", params={"x": "1"}).status_code == 401
    assert api.get("family1", "/api/v1/sites", params={"x": "1"}).status_code == 403
    assert api.get("family1", "/api/v1/residents/res-2", params={"x": "1"}).status_code == 404
    # and nothing is done
    r = api.put("admin", "/api/v1/auth/me/locale", params={"x": "1"}, json={"locale": "zh-CN"})
    _shape(r, "query.x", "extra_forbidden")
    assert api.get("admin", "/api/v1/auth/me").json()["locale"] == "en"


def test_every_get_of_the_api_refuses_a_query_parameter_it_does_not_take(api: Api, world: World) -> None:
    values = _path_values(world, alert_id=1)
    walked = 0
    for path, ops in api.client.get("/openapi.json").json()["paths"].items():
        if "get" not in ops:
            continue
        url = re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), "1"), path)
        r = api.get("admin", url, params={"zz_unknown": "1"})
        if r.status_code == 404:
            continue
        walked += 1
        assert ("query.zz_unknown", "extra_forbidden") in [
            (e["field"], e["type"]) for e in _shape(r, "query.zz_unknown", "extra_forbidden")["errors"]
        ], (path, r.text)
    assert walked > 20


def test_a_time_without_its_offset_is_refused_everywhere(api: Api, world: World) -> None:
    """A time of which zone? The care-quality report and a new shift compared it with an aware
    one (a 500); the audit log read it in the database session's zone; the timeline refused it."""
    naive = "2026-01-01T00:00:00"
    for who, path in (
        ("admin", "/api/v1/reports/care-quality?since="),
        ("admin", "/api/v1/audit?since="),
        ("tester", "/api/v1/sim/score?since="),
        ("admin", "/api/v1/providers/hc-1/shifts?start="),
        ("admin", "/api/v1/residents/res-1/timeline?end="),
    ):
        r = api.get(who, path + naive)
        field = "query." + path.rsplit("?", 1)[1].rstrip("=")
        assert [(e["field"], e["type"]) for e in _shape(r, field, "no_timezone")["errors"]] == [
            (field, "no_timezone")
        ], (path, r.text)
    shift = {"user_id": world.user_id("worker1"), "starts_at": naive, "ends_at": "2026-01-02T00:00:00Z"}
    _shape(api.post("admin", "/api/v1/providers/hc-1/shifts", json=shift), "starts_at", "no_timezone")
    for offset in ("+14:00", "-12:00", "Z", "+05:45"):
        shift = {**shift, "starts_at": naive + offset}
        assert api.post("admin", "/api/v1/providers/hc-1/shifts", json=shift).status_code == 201, offset


def _open_alert(db_url: str) -> int:
    import psycopg

    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO alerts (kind, severity, resident_id, site_id, dedup_key, title, detected_at)"
            " VALUES ('fall', 'critical', 'res-1', 'home-1', 'res-1:fall', 'Fall', now()) RETURNING id"
        ).fetchone()
        assert row is not None
        conn.execute("INSERT INTO alert_trail (alert_id, action, tier) VALUES (%s, 'opened', 1)", (row[0],))
        return int(row[0])


def test_the_bodies_of_an_alert_refuse_fields_they_do_not_take(api: Api, db_url: str) -> None:
    """Resolve and notes ignored a misspelt field (``"notes"`` for ``"note"``: the alert was
    resolved and the note lost), unlike every other body."""
    alert = _open_alert(db_url)
    for action, body, field in (
        ("resolve", {"outcome": "false_alarm", "notes": "cat on the sensor"}, "notes"),
        ("notes", {"note": "called her", "urgent": True}, "urgent"),
        ("ack", {"note": "on it", "on_my_wya": True}, "on_my_wya"),
    ):
        r = api.post("worker1", f"/api/v1/alerts/{alert}/{action}", json=body)
        assert [(e["field"], e["type"]) for e in _shape(r, field, "extra_forbidden")["errors"]] == [
            (field, "extra_forbidden")
        ], (action, r.text)
    detail = api.get("worker1", f"/api/v1/alerts/{alert}").json()
    assert detail["state"] == "open" and [t["action"] for t in detail["trail"]] == ["opened"], detail


@pytest.mark.parametrize("blank", [" ", "\u200b", "\u200e\u202e", "\t\n", "\u3000"])
def test_a_name_or_note_nobody_can_see_is_refused(api: Api, world: World, db_url: str, blank: str) -> None:
    """A site, resident, provider, policy, account or note named only by spaces, a zero-width
    space or direction marks was saved: a resident shown to the care team with no name."""
    fam = world.user_id("family1")
    for method, path, body, field in (
        ("post", "/api/v1/sites", {"id": "blank-1", "kind": "home", "name": blank}, "name"),
        ("patch", "/api/v1/residents/res-1", {"name": blank}, "name"),
        ("post", "/api/v1/providers", {"id": "blank-1", "name": blank, "kind": "station"}, "name"),
        ("patch", f"/api/v1/users/{fam}", {"display_name": blank}, "display_name"),
        ("put", f"/api/v1/residents/res-1/family/{fam}", {"user_id": fam, "relation": blank}, "relation"),
        ("post", f"/api/v1/alerts/{_open_alert(db_url)}/notes", {"note": blank}, "note"),
    ):
        r = getattr(api, method)("admin", path, json=body)
        assert [(e["field"], e["type"]) for e in _shape(r, field, "blank_text")["errors"]] == [
            (field, "blank_text")
        ], (path, r.text)
    assert api.get("admin", "/api/v1/sites/blank-1").status_code == 404
    assert api.get("admin", "/api/v1/residents/res-1").json()["name"] == "Wang Fang"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_json_body_under_another_content_type_is_told_to_say_json(
    api: Api, content_type: str | None
) -> None:
    """A well-formed JSON object sent as text/plain (or with no Content-Type) was answered
    "body: must be an object", which it is: the fix is the header, and the answer now says so."""
    headers = {"content-type": content_type} if content_type else {}
    raw = b'{"id": "ct-1", "kind": "home", "name": "Home"}'
    r = api.post("admin", "/api/v1/sites", content=raw, headers=headers)
    (problem,) = _shape(r, "body", "content_type")["errors"]
    assert "application/json" in problem["message"], r.text
    assert (
        api.post("admin", "/api/v1/sites", json={"id": "ct-1", "kind": "home", "name": "H"}).status_code
        == 201
    )
    # a JSON body that is not an object is still called that
    r = api.post("admin", "/api/v1/sites", json=["ct-1"])
    _shape(r, "body", "model_attributes_type")


def test_a_sign_in_form_with_a_field_twice_is_refused(api: Api) -> None:
    """``username=admin&...&username=worker1`` signed in as worker1: the last one counted, where a
    proxy or a log reading the first saw another sign-in than the one made."""
    form = "username=admin&password=" + PASSWORD + "&username=worker1"
    headers = {"content-type": "application/x-www-form-urlencoded"}
    r = api.client.post("/api/v1/auth/token", content=form.encode(), headers=headers)
    assert [(e["field"], e["type"]) for e in _shape(r, "username", "duplicate_field")["errors"]] == [
        ("username", "duplicate_field")
    ], r.text
    ok = api.client.post("/api/v1/auth/token", data={"username": "admin", "password": PASSWORD})
    assert ok.status_code == 200, ok.text


def test_a_path_or_method_the_api_has_not_is_answered_in_the_readers_language(api: Api) -> None:
    """404 and 405 said Starlette's "Not Found" and "Method Not Allowed" in English to every reader."""
    zh = {"accept-language": "zh-CN"}
    r = api.client.get("/api/v1/no-such-thing", headers=zh)
    assert (r.status_code, r.json()) == (
        404,
        {"detail": "没有这个路径：/api/v1/no-such-thing。API 的路径见 /docs。"},
    )
    r = api.patch("admin", "/api/v1/sites", json={})
    assert r.status_code == 405 and r.headers["allow"] == "GET, POST", r.text
    assert r.json() == {"detail": "PATCH is not a method of this path; it takes GET, POST."}
    r = api.client.request("DELETE", "/api/v1/sites", headers=zh)
    assert r.json()["detail"].startswith("此路径不支持 DELETE"), r.text


def test_head_is_get_without_its_body(api: Api, world: World) -> None:
    """A client checking a resource with HEAD got 405 from every API route (FastAPI routes HEAD only
    where declared; found by the outside API check, round 4). It is the GET it stands for, bodiless:
    the same status and length, a refusal included; a route without GET stays 405."""
    auth = api.as_("worker1")
    for path in ("/api/v1/residents/res-1", "/api/v1/residents/res-2", "/healthz"):
        got, head = api.client.get(path, headers=auth), api.client.request("HEAD", path, headers=auth)
        assert (head.status_code, head.content) == (got.status_code, b""), path
        assert head.headers["content-length"] == got.headers["content-length"] == str(len(got.content))
    assert api.client.request("HEAD", "/api/v1/residents/res-1").status_code == 401  # signed in first
    assert api.client.request("HEAD", "/api/v1/auth/token").status_code == 405
