"""The alert engine's background work, started by the app's lifespan on its own thread.

Alarms must never wait behind page loads: the engine's loops run on a thread with their own event
loop and their own connection pool (:class:`Engine`), and the WebSocket hub has its own small pool on
the API's loop, so however busy the API is, an event becomes an alert and reaches the consoles.

Every loop is safe to run on any number of replicas because every step claims its rows with
``FOR UPDATE SKIP LOCKED`` and writes its consequences in the same transaction:

- work: events and status rows that ingest queued (``alert_work``), woken by ``NOTIFY alert_work``;
  each item is handled in its own savepoint, so one that fails is retried a few times with backoff,
  then set aside with its error (listed for admins, counted in ``/metrics``, raising ``work_failed``
  for the operators) and never holds up the items behind it;
- escalation: open alerts whose acknowledgement deadline passed climb one tier, as many as are due,
  in batches, the loop sleeping only until the next deadline;
- heartbeat: gateways that say they are online but whose heartbeats stopped reaching the database;
- inactivity: each resident's inactivity detector, fed the home's readings and the home's clock;
- rollup: ``activity_hourly`` kept fresh on plain PostgreSQL (:mod:`.rollup`);
- pushes: this replica's WebSocket hub, listening on ``alerts`` (:mod:`eldercare.platform.notify.hub`);
- deliveries: queued webhooks and e-mails, retried with backoff (:mod:`eldercare.platform.notify.delivery`).

Time comes from a clock the caller can inject (``now=``), so tests never sleep out a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from psycopg import AsyncConnection, errors

from eldercare.models.inactivity import InactivityError
from eldercare.platform.engine import escalation, fall_context, inactivity, rollup, rules
from eldercare.platform.notify import email as mail
from eldercare.platform.notify.delivery import Deliverer
from eldercare.platform.notify.hub import Hub
from eldercare.platform.repo import alerts as alerts_repo
from eldercare.platform.repo import detectors as detectors_repo
from eldercare.platform.repo import gateways as gateways_repo
from eldercare.platform.repo import trail as trail_repo
from eldercare.platform.repo import work as work_repo
from eldercare.platform.repo.connections import Conn, Pool, open_pool

if TYPE_CHECKING:
    from eldercare.platform.state import AppState

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

POLL_S = 2.0  # work is also polled, in case a NOTIFY was missed while reconnecting
WORK_BATCH = 20  # items per transaction: a storm's first alerts are pushed without waiting for its last
WORK_WORKERS = 4  # transactions taking work side by side (statuses stay ordered: see _status)
WORK_MAX_ATTEMPTS = 3  # then the item is set aside for an admin
WORK_IDLE_POLL_S = 0.2  # a worker with nothing to take looks again while another is still busy
WORK_RETRY_S = 2.0  # after the first failed attempt; doubled each time
ESCALATION_TICK_S = 1.0  # longest sleep between escalation rounds (less when a deadline is nearer)
ESCALATION_BATCH = 50
ESCALATION_WORKERS = 4  # transactions escalating side by side when many alerts are due together
ESCALATION_RETRY_S = 30.0  # an alert whose escalation failed is tried again this much later
HEARTBEAT_TICK_S = 30.0
HEARTBEAT_LIMIT_S = 300.0  # five default heartbeat periods
HEARTBEAT_PERIODS = 5  # ... or five of the gateway's own (config heartbeat_s, up to 3600 s), if longer
INGEST_TICK_S = 10.0  # how often ingest workers' liveness is looked at
INGEST_SILENT_HEARTBEATS = 3
INACTIVITY_TICK_S = 2.0  # how often due residents are looked for; each is due every 60 s of its home's
# clock, which for a simulated home at 60x is one wall second
ENGINE_POOL_SIZE = 10  # the work and escalation transactions, deliveries, the ticks
# A work item stuck waiting for a lock (an admin's long transaction, ...) fails on its own after
# this, is retried, and never holds up the rest of the queue for longer.
LOCK_TIMEOUT_MS = 5000


@dataclass
class Stats:
    """Counters of this process's engine, shown by ``/metrics`` (ints: safe to read from any thread)."""

    work_done: int = 0
    work_failures: int = 0  # failed attempts, retried or not
    work_set_aside: int = 0
    escalations: int = 0
    escalation_failures: int = 0
    rounds_failed: int = 0  # a whole round failed (database gone, ...): retried by its loop


STATS = Stats()


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


