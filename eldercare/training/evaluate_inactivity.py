"""Evaluate the inactivity detector on simulated homes it never saw, beside a fixed 4-hour timeout.

Each home (seed drawn from the evaluation seed; the detector's priors were tuned on homes 0-99)
lives ``HISTORY_DAYS`` of normal life, on which the detector is fitted, then ``TEST_DAYS`` with one
incident of each kind on distinct days (:func:`eldercare.simulators.routine.random_incidents`).
An incident is *caught* by an alert whose platform kind matches it
(:data:`~eldercare.simulators.routine.ALERT_KINDS`), raised from a minute before it began to two
hours after it ended (as :mod:`eldercare.scoring` matches). Delay is from the start of
the incident (and, beside it, from ``alert_from``: when the situation became visible, e.g. the
planned wake time or 30 minutes into a bathroom stay). Every other alert is a false alarm, counted
per resident-week of test time.

Scenarios, as the issue words them: clean sensors; 10 % and 20 % of motion (PIR) events dropped;
10 % and 20 % spurious PIR triggers (spurious events as a share of real motion events); both at
10 %; no gateway heartbeats (the resident's wearable, the home's one steady reporter, is fed instead:
an outage silences it with everything else, a resident lying still does not); a new home with 3 days of
history; and a changed routine (wake and bed times 1.5 h later, new day-station days) with daily
refits of the running detector on a sliding window, driven by events and a clock as the platform
drives it, leaving out the incidents it alerted (the care team confirms them). Beyond the issue's
wording, a stress test loses 10 % or 20 % of *every* sensor's events (bed, door and plugs too: a
failing radio rather than a shy PIR); it is reported apart and not judged against the targets.
Two more judged scenarios, as issue 22 names them: station days (the resident at the day station
two weekdays a week, in the history and the test days) and a couple (a home of two, the incidents
the first resident's, the partner carrying on through the same motion sensors, door and plugs,
with a bed mat of their own).
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from eldercare.models.inactivity import FIT_WINDOW_DAYS, InactivityDetector
from eldercare.simulators.couple import simulate_couple
from eldercare.simulators.routine import (
    ALERT_KINDS,
    DAY,
    DEFAULT_START,
    HOUR,
    HomeRun,
    ResidentProfile,
    TruthRecord,
    random_incidents,
    simulate_home,
)
from eldercare.simulators.sensors import step_readings

log = logging.getLogger(__name__)

DEFAULT_SEED = 20261129
N_HOMES = 24
HISTORY_DAYS = 14
TEST_DAYS = 21
WINDOW_S = 2 * HOUR
EARLY_S = 60.0
RESIDENT_KINDS = ("fall", "collapse", "no_wake", "night_wandering", "bathroom_too_long")
DEVICE_KINDS = ("device_offline", "gateway_outage")
KINDS = (*RESIDENT_KINDS, *DEVICE_KINDS)
TARGET_CAUGHT = 0.95
TARGET_DELAY_MEDIAN_S = 45 * 60.0  # issue 22 (issue 6 promised 60 min and 0.5 a week)
TARGET_FA_PER_WEEK = 0.3
BASELINE_TIMEOUT_S = 4 * HOUR
PARTNER_BED = "bed-2"  # the second resident's bed mat in a couple's home (simulators.couple)
SHARED = True  # tell the detector of a couple's home that it is shared
WEARABLE = True  # in a couple's home, the first resident's wearable reports their steps
RESOLVED_S = 30 * 60.0  # a confirmed incident's alert is resolved this long after it ended

Event = tuple[float, str, str, float]


@dataclass(frozen=True, slots=True)
class Raised:
    """An alert reduced to what scoring needs."""

    t: float
    kind: str  # the platform's alert kind
    detail: str = ""


@dataclass(slots=True)
class Tally:
    incidents: dict[str, int] = field(default_factory=dict)
    caught: dict[str, int] = field(default_factory=dict)
    delays: dict[str, list[float]] = field(default_factory=dict)
    delays_visible: dict[str, list[float]] = field(default_factory=dict)
    false_alarms: dict[str, int] = field(default_factory=dict)
    weeks: float = 0.0
    missed: list[str] = field(default_factory=list)
    dead: dict[str, list[int]] = field(default_factory=dict)  # dead sensor's kind -> [incidents, caught]

    def add(self, truth: Sequence[TruthRecord], alerts: Sequence[Raised], weeks: float, label: str) -> None:
        used: set[int] = set()
        for rec in truth:
            k = rec.kind
            self.incidents[k] = self.incidents.get(k, 0) + 1
            hits = [i for i, a in enumerate(alerts) if _matches(rec, a)]
            if k == "device_offline":
                n = self.dead.setdefault((rec.sensor or "?").split("-")[0], [0, 0])
                n[0] += 1
                n[1] += bool(hits)
            if hits:
                self.caught[k] = self.caught.get(k, 0) + 1
                first = min(alerts[i].t for i in hits)
                self.delays.setdefault(k, []).append(max(0.0, first - rec.t))
                self.delays_visible.setdefault(k, []).append(max(0.0, first - rec.alert_from))
                used.update(hits)
            else:
                hour = ((rec.t % DAY) / HOUR) if math.isfinite(rec.t) else -1
                self.missed.append(f"{label}: {k} at {hour:04.1f} h {rec.room or rec.sensor or ''}".strip())
        for i, a in enumerate(alerts):
            if i not in used:
                self.false_alarms[a.kind] = self.false_alarms.get(a.kind, 0) + 1
        self.weeks += weeks

    def summary(self) -> dict[str, Any]:
        def pct(xs: list[float], q: float) -> float | None:
            if not xs:
                return None
            xs = sorted(xs)
            k = (len(xs) - 1) * q
            lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
            return round((xs[lo] + (xs[hi] - xs[lo]) * (k - lo)) / 60, 1)

        kinds = {}
        for k in KINDS:
            n = self.incidents.get(k, 0)
            if not n:
                continue
            kinds[k] = {
                "incidents": n,
                "caught": self.caught.get(k, 0),
                "sensitivity": round(self.caught.get(k, 0) / n, 3),
                "delay_median_min": pct(self.delays.get(k, []), 0.5),
                "delay_p90_min": pct(self.delays.get(k, []), 0.9),
                "delay_visible_median_min": pct(self.delays_visible.get(k, []), 0.5),
            }

        def group(ks: Sequence[str]) -> dict[str, Any]:
            n = sum(self.incidents.get(k, 0) for k in ks)
            c = sum(self.caught.get(k, 0) for k in ks)
            d = [x for k in ks for x in self.delays.get(k, [])]
            dv = [x for k in ks for x in self.delays_visible.get(k, [])]
            return {
                "incidents": n,
                "caught": c,
                "sensitivity": round(c / n, 3) if n else None,
                "delay_median_min": pct(d, 0.5),
                "delay_p90_min": pct(d, 0.9),
                "delay_visible_median_min": pct(dv, 0.5),
            }

        fa = sum(self.false_alarms.values())
        return {
            "kinds": kinds,
            "resident": group(RESIDENT_KINDS),
            "device": group(DEVICE_KINDS),
            "all": group(KINDS),
            "false_alarms": dict(sorted(self.false_alarms.items())),
            "resident_weeks": round(self.weeks, 2),
            "false_alarms_per_resident_week": round(fa / self.weeks, 3) if self.weeks else None,
            "missed": self.missed[:40],
            "dead_sensors_by_kind": {
                k: {"incidents": n, "caught": c} for k, (n, c) in sorted(self.dead.items())
            },
        }


# detectors under test -----------------------------------------------------------------------


def baseline_timeout(stream: Sequence[Event], start: float, until: float, daytime: bool) -> list[Raised]:
    """Fixed timeout: no event of any sensor for 4 h (optionally only judged 07:00-22:00)."""
    out: list[Raised] = []
    last = start
    for t, kind, _, value in [*stream, (until, "end", "", 0.0)]:
        if kind == "heartbeat":
            continue
        due = last + BASELINE_TIMEOUT_S
        if due <= t:
            if daytime:  # move the due time into 07:00-22:00
                h = (due % DAY) / HOUR
                if h < 7:
                    due += (7 - h) * HOUR
                elif h >= 22:
                    due += (31 - h) * HOUR
            if due <= t:
                out.append(Raised(due, "inactivity"))
        if kind == "plug" and value < 5.0:
            continue
        last = t
    return out


def _heartbeats(run: HomeRun, t0: float, t1: float, every: float = 300.0) -> list[Event]:
    """A gateway's heartbeats, missing while it is out (the platform knows its status messages)."""
    outages = [(r.t, r.end or t1) for r in run.truth if r.kind == "gateway_outage"]
    n = int((t1 - t0) // every)
    return [
        (t0 + i * every, "heartbeat", "", 1.0)
        for i in range(n)
        if not any(a <= t0 + i * every < b for a, b in outages)
    ]


def _merge(a: list[Event], b: list[Event]) -> list[Event]:
    return sorted(a + b, key=lambda e: e[0])


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    drop: float = 0.0
    drop_kinds: tuple[str, ...] | None = ("pir",)  # sensor kinds that lose events; None: all
    spurious: float = 0.0  # spurious PIR events as a share of real ones
    heartbeats: bool = True  # the platform knows its gateways' status (heartbeats / last will)
    history_days: int = HISTORY_DAYS
    changed_routine: bool = False
    sensitivity: float = 1.0
    stress: bool = False  # beyond the wording: reported apart, not judged against targets
    station: bool = False  # the resident spends two weekdays a week at the day station
    couple: bool = False  # a home of two: the partner walks through the same sensors
    # the resident's own wearable reports their steps (a couple's home always: see WEARABLE)
    wearable: bool = False


SCENARIOS = (
    Scenario("clean"),
    Scenario("motion drop 10%", drop=0.10),
    Scenario("motion drop 20%", drop=0.20),
    Scenario("spurious 10%", spurious=0.10),
    Scenario("spurious 20%", spurious=0.20),
    Scenario("motion drop 10% + spurious 10%", drop=0.10, spurious=0.10),
    Scenario("no gateway heartbeats", heartbeats=False, wearable=True),
    Scenario("new home (3 days)", history_days=3),
    Scenario("changed routine, daily refit", changed_routine=True),
    Scenario("station days", station=True),
    Scenario("couple", couple=True),
    Scenario("stress: all sensors drop 10%", drop=0.10, drop_kinds=None, stress=True),
    Scenario("stress: all sensors drop 20%", drop=0.20, drop_kinds=None, stress=True),
    Scenario(
        "stress: all sensors drop 10% + spurious 10%", drop=0.10, drop_kinds=None, spurious=0.10, stress=True
    ),
)


def _changed(p: ResidentProfile, r: random.Random) -> ResidentProfile:
    days = tuple(sorted(r.sample(range(5), 2)))
    return replace(
        p,
        wake_h=min(9.5, p.wake_h + 1.5),
        bed_h=min(23.9, p.bed_h + 1.5),
        station_days=days if not p.station_days else (),
        nap_prob=min(0.95, p.nap_prob + 0.3),
        tv_hours=p.tv_hours + 1.0,
    )


def _spurious_rate(seed: int, share: float) -> float:
    if share <= 0:
        return 0.0
    probe = simulate_home(seed, 3)
    pirs = sum(1 for e in probe.events if e[1] == "pir")
    return share / (1 - share) * pirs / 3 / 5  # per PIR sensor per day (5 rooms)


def _home(sc: Scenario, home_seed: int) -> dict[str, Any]:
    """One home under one scenario: truth, model alerts, baseline alerts, test weeks."""
    r = random.Random(f"eval:{home_seed}")
    days = sc.history_days + TEST_DAYS
    incs = random_incidents(r, days, KINDS, first_day=sc.history_days)
    test_start = DEFAULT_START + sc.history_days * DAY
    events, truth, run = _simulate(sc, home_seed, r, incs, test_start)
    if sc.heartbeats:
        events = _merge(events, _heartbeats(run, DEFAULT_START, DEFAULT_START + days * DAY))
    end = DEFAULT_START + days * DAY
    stream = [e for e in events if e[0] >= test_start]
    if sc.changed_routine:  # as the platform: the running detector is refitted every day
        alerts = _refitted_daily(sc, events, truth, test_start)
    else:
        det = InactivityDetector(sensitivity=sc.sensitivity, shared=sc.couple and SHARED)
        det.fit([e for e in events if e[0] < test_start])
        alerts = [Raised(a.t, a.alert_kind, a.kind) for a in det.detect(stream, until=end)]
    # a collapse that never ends ends the story: nothing after its alert window is scored
    for rec in truth:
        if rec.kind == "collapse" and rec.end is None:
            stop = rec.alert_from + WINDOW_S
            end = min(end, stop)
            alerts = [a for a in alerts if a.t <= stop]
            stream = [e for e in stream if e[0] < stop]
    first_week = [a for a in alerts if a.t < test_start + 7 * DAY] if sc.changed_routine else []
    later = [a for a in alerts if a.t >= test_start + 7 * DAY] if sc.changed_routine else []
    return {
        "truth": truth,
        "model": alerts,
        "baseline": baseline_timeout(stream, test_start, end, daytime=False),
        "baseline_day": baseline_timeout(stream, test_start, end, daytime=True),
        "weeks": (end - test_start) / (7 * DAY),
        "first_week": first_week,
        "later": later,
        "test_start": test_start,
    }


def _simulate(
    sc: Scenario, home_seed: int, r: random.Random, incs: list[Any], test_start: float
) -> tuple[list[Event], list[TruthRecord], Any]:
    """The home's events and ground truth; with a changed routine, a new routine from the test on."""
    days = sc.history_days + TEST_DAYS
    rate = _spurious_rate(home_seed, sc.spurious)
    if sc.couple:  # the incidents are the first resident's; the partner carries on around them
        run = simulate_couple(home_seed, days, incidents=incs, drop_rate=sc.drop, spurious_rate=rate)
        # the platform knows whose bed mat is whose (sensors.resident_id): the detector gets its own
        own = [e for e, sid in zip(run.events, run.sensor_ids, strict=True) if sid != PARTNER_BED]
        if WEARABLE:  # and the resident's own wearable (steps each minute while worn and in range)
            own = _merge(own, _worn(home_seed, run))
        return own, run.truth, run
    if not sc.changed_routine:
        prof = None
        if sc.station:  # two weekdays away for most of the day, in the history and the test
            prof = replace(ResidentProfile.draw(home_seed), station_days=tuple(sorted(r.sample(range(5), 2))))
        run = simulate_home(
            home_seed,
            days,
            incidents=incs,
            profile=prof,
            drop_rate=sc.drop,
            spurious_rate=rate,
            drop_kinds=sc.drop_kinds,
        )
        if sc.wearable:
            return _merge(list(run.events), _worn(home_seed, run)), run.truth, run
        return run.events, run.truth, run
    a = simulate_home(
        home_seed, sc.history_days, drop_rate=sc.drop, spurious_rate=rate, drop_kinds=sc.drop_kinds
    )
    prof = _changed(a.profile, r)
    b = simulate_home(
        home_seed + 7_919,
        TEST_DAYS,
        start=test_start,
        incidents=[i for i in incs if i.t >= test_start],
        profile=prof,
        drop_rate=sc.drop,
        spurious_rate=rate,
        drop_kinds=sc.drop_kinds,
    )
    return a.events + b.events, b.truth, b


def _worn(home_seed: int, run: Any) -> list[Event]:
    """The resident's wearable: steps each minute while worn and in range, none while the gateway is out."""
    worn = step_readings(home_seed, run.profile.resident, run.segments, run.start, run.end)
    lost = [(x.t, x.end or run.end) for x in run.truth if x.kind == "gateway_outage"]
    return [(t, "wearable", "", n) for t, n in worn if not any(a <= t < b for a, b in lost)]


def _refitted_daily(
    sc: Scenario, events: list[Event], truth: list[TruthRecord], test_start: float
) -> list[Raised]:
    """One running detector, refitted every day without the incidents it caught, fed events and a clock."""
    alerts: list[Raised] = []
    live = InactivityDetector(sensitivity=sc.sensitivity)
    for d in range(TEST_DAYS):
        d0, d1 = test_start + d * DAY, test_start + (d + 1) * DAY
        # incidents alerted (so confirmed by the care team) are left out, as the platform does
        caught = [r for r in truth if r.end is not None and any(_matches(r, a) for a in alerts)]
        confirmed = [(r.t, r.end + RESOLVED_S) for r in caught if r.end is not None]
        live.fit([e for e in events if d0 - FIT_WINDOW_DAYS * DAY <= e[0] < d0], exclude=confirmed)
        for ev in [e for e in events if d0 <= e[0] < d1]:
            alerts += [Raised(a.t, a.alert_kind, a.kind) for a in live.check(ev[0])]
            live.update(ev)
        alerts += [Raised(a.t, a.alert_kind, a.kind) for a in live.check(d1)]
    return alerts


def _matches(rec: TruthRecord, a: Raised) -> bool:
    """Alert ``a`` catches incident ``rec``: its kind, from a minute before it to 2 h after it ended."""
    until = (rec.end if rec.end is not None else rec.alert_from) + WINDOW_S
    return a.kind in ALERT_KINDS[rec.kind] and rec.t - EARLY_S <= a.t <= until


def _home_job(job: tuple[Scenario, int]) -> dict[str, Any]:
    return _home(*job)


def _run_homes(jobs: list[tuple[Scenario, int]], workers: int) -> list[dict[str, Any]]:
    """Every (scenario, home) on its own; in ``workers`` processes (each home is independent)."""
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(workers) as pool:
            return list(pool.map(_home_job, jobs))
    return [_home_job(j) for j in jobs]


def evaluate_scenario(
    sc: Scenario, seeds: Sequence[int], homes: Sequence[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Tally one scenario over its homes (run here unless ``homes`` gives them, in ``seeds`` order)."""
    tallies = {"model": Tally(), "baseline": Tally(), "baseline_day": Tally()}
    week1, later = Tally(), Tally()
    if homes is None:
        homes = [_home(sc, s) for s in seeds]
    for s, h in zip(seeds, homes, strict=True):
        for name, tally in tallies.items():
            tally.add(h["truth"], h[name], h["weeks"], f"home {s}")
        if sc.changed_routine:
            t1 = h["test_start"] + 7 * DAY
            week1.add([x for x in h["truth"] if x.t < t1], h["first_week"], 1.0, f"home {s}")
            later.add([x for x in h["truth"] if x.t >= t1], h["later"], h["weeks"] - 1.0, f"home {s}")
    out: dict[str, Any] = {k: v.summary() for k, v in tallies.items()}
    if sc.changed_routine:
        out["model_first_week_after_change"] = week1.summary()
        out["model_after_first_week"] = later.summary()
    return out


# report ------------------------------------------------------------------------------------


def _fmt(x: Any, unit: str = "") -> str:
    return "-" if x is None else f"{x}{unit}"


def _markdown(res: dict[str, Any], pngs: list[str]) -> str:
    lines = [
        "# Inactivity detection: evaluation",
        "",
        f"Seed {res['seed']}; {res['homes']} simulated homes never used in tuning; per home "
        f"{HISTORY_DAYS} days of history to fit on, then {TEST_DAYS} test days with one incident of each "
        f"kind ({', '.join(KINDS)}). Baseline: a fixed {BASELINE_TIMEOUT_S / HOUR:.0f}-hour timeout on "
        "any sensor event (24 h, and judged only 07:00-22:00). Targets: caught >= "
        f"{TARGET_CAUGHT}, median delay <= {TARGET_DELAY_MEDIAN_S / 60:.0f} min, <= {TARGET_FA_PER_WEEK} "
        "false alarms per resident-week (resident incidents).",
        "",
        "## Summary (resident incidents: fall, collapse, no_wake, night_wandering, bathroom_too_long)",
        "",
        "| scenario | detector | caught | sensitivity | delay p50 (min) | delay p90 (min) "
        "| p50 from visible (min) | false alarms / resident-week |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, sc in res["scenarios"].items():
        for det in ("model", "baseline", "baseline_day"):
            g = sc[det]["resident"]
            lines.append(
                f"| {name} | {det} | {g['caught']}/{g['incidents']} | {_fmt(g['sensitivity'])} "
                f"| {_fmt(g['delay_median_min'])} | {_fmt(g['delay_p90_min'])} "
                f"| {_fmt(g['delay_visible_median_min'])} "
                f"| {_fmt(sc[det]['false_alarms_per_resident_week'])} |"
            )
    head = [
        "| scenario | caught | delay p50 (min) | false alarms / resident-week |",
        "| --- | --- | --- | --- |",
    ]
    lines += [
        "",
        "## Targets by scenario (model)",
        "",
        f"The issue's scenarios (up to 20 % of motion events dropped or spurious) against its targets: "
        f"caught >= {TARGET_CAUGHT}, median delay <= {TARGET_DELAY_MEDIAN_S / 60:.0f} min, "
        f"<= {TARGET_FA_PER_WEEK} false alarms per resident-week; a miss says by how much.",
        "",
        *head,
        *[_target_row(n, t) for n, t in res["targets_by_scenario"].items()],
    ]
    if res.get("stress_by_scenario"):
        lines += [
            "",
            "### Stress test, beyond the issue's wording (not judged)",
            "",
            "Every sensor loses events (bed, door and plugs as well as motion): a failing radio link. "
            "The same figures, measured against the same bars for comparison only.",
            "",
            *head,
            *[_target_row(n, t) for n, t in res["stress_by_scenario"].items()],
        ]
    lines += ["", "## Per incident kind (model)", ""]
    for name, sc in res["scenarios"].items():
        lines += [
            f"### {name}",
            "",
            "| kind | caught | sensitivity | delay p50 (min) | delay p90 (min) | p50 from visible (min) |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for k, v in sc["model"]["kinds"].items():
            lines.append(
                f"| {k} | {v['caught']}/{v['incidents']} | {v['sensitivity']} "
                f"| {_fmt(v['delay_median_min'])} | {_fmt(v['delay_p90_min'])} "
                f"| {_fmt(v['delay_visible_median_min'])} |"
            )
        fa = sc["model"]["false_alarms"]
        dead = ", ".join(
            f"{k} {v['caught']}/{v['incidents']}" for k, v in sc["model"]["dead_sensors_by_kind"].items()
        )
        lines += [
            "",
            f"False alarms by kind: {fa or 'none'} over {sc['model']['resident_weeks']} resident-weeks.",
            "",
            f"Dead single sensors found, by kind: {dead or 'none'} (doors, plugs and SOS buttons report "
            "only when used, so their silence says nothing).",
        ]
        if sc["model"]["missed"]:
            lines += ["", "Missed: " + "; ".join(sc["model"]["missed"][:15])]
        if "model_first_week_after_change" in sc:
            w1, w2 = sc["model_first_week_after_change"], sc["model_after_first_week"]
            lines += [
                "",
                f"First week after the change: {w1['false_alarms_per_resident_week']} false alarms per "
                f"resident-week, resident sensitivity {w1['resident']['sensitivity']}; later weeks: "
                f"{w2['false_alarms_per_resident_week']}, sensitivity {w2['resident']['sensitivity']}.",
            ]
        lines.append("")
    lines += [f"![{p}]({p})" for p in pngs] or ["(PNG plots skipped: matplotlib is not installed.)"]
    lines += ["", f"Evaluation took {res['seconds']} s."]
    return "\n".join(lines) + "\n"


def _target_row(name: str, t: dict[str, Any]) -> str:
    short = f"**short by {t['caught_short_by']}**"
    caught = f"{_fmt(t['caught'])} " + ("met" if t["caught_met"] else short)
    delay = f"{_fmt(t['delay_median_min'])} " + ("met" if t["delay_met"] else "**missed**")
    fa = f"{_fmt(t['false_alarms_per_resident_week'])} " + (
        "met" if t["false_alarms_met"] else f"**over by {t['false_alarms_over_by']}**"
    )
    return f"| {name} | {caught} | {delay} | {fa} |"


def _plots(out_dir: Path, res: dict[str, Any]) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    names = list(res["scenarios"])
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    x = range(len(names))
    for off, det in ((-0.2, "model"), (0.2, "baseline_day")):
        sens = [res["scenarios"][n][det]["resident"]["sensitivity"] or 0 for n in names]
        fa = [res["scenarios"][n][det]["false_alarms_per_resident_week"] or 0 for n in names]
        axes[0].bar([i + off for i in x], sens, width=0.4, label=det)
        axes[1].bar([i + off for i in x], fa, width=0.4, label=det)
    axes[0].axhline(TARGET_CAUGHT, color="k", ls="--", lw=1)
    axes[1].axhline(TARGET_FA_PER_WEEK, color="k", ls="--", lw=1)
    axes[0].set_title("resident incidents caught")
    axes[1].set_title("false alarms per resident-week")
    for ax in axes:
        ax.set_xticks(list(x))
        ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "inactivity_scenarios.png", dpi=110)
    plt.close(fig)
    clean = res["scenarios"][names[0]]["model"]["kinds"]
    fig, ax = plt.subplots(figsize=(7, 4))
    ks = [k for k in clean if clean[k]["delay_median_min"] is not None]
    ax.bar(ks, [clean[k]["delay_median_min"] for k in ks], label="median")
    ax.scatter(ks, [clean[k]["delay_p90_min"] for k in ks], color="k", zorder=3, label="p90")
    ax.axhline(TARGET_DELAY_MEDIAN_S / 60, color="r", ls="--", lw=1)
    ax.set_ylabel("detection delay (min)")
    ax.set_title(f"delay by incident kind ({names[0]})")
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "inactivity_delays.png", dpi=110)
    plt.close(fig)
    return ["inactivity_scenarios.png", "inactivity_delays.png"]


def _targets(model: dict[str, Any]) -> dict[str, Any]:
    """Each target for one scenario: the figure, whether it is met, and by how much it is missed."""
    g = model["resident"]
    caught, delay, fa = g["sensitivity"], g["delay_median_min"], model["false_alarms_per_resident_week"]
    return {
        "caught": caught,
        "caught_met": caught is not None and caught >= TARGET_CAUGHT,
        "caught_short_by": round(max(0.0, TARGET_CAUGHT - (caught or 0.0)), 3),
        "delay_median_min": delay,
        "delay_met": delay is not None and delay <= TARGET_DELAY_MEDIAN_S / 60,
        "false_alarms_per_resident_week": fa,
        "false_alarms_met": fa is not None and fa <= TARGET_FA_PER_WEEK,
        "false_alarms_over_by": round(max(0.0, (fa or 0.0) - TARGET_FA_PER_WEEK), 3),
    }


def home_seeds(seed: int, n: int) -> list[int]:
    """Home seeds for an evaluation seed; always >= 100000 (tuning used homes 0-99)."""
    r = random.Random(f"inactivity-eval:{seed}")
    return [100_000 + r.randrange(10**8) for _ in range(n)]


def run(
    out_dir: Path,
    seed: int = DEFAULT_SEED,
    *,
    n_homes: int = N_HOMES,
    scenarios: Sequence[Scenario] = SCENARIOS,
    progress: Callable[[str], None] | None = None,
    workers: int | None = None,
) -> dict[str, Any]:
    """Evaluate on ``n_homes`` unseen homes per scenario; write Markdown, JSON and PNGs to ``out_dir``.

    ``workers`` processes share the homes (default: one per CPU); the figures do not depend on it.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    seeds = home_seeds(seed, n_homes)
    res: dict[str, Any] = {"seed": seed, "homes": n_homes, "scenarios": {}}
    homes = _run_homes([(sc, s) for sc in scenarios for s in seeds], workers or os.cpu_count() or 1)
    for i, sc in enumerate(scenarios):
        if progress:
            progress(sc.name)
        res["scenarios"][sc.name] = evaluate_scenario(sc, seeds, homes[i * len(seeds) : (i + 1) * len(seeds)])
    clean = res["scenarios"][scenarios[0].name]["model"]
    g = clean["resident"]
    res["targets"] = {
        "caught": g["sensitivity"],
        "delay_median_min": g["delay_median_min"],
        "false_alarms_per_resident_week": clean["false_alarms_per_resident_week"],
        "met": bool(
            (g["sensitivity"] or 0) >= TARGET_CAUGHT
            and (g["delay_median_min"] or math.inf) <= TARGET_DELAY_MEDIAN_S / 60
            and (clean["false_alarms_per_resident_week"] or 0) <= TARGET_FA_PER_WEEK
        ),
    }
    stress = {sc.name for sc in scenarios if sc.stress}
    judged = {n: _targets(sc["model"]) for n, sc in res["scenarios"].items() if n not in stress}
    res["targets_by_scenario"] = judged
    res["stress_by_scenario"] = {
        n: _targets(res["scenarios"][n]["model"]) for n in res["scenarios"] if n in stress
    }
    res["seconds"] = round(time.perf_counter() - started, 1)
    pngs = _plots(out_dir, res)
    (out_dir / "inactivity_report.json").write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    (out_dir / "inactivity_report.md").write_text(_markdown(res, pngs), encoding="utf-8")
    return res


def _median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


if __name__ == "__main__":  # python -m eldercare.training.evaluate_inactivity OUT_DIR [SEED] [HOMES]
    import sys

    logging.basicConfig(level=logging.INFO)
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "models-report")
    res = run(
        out,
        int(sys.argv[2]) if len(sys.argv) > 2 else DEFAULT_SEED,
        n_homes=int(sys.argv[3]) if len(sys.argv) > 3 else N_HOMES,
        progress=lambda s: print("scenario", s, flush=True),
    )
    print(json.dumps(res["targets"], indent=2))
