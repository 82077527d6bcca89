"""The alert engine's background work, started inside every API replica by the app's lifespan.

Three loops, each safe to run on any number of replicas because every step claims its rows with
``FOR UPDATE SKIP LOCKED`` and writes its consequences in the same transaction:

- work: events and status rows that ingest queued (``alert_work``), woken by ``NOTIFY alert_work``;
- escalation: open alerts whose acknowledgement deadline passed climb one tier;
- heartbeat: gateways that say they are online but whose heartbeats stopped reaching the database;
- inactivity: each resident's inactivity detector, fed the home's readings and the clock;
- pushes: this replica's WebSocket hub, listening on ``alerts`` (:mod:`eldercare.platform.notify.hub`);
- deliveries: queued webhooks and e-mails, retried with backoff (:mod:`eldercare.platform.notify.delivery`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from eldercare.models.inactivity import InactivityError
from eldercare.platform.engine import escalation, inactivity, rules
from eldercare.platform.notify.delivery import Deliverer
from eldercare.platform.notify.hub import Hub
from eldercare.platform.repo import alerts as repo

log = logging.getLogger(__name__)

POLL_S = 2.0  # work is also polled, in case a NOTIFY was missed while reconnecting
ESCALATION_TICK_S = 1.0
HEARTBEAT_TICK_S = 30.0
HEARTBEAT_LIMIT_S = 300.0  # five default heartbeat periods
INACTIVITY_TICK_S = 15.0  # how often due residents are looked for; each is due every 60 s


async def apply(conn: AsyncConnection[Any], decision: rules.Decision, *, email: bool = False) -> None:
    """Carry out one decision inside the caller's transaction (``email``: queue e-mails too)."""
    if isinstance(decision, rules.Clear):
        alert_id = await repo.auto_resolve(conn, dedup_key=decision.dedup_key, reason=decision.reason)
        if alert_id is not None:
            await repo.publish(conn, alert_id=alert_id, event="resolved")
        return
    if isinstance(decision, rules.Note):
        alert_id = await repo.live_alert_id(conn, dedup_key=decision.dedup_key)
        if alert_id is not None:
            await repo.trail(conn, alert_id=alert_id, action="note", note=decision.text)
            await repo.publish(conn, alert_id=alert_id, event="note")
        return
    simulated = await repo.site_is_simulated(conn, site=decision.site_id)
    alert_id, opened = await repo.open_or_join(conn, decision=decision, simulated=simulated)
    if not opened:
        await repo.trail(conn, alert_id=alert_id, action="detected_again")
        await repo.publish(conn, alert_id=alert_id, event="detected_again")
        return
    await repo.trail(conn, alert_id=alert_id, action="opened", tier=1, detail={"summary": decision.summary})
    policy = await repo.policy_for(conn, kind=decision.kind, resident=decision.resident_id)
    first = policy[0]
    await repo.notify_tier(
        conn, alert_id=alert_id, tier=first, resident=decision.resident_id, site=decision.site_id,
        email=email,
    )  # fmt: skip
    await repo.set_escalation(
        conn, alert_id=alert_id, tier=first.tier, due=escalation.next_deadline(policy, first.tier, repo.now())
    )
    log.info("alert %s opened: %s %s", alert_id, decision.kind, decision.resident_id or decision.site_id)


async def process_work(pool: AsyncConnectionPool[Any], *, limit: int = 100, email: bool = False) -> int:
    """Claim a batch of queued work and turn it into alerts, all in one transaction."""
    async with pool.connection() as conn, conn.transaction():
        work = await repo.claim_work(conn, limit=limit)
        for row in work:
            payload = row["payload"]
            if row["kind"] == "event":
                resident = payload.get("resident") or await repo.resident_of_sensor(
                    conn, gateway=row["gateway_id"], sensor=payload["sensor"]
                )
                decisions = rules.decide_event(payload, resident)
            else:
                decisions = rules.decide_status(payload)
            for decision in decisions:
                await apply(conn, decision, email=email)
        return len(work)


