"""Scoring: ground truth against the alerts the platform raised. Pure: lists in, a report out.

A neutral module: the simulators write the ground truth, the platform's tester API and
`eldercare simulate score` both score with it, and neither imports the other.

An incident counts as *caught* when an alert of a matching kind (see
:data:`~eldercare.kinds.CAUGHT_BY`) for the same resident (or, for device problems,
the same site) was opened between shortly before the incident's start and ``window_s`` after its
end (or, for incidents that never end, after the time from which an alert was due). Its
*detection delay* is from the incident's start to the first such alert, in simulated seconds: alert
times (``opened_at``, wall clock) are mapped through the run's clock when the truth file has one,
unless the alert carries its home's own time (``sim_detected_ms``: the engine judged that simulated
home by its clock), which is exact.
The inactivity detector is also scored as ``eldercare models evaluate`` scores it offline
(:func:`inactivity_figures`): the resident incidents it should catch, caught by its own alert kinds
only, and its alerts that caught nothing per resident-week.
Alerts that catch no incident are *false alarms*, counted per resident-week of the scored period.
An incident not caught whose window is still open at the end of the scored period (a live run
stopped minutes after it began) is *under way*, not missed: its alert may not be due yet.
*Time to acknowledge* is per escalation tier, in wall-clock seconds (people answer in real time),
from when that tier was notified to the acknowledgement.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from eldercare.kinds import CAUGHT_BY, INCIDENT_KINDS

WEEK = 7 * 86_400.0
EARLY_S = 60.0  # an alert this much before the incident's start still belongs to it (clock skew)
# Alerts that are about the platform itself, not about residents: never false alarms.
NOT_SCORED = ("pipeline_stalled",)
# as eldercare.models.evaluate_inactivity: the incidents the inactivity detector is judged on, and
# the platform alert kinds it raises
DETECTOR_INCIDENTS = ("fall", "collapse", "no_wake", "night_wandering", "bathroom_too_long")
DETECTOR_ALERTS = ("inactivity", "night_wandering", "bed_exit_no_return")


@dataclass(frozen=True, slots=True)
class TruthRecord:
    """What really happened: the yardstick for detectors and for the whole platform."""

    kind: str
    resident: str
    t: float  # when it happened (for no_wake: the planned wake time)
    alert_from: float  # an alert for it before this time is not yet justified
    end: float | None = None  # when the situation ended (rescued, back home, repaired); None: never
    room: str | None = None
    sensor: str | None = None
    notes: str = ""
    site: str | None = None

    @property
    def alert_kinds(self) -> tuple[str, ...]:
        return CAUGHT_BY[self.kind]

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        if d["end"] is not None and math.isinf(d["end"]):
            d["end"] = None
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TruthRecord:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


@dataclass(frozen=True, slots=True)
class AlertRow:
    id: int
    kind: str
    resident: str | None
    site: str | None
    sensor: str | None
    detected_at: float
    opened_at: float
    acknowledged_at: float | None
    outcome: str | None
    sim_at: float | None = None  # a simulated home's own time of detection (the alert's summary)


@dataclass(frozen=True, slots=True)
class TrailRow:
    alert_id: int
    at: float
    action: str
    tier: int | None
    sim_at: float | None = None  # a later detection's own time in its simulated home (its detail)


def alert_rows(
    alerts: Sequence[dict[str, Any]], trail: Sequence[dict[str, Any]], *, home_time: bool
) -> tuple[list[AlertRow], list[TrailRow]]:
    """The rows of ``platform.repo.sim.alerts_of_sites`` as the scorer takes them. ``home_time``:
    keep the simulated home's own time of detection (truth in a run's simulated time: the CLI,
    the tester API given the runner's clock), or not (truth in wall-clock time)."""
    return (
        [
            AlertRow(
                a["id"],
                a["kind"],
                a["resident_id"],
                a["site"],
                a["sensor_id"],
                a["detected_at"],
                a["opened_at"],
                a["acknowledged_at"],
                a["outcome"],
                a["sim_at"] if home_time else None,
            )
            for a in alerts
        ],
        [
            TrailRow(r["alert_id"], r["at"], r["action"], r["tier"], r.get("sim_at") if home_time else None)
            for r in trail
        ],
    )


