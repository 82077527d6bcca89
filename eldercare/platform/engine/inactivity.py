"""Driving the inactivity detector from the database and a clock, one resident at a time.

Each resident has a ``detector_settings`` row (``detector = 'inactivity'``) holding the fitted
detector's state as JSON, when it was fitted, and the sensitivity the outcome feedback adjusts.
Every tick a replica claims due rows with ``FOR UPDATE SKIP LOCKED``, so each resident is driven
by exactly one replica at a time and the state never forks. Per resident: refit once a day from
the last :data:`FIT_DAYS` days of the home's readings, otherwise feed the readings since the last
event the detector saw, then ``check(now)``; the detector's alerts become :class:`rules.Open`
decisions carried out by the engine like any other.

The daily fit leaves out what must not be learned as normal (:func:`repo.detector_exclusions`):
the resident's confirmed incidents (a real collapse is not a long nap) and the home's gateway
outages. A ``device_silent`` detection (one sensor silent while the rest of the home is active)
becomes a ``device_offline`` alert for that sensor, with the detector's explanation; it resolves
itself as soon as the sensor reports again. The detector's own "no gateway heartbeat" is left to
the gateway's status and heartbeat checks, which already raise ``device_offline`` and
``pipeline_stalled``.

One clock per home: a real home is judged by the wall clock; a simulated one by its own clock,
the newest time its gateways reported (the simulator's clock, hours ahead of the wall at 60x), so
its silences, refits and ticks are in its time (:func:`home_clock`). Its alerts are stored at the
wall-clock moment they were raised, with the simulated times kept in the summary
(``sim_detected_ms``, ``sim_since_ms``, ``sim_offset_s``) for the screens to show, marked
(:func:`to_wall`).

This module holds the pure parts (readings to detector events, detector alerts to decisions);
the SQL is in :mod:`eldercare.platform.repo.detectors`, the loop in :mod:`.service`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from eldercare.models.inactivity import FIT_WINDOW_DAYS, InactivityAlert, InactivityDetector
from eldercare.models.inactivity_profile import LIMIT_ROOMS
from eldercare.models.inactivity_track import room_name
from eldercare.platform.engine import rules

DETECTOR = "inactivity"
FIT_DAYS = FIT_WINDOW_DAYS  # 21: three weeks, so a routine changed a week ago is already most of it
REFIT_S = 86_400.0
TICK_S = 60.0
SETTLE_WALL_S = 5.0  # wall seconds a reading may take from its stamp to the database
MAX_RATE = 3600.0  # the fastest simulated clock (simulate run --speed)
MAX_SETTLE_S = 600.0  # never judge a home more than this far (its time) behind its clock
SENSOR_KINDS = ("pir", "door", "bed", "plug", "sos")
# in a home of two, also the resident's own wearable (its steps): their stillness while the partner
# moves through the shared sensors (a reading a minute: read only where it is needed)
SHARED_SENSOR_KINDS = (*SENSOR_KINDS, "wearable")
# detector kinds that become resident alerts; device_silent is left to the gateway's own checks
ALERT_KIND = {
    "inactivity": "inactivity",
    "no_wake": "inactivity",
    "bathroom_too_long": "inactivity",
    "night_wandering": "night_wandering",
    "bed_exit_no_return": "bed_exit_no_return",
}
# confirmed incidents of these kinds are left out of the next fit
INCIDENT_KINDS = ["fall", "sos", "inactivity", "night_wandering", "bed_exit_no_return"]


def home_clock(row: dict[str, Any], wall_s: float) -> float:
    """The home's time: the wall clock for a real home, its gateways' newest report for a simulated one."""
    if row.get("simulated") and row.get("home_s") is not None:
        return float(row["home_s"])
    return wall_s  # (a simulated home with no report yet is never claimed: repo.claim_detectors)


def judged_at(state: dict[str, Any], *, home_s: float, wall_s: float) -> float:
    """The time a home is judged at: its clock less the time readings may still be on their way.

    Readings of one home can be committed out of order (several ingest workers; a gateway's
    heartbeat stamped before the readings batched with the next message), and the detector is fed
    each reading once, in time order, so it waits :data:`SETTLE_WALL_S` of wall time: in a simulated
    home's clock that is its speed times as long, the speed measured between two ticks
    (``state['clock']``: the previous tick's wall and home times), at most :data:`MAX_SETTLE_S`
    (a run at 600x and more would otherwise be judged an hour late).
    """
    rate = 1.0
    prev = state.get("clock")
    if prev and wall_s - float(prev[0]) > 0.5:
        rate = min(max((home_s - float(prev[1])) / (wall_s - float(prev[0])), 1.0), MAX_RATE)
    return home_s - min(SETTLE_WALL_S * rate, MAX_SETTLE_S)


def to_wall(decisions: Iterable[rules.Decision], *, home_s: float, wall_s: float) -> list[rules.Decision]:
    """A simulated home's decisions moved to wall-clock time: detected when raised (``wall_s``), the
    silence's start shifted by the home's offset (``home_s - wall_s``), the simulated times kept in
    the summary, marked as such. A real home's (``home_s == wall_s``) are unchanged."""
    offset_s = home_s - wall_s
    if offset_s == 0:
        return list(decisions)
    out: list[rules.Decision] = []
    for d in decisions:
        if not isinstance(d, rules.Open):
            out.append(d)
            continue
        summary = {**d.summary, "sim_detected_ms": d.detected_ms, "sim_offset_s": round(offset_s, 3)}
        if "since_ms" in summary:
            summary["sim_since_ms"] = summary["since_ms"]
            summary["since_ms"] = int(summary["since_ms"] - offset_s * 1000)
        out.append(replace(d, detected_ms=int(wall_s * 1000), summary=summary))
    return out


def utc_offset_s(timezone: str | None, at: datetime) -> float:
    """The site's offset from UTC at ``at`` (hours of the day are local to the home)."""
    try:
        offset = at.astimezone(ZoneInfo(timezone or "UTC")).utcoffset()
    except (ZoneInfoNotFoundError, ValueError):
        return 0.0
    return offset.total_seconds() if offset is not None else 0.0


def events(rows: Iterable[dict[str, Any]]) -> list[tuple[float, str, str, float]]:
    """Readings (``t`` in seconds, sensor ``kind``, ``room``, ``value``) as detector events."""
    return [(float(r["t"]), str(r["kind"]), str(r["room"] or ""), float(r["value"])) for r in rows]


def sensor_keys(rows: Iterable[dict[str, Any]]) -> dict[str, list[str]]:
    """The detector's sensor keys (``pir:kitchen``) to ``[gateway, sensor]`` ids, from readings."""
    out: dict[str, list[str]] = {}
    for r in rows:
        if r.get("sensor_id") and r["kind"] != "heartbeat":
            out[f"{str(r['kind']).lower()}:{room_name(str(r['room'] or ''))}"] = [
                str(r["gateway_id"]),
                str(r["sensor_id"]),
            ]
    return out


def fit(
    history: list[tuple[float, str, str, float]],
    *,
    sensitivity: float,
    offset_s: float,
    exclude: Iterable[tuple[float, float]] = (),
    previous: InactivityDetector | None = None,
    limits: dict[str, float] | None = None,
    shared: bool = False,
) -> InactivityDetector:
    """Learn the home again; ``previous``, the detector that was running, keeps what it raised;
    ``limits``: the care worker's starting limits (seconds by room) instead of the population's;
    ``shared``: another resident lives in the home (fed this resident's own bed mat only)."""
    det = previous if previous is not None else InactivityDetector()
    det.sensitivity, det.utc_offset_s, det.shared = sensitivity, offset_s, shared
    det.starting_limits = starting_limits(limits)
    return det.fit(history, exclude=list(exclude))


def starting_limits(limits: dict[str, Any] | None) -> dict[str, float]:
    """The care worker's starting limits as the detector takes them (known rooms, seconds > 0)."""
    return {r: float(v) for r, v in (limits or {}).items() if r in LIMIT_ROOMS and float(v) > 0}


def needs_refit(det: InactivityDetector, limits: dict[str, Any] | None) -> bool:
    """The care worker changed the starting limits since the detector was fitted: learn again now."""
    return det.starting_limits != starting_limits(limits)


def restore(state: dict[str, Any], *, sensitivity: float) -> InactivityDetector:
    det = InactivityDetector.from_dict(state["detector"])
    det.sensitivity = sensitivity  # the outcome feedback may have moved it since the last tick
    return det


def device_key(gateway: str, sensor: str) -> str:
    return rules.dedup_key("device_offline", device=f"{gateway}/{sensor}")


def decisions(
    alerts: Iterable[InactivityAlert],
    *,
    resident: str,
    site: str,
    sensors: dict[str, list[str]] | None = None,
) -> list[rules.Open]:
    """The detector's alerts as engine decisions, with its explanation in both languages.

    ``sensors`` maps the detector's sensor keys to ``[gateway, sensor]`` ids: a silent sensor
    found there becomes a ``device_offline`` alert for it (the care team's, not the family's).
    """
    out = []
    for a in alerts:
        kind = ALERT_KIND.get(a.kind)
        ids = (sensors or {}).get(a.sensor) if a.kind == "device_silent" else None
        if ids is not None:
            gateway, sensor = ids
            out.append(
                rules.Open(
                    "device_offline",
                    device_key(gateway, sensor),
                    int(a.t * 1000),
                    resident_id=None,
                    site_id=site,
                    gateway_id=gateway,
                    sensor_id=sensor,
                    summary={
                        **a.reasons,
                        "detector_kind": a.kind,
                        "room": a.room,
                        "expected_s": round(a.expected_s),
                        "observed_s": round(a.observed_s),
                    },
                    evidence={"detector": DETECTOR, **a.to_dict()},
                )
            )
            continue
        if kind is None:
            continue
        figures = {
            "detector_kind": a.kind,
            "room": a.room,
            "expected_s": round(a.expected_s),
            "observed_s": round(a.observed_s),
            "threshold_s": round(a.threshold_s),
            "since_ms": int(a.since * 1000),
        }
        out.append(
            rules.Open(
                kind,
                rules.dedup_key(kind, resident=resident, site=site),
                int(a.t * 1000),
                resident_id=resident,
                site_id=site,
                gateway_id=None,
                sensor_id=a.sensor or None,
                summary={**a.reasons, **figures},
                evidence={"detector": DETECTOR, **a.to_dict()},
            )
        )
    return out


def cleared(
    silent: dict[str, str], fresh: Iterable[tuple[float, str, str, float]]
) -> tuple[list[rules.Clear], dict[str, str]]:
    """Sensors the detector found silent that have reported again: resolve their device alerts.

    ``silent`` maps the detector's sensor keys to the dedup keys of their open device alerts;
    returns the clears and what is still silent.
    """
    seen = {f"{kind.lower()}:{room_name(room)}" for _, kind, room, _ in fresh}
    clears = [rules.Clear(key, "the sensor is reporting again") for s, key in silent.items() if s in seen]
    return clears, {s: key for s, key in silent.items() if s not in seen}
