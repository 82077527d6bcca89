"""The engine's work queue under bad input and storms: each item on its own, a failing one set aside
with its error (listed for admins, counted in /metrics, raising an operators' alert) after a bounded
number of attempts, never holding up the items behind it; at most a batch per transaction."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from platform_seed import World, seed_world

from eldercare.platform.engine import service
from eldercare.platform.repo import alerts as alerts_repo
from eldercare.platform.repo import work as work_repo
from eldercare.platform.repo.connections import Pool, open_pool

if TYPE_CHECKING:
    from platform_api_support import Api

pytest_plugins = ["platform_api_support"]

NOW_MS = int(time.time() * 1000)


@pytest.fixture
def world(db_url: str) -> World:
    with psycopg.connect(db_url) as conn:
        return seed_world(conn)


def queue(db_url: str, gateway: str, site: str, raw_evidence: str | None = None, **payload: Any) -> int:
    """What ingest writes for an event (``raw_evidence``: JSON text too deep for Python to write)."""
    event = {"v": 1, "epoch": "e-1", "seq": 1, "t": NOW_MS, "confidence": 1.0, "evidence": {}} | payload
    text = json.dumps({"gateway": gateway, "site": site, **event})
    if raw_evidence is not None:
        text = text.replace('"evidence": {}', f'"evidence": {raw_evidence}')
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO alert_work (kind, gateway_id, site_id, payload) VALUES ('event', %s, %s, %s::jsonb)"
            " RETURNING id",
            (gateway, site, text),
        ).fetchone()
    assert row is not None
    return int(row[0])


def with_pool(db_url: str, job: Callable[[Pool], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        async with open_pool(db_url, min_size=1, max_size=4) as pool:
            return await job(pool)

    return asyncio.run(main())


def rows(db_url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(query, params).fetchall()


def drain(pool: Pool) -> Awaitable[int]:
    return service.process_work(pool, retry_s=0.0)


def test_work_queue_claims_at_most_its_batch_per_transaction(db_url: str, world: World) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO alert_work (kind, gateway_id, site_id, payload)"
            " SELECT 'event', 'gw-home-1', 'home-1', jsonb_build_object('gateway', 'gw-home-1',"
            "  'site', 'home-1', 't', %s::bigint, 'sensor', 'bed-1', 'kind', 'bed_exit', 'seq', i)"
            " FROM generate_series(1, 500) i",
            (NOW_MS,),
        )
        conn.execute("ANALYZE alert_work")

    async def claims(pool: Pool) -> tuple[list[int], list[int]]:
        async with pool.connection() as conn, conn.transaction():
            first = [r["id"] for r in await work_repo.claim_work(conn, limit=100)]
            raise psycopg.Rollback  # nothing taken: the claim alone only locks
        per_tx = []
        while n := await service.process_work(pool, limit=100):
            per_tx.append(n)
        return first, per_tx

    lowest = [r[0] for r in rows(db_url, "SELECT id FROM alert_work ORDER BY id LIMIT 100")]
    first, per_tx = with_pool(db_url, claims)
    assert first == lowest  # at most the batch, oldest first
    assert per_tx == [100, 100, 100, 100, 100]
    assert rows(db_url, "SELECT count(*) FROM alert_work") == [(0,)]


def test_one_gateways_flood_does_not_hold_up_another_homes_sos(db_url: str, world: World) -> None:
    """Falls, cancellations and SOS are claimed first: an SOS behind 2,000 bed events of another
    gateway is in the next batch claimed, not after the flood (found by the outside gateway check,
    round 3: 5,000 statuses from one gateway made another home's SOS wait 29 s)."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO alert_work (kind, gateway_id, site_id, payload)"
            " SELECT 'event', 'gw-home-1', 'home-1', jsonb_build_object('gateway', 'gw-home-1',"
            "  'site', 'home-1', 't', %s::bigint, 'sensor', 'bed-1', 'kind', 'bed_exit', 'seq', i)"
            " FROM generate_series(1, 2000) i",
            (NOW_MS,),
        )
    sos = queue(db_url, "gw-home-2", "home-2", sensor="sos-1", kind="sos", resident="res-2", seq=1)
    flood_2 = queue(db_url, "gw-home-1", "home-1", sensor="bed-1", kind="bed_exit", seq=2001)
    assert with_pool(db_url, lambda pool: service.process_work(pool)) == service.WORK_BATCH
    assert rows(db_url, "SELECT kind, resident_id FROM alerts") == [("sos", "res-2")]
    assert rows(db_url, "SELECT count(*) FROM alert_work WHERE id = %s", sos) == [(0,)]
    # the rest of the batch is taken oldest first: the flood's newest item is still queued
    assert rows(db_url, "SELECT count(*) FROM alert_work WHERE id = %s", flood_2) == [(1,)]
    left = 2001 - (service.WORK_BATCH - 1)
    assert rows(db_url, "SELECT count(*) FROM alert_work WHERE gateway_id = 'gw-home-1'") == [(left,)]