async def apply(
    conn: Conn, decision: rules.Decision, *, email: bool = False, now: datetime | None = None
) -> None:
    """Carry out one decision inside the caller's transaction (``email``: queue e-mails too)."""
    if isinstance(decision, rules.Clear):
        alert_id = await alerts_repo.auto_resolve(conn, dedup_key=decision.dedup_key, reason=decision.reason)
        if alert_id is not None:
            await trail_repo.publish(conn, alert_id=alert_id, event="resolved")
        return
    if isinstance(decision, rules.Note):
        alert_id = await alerts_repo.live_alert_id(conn, dedup_key=decision.dedup_key)
        if alert_id is not None:
            await trail_repo.trail(
                conn,
                alert_id=alert_id,
                action="note",
                note=decision.text,
                detail={"message": decision.message, "fields": decision.fields},
            )
            await trail_repo.publish(conn, alert_id=alert_id, event="note")
        return
    policy = await alerts_repo.policy_for(conn, kind=decision.kind, resident=decision.resident_id)
    first = policy[0]
    at = now or alerts_repo.now()
    due = escalation.next_deadline(policy, first.tier, at)
    alert_id, opened = await alerts_repo.open_or_join(
        conn, decision=decision, tier=first.tier, due=due
    )  # the alert, its trail and its first deadline in one statement: a storm is round trips
    if not opened:
        await trail_repo.publish(conn, alert_id=alert_id, event="detected_again")
        cutoff = escalation.reopen_if_acknowledged_before(decision.kind, at)
        if cutoff is None or not await alerts_repo.reopen(
            conn, alert_id=alert_id, acknowledged_before=cutoff, tier=first.tier, due=due
        ):  # fmt: skip
            return
        await trail_repo.publish(conn, alert_id=alert_id, event="reopened")
    await alerts_repo.notify_tier(
        conn, alert_id=alert_id, tier=first, resident=decision.resident_id, site=decision.site_id,
        email=email,
    )  # fmt: skip
    nxt = escalation.tier(policy, first.tier + 1) if decision.escalate_now else None
    if nxt is not None:  # the home makes it certain: the next tier need not wait for the first's
        await alerts_repo.escalate(
            conn, alert_id=alert_id, from_tier=first.tier, tier=nxt.tier,
            due=escalation.next_deadline(policy, nxt.tier, at),
            reason="certain: no sign of life in the home after it",
        )  # fmt: skip
        await alerts_repo.notify_tier(
            conn, alert_id=alert_id, tier=nxt, resident=decision.resident_id, site=decision.site_id,
            email=email,
        )  # fmt: skip
    log.info("alert %s opened: %s %s", alert_id, decision.kind, decision.resident_id or decision.site_id)


async def process_work(
    pool: Pool,
    *,
    limit: int = WORK_BATCH,
    email: bool = False,
    now: datetime | None = None,
    retry_s: float = WORK_RETRY_S,
    not_worn_after_s: float = rules.NOT_WORN_NOTICE_S,
) -> int:
    """Claim at most ``limit`` queued items and turn them into alerts in one transaction.

    Returns how many were claimed (handled or failed): the caller loops while that is non-zero.
    ``not_worn_after_s``: how long a wearable may lie unworn before the care team is told.

    The batch is first tried without savepoints (two round trips per item fewer, which is most of a
    storm's time); if any item fails, that transaction is rolled back and the batch is taken again
    with a savepoint per item, so the failing one is retried or set aside on its own.
    """
    async with pool.connection() as conn:
        try:
            async with conn.transaction():
                work = await work_repo.claim_work(conn, limit=limit)
                for row in work:
                    await _handle(conn, row, email=email, now=now, not_worn_after_s=not_worn_after_s)
                if work:
                    await work_repo.finish_work(conn, work_ids=[row["id"] for row in work])
            STATS.work_done += len(work)
            return len(work)
        except Exception as exc:  # an item's problem (or the database's: then the next try fails too)
            log.info("an alert work batch failed (%s): taking it item by item", type(exc).__name__)
        async with conn.transaction():
            work = await work_repo.claim_work(conn, limit=limit)
            for row in work:
                await _work_item(
                    conn, row, email=email, now=now, retry_s=retry_s, not_worn_after_s=not_worn_after_s
                )
            return len(work)