async def escalate_due(pool: AsyncConnectionPool[Any], *, email: bool = False) -> int:
    """Move every alert past its deadline one tier up and notify that tier."""
    async with pool.connection() as conn, conn.transaction():
        due = await repo.claim_due_escalations(conn)
        for alert in due:
            policy = await repo.policy_for(conn, kind=alert["kind"], resident=alert["resident_id"])
            nxt = escalation.tier(policy, alert["tier"] + 1)
            if nxt is None:
                await repo.set_escalation(conn, alert_id=alert["id"], tier=alert["tier"], due=None)
                continue
            await repo.trail(
                conn, alert_id=alert["id"], action="escalated", tier=nxt.tier,
                detail={"from_tier": alert["tier"], "reason": "not acknowledged in time"},
            )  # fmt: skip
            await repo.notify_tier(
                conn, alert_id=alert["id"], tier=nxt, resident=alert["resident_id"], site=alert["site_id"],
                email=email,
            )  # fmt: skip
            await repo.set_escalation(
                conn, alert_id=alert["id"], tier=nxt.tier,
                due=escalation.next_deadline(policy, nxt.tier, repo.now()),
            )  # fmt: skip
        return len(due)


async def check_heartbeats(pool: AsyncConnectionPool[Any], *, limit_s: float = HEARTBEAT_LIMIT_S) -> int:
    """Open (or clear) ``pipeline_stalled`` for each gateway; returns how many are stalled."""
    now = repo.now()
    stalled = 0
    async with pool.connection() as conn, conn.transaction():
        gateways = await repo.gateways_for_heartbeat_check(conn, since=now - timedelta(days=1))
        for gw in gateways:
            if (
                gw["state"] == "online"
                and gw["state_at"]
                and (now - gw["state_at"]).total_seconds() < limit_s
            ):
                continue  # just came online: give its first heartbeat time to arrive
            last = gw["last_heartbeat"]
            decision = rules.decide_heartbeat(
                gateway=gw["id"],
                site=gw["site_id"],
                state=gw["state"],
                last_heartbeat_ms=int(last.timestamp() * 1000) if last else None,
                now_ms=int(now.timestamp() * 1000),
                limit_s=limit_s,
            )
            if decision is not None:
                stalled += isinstance(decision, rules.Open)
                await apply(conn, decision)
    return stalled


async def drive_inactivity(
    pool: AsyncConnectionPool[Any],
    *,
    now_s: float | None = None,
    email: bool = False,
    every_s: float = inactivity.TICK_S,
    batch: int = 20,
) -> int:
    """One round of every due resident's inactivity detector; returns how many alerts it raised.

    Residents are claimed a batch per transaction with ``FOR UPDATE SKIP LOCKED``: the detector's
    state, the alerts it raised and its next due time commit together, on whichever replica.
    """
    now_s = time.time() if now_s is None else now_s
    async with pool.connection() as conn:
        await repo.ensure_detectors(conn, detector=inactivity.DETECTOR)
    raised = 0
    while True:
        async with pool.connection() as conn, conn.transaction():
            due = await repo.claim_detectors(conn, detector=inactivity.DETECTOR, now_s=now_s, limit=batch)
            for row in due:
                decisions = await _drive_one(conn, row, now_s=now_s, every_s=every_s)
                for decision in decisions:
                    await apply(conn, decision, email=email)
                raised += sum(isinstance(d, rules.Open) for d in decisions)
        if len(due) < batch:
            return raised