@dataclass(frozen=True, slots=True)
class Clock:
    """Maps the platform's wall-clock times to the simulation's."""

    wall_start: float = 0.0
    sim_start: float = 0.0
    speed: float = 1.0

    def to_sim(self, wall: float) -> float:
        return self.sim_start + (wall - self.wall_start) * self.speed

    @classmethod
    def from_json(cls, d: dict[str, Any] | None) -> Clock:
        if not d:
            return cls()
        return cls(float(d["wall_start"]), float(d["sim_start"]), float(d["speed"]))


def _pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


@dataclass(slots=True)
class KindScore:
    incidents: int = 0
    caught: int = 0
    under_way: int = 0  # not caught yet, but the run ended before their window did
    delays: list[float] = field(default_factory=list)

    @property
    def missed(self) -> int:
        return self.incidents - self.caught - self.under_way


@dataclass(slots=True)
class Report:
    kinds: dict[str, KindScore]
    false_alarms: dict[str, int]
    resident_weeks: float
    ack: dict[int, list[float]]  # tier -> seconds from notification to acknowledgement
    matched: dict[int, list[int]]  # truth index -> alert ids
    inactivity: dict[str, Any] = field(default_factory=dict)  # see inactivity_figures

    @property
    def false_alarms_per_resident_week(self) -> float | None:
        if self.resident_weeks <= 0:
            return None
        return sum(self.false_alarms.values()) / self.resident_weeks

    def to_json(self) -> dict[str, Any]:
        def r(x: float | None) -> float | None:
            return None if x is None else round(x, 1)

        return {
            "kinds": {
                k: {
                    "incidents": s.incidents,
                    "caught": s.caught,
                    "missed": s.missed,
                    "under_way": s.under_way,
                    "delay_median_s": r(_pct(s.delays, 0.5)),
                    "delay_p90_s": r(_pct(s.delays, 0.9)),
                }
                for k, s in self.kinds.items()
            },
            "false_alarms": dict(self.false_alarms),
            "resident_weeks": round(self.resident_weeks, 3),
            "false_alarms_per_resident_week": r(self.false_alarms_per_resident_week),
            "inactivity": self.inactivity,
            "time_to_ack": {
                str(t): {"acknowledged": len(v), "median_s": r(_pct(v, 0.5)), "p90_s": r(_pct(v, 0.9))}
                for t, v in sorted(self.ack.items())
            },
        }

    def table(self) -> str:
        def f(x: float | None) -> str:
            if x is None:
                return "-"
            return f"{x / 60:.1f} min" if x >= 120 else f"{x:.0f} s"

        lines = [
            f"{'incident 事件':<22}{'total 总数':>11}{'caught 捕获':>12}{'missed 漏报':>12}"
            f"{'under way 进行中':>16}{'delay p50 延迟中位':>20}{'delay p90':>12}"
        ]
        for k, s in self.kinds.items():
            lines.append(
                f"{k:<24}{s.incidents:>9}{s.caught:>12}{s.missed:>12}{s.under_way:>16}"
                f"{f(_pct(s.delays, 0.5)):>22}{f(_pct(s.delays, 0.9)):>12}"
            )
        rate = self.false_alarms_per_resident_week
        lines.append("")
        lines.append(
            f"false alarms 误报: {sum(self.false_alarms.values())} "
            f"({', '.join(f'{k} {v}' for k, v in sorted(self.false_alarms.items())) or 'none'}); "
            f"per resident-week 每人每周: {'-' if rate is None else f'{rate:.2f}'} "
            f"over {self.resident_weeks:.1f} resident-weeks"
        )
        d = self.inactivity
        if d.get("incidents"):
            fa = d["false_alarms_per_resident_week"]
            lines.append(
                f"inactivity detector 不活动检测 (as models evaluate): caught {d['caught']} of"
                f" {d['incidents']}, delay p50 {f(d['delay_median_s'])}, p90 {f(d['delay_p90_s'])};"
                f" false alarms {d['false_alarms']} ({'-' if fa is None else f'{fa:.2f}'} per resident-week)"
            )
        if self.ack:
            lines.append("")
            lines.append(f"{'tier 层级':<12}{'acknowledged 已确认':>20}{'ack p50':>12}{'ack p90':>12}")
            for t, v in sorted(self.ack.items()):
                lines.append(f"{t:<14}{len(v):>18}{f(_pct(v, 0.5)):>12}{f(_pct(v, 0.9)):>12}")
        else:
            lines.append("no acknowledged alerts 无已确认告警")
        return "\n".join(lines)