async def drain_work(
    pool: Pool, *, email: bool = False, workers: int = WORK_WORKERS,
    not_worn_after_s: float = rules.NOT_WORN_NOTICE_S,
) -> int:  # fmt: skip
    """Process work until the queue has nothing due, ``workers`` transactions side by side.

    A worker that finds nothing to take while another is still busy looks again every
    ``WORK_IDLE_POLL_S`` instead of ending: a gateway's work is taken by one transaction at a time
    (``claim_work``), so while one worker spends minutes on one gateway's storm, the others stay
    ready for what another home sends meanwhile (ending, they were not asked again before the
    storm was through: an SOS waited for it).
    """
    busy: set[int] = set()

    async def one(me: int) -> int:
        done = 0
        while True:
            busy.add(me)
            claimed = await process_work(pool, email=email, not_worn_after_s=not_worn_after_s)
            if claimed:
                done += claimed
                continue
            busy.discard(me)
            if not busy:
                return done
            await asyncio.sleep(WORK_IDLE_POLL_S)

    return sum(await asyncio.gather(*(one(i) for i in range(max(1, workers)))))


async def _work_item(
    conn: Conn, row: dict[str, Any], *, email: bool, now: datetime | None, retry_s: float,
    not_worn_after_s: float,
) -> None:  # fmt: skip
    try:
        async with conn.transaction():  # a savepoint: a failing item undoes only its own writes
            await _handle(conn, row, email=email, now=now, not_worn_after_s=not_worn_after_s)
            await work_repo.finish_work(conn, work_ids=[row["id"]])
        STATS.work_done += 1
        return
    except Exception as exc:  # whatever it is, it is this item's problem, not the queue's
        error = f"{type(exc).__name__}: {exc}".strip()[:2000]
    attempt = int(row["attempts"]) + 1
    STATS.work_failures += 1
    set_aside = await work_repo.fail_work(
        conn, work_id=row["id"], error=error, retry_in_s=retry_s * 2 ** (attempt - 1),
        max_attempts=WORK_MAX_ATTEMPTS,
    )  # fmt: skip
    log.warning("alert work %s failed (attempt %s of %s%s): %s", row["id"], attempt, WORK_MAX_ATTEMPTS,
                ", set aside" if set_aside else "", error)  # fmt: skip
    if set_aside:
        STATS.work_set_aside += 1
        alarm = rules.work_failed(
            what="alert work", ident=row["id"], error=error[:300], site=row["site_id"],
            t_ms=_ms(now or alerts_repo.now()),
        )  # fmt: skip
        await _operator_alert(conn, alarm, now=now)


async def _operator_alert(conn: Conn, alarm: rules.Open, *, now: datetime | None) -> None:
    try:
        async with conn.transaction():
            await apply(conn, alarm, now=now)
    except Exception:  # the item is set aside and logged even if its alarm cannot be raised
        log.exception("could not raise the operators' alert %s", alarm.dedup_key)


async def delivery_gave_up(conn: Conn, row: dict[str, Any], error: str) -> None:
    """A webhook or e-mail given up after its last attempt: the operators are told."""
    alarm = rules.work_failed(
        what=f"{row['channel']} delivery", ident=row["id"], error=f"to {row['target']}: {error}"[:300],
        site=None, t_ms=_ms(alerts_repo.now()),
    )  # fmt: skip
    await _operator_alert(conn, alarm, now=None)


async def _handle(
    conn: Conn, row: dict[str, Any], *, email: bool, now: datetime | None,
    not_worn_after_s: float = rules.NOT_WORN_NOTICE_S,
) -> None:  # fmt: skip
    payload = json.loads(row["payload"])
    if row["evidence"] is not None:
        try:
            payload["evidence"] = json.loads(row["evidence"])
        except (ValueError, RecursionError) as exc:  # evidence is any JSON: too deep for Python here
            payload["evidence"] = {"unreadable": f"{type(exc).__name__}: {str(exc)[:200]}"}
    if row["kind"] == "event":
        resident = await _resident(conn, payload, row["gateway_id"])
        home = await _home_after_fall(conn, payload) if payload.get("kind") == "fall" else None
        decisions = rules.decide_event(payload, resident, home=home)
        if await gateways_repo.site_is_simulated(conn, site=str(payload["site"])):
            wall_s = (now or alerts_repo.now()).timestamp()
            decisions = _event_to_wall(decisions, event_ms=int(payload["t"]), wall_s=wall_s)
    else:
        decisions = await _status(conn, payload, row["gateway_id"], not_worn_after_s=not_worn_after_s)
    for decision in decisions:
        await apply(conn, decision, email=email, now=now)


