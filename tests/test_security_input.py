"""Input limits (issue 19, items 2 and 7): every bad request gets a JSON 4xx, never a 500, and
nothing is half-saved; stored data from before the limits cannot break reads."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.types.json import Jsonb

from eldercare.platform.limits import clip_depth, json_depth

if TYPE_CHECKING:
    from platform_api_support import Api
    from platform_seed import World

pytest_plugins = ["platform_api_support"]


def _nested(depth: int) -> Any:
    v: Any = {"name": "x"}
    for _ in range(depth):
        v = {"next": v}
    return v


def _json_4xx(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert isinstance(body["detail"], str) and body["detail"]
    return body  # type: ignore[no-any-return]


def test_json_depth_scan_ignores_brackets_in_strings() -> None:
    assert json_depth(b'{"a": "[[[[[[[[[["}', 3) <= 3
    assert json_depth(json.dumps(_nested(10)).encode(), 5) > 5
    assert json_depth(b'{"a": "\\"[[[[[[[["}', 3) <= 3
    assert clip_depth({"a": {"b": {"c": 1}}}, 2) == {"a": {"b": None}}


def test_nul_in_sign_in_form_is_422_not_500(api: Api) -> None:
    r = api.client.post("/api/v1/auth/token", data={"username": "a\x00b", "password": "x"})
    body = _json_4xx(r, 422)
    assert body["errors"][0]["field"] == "body"


def test_nul_in_query_and_path_is_422(api: Api) -> None:
    _json_4xx(api.get("admin", "/api/v1/alerts?site=a%00b"), 422)
    _json_4xx(api.get("admin", "/api/v1/residents/res%001"), 422)


def test_huge_integers_in_query_and_path_are_422(api: Api) -> None:
    big = 2**63
    for path in (
        f"/api/v1/alerts?before=1.{big}",
        f"/api/v1/alerts?tier={big}",
        f"/api/v1/alerts/{big}",
        f"/api/v1/audit?user_id={big}",
        f"/api/v1/audit?before_id={big}",
        f"/api/v1/users/{big}",
        f"/api/v1/policies/{big}",
        f"/api/v1/engine/failed-work?before_id={big}",
        "/api/v1/engine/failed-work?before_id=0",
    ):
        body = _json_4xx(api.get("admin", path), 422)
        assert body["errors"], path
    # ids the newer routes take: a 422 naming the field, as every other id (they were 404s, or a 422
    # naming no field), and each problem said once (the alert's id was listed twice)
    for path in (
        f"/api/v1/engine/failed-work/{big}/retry",
        f"/api/v1/residents/res-1/inactivity-limits/changes/{big}/undo",
        "/api/v1/residents/res-1/inactivity-limits/changes/0/undo",
        f"/api/v1/alerts/{big}/ack",
    ):
        body = _json_4xx(api.post("admin", path), 422)
        assert len(body["errors"]) == 1 and body["errors"][0]["field"].startswith("path."), (path, body)


def test_extreme_dates_are_422(api: Api) -> None:
    _json_4xx(api.get("admin", "/api/v1/residents/res-1/summary?day=0001-01-01"), 422)
    _json_4xx(api.get("admin", "/api/v1/residents/res-1/summary?day=9999-12-31"), 422)
    _json_4xx(api.get("admin", "/api/v1/residents/res-1/timeline?end=0001-01-01T00:00:00Z"), 422)
    _json_4xx(api.get("admin", "/api/v1/reports/care-quality?since=0001-01-01T00:00:00Z"), 422)
    _json_4xx(api.get("admin", "/api/v1/audit?since=9999-12-31T23:59:59Z"), 422)


def test_deep_json_is_refused_and_not_saved(api: Api) -> None:
    deep = [_nested(300)]
    r = api.patch("worker1", "/api/v1/residents/res-1", json={"emergency_contacts": deep, "notes": "n"})
    _json_4xx(r, 422)
    r = api.get("worker1", "/api/v1/residents/res-1")
    assert r.status_code == 200 and r.json()["notes"] != "n"
    r = api.post(
        "admin", "/api/v1/sites", json={"id": "deep", "kind": "home", "name": "d", "layout": _nested(40)}
    )
    _json_4xx(r, 422)
    assert api.get("admin", "/api/v1/sites/deep").status_code == 404
    shallow = {"emergency_contacts": [_nested(10)]}
    assert api.patch("worker1", "/api/v1/residents/res-1", json=shallow).status_code == 200


def test_stored_deep_json_does_not_break_reads(api: Api, db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE residents SET emergency_contacts = %s WHERE id = 'res-1'", [Jsonb([_nested(300)])]
        )
        conn.execute("UPDATE sites SET layout = %s WHERE id = 'home-1'", [Jsonb(_nested(300))])
    r = api.get("worker1", "/api/v1/residents")
    assert r.status_code == 200 and any(x["id"] == "res-1" for x in r.json())
    assert api.get("family1", "/api/v1/residents/res-1").status_code == 200
    assert api.get("admin", "/api/v1/sites").status_code == 200
    assert api.get("admin", "/api/v1/sites/home-1").status_code == 200


def test_body_size_limit(api: Api) -> None:
    r = api.post(
        "admin",
        "/api/v1/sites",
        json={"id": "big", "kind": "home", "name": "b", "layout": {"x": "y" * 2_000_000}},
    )
    _json_4xx(r, 413)
    assert api.get("admin", "/api/v1/sites/big").status_code == 404
    r = api.patch("admin", "/api/v1/residents/res-1", json={"name": "n" * 5000})
    body = _json_4xx(r, 422)
    assert body["errors"][0]["field"] == "name"
    r = api.patch("admin", "/api/v1/residents/res-1", json={"notes": "n" * 20_000})
    _json_4xx(r, 422)


def test_nul_and_lone_surrogate_in_json_are_422_and_not_saved(api: Api) -> None:
    for raw in (
        '{"notes": "a\\u0000b"}',
        '{"notes": "a\\ud800b"}',
        '{"emergency_contacts": [{"\\u0000": 1}]}',
    ):
        r = api.patch(
            "admin", "/api/v1/residents/res-1", content=raw, headers={"Content-Type": "application/json"}
        )
        _json_4xx(r, 422)
    assert "\x00" not in (api.get("admin", "/api/v1/residents/res-1").json()["notes"] or "")
    r = api.patch("admin", "/api/v1/residents/res-1", json={"notes": "emoji \U0001f600 ok"})
    assert r.status_code == 200 and r.json()["notes"] == "emoji \U0001f600 ok"


def test_malformed_json_answers_401_before_422(api: Api) -> None:
    headers = {"Content-Type": "application/json"}
    r = api.client.patch("/api/v1/residents/res-1", content="{not json", headers=headers)
    _json_4xx(r, 401)
    r = api.client.patch(
        "/api/v1/residents/res-1", content="{not json", headers={**headers, "Authorization": "Bearer forged"}
    )
    _json_4xx(r, 401)
    _json_4xx(api.patch("admin", "/api/v1/residents/res-1", content="{not json", headers=headers), 422)
    revoked = api.as_("worker1")
    assert api.client.post("/api/v1/auth/logout", headers=revoked).status_code == 204
    r = api.client.patch("/api/v1/residents/res-1", content="{not json", headers={**headers, **revoked})
    _json_4xx(r, 401)  # a revoked token is no better than none
    # a public route still says what is wrong with the body
    _json_4xx(api.client.post("/api/v1/auth/refresh", content="{not json", headers=headers), 422)


def test_constraint_text_does_not_leak(api: Api) -> None:
    body = {
        "username": "newbie",
        "display_name": "N",
        "password": "long-enough-pw",
        "role": "care_worker",
        "provider_id": "nowhere",
    }
    r = api.post("admin", "/api/v1/users", json=body, headers={"Accept-Language": "en"})
    detail = _json_4xx(r, 422)["detail"]
    assert "nowhere" in detail and "provider_id" in detail
    for leak in ("violates", "constraint", "fkey", "DETAIL", "Key ("):
        assert leak not in detail
    r = api.post("admin", "/api/v1/gateways/gw-home-1/credentials")
    assert r.status_code == 200
    r = api.put("admin", "/api/v1/gateways/gw-home-1/config", json={"config": {}, "expected_revision": 2**40})
    _json_4xx(r, 422)


def test_body_that_is_not_utf8_is_the_same_422_as_bad_json(api: Api) -> None:
    """Bytes that are not even text (FastAPI's own answer is a bare 400) are refused as bad JSON."""
    headers = {"Content-Type": "application/json"}
    for raw in (b"\xff", b'{"notes": "\xc3("}', b"\xfe\xff\x00{"):
        _json_4xx(api.client.patch("/api/v1/residents/res-1", content=raw, headers=headers), 401)
        body = _json_4xx(api.patch("admin", "/api/v1/residents/res-1", content=raw, headers=headers), 422)
        assert body["errors"][0]["field"] == "body" and body["errors"][0]["type"] == "json_invalid", body
        _json_4xx(api.client.post("/api/v1/auth/refresh", content=raw, headers=headers), 422)
    assert api.get("admin", "/api/v1/residents/res-1").status_code == 200


def test_time_zone_names_that_are_folders_or_too_long_are_422(api: Api) -> None:
    """A time zone is looked up among the known names: "Asia" (a folder) or 300 characters (too
    long for the file system) once opened a file and answered 500."""
    for tz in ("Asia", "x" * 300, "../../../etc/passwd", "Asia/", ""):
        site = {"id": "tz-probe", "kind": "home", "name": "Probe", "timezone": tz}
        body = _json_4xx(api.post("admin", "/api/v1/sites", json=site), 422)
        assert body["errors"][0]["field"] == "timezone", body
    assert api.get("admin", "/api/v1/sites/tz-probe").status_code == 404
    ok = {"id": "tz-probe", "kind": "home", "name": "Probe", "timezone": "Europe/Berlin"}
    assert api.post("admin", "/api/v1/sites", json=ok).status_code == 201


def test_a_bare_number_is_not_a_date_or_time(api: Api) -> None:
    """The schema says ISO 8601 text; ``since=0.5`` would otherwise mean 1970-01-01T00:00:00.5."""
    for query in ("since=0.5", "since=1700000000", "since=-3"):
        body = _json_4xx(api.get("admin", f"/api/v1/audit?{query}"), 422)
        assert body["errors"][0]["type"] == "datetime_type", body
    body = _json_4xx(api.get("admin", "/api/v1/residents/res-1/summary?day=0"), 422)
    assert body["errors"][0]["type"] == "date_type", body
    assert api.get("admin", "/api/v1/audit?since=2026-01-05T08:00:00Z").status_code == 200
    assert api.get("admin", "/api/v1/residents/res-1/summary?day=2026-01-05").status_code == 200


def test_405_names_every_method_of_the_path_and_the_schema_lists_conflicts(api: Api) -> None:
    r = api.client.request("OPTIONS", "/api/v1/gateways")
    assert r.status_code == 405 and set(r.headers["allow"].split(", ")) == {"GET", "POST"}, r.headers
    r = api.client.request("PUT", "/api/v1/residents/res-1")
    assert r.status_code == 405 and "PATCH" in r.headers["allow"] and "GET" in r.headers["allow"]
    r = api.client.request("POST", "/api/v1/gateways/health")  # a fixed path beside {gateway_id}
    assert r.status_code == 405 and r.headers["allow"] == "GET", r.headers
    paths = api.client.get("/openapi.json").json()["paths"]
    create = paths["/api/v1/sites"]["post"]["responses"]
    assert {"409", "413", "422", "503"} <= set(create), sorted(create)
    assert "409" not in paths["/api/v1/sites"]["get"]["responses"]


def test_a_number_is_not_a_boolean_in_a_body(api: Api) -> None:
    """``"simulated": 0`` is refused as the schema says, not read as false."""
    site = {"id": "bool-probe", "kind": "home", "name": "Probe", "simulated": 0}
    body = _json_4xx(api.post("admin", "/api/v1/sites", json=site), 422)
    assert body["errors"][0]["field"] == "simulated", body
    assert api.get("admin", "/api/v1/sites/bool-probe").status_code == 404
    assert api.post("admin", "/api/v1/sites", json={**site, "simulated": False}).status_code == 201


def test_a_number_is_not_a_consent(api: Api, world: World) -> None:
    """``{"vitals": 1}`` was read as consent to the vitals stream: a consent is true or false."""
    uid = world.user_id("family1")
    for path, body in (
        (f"/api/v1/residents/res-1/family/{uid}/consent", {"consent": {"vitals": 1}}),
        (
            f"/api/v1/residents/res-1/family/{uid}",
            {"user_id": uid, "relation": "daughter", "consent": {"bed": "yes"}},
        ),
    ):
        refused = _json_4xx(api.put("worker1", path, json=body), 422)
        assert [e["type"] for e in refused["errors"]] == ["bool_type"], refused
    (link,) = api.get("worker1", "/api/v1/residents/res-1/family").json()
    assert link["consent"] == {}


def test_true_or_false_is_not_a_number_in_a_body(api: Api) -> None:
    """``"expected_revision": false`` would have been read as revision 0; the schema says integer."""
    path = "/api/v1/gateways/gw-home-1/config"
    for value in (False, True):
        body = _json_4xx(api.put("admin", path, json={"config": {}, "expected_revision": value}), 422)
        assert [(e["field"], e["type"]) for e in body["errors"]] == [("expected_revision", "int_type")], body
    assert api.get("admin", "/api/v1/gateways/gw-home-1").json()["config_revision"] == 0
    assert api.put("admin", path, json={"config": {}, "expected_revision": 0}).status_code == 200


def _offers_null(prop: dict[str, Any]) -> bool:
    return prop.get("type") == "null" or any(_offers_null(p) for p in prop.get("anyOf", ()))


def _record(api: Api, path: str) -> dict[str, Any]:
    if "/sensors/" not in path:
        return api.get("admin", path).json()  # type: ignore[no-any-return]
    listing, _, sensor = path.rpartition("/")
    return next(s for s in api.get("admin", listing).json() if s["id"] == sensor)


def test_a_patch_takes_null_exactly_where_the_schema_offers_it(api: Api, world: World) -> None:
    """A generated client sends null only where the schema allows it: such a null clears the field;
    any other null is a 422 naming the field (before: a database error for some, ignored for the
    password), and nothing is changed."""
    doc = api.client.get("/openapi.json").json()
    bodies = doc["components"]["schemas"]
    cases = {
        "/api/v1/users/{user_id}": f"/api/v1/users/{world.user_id('worker1')}",
        "/api/v1/sites/{site_id}": "/api/v1/sites/home-2",
        "/api/v1/residents/{resident_id}": "/api/v1/residents/res-2",
        "/api/v1/gateways/{gateway_id}/sensors/{sensor_id}": "/api/v1/gateways/gw-home-2/sensors/pir-kitchen",
    }
    patched = {p for p, ops in doc["paths"].items() if "patch" in ops}
    assert patched == set(cases), patched
    refused = 0
    for template, path in cases.items():
        ref = doc["paths"][template]["patch"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        props = bodies[ref.rsplit("/", 1)[1]]["properties"]
        before = _record(api, path)
        for name, prop in props.items():
            r = api.patch("admin", path, json={name: None})
            if _offers_null(prop):
                assert r.status_code == 200, (template, name, r.text)
                continue
            refused += 1
            body = _json_4xx(r, 422)
            assert [(e["field"], e["type"]) for e in body["errors"]] == [(name, "null_not_allowed")], body
        after = _record(api, path)
        kept = {k: v for k, v in after.items() if k in props and not _offers_null(props[k])}
        assert kept == {k: before[k] for k in kept}, template
    assert refused >= 10  # names, roles, care levels, layouts, meta, passwords ...
    zh = api.patch("worker1", "/api/v1/residents/res-1", json={"care_level": None}).json()  # zh-CN
    assert [e["type"] for e in zh["errors"]] == ["null_not_allowed"], zh
    assert "省略" in zh["errors"][0]["message"], zh
