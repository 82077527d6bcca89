"""Access: every route of the OpenAPI walked as a family member of another resident; scope per role;
consent per stream; audit of every read (real PostgreSQL through httpx)."""

from __future__ import annotations

import asyncio
import json
import re
from typing import TYPE_CHECKING, Any

import psycopg
from platform_seed import World

from eldercare.platform.repo import alerts as alerts_repo
from eldercare.platform.repo.connections import connect

if TYPE_CHECKING:
    from platform_api_support import Api

pytest_plugins = ["platform_api_support"]

# Routes a family member may use whatever the resident: their own account.
SELF_SERVICE = {
    ("POST", "/api/v1/auth/token"),
    ("POST", "/api/v1/auth/refresh"),
    ("POST", "/api/v1/auth/logout"),
    ("GET", "/api/v1/auth/me"),
    ("PUT", "/api/v1/auth/me/locale"),
    ("PUT", "/api/v1/auth/me/password"),
}
# Lists that are filtered to the caller's own relatives: allowed, but must show nothing of res-1.
SCOPED_LISTS = {("GET", "/api/v1/residents"), ("GET", "/api/v1/alerts")}
LEAKS = ("res-1", "home-1", "Wang Fang", "gw-home-1")


def _open_alert(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "INSERT INTO alerts (kind, severity, resident_id, site_id, dedup_key, title, detected_at)"
            " VALUES ('fall', 'critical', 'res-1', 'home-1', 'res-1:fall', 'Fall', now()) RETURNING id"
        ).fetchone()
        assert row is not None
        conn.execute("INSERT INTO alert_trail (alert_id, action, tier) VALUES (%s, 'opened', 1)", (row[0],))
        return int(row[0])


def _path_values(world: World, alert_id: int) -> dict[str, str]:
    return {
        "resident_id": "res-1",
        "site_id": "home-1",
        "gateway_id": "gw-home-1",
        "sensor_id": "pir-kitchen",
        "provider_id": "hc-1",
        "user_id": str(world.user_id("family1")),
        "policy_id": str(world.policy_id),
        "shift_id": "1",
        "alert_id": str(alert_id),
    }


def test_family_member_of_another_resident_gets_403_or_404_on_every_route(
    api: Api, world: World, db_url: str
) -> None:
    alert_id = _open_alert(db_url)
    values = _path_values(world, alert_id)
    spec = api.client.get("/openapi.json").json()
    walked = 0
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            method = method.upper()
            if (method, path) in SELF_SERVICE:
                continue
            url = re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), "1"), path)
            params: dict[str, Any] = {}
            for p in op.get("parameters", []):
                if p["in"] == "query" and p["name"] in ("resident_id", "site_id", "gateway_id"):
                    params[p["name"]] = values[p["name"]]
            kw: dict[str, Any] = {"params": params}
            if "requestBody" in op:
                kw["json"] = {}
            r = api.client.request(method, url, headers=api.as_("family2"), **kw)
            walked += 1
            if (method, path) in SCOPED_LISTS and r.status_code == 200:
                body = json.dumps(r.json(), ensure_ascii=False)
                assert not any(x in body for x in LEAKS), f"{method} {url} leaks res-1's data: {body[:200]}"
                continue
            assert r.status_code in (403, 404), f"{method} {url} -> {r.status_code} {r.text[:200]}"
            assert isinstance(r.json()["detail"], str) and r.json()["detail"]
    assert walked >= 40  # the whole API was walked, not an empty spec


def test_the_same_routes_work_for_the_residents_own_family(api: Api, world: World) -> None:
    assert api.get("family1", "/api/v1/residents/res-1").status_code == 200
    assert api.get("family1", "/api/v1/residents/res-1/summary").status_code == 200
    ids = [r["id"] for r in api.get("family1", "/api/v1/residents").json()]
    assert ids == ["res-1"]
    assert api.get("family1", "/api/v1/residents/res-1").json()["notes"] is None
    # the portal names the provider and its number, not its id (the family may not list /providers)
    record = api.get("family1", "/api/v1/residents/res-1").json()
    assert (record["home_care_provider_name"], record["home_care_provider_phone"]) == (
        "Sunrise Home Care",
        "021-1000",
    )
    # raw activity needs consent: 403 (in scope, but not allowed), not 404
    r = api.get("family1", "/api/v1/residents/res-1/timeline")
    assert r.status_code == 403 and "授权" in r.json()["detail"]  # family1 reads zh-CN
    r = api.get("family1", "/api/v1/residents/res-1/timeline", headers={"Accept-Language": "en"})
    assert r.status_code == 403  # the account's locale wins over the header once signed in