def _event_to_wall(decisions: list[rules.Decision], *, event_ms: int, wall_s: float) -> list[rules.Decision]:
    """A simulated home's event is stamped with its own clock (40 min ahead of the wall 40 s into a
    demo at 60x): its alert is stored, like the home's inactivity alerts, at the wall-clock moment
    it is raised, the event's time kept in the summary (``sim_event_ms``, shown marked as simulated
    time) with the home's offset (``sim_offset_s``). Not as ``sim_detected_ms``: a fall's event is
    stamped with its impact, and the score dates the alert by when the platform raised it."""
    out: list[rules.Decision] = []
    for d in decisions:
        if isinstance(d, rules.Open):
            summary = {
                **d.summary,
                "sim_event_ms": event_ms,
                "sim_offset_s": round(event_ms / 1000 - wall_s, 3),
            }
            d = replace(d, detected_ms=int(wall_s * 1000), summary=summary)
        out.append(d)
    return out


async def _home_after_fall(conn: Conn, payload: dict[str, Any]) -> fall_context.FallJudgement:
    """What the home said in the minute after a fall's impact: the gateway's view of its check-in
    (``evidence.context``) and every reading of the site stored for that minute (other gateways
    too), judged by :func:`fall_context.judge_fall`. Times are the gateway's clock, like the
    readings' (a simulated home's clock included)."""
    evidence = _obj(payload.get("evidence"))
    context = _obj(evidence.get("context"))
    site, impact_s = str(payload["site"]), int(payload["t"]) / 1000
    kinds = ["pir", "bed", "door", "plug"]
    stored = await detectors_repo.home_readings(
        conn, site=site, after_s=impact_s - 900, until_s=impact_s + fall_context.WINDOW_S, kinds=kinds
    )
    signals = [
        fall_context.Signal(float(r["t"]), str(r["kind"]), r["room"], float(r["value"]), r["sensor_id"])
        for r in stored
        if r["kind"] in kinds
    ]
    room = context.get("room") if isinstance(context.get("room"), str) else None
    if room is None:  # the gateway did not know: the last motion stored before the impact
        room = next((s.room for s in reversed(signals) if s.kind == "pir" and s.value >= 0.5
                     and s.t_s <= impact_s), None)  # fmt: skip
    checkin = _obj(evidence.get("checkin"))
    return fall_context.judge_fall(
        impact_s=impact_s,
        room=room,
        signals=[*signals, *fall_context.edge_signals(context, impact_s)],
        watched_until_s=fall_context.edge_watched_until(evidence, impact_s),
        has_motion_sensors=await gateways_repo.site_has_sensor(conn, site=site, kind="pir"),
        answered=bool(checkin.get("answered")),
    )


def _obj(value: Any) -> dict[str, Any]:
    """A JSON object from a gateway's evidence, or an empty one (evidence is free-form)."""
    return value if isinstance(value, dict) else {}


async def _resident(conn: Conn, payload: dict[str, Any], gateway: str) -> str | None:
    """The resident an event is about: the one it names if registered at the gateway's site, else
    the sensor's (or the home's only) resident. A name from elsewhere never reaches another home's
    resident, and an unknown one does not stop the alert: it opens for the home."""
    named = payload.get("resident")
    if isinstance(named, str) and named:
        found = await gateways_repo.resident_at_site(conn, resident=named, gateway=gateway)
        if found is not None:
            return found
        log.warning("event from %s names resident %r, not registered at its site", gateway, named)
    return await gateways_repo.resident_of_sensor(
        conn, gateway=gateway, sensor=str(payload.get("sensor", ""))
    )