async def _drive_one(
    conn: AsyncConnection[Any], row: dict[str, Any], *, now_s: float, every_s: float
) -> list[rules.Decision]:
    state = row["state"] or {}
    site, sensitivity = row["site_id"], float(row["sensitivity"])
    kinds = list(inactivity.SENSOR_KINDS)
    fitted_s = float(row["fitted_s"]) if row["fitted_s"] is not None else None
    alerts = []
    det = None
    sensors: dict[str, list[str]] = dict(state.get("sensors") or {})
    silent: dict[str, str] = dict(state.get("silent") or {})
    clears: list[rules.Clear] = []
    if state.get("detector"):
        try:
            det = inactivity.restore(state, sensitivity=sensitivity)
        except InactivityError:  # a state from an older detector version: learn again
            log.warning("inactivity state of %s unreadable; refitting", row["resident_id"])
    if det is None or fitted_s is None or now_s - fitted_s >= inactivity.REFIT_S:
        start = now_s - inactivity.FIT_DAYS * 86_400.0
        readings = await repo.home_readings(conn, site=site, after_s=start, until_s=now_s, kinds=kinds)
        history = inactivity.events(readings)
        sensors = inactivity.sensor_keys(readings)
        exclude = await repo.detector_exclusions(
            conn, resident=row["resident_id"], site=site, after_s=start, until_s=now_s,
            kinds=inactivity.INCIDENT_KINDS,
        )  # fmt: skip
        offset = inactivity.utc_offset_s(row["timezone"], datetime.fromtimestamp(now_s, UTC))
        det = await asyncio.to_thread(
            inactivity.fit, history, sensitivity=sensitivity, offset_s=offset, exclude=exclude, previous=det
        )  # the running detector, refitted, does not raise again what it already raised
        last, fitted_s = (history[-1][0] if history else start), now_s
        log.info("inactivity detector of %s fitted on %s readings", row["resident_id"], len(history))
    else:
        last = float(state["last_event_s"])
        readings = await repo.home_readings(conn, site=site, after_s=last, until_s=now_s, kinds=kinds)
        fresh = inactivity.events(readings)
        sensors.update(inactivity.sensor_keys(readings))
        clears, silent = inactivity.cleared(silent, fresh)
        for ev in fresh:  # check before each event, as detect() does: silences that just ended count
            alerts += det.check(ev[0])
            det.update(ev)
        last = fresh[-1][0] if fresh else last
        fitted_s = None
    alerts += det.check(now_s)
    opened = inactivity.decisions(alerts, resident=row["resident_id"], site=site, sensors=sensors)
    for a in alerts:  # remember which sensors are alerted as silent, to resolve them when they report
        if a.kind == "device_silent" and a.sensor in sensors:
            silent[a.sensor] = inactivity.device_key(*sensors[a.sensor])
    await repo.save_detector(
        conn,
        resident=row["resident_id"],
        detector=inactivity.DETECTOR,
        state={
            "detector": det.to_dict(),
            "last_event_s": last,
            "due_s": now_s + every_s,
            "sensors": sensors,
            "silent": silent,
        },
        fitted_s=fitted_s,
    )
    return [*clears, *opened]


async def _work_loop(pool: AsyncConnectionPool[Any], conninfo: str, email: bool) -> None:
    while True:
        try:
            async with await AsyncConnection.connect(conninfo, autocommit=True) as listener:
                await listener.execute("LISTEN alert_work")
                while True:
                    while await process_work(pool, email=email):
                        pass
                    with contextlib.suppress(TimeoutError):
                        async for _ in listener.notifies(timeout=POLL_S, stop_after=1):
                            pass
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("alert work loop failed; retrying")
            await asyncio.sleep(POLL_S)


async def _tick(name: str, every_s: float, job: Any, *args: Any) -> None:
    while True:
        try:
            await job(*args)
        except asyncio.CancelledError:
            raise
        except Exception:  # the loop must outlive a failed round (database restart, ...)
            log.exception("%s failed; retrying", name)
        await asyncio.sleep(every_s)


def start(state: Any) -> list[asyncio.Task[None]]:
    """Start the engine's loops on the app's pool; the lifespan cancels them on shutdown."""
    pool: AsyncConnectionPool[Any] = state.pool
    conninfo = str(pool.conninfo)
    settings = state.settings
    email = settings.smtp_url is not None  # queue e-mails only where a server can send them
    hub = Hub(pool, conninfo)
    state.hub = hub

    async def escalate(p: AsyncConnectionPool[Any]) -> int:
        return await escalate_due(p, email=email)

    async def inactive(p: AsyncConnectionPool[Any]) -> int:
        return await drive_inactivity(p, email=email)

    return [
        asyncio.create_task(hub.run(), name="alert-pushes"),
        asyncio.create_task(Deliverer(pool, settings).run(), name="alert-deliveries"),
        asyncio.create_task(_work_loop(pool, conninfo, email), name="alert-work"),
        asyncio.create_task(_tick("escalation", ESCALATION_TICK_S, escalate, pool), name="escalation"),
        asyncio.create_task(_tick("heartbeats", HEARTBEAT_TICK_S, check_heartbeats, pool), name="heartbeats"),
        asyncio.create_task(_tick("inactivity", INACTIVITY_TICK_S, inactive, pool), name="inactivity"),
    ]