SCOPE = {
    "admin": {"res-1", "res-2", "sim-res-1"},
    "worker1": {"res-1", "sim-res-1"},  # hc-1 serves both; assigned to res-1
    "worker2": {"res-2"},
    "station1": {"res-1"},  # res-1 attends station-1
    "nurse1": {"res-1"},  # inst-1 is res-1's institution
    "family1": {"res-1"},
    "family2": {"res-2"},
    "tester": {"sim-res-1"},
}


def test_resident_scope_per_role(api: Api, world: World) -> None:
    for who, visible in SCOPE.items():
        listed = {r["id"] for r in api.get(who, "/api/v1/residents").json()}
        assert listed == visible, who
        for rid in world.residents:
            r = api.get(who, f"/api/v1/residents/{rid}/summary")
            assert r.status_code == (200 if rid in visible else 404), (who, rid, r.text)


def test_sites_and_gateways_scope(api: Api) -> None:
    assert {s["id"] for s in api.get("tester", "/api/v1/sites").json()} == {"sim-home-1"}
    assert {s["id"] for s in api.get("worker2", "/api/v1/sites").json()} == {"home-2"}
    worker1_sites = {s["id"] for s in api.get("worker1", "/api/v1/sites").json()}
    assert worker1_sites == {"home-1", "station-1", "sim-home-1"}
    assert api.get("worker2", "/api/v1/gateways/gw-home-1").status_code == 404
    assert api.get("worker1", "/api/v1/gateways/gw-home-1").status_code == 200
    assert api.get("tester", "/api/v1/gateways/gw-home-1").status_code == 404
    assert api.get("family1", "/api/v1/gateways/gw-home-1").status_code == 403
    # care workers read, never change, the registry
    r = api.put("worker1", "/api/v1/gateways/gw-home-1/config", json={"config": {}})
    assert r.status_code == 403


def test_consent_per_stream_and_viewer(api: Api, world: World) -> None:
    fid = world.user_id("family1")
    r = api.put(
        "worker1", f"/api/v1/residents/res-1/family/{fid}/consent", json={"consent": {"activity": True}}
    )
    assert r.status_code == 200 and r.json()["consent"] == {"activity": True}
    r = api.get("family1", "/api/v1/residents/res-1/timeline")
    assert r.status_code == 200
    assert set(r.json()["hidden_streams"]) == {"bed", "bathroom", "vitals"}
    # a stream that does not exist is refused with the field named
    r = api.put("admin", f"/api/v1/residents/res-1/family/{fid}/consent", json={"consent": {"diary": True}})
    assert r.status_code == 422 and "consent" in r.json()["detail"]
    # family members cannot grant themselves consent
    r = api.put("family1", f"/api/v1/residents/res-1/family/{fid}/consent", json={"consent": {"bed": True}})
    assert r.status_code == 403
    # worker2 does not serve res-1: not found, whatever the body
    r = api.put("worker2", f"/api/v1/residents/res-1/family/{fid}/consent", json={"consent": {"bed": True}})
    assert r.status_code == 404


def test_every_read_of_a_residents_data_is_audited(api: Api, world: World, db_url: str) -> None:
    api.get("family1", "/api/v1/residents/res-1/summary")
    api.get("worker1", "/api/v1/residents/res-1")
    api.get("worker2", "/api/v1/residents/res-1")  # refused: nothing was read
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT username, action, resident_id, route FROM audit_log"
            " WHERE resident_id = 'res-1' ORDER BY id"
        ).fetchall()
    assert ("family1", "read:summary", "res-1", "GET /api/v1/residents/res-1/summary") in rows
    assert ("worker1", "read:profile", "res-1", "GET /api/v1/residents/res-1") in rows
    assert not any(r[0] == "worker2" for r in rows)
    r = api.get("admin", "/api/v1/audit", params={"resident_id": "res-1"})
    assert r.status_code == 200 and {a["username"] for a in r.json()} >= {"family1", "worker1"}
    assert api.get("worker1", "/api/v1/audit").status_code == 403


def test_audit_actions_are_codes_and_old_sentences_are_read_as_codes(api: Api, db_url: str) -> None:
    """Four resident checks were audited as English sentences ("view a resident's alert limits:profile"):
    they write codes now, and rows stored before are read back as those codes."""
    limits = "/api/v1/residents/res-1/inactivity-limits"
    assert api.get("worker1", limits).status_code == 200
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO audit_log (username, action, resident_id) VALUES"
            " ('old', 'view a resident''s alert limits:profile', 'res-1'),"
            " ('old', 'change residents:profile', 'res-1')"
        )
    rows = api.get("admin", "/api/v1/audit", params={"resident_id": "res-1"}).json()
    actions = [(r["username"], r["action"]) for r in rows]
    assert ("worker1", "read_limits:profile") in actions
    assert ("old", "read_limits:profile") in actions and ("old", "update_resident:profile") in actions
    assert [a for _, a in actions if not re.fullmatch(r"[a-z_0-9]+(:[a-z_0-9]+)*", a)] == []
    # a refusal says what was refused in the reader's words, not with the code
    zh = api.get("family1", limits, headers={"Accept-Language": "zh-CN"})
    assert zh.status_code == 403 and zh.json()["detail"] == "您的角色（家属）无权查看长者的提醒阈值。"