async def _status(
    conn: Conn, payload: dict[str, Any], gateway: str, *, not_worn_after_s: float
) -> list[rules.Decision]:
    """Decisions for a status, unless a status that arrived later already superseded it.

    Statuses are ordered by ingest's arrival time (``ts``), never by the gateway's ``t``. A live
    ``online`` status also measures the gateway's clock: ``t`` minus arrival.
    """
    ts = payload.get("ts")
    if payload.get("state") == "online" and ts is not None and not payload.get("retained"):
        skew = int(payload["t"]) - int(ts)
        await gateways_repo.set_clock_skew(conn, gateway=gateway, skew_ms=skew)
        if not await gateways_repo.site_is_simulated(
            conn, site=payload["site"]
        ):  # a simulator's clock runs fast
            payload = payload | {"skew_ms": skew}
    decisions = rules.decide_status(payload, not_worn_after_s=not_worn_after_s)
    presence = await gateways_repo.gateway_presence(conn, gateway=gateway)
    if presence is not None and presence["state_at"] is not None and ts is not None:
        at = datetime.fromtimestamp(ts / 1000, UTC)
        # the broker's replay of a retained status to a restarted ingest, saying the state the
        # gateway is in (ingest left it as it was): no new disconnect, nothing new to decide
        replay = payload.get("retained") and payload.get("state") == presence["state"]
        if replay and presence["state_at"] < at:
            return []
        later = presence["state_at"] > at
        if later and presence["state"] != payload.get("state"):
            # an older status handled after a newer one (two ingest workers): only its clock counts
            return [d for d in decisions if d.dedup_key == rules.dedup_key("clock_skew", device=gateway)]
    return decisions


async def escalate_due(
    pool: Pool,
    *,
    email: bool = False,
    now: datetime | None = None,
    batch: int = ESCALATION_BATCH,
    workers: int = 1,
) -> int:
    """Move every alert past its deadline one tier up and notify that tier; returns how many.

    Due alerts are claimed ``batch`` per transaction by ``workers`` transactions side by side until
    none is left: the work grows with the number due, never paced by a sleep.
    """

    async def one_worker() -> int:
        done = 0
        while True:
            async with pool.connection() as conn:
                try:  # without savepoints first, as for work (see process_work)
                    async with conn.transaction():
                        due = await alerts_repo.claim_due_escalations(conn, now=now, limit=batch)
                        for alert in due:
                            await _escalate(conn, alert, email=email, now=now)
                    STATS.escalations += len(due)
                except Exception as exc:
                    log.info("an escalation batch failed (%s): taking it alert by alert", type(exc).__name__)
                    async with conn.transaction():
                        due = await alerts_repo.claim_due_escalations(conn, now=now, limit=batch)
                        for alert in due:
                            await _escalate_one(conn, alert, email=email, now=now)
            done += len(due)
            if len(due) < batch:
                return done

    counts = await asyncio.gather(*(one_worker() for _ in range(max(1, workers))))
    return sum(counts)


async def _escalate(conn: Conn, alert: dict[str, Any], *, email: bool, now: datetime | None) -> None:
    """One tier up and that tier notified; at the last tier, only its deadline cleared."""
    policy = await alerts_repo.policy_for(conn, kind=alert["kind"], resident=alert["resident_id"])
    nxt = escalation.tier(policy, alert["tier"] + 1)
    if nxt is None:
        await alerts_repo.set_escalation(conn, alert_id=alert["id"], tier=alert["tier"], due=None)
        return
    await alerts_repo.escalate(
        conn, alert_id=alert["id"], from_tier=alert["tier"], tier=nxt.tier,
        due=escalation.next_deadline(policy, nxt.tier, now or alerts_repo.now()),
    )  # fmt: skip
    await alerts_repo.notify_tier(
        conn, alert_id=alert["id"], tier=nxt, resident=alert["resident_id"], site=alert["site_id"],
        email=email,
    )  # fmt: skip


async def _escalate_one(conn: Conn, alert: dict[str, Any], *, email: bool, now: datetime | None) -> None:
    at = now or alerts_repo.now()
    try:
        async with conn.transaction():
            await _escalate(conn, alert, email=email, now=at)
        STATS.escalations += 1
    except Exception as exc:  # one alert's failure must not hold up the others' climb
        STATS.escalation_failures += 1
        log.exception("escalating alert %s failed; trying again in %s s", alert["id"], ESCALATION_RETRY_S)
        await alerts_repo.set_escalation(
            conn, alert_id=alert["id"], tier=alert["tier"], due=at + timedelta(seconds=ESCALATION_RETRY_S)
        )
        alarm = rules.work_failed(
            what="escalation of alert", ident=alert["id"], error=f"{type(exc).__name__}: {exc}"[:300],
            site=alert["site_id"], t_ms=_ms(at),
        )  # fmt: skip
        await _operator_alert(conn, alarm, now=now)