def _same_subject(rec: TruthRecord, a: AlertRow) -> bool:
    if a.resident is not None and a.resident == rec.resident:
        return True
    return rec.site is not None and a.site == rec.site and (a.resident is None or a.resident == rec.resident)


def score(
    truth: Sequence[TruthRecord],
    alerts: Sequence[AlertRow],
    trail: Sequence[TrailRow] = (),
    *,
    residents: int,
    clock: dict[str, Any] | Clock | None = None,
    window_s: float = 7200.0,
    period_s: float | None = None,
    now: float | None = None,
) -> Report:
    """Match truth to alerts; ``period_s`` defaults to the run's span from the clock or the data.

    ``now`` (simulated time; default the clock's ``sim_now``, if any) is when the scored period
    ended: an incident not caught whose window runs past it is under way rather than missed.
    """
    clk = clock if isinstance(clock, Clock) else Clock.from_json(clock)
    run_clock = clock if isinstance(clock, dict) and "sim_now" in clock else None
    if now is None and run_clock is not None:
        now = float(run_clock["sim_now"])
    identity = clock is None or (isinstance(clock, dict) and not clock)
    earlier: list[AlertRow] = []
    if run_clock is not None and "wall_start" in run_clock:
        # an alert opened before the run began is an earlier run's (the same homes run again, or
        # stopped a minute before): neither a catch nor a false alarm of this one
        began = float(run_clock["wall_start"])
        earlier = [a for a in alerts if a.opened_at < began]
        alerts = [a for a in alerts if a.opened_at >= began]
        trail = [r for r in trail if r.at >= began]
    sim_t = {
        a.id: a.sim_at if a.sim_at is not None else (a.opened_at if identity else clk.to_sim(a.opened_at))
        for a in alerts
    }
    # a later detection joined to an alert still open counts as caught, as the detector's own
    # figures count it: in an unattended run the first alert would otherwise hide every later
    # incident of its resident (a demo whose fall and bathroom stay land in the one home occupied)
    again = _detections_again([*alerts, *earlier], trail, clk, identity)  # this run's, of any alert
    sim_t.update({a.id: a.opened_at for a in again})
    kinds, matched = _match(truth, [*alerts, *again], sim_t, window_s=window_s, now=now)
    caught = {a for ids in matched.values() for a in ids}
    stopped = run_clock.get("wall_stopped") if run_clock is not None else None
    false: dict[str, int] = defaultdict(int)
    for a in alerts:
        if a.id not in caught and a.kind not in NOT_SCORED and not _after_end(a, sim_t[a.id], now, stopped):
            false[a.kind] += 1
    if period_s is None and run_clock is not None:
        period_s = float(run_clock["sim_now"]) - clk.sim_start
    elif period_s is None:
        times = [r.t for r in truth] + list(sim_t.values())
        period_s = (max(times) - min(times)) if len(times) > 1 else 0.0
    ack = _time_to_ack(alerts, trail)
    weeks = residents * max(0.0, period_s) / WEEK
    figures = inactivity_figures(truth, [*alerts, *again], sim_t, weeks=weeks, window_s=window_s, now=now)
    return Report(kinds, dict(false), weeks, ack, matched, figures)


def _after_end(a: AlertRow, sim_at: float, now: float | None, wall_stopped: float | None) -> bool:
    """An alert opened once the run had stopped is no false alarm of it: the simulator's gateways
    say "offline" as they stop, and a platform that runs on opens alerts for them. Judged by the
    wall clock when the run says when it stopped stepping (a runner lagging at the end would put
    its last moments past its ``sim_now``), else by simulated time against ``now``."""
    if a.sim_at is None and wall_stopped is not None:
        return a.opened_at >= float(wall_stopped)
    return now is not None and sim_at >= now


def _detections_again(
    alerts: Sequence[AlertRow], trail: Sequence[TrailRow], clk: Clock, identity: bool
) -> list[AlertRow]:
    """Later detections that joined a live alert (``detected_again`` in its trail: the detector's, a
    second SOS press, a second fall), as alerts of their own at their simulated time (negative ids):
    offline each would be an alert, and an alert nobody closes in an unattended run would otherwise
    hide every later incident. (The detector's own figures keep only its kinds.)

    Dated, like first detections, by the home's own time the detector saw them (``sim_at``) when
    the row has it: the row's ``at`` is when the engine got to it, which for an engine behind a
    fast simulation is hours of the home's time later (a detection in time scored as a miss and a
    false alarm)."""
    by_id = {a.id: a for a in alerts}  # any kind: a second SOS press joins the open SOS alert too
    out = []
    for n, row in enumerate(trail):
        a = by_id.get(row.alert_id)
        if a is not None and row.action == "detected_again":
            t = row.at if identity else clk.to_sim(row.at)  # when the engine got to it
            t = row.sim_at if row.sim_at is not None else t
            out.append(AlertRow(-1 - n, a.kind, a.resident, a.site, a.sensor, t, t, None, None))
    return out


