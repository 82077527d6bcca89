"""A family acknowledgement does not stop escalation (issue 19, item 10): the family member's
"seen / on my way" is recorded, and professionals are still called until a care worker
acknowledges, unless the resident's policy explicitly says otherwise."""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any

import psycopg
from platform_seed import World

from eldercare.platform.engine import service
from eldercare.platform.repo.connections import open_pool

if TYPE_CHECKING:
    from platform_api_support import Api

pytest_plugins = ["platform_api_support"]


def _open_fall(db_url: str) -> int:
    with psycopg.connect(db_url, autocommit=True) as conn:
        (wearable,) = conn.execute(
            "SELECT id FROM sensors WHERE resident_id = 'res-1' AND kind = 'wearable'"
        ).fetchone()  # type: ignore[misc]
        event = {
            "v": 1, "epoch": "epoch-0001", "seq": 1, "t": int(time.time() * 1000), "sensor": wearable,
            "kind": "fall", "confidence": 0.9, "resident": None, "gateway": "gw-home-1", "site": "home-1",
            "evidence": {},
        }  # fmt: skip
        conn.execute(
            "INSERT INTO alert_work (kind, gateway_id, site_id, payload)"
            " VALUES ('event', 'gw-home-1', 'home-1', %s)",
            [json.dumps(event)],
        )
    _engine(db_url, service.process_work)
    with psycopg.connect(db_url) as conn:
        (alert_id,) = conn.execute("SELECT id FROM alerts").fetchone()  # type: ignore[misc]
    return int(alert_id)


def _engine(db_url: str, job: Any) -> Any:
    async def main() -> Any:
        async with open_pool(db_url, min_size=1, max_size=2) as pool:
            return await job(pool)

    return asyncio.run(main())


def _deadline_passes(db_url: str) -> int:
    """Move the alert's deadline into the past (the clock, injected) and run one escalation round."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE alerts SET next_escalation_at = now() - interval '1 second'"
            " WHERE next_escalation_at IS NOT NULL"
        )
    return int(_engine(db_url, service.escalate_due))


def _state(db_url: str) -> tuple[str, int]:
    with psycopg.connect(db_url) as conn:
        return conn.execute("SELECT state, tier FROM alerts").fetchone()  # type: ignore[return-value]


def test_family_ack_is_seen_not_stopping_escalation(api: Api, db_url: str, world: World) -> None:
    alert_id = _open_fall(db_url)
    r = api.post("family1", f"/api/v1/alerts/{alert_id}/ack", json={"on_my_way": True})
    assert r.status_code == 200 and r.json()["state"] == "open", r.text
    assert _deadline_passes(db_url) == 1
    assert _state(db_url) == ("open", 2)  # the station on duty is called all the same
    trail = api.get("worker1", f"/api/v1/alerts/{alert_id}").json()["trail"]
    seen = [t for t in trail if t["action"] == "family_seen"]
    assert len(seen) == 1 and seen[0]["detail"] == {"on_my_way": True}
    # a care worker's acknowledgement stops it
    r = api.post("station1", f"/api/v1/alerts/{alert_id}/ack")
    assert r.status_code == 200 and r.json()["state"] == "acknowledged"
    assert _deadline_passes(db_url) == 0 and _state(db_url) == ("acknowledged", 2)


def test_a_policy_may_let_family_acknowledge(api: Api, db_url: str, world: World) -> None:
    policy = api.get("admin", f"/api/v1/policies/{world.policy_id}").json()
    body = {"name": policy["name"], "tiers": policy["tiers"], "family_ack_stops": True}
    r = api.put("admin", f"/api/v1/policies/{world.policy_id}", json=body)
    assert r.status_code == 200 and r.json()["family_ack_stops"] is True
    alert_id = _open_fall(db_url)
    r = api.post("family1", f"/api/v1/alerts/{alert_id}/ack")
    assert r.status_code == 200 and r.json()["state"] == "acknowledged"
    assert _deadline_passes(db_url) == 0 and _state(db_url) == ("acknowledged", 1)