async def check_heartbeats(
    pool: Pool, *, limit_s: float = HEARTBEAT_LIMIT_S, now: datetime | None = None
) -> int:
    """Open (or clear) ``pipeline_stalled`` for each gateway; returns how many are stalled."""
    now = now or alerts_repo.now()
    stalled = 0
    async with pool.connection() as conn, conn.transaction():
        gateways = await gateways_repo.gateways_for_heartbeat_check(conn, since=now - timedelta(days=1))
        # a stall is one condition while it lasts, not a new detection every tick (each added a
        # trail entry: ~2,900 a day on one alert)
        live = set(await alerts_repo.live_alert_keys(conn, prefix="device:"))
        for gw in gateways:
            last = gw["last_heartbeat"]
            # a gateway told to beat every 10 min (its config) is not stalled after 5
            limit = max(limit_s, HEARTBEAT_PERIODS * (gw["heartbeat_s"] or 0))
            decision = rules.decide_heartbeat(
                gateway=gw["id"],
                site=gw["site_id"],
                state=gw["state"],
                last_heartbeat_ms=_ms(last) if last else None,
                now_ms=_ms(now),
                limit_s=limit,
                disabled=gw["disabled"],
            )
            since = (now - gw["state_at"]).total_seconds() if gw["state_at"] else None
            just_online = gw["state"] == "online" and since is not None and since < limit
            if isinstance(decision, rules.Open) and just_online:
                continue  # give a gateway that just came online time for its first heartbeat
            if decision is not None:
                stalled += isinstance(decision, rules.Open)
                if isinstance(decision, rules.Open) and decision.dedup_key in live:
                    continue
                await apply(conn, decision, now=now)
    return stalled


async def check_ingest_workers(pool: Pool, *, limit_s: float, now: datetime | None = None) -> int:
    """Open (or clear) the operators' alert for each ingest worker silent past ``limit_s`` (it
    records itself alive in ``ingest_workers`` every heartbeat); returns how many are silent. A
    worker retired (its row deleted) clears its alert too."""
    now = now or alerts_repo.now()
    silent = 0
    async with pool.connection() as conn, conn.transaction():
        workers = await gateways_repo.ingest_workers_seen(conn)
        live = set(await alerts_repo.live_alert_keys(conn, prefix=rules.INGEST_WORKER_KEY))
        for w in workers:
            decision = rules.decide_ingest_worker(
                client_id=w["client_id"],
                silent_s=(now - w["seen_at"]).total_seconds(),
                limit_s=limit_s,
                t_ms=_ms(now),
            )
            live.discard(decision.dedup_key)
            if isinstance(decision, rules.Open):
                silent += 1
                await _operator_alert(conn, decision, now=now)
            else:
                await apply(conn, decision, now=now)
        for key in live:  # retired: no row any more
            await apply(conn, rules.Clear(key, "the ingest worker was retired"), now=now)
    return silent


async def drive_inactivity(
    pool: Pool,
    *,
    now_s: float | None = None,
    email: bool = False,
    every_s: float = inactivity.TICK_S,
    batch: int = 20,
) -> int:
    """One round of every due resident's inactivity detector; returns how many alerts it raised.

    ``now_s`` is the wall clock; each home is judged by its own (:func:`inactivity.home_clock`).

    Residents are claimed a batch per transaction with ``FOR UPDATE SKIP LOCKED``: the detector's
    state, the alerts it raised and its next due time commit together, on whichever replica.
    """
    now_s = time.time() if now_s is None else now_s
    try:
        async with pool.connection() as conn:
            await detectors_repo.ensure_detectors(conn, detector=inactivity.DETECTOR)
    except (errors.LockNotAvailable, errors.DeadlockDetected):  # another replica adds them: next round
        log.info("inactivity: new residents' detectors left to the next round (another replica adds them)")
    raised = 0
    while True:
        async with pool.connection() as conn, conn.transaction():
            due = await detectors_repo.claim_detectors(
                conn, detector=inactivity.DETECTOR, now_s=now_s, limit=batch
            )
            for row in due:
                home_s = inactivity.home_clock(row, now_s)  # the simulator's clock for a simulated home
                at_s = inactivity.judged_at(row["state"] or {}, home_s=home_s, wall_s=now_s)
                decisions = await _drive_one(conn, row, now_s=at_s, every_s=every_s, clock=[now_s, home_s])
                decisions = inactivity.to_wall(decisions, home_s=home_s, wall_s=now_s)
                for decision in decisions:
                    await apply(conn, decision, email=email)
                raised += sum(isinstance(d, rules.Open) for d in decisions)
        if len(due) < batch:
            return raised


