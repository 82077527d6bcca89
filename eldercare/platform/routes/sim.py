"""Tester endpoints: trigger incidents in a running simulation and score the platform's answer."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from eldercare.platform.access import require_resident_access
from eldercare.platform.deps import ConnDep, SettingsDep, TesterUser
from eldercare.platform.errors import ApiError
from eldercare.platform.repo import sim as repo
from eldercare.platform.routes import ERRORS, ApiRoute
from eldercare.platform.schemas import (
    ErrorOut,
    Instant,
    SimIncidentIn,
    SimIncidentOut,
    SimScoreOut,
    ValidationErrorOut,
)

log = logging.getLogger(__name__)
# What went wrong on the way to a running simulation, by sim_control.NoRunnerError.why
NO_RUNNER = {
    "broker": "sim.no_runner.broker",
    "subscription": "sim.no_runner.subscription",
    "timeout": "sim.no_runner.timeout",
    "refused": "sim.refused",
}

router = APIRouter(route_class=ApiRoute, prefix="/sim", tags=["sim"], responses=ERRORS)
ACK_TIMEOUT_S = 5.0


@router.post(
    "/incidents",
    response_model=SimIncidentOut,
    status_code=201,
    responses={
        422: {"model": ValidationErrorOut, "description": "The simulation refused the incident (says why)"},
        503: {"model": ErrorOut, "description": "No simulation is running under this topic root"},
    },
)
async def trigger_incident(
    request: Request, body: SimIncidentIn, user: TesterUser, conn: ConnDep, settings: SettingsDep
) -> SimIncidentOut:
    """Publish a trigger on ``{root}/_sim/control``; with ``wait_for_ack`` wait for the ground truth."""
    grant = await require_resident_access(
        conn, user, body.resident, "profile", route=f"POST {request.url.path}", action="sim_trigger"
    )
    if not grant.simulated:
        raise ApiError(403, "sim.not_simulated", id=body.resident)
    req: dict[str, Any] = body.model_dump(exclude={"wait_for_ack"}, exclude_none=True)
    truth = clock = None
    if body.wait_for_ack:
        from eldercare.sim_control import NoRunnerError, send_trigger

        try:
            answer = await asyncio.to_thread(
                send_trigger, settings, settings.mqtt_topic_root, req, ACK_TIMEOUT_S
            )
        except NoRunnerError as exc:  # in the reader's language, with the case's own details
            # a refusal is the request's fault (no such room, a resident collapsed for good): 422
            raise ApiError(422 if exc.why == "refused" else 503, NO_RUNNER[exc.why], **exc.params) from None
        except OSError as exc:
            raise ApiError(503, "sim.no_runner", reason=str(exc)) from None
        truth, clock = answer.get("truth"), answer.get("clock")
    else:
        from eldercare.platform.publish import publish_retained

        topic = f"{settings.mqtt_topic_root}/_sim/control"
        try:
            await asyncio.to_thread(
                _publish_once, settings, topic, json.dumps(req).encode(), publish_retained
            )
        except (OSError, ValueError) as exc:
            raise ApiError(503, "sim.no_runner", reason=str(exc)) from None
    row = await repo.record_incident(
        conn,
        user_id=user.id,
        resident_id=body.resident,
        kind=body.kind,
        request=req,
        truth=truth,
        clock=clock,
    )
    return SimIncidentOut(
        id=row["id"],
        resident_id=row["resident_id"],
        kind=row["kind"],
        requested_at=row["requested_at"],
        acknowledged=truth is not None,
        truth=truth,
    )


def _publish_once(settings: Any, topic: str, payload: bytes, _: Any) -> None:
    import paho.mqtt.publish as publish

    from eldercare.platform.publish import _broker

    host, port, _tls, auth = _broker(settings)
    publish.single(topic, payload, qos=1, retain=False, hostname=host, port=port, auth=auth)  # type: ignore[arg-type]


def _to_wall(inc: dict[str, Any]) -> dict[str, Any] | None:
    """Map a truth record's simulated times to wall-clock seconds (alerts are in wall-clock time)."""
    truth = inc["truth"]
    if not truth:
        return None
    clock = inc["clock"]
    if clock:

        def wall(s: float) -> float:
            return float(clock["wall_start"]) + (s - float(clock["sim_start"])) / float(clock["speed"])
    else:  # the simulation's "now" was the trigger time; assume real-time speed
        offset = inc["requested_at"].timestamp() - float(truth["t"])

        def wall(s: float) -> float:
            return s + offset

    out = dict(truth)
    for k in ("t", "alert_from", "end"):
        if out.get(k) is not None:
            out[k] = wall(float(out[k]))
    return out


def _newest_run(incidents: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The clock of the newest run an incident was triggered in (the runner answers with it)."""
    clocks = [i["clock"] for i in incidents if i["truth"] and i["clock"] and "wall_start" in i["clock"]]
    return max(clocks, key=lambda c: float(c["wall_start"]), default=None)


def _same_run(clock: dict[str, Any] | None, run: dict[str, Any]) -> bool:
    return clock is not None and all(clock.get(k) == run[k] for k in ("wall_start", "sim_start", "speed"))


@router.get("/score", response_model=SimScoreOut, responses={501: {"model": ErrorOut}})
async def score(
    user: TesterUser,
    conn: ConnDep,
    since: Instant | None = None,
    window_h: Annotated[float, Query(gt=0, le=24 * 31)] = 2.0,
) -> SimScoreOut:
    """Score the incidents triggered through this API against the alerts raised for simulated sites.

    The runner answers each trigger with its clock: the newest run is then scored in its own
    simulated time, up to now, over every simulated site, as ``eldercare simulate score`` scores
    the same run from its truth file. Incidents without a clock (an older runner) are scored in
    wall-clock time instead, as if the simulation ran at real-time speed.
    """
    try:
        from eldercare import scoring
        from eldercare.scoring import Clock, TruthRecord
    except ImportError:
        raise ApiError(501, "sim.unavailable") from None
    incidents = await repo.incidents(conn, since=since)
    run = _newest_run(incidents)
    sites = await repo.simulated_sites(conn)
    alerts, trail = await repo.alerts_of_sites(conn, sites=sites, since=since) if sites else ([], [])
    # a simulated home's own time of detection counts with the run's clock
    rows, trail_rows = scoring.alert_rows(alerts, trail, home_time=run is not None)
    if run is not None:
        # (a trigger an older runner answered with no truth is no incident)
        truth = [
            TruthRecord.from_json(i["truth"]) for i in incidents if i["truth"] and _same_run(i["clock"], run)
        ]
        clock: dict[str, Any] | None = run | {"sim_now": Clock.from_json(run).to_sim(time.time())}
        now = None  # the clock's sim_now
    else:
        truth = [TruthRecord.from_json(t) for t in (_to_wall(i) for i in incidents) if t]
        clock, now = None, time.time()  # truth and alerts are in wall-clock time here
    report = scoring.score(
        truth,
        rows,
        trail_rows,
        residents=await repo.simulated_residents(conn),
        clock=clock,
        window_s=window_h * 3600,
        now=now,
    )
    return SimScoreOut(incidents=len(truth), report=report.to_json())