def inactivity_figures(
    truth: Sequence[TruthRecord],
    alerts: Sequence[AlertRow],
    sim_t: dict[int, float],
    *,
    weeks: float,
    window_s: float,
    now: float | None,
) -> dict[str, Any]:
    """The inactivity detector's figures as ``eldercare models evaluate`` gives them offline.

    Incidents of :data:`DETECTOR_INCIDENTS` caught by the detector's own alerts and later detections
    (a fall caught only by the wearable does not count), median and p90 delay (s), and those that
    caught none, per resident-week. Incidents under way at the end are left out of the count.
    """
    own = [a for a in alerts if a.kind in DETECTOR_ALERTS]
    mine = [r for r in truth if r.kind in DETECTOR_INCIDENTS]
    kinds, matched = _match(mine, own, sim_t, window_s=window_s, now=now)
    used = {a for ids in matched.values() for a in ids}
    false = sum(1 for a in own if a.id not in used)
    delays = [d for s in kinds.values() for d in s.delays]
    return {
        "incidents": sum(s.incidents - s.under_way for s in kinds.values()),
        "caught": sum(s.caught for s in kinds.values()),
        "delay_median_s": None if not delays else round(_pct(delays, 0.5) or 0.0, 1),
        "delay_p90_s": None if not delays else round(_pct(delays, 0.9) or 0.0, 1),
        "false_alarms": false,
        "false_alarms_per_resident_week": round(false / weeks, 3) if weeks > 0 else None,
    }


def _match(
    truth: Sequence[TruthRecord],
    alerts: Sequence[AlertRow],
    sim_t: dict[int, float],
    *,
    window_s: float,
    now: float | None,
) -> tuple[dict[str, KindScore], dict[int, list[int]]]:
    """Each incident against the alerts of its kinds and subject raised within its window.

    Returns the scores per incident kind and, per incident (its index), the alerts that caught it.
    """
    kinds = {k: KindScore() for k in INCIDENT_KINDS if any(r.kind == k for r in truth)}
    matched: dict[int, list[int]] = {}
    for i, rec in enumerate(truth):
        ks = kinds[rec.kind]
        ks.incidents += 1
        until = (rec.end if rec.end is not None else rec.alert_from) + window_s
        hits = [
            a
            for a in alerts
            if a.kind in CAUGHT_BY[rec.kind]
            and _same_subject(rec, a)
            and rec.t - EARLY_S <= sim_t[a.id] <= until
        ]
        if hits:
            ks.caught += 1
            ks.delays.append(max(0.0, min(sim_t[a.id] for a in hits) - rec.t))
            matched[i] = [a.id for a in hits]
        elif now is not None and now < until:
            ks.under_way += 1
    return kinds, matched


def _time_to_ack(alerts: Sequence[AlertRow], trail: Sequence[TrailRow]) -> dict[int, list[float]]:
    by_alert: dict[int, list[TrailRow]] = defaultdict(list)
    for row in trail:
        by_alert[row.alert_id].append(row)
    out: dict[int, list[float]] = defaultdict(list)
    for a in alerts:
        if a.acknowledged_at is None:
            continue
        rows = sorted(by_alert.get(a.id, []), key=lambda r: r.at)
        ack_row = next((r for r in rows if r.action == "acknowledged"), None)
        tier = ack_row.tier if ack_row is not None and ack_row.tier is not None else None
        if tier is None:  # the tier reached by then: the last escalation before the acknowledgement
            tiers = [
                r.tier
                for r in rows
                if r.action in ("opened", "notified", "escalated")
                and r.tier is not None
                and r.at <= a.acknowledged_at
            ]
            tier = tiers[-1] if tiers else 1
        notified = [r.at for r in rows if r.action in ("notified", "escalated", "opened") and r.tier == tier]
        since = min(notified) if notified else a.opened_at
        out[tier].append(max(0.0, a.acknowledged_at - since))
    return dict(out)


def median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None