async def _drive_one(
    conn: Conn, row: dict[str, Any], *, now_s: float, every_s: float, clock: list[float]
) -> list[rules.Decision]:
    state = row["state"] or {}
    site, sensitivity = row["site_id"], float(row["sensitivity"])
    kinds = list(inactivity.SHARED_SENSOR_KINDS if row.get("shared") else inactivity.SENSOR_KINDS)
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
    limits = row.get("limits") or {}
    if (
        det is None
        or fitted_s is None
        or now_s - fitted_s >= inactivity.REFIT_S
        or inactivity.needs_refit(det, limits)  # a care worker set the new home's limits
    ):
        start = now_s - inactivity.FIT_DAYS * 86_400.0
        readings = await detectors_repo.home_readings(
            conn, site=site, after_s=start, until_s=now_s, kinds=kinds, resident=row["resident_id"]
        )
        history = inactivity.events(readings)
        sensors = inactivity.sensor_keys(readings)
        exclude = await detectors_repo.detector_exclusions(
            conn, resident=row["resident_id"], site=site, after_s=start, until_s=now_s,
            kinds=inactivity.INCIDENT_KINDS,
        )  # fmt: skip
        offset = inactivity.utc_offset_s(row["timezone"], datetime.fromtimestamp(now_s, UTC))
        det = await asyncio.to_thread(
            inactivity.fit,
            history,
            sensitivity=sensitivity,
            offset_s=offset,
            exclude=exclude,
            previous=det,
            limits=limits,
            shared=bool(row.get("shared")),  # someone else lives there: the partner's movements
        )  # the running detector, refitted, does not raise again what it already raised
        last, fitted_s = (history[-1][0] if history else start), now_s
        log.info("inactivity detector of %s fitted on %s readings", row["resident_id"], len(history))
    else:
        last = float(state["last_event_s"])
        readings = await detectors_repo.home_readings(
            conn, site=site, after_s=last, until_s=now_s, kinds=kinds, resident=row["resident_id"]
        )
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
    await detectors_repo.save_detector(
        conn,
        resident=row["resident_id"],
        detector=inactivity.DETECTOR,
        state={
            "detector": det.to_dict(),
            "last_event_s": last,
            "due_s": now_s + every_s,
            "sensors": sensors,
            "silent": silent,
            "clock": clock,  # [wall, home] at this tick: the home clock's speed, at the next
        },
        fitted_s=fitted_s,
    )
    return [*clears, *opened]


async def _work_loop(pool: Pool, conninfo: str, email: bool, not_worn_after_s: float) -> None:
    while True:
        try:
            async with await AsyncConnection.connect(conninfo, autocommit=True) as listener:
                await listener.execute("LISTEN alert_work")
                while True:
                    await drain_work(pool, email=email, not_worn_after_s=not_worn_after_s)
                    with contextlib.suppress(TimeoutError):
                        async for _ in listener.notifies(timeout=POLL_S, stop_after=1):
                            pass
        except asyncio.CancelledError:
            raise
        except Exception:
            STATS.rounds_failed += 1
            log.exception("alert work loop failed; retrying")
            await asyncio.sleep(POLL_S)


async def _escalation_loop(pool: Pool, email: bool, clock: Clock) -> None:
    """Escalate whatever is due, then sleep until the next deadline (at most a tick)."""
    while True:
        wait = ESCALATION_TICK_S
        try:
            await escalate_due(pool, email=email, now=clock(), workers=ESCALATION_WORKERS)
            async with pool.connection() as conn:
                due = await alerts_repo.next_escalation_at(conn)
            if due is not None:
                wait = min(max((due - clock()).total_seconds(), 0.0), ESCALATION_TICK_S)
        except asyncio.CancelledError:
            raise
        except Exception:  # the loop must outlive a failed round (database restart, ...)
            STATS.rounds_failed += 1
            log.exception("escalation failed; retrying")
        await asyncio.sleep(wait)


async def _tick(name: str, every_s: float, job: Callable[[], Any]) -> None:
    while True:
        try:
            await job()
        except asyncio.CancelledError:
            raise
        except Exception:  # the loop must outlive a failed round (database restart, ...)
            STATS.rounds_failed += 1
            log.exception("%s failed; retrying", name)
        await asyncio.sleep(every_s)


FEEDBACK_EVERY_S = 60.0


