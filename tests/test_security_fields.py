"""Field-level authorisation and change auditing (issue 19, item 1)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.rows import dict_row

from eldercare.platform import access, schemas

if TYPE_CHECKING:
    from platform_api_support import Api

pytest_plugins = ["platform_api_support"]

ADMIN_ONLY = {
    "home_care_provider_id": "hc-2",
    "institution_provider_id": None,
    "station_site_id": None,
    "escalation_policy_id": None,
}


def _audit(db_url: str, action: str) -> list[dict[str, Any]]:
    with psycopg.connect(db_url, row_factory=dict_row) as conn:
        return conn.execute("SELECT * FROM audit_log WHERE action = %s ORDER BY id", [action]).fetchall()


def test_writable_fields_are_documented_and_match_the_schemas() -> None:
    doc = (Path(__file__).parents[1] / "docs" / "api.md").read_text()
    assert access.writable_table() in doc
    inputs = {
        "resident": (schemas.ResidentIn, schemas.ResidentPatch),
        "family_link": (schemas.FamilyLinkIn, schemas.ConsentIn),
        "care_team": (schemas.CareAssignmentIn,),
        "site": (schemas.SiteIn, schemas.SitePatch),
        "provider": (schemas.ProviderIn,),
        "shift": (schemas.ShiftIn,),
        "user": (schemas.UserIn, schemas.UserPatch),
        "own_account": (schemas.LocaleIn, schemas.PasswordIn),
        "gateway": (schemas.GatewayIn, schemas.GatewayConfigIn),
        "sensor": (schemas.SensorIn, schemas.SensorPatch),
        "policy": (schemas.PolicyIn,),
    }
    assert set(inputs) == set(access.WRITABLE)
    for record, models in inputs.items():
        declared = set().union(*(m.model_fields for m in models))
        for role, fields in access.WRITABLE[record].items():
            assert fields <= declared, (record, role, fields - declared)
        # a new field in a request schema must be declared for someone (admin at least)
        assert declared <= access.WRITABLE[record]["admin"], (
            record,
            declared - access.WRITABLE[record]["admin"],
        )


def test_station_worker_cannot_move_a_resident(api: Api, db_url: str) -> None:
    for field, value in ADMIN_ONLY.items():
        r = api.patch("station1", "/api/v1/residents/res-1", json={field: value, "notes": "moved"})
        assert r.status_code == 403, (field, r.text)
        assert field in r.json()["detail"]
    row = api.get("admin", "/api/v1/residents/res-1").json()
    assert row["home_care_provider_id"] == "hc-1" and row["station_site_id"] == "station-1"
    assert row["escalation_policy_id"] is not None and row["notes"] != "moved"
    # what a care worker may change still works, and is audited with old and new values
    r = api.patch("station1", "/api/v1/residents/res-1", json={"care_level": "dementia", "notes": "n1"})
    assert r.status_code == 200 and r.json()["care_level"] == "dementia"
    entries = _audit(db_url, "update:resident")
    assert entries[-1]["username"] == "station1" and entries[-1]["resident_id"] == "res-1"
    changes = entries[-1]["detail"]["changes"]
    assert changes["care_level"] == {"old": "partly_dependent", "new": "dementia"}
    assert changes["notes"]["new"] == "n1"
    # the admin may move the resident
    r = api.patch("admin", "/api/v1/residents/res-1", json={"home_care_provider_id": "hc-2"})
    assert r.status_code == 200 and r.json()["home_care_provider_id"] == "hc-2"
    assert _audit(db_url, "update:resident")[-1]["detail"]["changes"] == {
        "home_care_provider_id": {"old": "hc-1", "new": "hc-2"}
    }


def test_secrets_are_masked_in_the_audit(api: Api, db_url: str, world: Any) -> None:
    body = {
        "id": "hc-9",
        "name": "Agency",
        "kind": "home_care",
        "webhook_url": "https://example.org/hook",
        "webhook_secret": "s3cret-s3cret-s3cret",
    }
    assert api.post("admin", "/api/v1/providers", json=body).status_code == 201
    r = api.put("admin", "/api/v1/providers/hc-9", json={**body, "webhook_secret": "another-secret-value"})
    assert r.status_code == 200
    uid = world.user_id("worker2")
    r = api.patch("admin", f"/api/v1/users/{uid}", json={"password": "a-new-password-1", "phone": "123"})
    assert r.status_code == 200
    r = api.post("admin", "/api/v1/gateways/gw-home-1/credentials")
    assert r.status_code == 200
    issued = r.json()["mqtt_password"]
    with psycopg.connect(db_url) as conn:
        text = str(conn.execute("SELECT array_agg(detail::text) FROM audit_log").fetchone())
    for secret in ("s3cret-s3cret-s3cret", "another-secret-value", "a-new-password-1", issued, "$argon2"):
        assert secret not in text
    update = _audit(db_url, "update:provider")[-1]["detail"]["changes"]
    assert update == {"webhook_secret": {"old": "********", "new": "********"}}
    user = _audit(db_url, "update:user")[-1]["detail"]["changes"]
    assert user["password"] == {"old": "********", "new": "********"} and user["phone"]["new"] == "123"
    assert _audit(db_url, "issue:gateway_credentials")[-1]["detail"]["target"] == "gateway:gw-home-1"


def test_registry_changes_are_audited(api: Api, db_url: str, world: Any) -> None:
    assert (
        api.post("admin", "/api/v1/sites", json={"id": "s-9", "kind": "home", "name": "A"}).status_code == 201
    )
    assert api.patch("admin", "/api/v1/sites/s-9", json={"name": "B"}).status_code == 200
    assert api.delete("admin", "/api/v1/sites/s-9").status_code == 204
    assert _audit(db_url, "update:site")[-1]["detail"]["changes"] == {"name": {"old": "A", "new": "B"}}
    assert _audit(db_url, "delete:site")[-1]["detail"]["target"] == "site:s-9"
    tiers = [{"tier": 1, "name": "t", "targets": ["family"], "ack_timeout_s": 60}]
    r = api.post("admin", "/api/v1/policies", json={"name": "p", "tiers": tiers})
    assert r.status_code == 201
    pid = r.json()["id"]
    assert api.put("admin", f"/api/v1/policies/{pid}", json={"name": "p2", "tiers": tiers}).status_code == 200
    assert _audit(db_url, "update:policy")[-1]["detail"]["changes"]["name"] == {"old": "p", "new": "p2"}
    shift = {
        "user_id": world.user_id("station1"),
        "starts_at": "2030-01-01T00:00Z",
        "ends_at": "2030-01-02T00:00Z",
    }
    assert api.post("station1", "/api/v1/providers/st-1/shifts", json=shift).status_code == 201
    assert _audit(db_url, "create:shift")[-1]["username"] == "station1"
    body = {"username": "n-1", "display_name": "N", "password": "long-enough-pw", "role": "family"}
    assert api.post("admin", "/api/v1/users", json=body).status_code == 201
    created = _audit(db_url, "create:user")[-1]["detail"]["changes"]
    assert created["username"]["new"] == "n-1" and created["password"]["new"] == "********"


def test_refusals_and_sensitive_reads_are_audited(api: Api, db_url: str) -> None:
    assert api.get("family1", "/api/v1/sites").status_code == 403
    assert (
        api.patch("station1", "/api/v1/residents/res-1", json={"escalation_policy_id": None}).status_code
        == 403
    )
    assert api.get("worker2", "/api/v1/residents/res-1").status_code == 404
    refused = _audit(db_url, "refused:403")
    assert [(r["username"], r["detail"]["reason"]) for r in refused] == [
        ("family1", "role.denied"),
        ("station1", "field.denied"),
    ]
    assert refused[1]["route"] == "PATCH /api/v1/residents/res-1"
    assert _audit(db_url, "refused:404")[-1]["username"] == "worker2"
    assert api.get("admin", "/api/v1/alerts").status_code == 200
    assert api.get("worker1", "/api/v1/reports/care-quality").status_code == 200
    assert api.get("worker1", "/api/v1/sites/home-1").status_code == 200
    assert api.get("admin", "/api/v1/gateways").status_code == 200
    assert _audit(db_url, "list:alerts")[-1]["username"] == "admin"
    assert _audit(db_url, "read:care_quality")[-1]["username"] == "worker1"
    assert _audit(db_url, "read:site")[-1]["detail"]["target"] == "site:home-1"
    assert "gw-home-1" in _audit(db_url, "list:gateways")[-1]["detail"]["gateways"]