def test_site_access_helper_for_device_alerts(db_url: str, world: World) -> None:
    """The helper the alert routes use for site-level alerts (device offline, no resident)."""
    import asyncio

    from eldercare.platform.access import Principal, require_site_access
    from eldercare.platform.errors import ApiError
    from eldercare.platform.repo.connections import connect

    def who(name: str, role: str, provider: str | None = None) -> Principal:
        return Principal(world.user_id(name), name, name, role, provider, "en")  # type: ignore[arg-type]

    async def check(user: Principal, site: str) -> bool:
        async with await connect(db_url) as conn:
            try:
                await require_site_access(conn, user, site)
            except ApiError as exc:
                assert exc.status == 404
                return False
            return True

    cases = [
        (who("family1", "family"), "home-1", True),
        (who("family1", "family"), "home-2", False),
        (who("family1", "family"), "station-1", False),
        (who("worker2", "care_worker", "hc-2"), "home-2", True),
        (who("worker2", "care_worker", "hc-2"), "home-1", False),
        (who("station1", "care_worker", "st-1"), "station-1", True),
        (who("tester", "tester"), "sim-home-1", True),
        (who("tester", "tester"), "home-1", False),
        (who("admin", "admin"), "inst-site-1", True),
    ]
    for user, site, expected in cases:
        assert asyncio.run(check(user, site)) is expected, (user.username, site)


def test_who_is_called_follows_a_role_or_provider_changed_after_the_roster(
    api: Api, world: World, db_url: str
) -> None:
    """A nurse made a family account, or a station worker moved to another provider, stayed on
    their old provider's roster and care teams: still listed as on duty to families and still
    notified (pushes, e-mails) of residents they may no longer see."""

    def on_duty() -> set[tuple[str, str]]:
        r = api.get("family1", "/api/v1/residents/res-1/on-duty")
        assert r.status_code == 200, r.text
        return {(p["display_name"], p["role"]) for p in r.json()}

    assert on_duty() == {
        ("Zhang Min", "assigned_worker"), ("Liu Yang", "station_on_duty"), ("Zhao Li", "institution_on_duty"),
    }  # fmt: skip
    changes = {
        "nurse1": {"role": "family", "provider_id": None},
        "station1": {"provider_id": "hc-2"},
        "worker1": {"role": "tester", "provider_id": None},
    }
    for who, change in changes.items():
        assert api.patch("admin", f"/api/v1/users/{world.user_id(who)}", json=change).status_code == 200
    assert on_duty() == set()
    assert api.get("station1", "/api/v1/residents/res-1").status_code == 404  # as they now see it
    # a relative's account made a care worker's is no longer called as the family either
    assert api.patch("admin", f"/api/v1/users/{world.user_id('family1')}", json={"role": "care_worker",
                     "provider_id": "hc-2"}).status_code == 200  # fmt: skip
    assert _called(db_url, ("family",)) == []


def _called(db_url: str, targets: tuple[str, ...]) -> list[str]:
    async def main() -> list[str]:
        async with await connect(db_url) as conn:
            people = await alerts_repo.recipients(conn, targets=targets, resident="res-1", site=None)
            return [p["username"] for p in people]

    return asyncio.run(main())


def test_a_care_worker_links_only_people_of_their_residents_chain(api: Api, world: World) -> None:
    """A care worker tried family account ids one by one and linked another provider's relatives
    (their user name and display name came back), and added another provider's care worker to
    their resident's care team (found by the outside API check, round 4). Admins may do both."""
    family2, family1, worker2 = world.user_id("family2"), world.user_id("family1"), world.user_id("worker2")
    link = {"user_id": family2, "relation": "son"}
    r = api.put("worker1", f"/api/v1/residents/res-1/family/{family2}", json=link)
    assert r.status_code == 404 and "family2" not in r.text, r.text  # res-2's relative: not theirs to see
    link = {"user_id": family1, "relation": "daughter"}
    assert api.put("worker1", f"/api/v1/residents/res-1/family/{family1}", json=link).status_code == 200
    r = api.post("worker1", "/api/v1/residents/res-1/care-team", json={"user_id": worker2})
    assert r.status_code == 422 and "worker2" not in r.text, r.text
    assert all(
        m["user_id"] != worker2 for m in api.get("worker1", "/api/v1/residents/res-1/care-team").json()
    )
    # an admin links across providers
    link = {"user_id": family2, "relation": "son"}
    assert api.put("admin", f"/api/v1/residents/res-1/family/{family2}", json=link).status_code == 200
    assert (
        api.post("admin", "/api/v1/residents/res-1/care-team", json={"user_id": worker2}).status_code == 201
    )