def test_a_worker_busy_with_one_gateway_leaves_the_others_ready_for_another_home(
    db_url: str, world: World
) -> None:
    """One worker stuck on one gateway's item (here: waiting for a lock on its resident's alert; in
    the check, 20 falls whose context took 1.5 s each) while another home's SOS is queued: an idle
    worker takes it at once (found by the outside gateway check, round 3: the idle workers had
    ended their drain and the SOS waited for the busy one)."""
    queue(db_url, "gw-home-1", "home-1", sensor="wearable-1", kind="fall", resident="res-1", seq=1)
    assert with_pool(db_url, drain) == 1
    queue(db_url, "gw-home-1", "home-1", sensor="wearable-1", kind="fall", resident="res-1", seq=2)

    async def job(pool: Pool) -> float | None:
        async with await psycopg.AsyncConnection.connect(db_url) as holder:
            await holder.execute("SELECT id FROM alerts WHERE kind = 'fall' FOR UPDATE")  # held
            draining = asyncio.create_task(service.drain_work(pool, workers=4))
            waiting = (  # the fall's worker waits for the lock (the others found nothing to take)
                "SELECT 1 FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            while not await asyncio.to_thread(rows, db_url, waiting):
                await asyncio.sleep(0.05)
            await asyncio.to_thread(
                queue, db_url, "gw-home-2", "home-2", sensor="sos-1", kind="sos", resident="res-2", seq=1
            )
            # the holder keeps the fall's worker waiting all along: without idle workers still
            # looking, the SOS would wait for it
            start, took = time.monotonic(), None
            while time.monotonic() - start < 30.0:
                if await asyncio.to_thread(rows, db_url, "SELECT 1 FROM alerts WHERE kind = 'sos'"):
                    took = time.monotonic() - start
                    break
                await asyncio.sleep(0.05)
            await holder.rollback()
            await draining
            return took

    took = with_pool(db_url, job)
    assert took is not None, "the SOS waited for the worker busy with another gateway"
    assert rows(db_url, "SELECT kind, detections FROM alerts ORDER BY kind") == [("fall", 2), ("sos", 1)]


def test_a_failing_item_is_set_aside_with_its_error_and_never_holds_up_the_others(
    db_url: str, world: World, api: Api
) -> None:
    # A site deleted after ingest stored its event: opening the alert breaks a foreign key.
    bad = queue(db_url, "gw-home-1", "site-gone", sensor="sos-1", kind="sos", resident="res-1")
    queue(db_url, "gw-home-2", "home-2", sensor="sos-1", kind="sos", resident="res-2", seq=2)
    assert with_pool(db_url, drain) == 2
    assert rows(db_url, "SELECT kind, resident_id FROM alerts") == [("sos", "res-2")]
    ((attempts, error, failed_at),) = rows(
        db_url, "SELECT attempts, last_error, failed_at FROM alert_work WHERE id = %s", bad
    )
    assert attempts == 1 and "ForeignKeyViolation" in error and failed_at is None  # retried later
    assert with_pool(db_url, drain) == 1
    assert with_pool(db_url, drain) == 1  # third and last attempt: set aside
    assert with_pool(db_url, drain) == 0  # never claimed again
    ((attempts, failed_at),) = rows(db_url, "SELECT attempts, failed_at FROM alert_work WHERE id = %s", bad)
    assert attempts == service.WORK_MAX_ATTEMPTS and failed_at is not None

    (operator,) = rows(db_url, "SELECT id, summary ->> 'en' FROM alerts WHERE kind = 'work_failed'")
    assert f"alert work {bad}" in operator[1] and "ForeignKeyViolation" in operator[1]
    notified = rows(
        db_url,
        "SELECT u.role FROM notifications n JOIN users u ON u.id = n.user_id WHERE n.alert_id = %s",
        operator[0],
    )
    assert notified == [("admin",)]  # the operators, not the family or the care team

    listed = api.get("admin", "/api/v1/engine/failed-work")
    assert listed.status_code == 200, listed.text
    (item,) = listed.json()
    assert item["id"] == bad and item["attempts"] == 3 and "ForeignKeyViolation" in item["last_error"]
    assert item["payload"]["kind"] == "sos"
    assert api.get("worker1", "/api/v1/engine/failed-work").status_code == 403
    assert api.get("admin", f"/api/v1/alerts/{operator[0]}").status_code == 200
    assert api.get("worker1", f"/api/v1/alerts/{operator[0]}").status_code == 404

    metrics = api.client.get("/metrics").text
    assert "eldercare_engine_work_failed 1\n" in metrics
    assert "eldercare_engine_work_queued 0\n" in metrics

    with psycopg.connect(db_url, autocommit=True) as conn:  # the admin fixes the cause and retries
        conn.execute("INSERT INTO sites (id, kind, name) VALUES ('site-gone', 'home', 'back')")
    assert api.post("admin", f"/api/v1/engine/failed-work/{bad}/retry").status_code == 200
    assert api.post("admin", f"/api/v1/engine/failed-work/{bad}/retry").status_code == 404
    assert with_pool(db_url, drain) == 1
    assert rows(db_url, "SELECT count(*) FROM alerts WHERE kind = 'sos'") == [(2,)]
    assert rows(db_url, "SELECT count(*) FROM alert_work") == [(0,)]


def test_events_that_pass_the_protocol_but_make_no_sense_never_stop_an_sos(db_url: str, world: World) -> None:
    odd = [
        {"sensor": "sos-1", "kind": "sos", "resident": "res-nobody"},  # unregistered resident
        {"sensor": "sos-1", "kind": "sos", "resident": "res-1"},  # resident of another home (home-1)
        {"sensor": "no-such-sensor", "kind": "teleported"},  # unknown sensor, unknown kind
        {
            "sensor": "wearable-res-2",
            "kind": "fall",
            "confidence": 1e308,
            "evidence": {"a": "\\u0000 \\\\u0000", "b": ["\\ud800", None, True, -0.0]},
        },
        {"sensor": "wearable-res-2", "kind": "vitals", "evidence": {"metric": "hr", "value": -1e308}},
        {"sensor": "wearable-res-2", "kind": "fall", "raw_evidence": "[" * 2000 + "]" * 2000},
        {"sensor": "s" * 200, "kind": "low_battery", "evidence": {"battery": "flat"}},
    ]
    for seq, extra in enumerate(odd, start=1):
        queue(db_url, "gw-home-2", "home-2", seq=seq, **extra)
    queue(db_url, "gw-home-2", "home-2", seq=99, sensor="sos-1", kind="sos", resident="res-2")
    while with_pool(db_url, drain):
        pass
    alerts = rows(db_url, "SELECT kind, resident_id, site_id FROM alerts ORDER BY id")
    assert ("sos", "res-2", "home-2") in alerts  # the valid SOS
    assert all(resident != "res-1" for _, resident, _ in alerts)  # never another home's resident
    assert rows(db_url, "SELECT count(*) FROM alert_work") == [(0,)]  # every item handled, none set aside
    evidence = rows(db_url, "SELECT evidence FROM alerts WHERE kind = 'fall'")
    assert evidence and all(isinstance(e[0], dict) for e in evidence)


class Console:
    """The server side of one connected socket, as the hub sees it."""

    def __init__(self) -> None:
        self.got: list[dict[str, Any]] = []

    async def send_text(self, data: str) -> None:
        self.got.append(json.loads(data))


def test_alarms_never_wait_for_the_apis_connections(settings: Any, world: World, db_url: str) -> None:
    from ingest_support import wait_for
    from platform_api_support import running

    from eldercare.platform.app import create_app
    from eldercare.platform.state import app_state

    app = create_app(settings.model_copy(update={"db_pool_min": 1, "db_pool_max": 2}))
    console = Console()
    with running(app) as client:
        state = app_state(app)
        hub = state.hub
        assert hub is not None
        held = [client.portal.call(state.pool.getconn) for _ in range(2)]  # every API connection
        try:
            client.portal.call(hub.listening.wait)
            client.portal.start_task_soon(lambda: _register(hub, world.user_id("worker2"), console)).result()
            work = queue(db_url, "gw-home-2", "home-2", sensor="sos-1", kind="sos", resident="res-2")
            with psycopg.connect(db_url, autocommit=True) as conn:
                conn.execute("SELECT pg_notify('alert_work', %s)", (str(work),))
            wait_for(lambda: bool(console.got), 10, "the SOS pushed to the care worker's console")
        finally:
            for conn in held:
                client.portal.call(state.pool.putconn, conn)
    assert console.got[0]["alert"]["kind"] == "sos" and console.got[0]["alert"]["resident_id"] == "res-2"


async def _register(hub: Any, user_id: int, socket: Console) -> None:
    hub.register(user_id, socket)


def due_alerts(db_url: str, n: int) -> None:
    """``n`` open sos alerts of res-1 at tier 1, all past their deadline."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO alerts (kind, severity, resident_id, site_id, dedup_key, title, detected_at,"
            " next_escalation_at) SELECT 'sos', 'critical', 'res-1', 'home-1', 'bench:' || i, 'SOS', now(),"
            " now() - interval '1 second' FROM generate_series(1, %s) i",
            (n,),
        )


def test_escalation_takes_every_due_alert_in_one_round(db_url: str, world: World) -> None:
    due_alerts(db_url, 3 * service.ESCALATION_BATCH + 7)
    done = with_pool(db_url, lambda pool: service.escalate_due(pool, workers=2))
    assert done == 3 * service.ESCALATION_BATCH + 7  # not a fixed number per round
    assert rows(db_url, "SELECT tier, count(*) FROM alerts GROUP BY 1") == [(2, done)]
    dupes = rows(
        db_url, "SELECT alert_id FROM alert_trail WHERE action = 'escalated' GROUP BY 1 HAVING count(*) > 1"
    )
    assert dupes == []


def test_an_escalation_that_fails_is_put_off_and_never_holds_up_the_others(db_url: str, world: World) -> None:
    due_alerts(db_url, 5)
    ((bad,),) = rows(db_url, "SELECT min(id) FROM alerts")
    with psycopg.connect(db_url, autocommit=True) as conn:  # a real failure inside the database
        conn.execute(
            f"""
            CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
                IF NEW.alert_id = {int(bad)} AND NEW.action = 'escalated' THEN
                    RAISE EXCEPTION 'trail refused for alert %', NEW.alert_id;
                END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER refuse BEFORE INSERT ON alert_trail FOR EACH ROW EXECUTE FUNCTION refuse();
            """
        )
    at = alerts_repo.now()
    assert with_pool(db_url, lambda pool: service.escalate_due(pool, now=at)) == 5
    tiers = rows(db_url, "SELECT id, tier, next_escalation_at FROM alerts WHERE kind = 'sos' ORDER BY id")
    assert [t for _, t, _ in tiers] == [1, 2, 2, 2, 2]
    assert (tiers[0][2] - at).total_seconds() == pytest.approx(service.ESCALATION_RETRY_S)
    (summary,) = rows(db_url, "SELECT summary ->> 'en' FROM alerts WHERE kind = 'work_failed'")
    assert f"escalation of alert {bad}" in summary[0] and "trail refused" in summary[0]
    assert with_pool(db_url, lambda pool: service.escalate_due(pool, now=at)) == 0  # not retried at once