async def feed_back(pool: Pool) -> None:
    """Feed resolved alerts' outcomes back into detector sensitivity (safe on every replica)."""
    from eldercare.platform.repo import report

    async with pool.connection() as conn:
        n = await report.apply_feedback(conn)
    if n:
        log.info("fed back %s alert outcomes into detector sensitivity", n)


class Engine:
    """The engine's loops with their own event loop and connection pool.

    :meth:`run` runs them on the caller's loop (``eldercare engine``: a process of its own, which
    ``eldercare serve`` starts beside its API workers); :meth:`start` runs them on a thread of this
    process (tests, benches, ``create_app(start_engine=True)``). Either way no API work (requests
    queued for the API's pool, a busy API event loop) holds a connection an alarm needs; only a
    process of its own also keeps the engine's Python from waiting for the API's (the GIL).
    """

    def __init__(
        self, conninfo: str, *, email: bool, settings: Any, clock: Clock = alerts_repo.now,
        pool_size: int = ENGINE_POOL_SIZE,
    ) -> None:  # fmt: skip
        self.conninfo = conninfo
        self.email = email
        self.settings = settings
        self.clock = clock
        self.pool_size = pool_size
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alert-engine", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(30)

    async def stop(self) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop ended by itself
                self._loop.call_soon_threadsafe(self._stop.set)
        await asyncio.to_thread(self._thread.join, 30)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception:
            log.exception("the alert engine's thread stopped")
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        await self.run(self._stop)

    async def run(self, stop: asyncio.Event) -> None:
        """Run every loop on the running event loop until ``stop`` is set, then end them."""
        pool = open_pool(
            self.conninfo, min_size=2, max_size=self.pool_size, name="eldercare-engine",
            options=f"-c lock_timeout={LOCK_TIMEOUT_MS}",
        )  # fmt: skip
        await pool.open()  # connections come as the database allows; the loops retry meanwhile
        email, clock = self.email, self.clock
        # the rule of ingest's own /metrics (eldercare_ingest_silent_peers): silent 3 heartbeats
        ingest_limit = INGEST_SILENT_HEARTBEATS * self.settings.ingest_heartbeat_s
        jobs = {
            "alert-deliveries": Deliverer(pool, self.settings, on_gave_up=delivery_gave_up).run(),
            "alert-work": _work_loop(
                pool, self.conninfo, email,
                float(self.settings.not_worn_notice_min) * 60,
            ),
            "escalation": _escalation_loop(pool, email, clock),
            "heartbeats": _tick(
                "heartbeats", HEARTBEAT_TICK_S, lambda: check_heartbeats(pool, now=clock())
            ),
            "ingest-workers": _tick(
                "ingest-workers", INGEST_TICK_S,
                lambda: check_ingest_workers(pool, limit_s=ingest_limit, now=clock()),
            ),
            "inactivity": _tick(
                "inactivity", INACTIVITY_TICK_S,
                lambda: drive_inactivity(pool, now_s=clock().timestamp(), email=email),
            ),
            "outcome-feedback": _tick("outcome feedback", FEEDBACK_EVERY_S, lambda: feed_back(pool)),
            "activity-rollup": rollup.run(self.conninfo),
        }  # fmt: skip
        tasks = [asyncio.create_task(job, name=name) for name, job in jobs.items()]
        self._ready.set()
        log.info("alert engine running (%s loops)", len(tasks))
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await pool.close()


def engine_for(conninfo: str, settings: Any, clock: Clock = alerts_repo.now) -> Engine:
    """The engine as this deployment configures it (e-mails queued only where they can go)."""
    return Engine(conninfo, email=mail.can_send(settings), settings=settings, clock=clock)


async def start_pushes(state: AppState) -> list[asyncio.Task[None]]:
    """Start this replica's push hub: listening and routing on a thread of its own, with its own
    connections; the sends on the API's loop, where the sockets live."""
    hub = Hub(None, str(state.pool.conninfo))
    state.hub = hub
    pushes = asyncio.create_task(hub.run_threaded(), name="alert-pushes")

    async def stop() -> None:
        pushes.cancel()
        await asyncio.gather(pushes, return_exceptions=True)
        await hub.close()

    state.stops.append(stop)
    return [pushes]


async def start(state: AppState) -> None:
    """Start the engine on a thread of this process; ``state.stops`` ends it."""
    engine = engine_for(str(state.pool.conninfo), state.settings)
    engine.start()
    state.stops.append(engine.stop)
