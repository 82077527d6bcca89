"""A home's rhythm, learned from a replayed history: how long silences last, when the resident gets up.

Thresholds are per *context* (in bed, a room, away) and per hour of the day at which the silence
began. Each is set from the home's own silences by a peaks-over-threshold tail: above the 80th
percentile, silence excesses are taken as exponential (the gaps of a Poisson-like movement
process), with a prior scale blended in, and the threshold is where the expected number of
silences per week exceeding it drops to ``budget`` for that hour. Never below the longest
silence seen there (a home's own normal is not an alarm), never below a floor, never above a cap.

Few data (a new home, a rare hour) fall back to wider pools, then to the population's limit for
that hour and room (:data:`POPULATION_MIN`; wide priors for rooms it does not name); during the
grace period every threshold is blended towards that limit, by days of history. ``sensitivity``
scales thresholds (2.0 halves them; 0.5 doubles them).
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from eldercare.models.inactivity_track import DAY, HOUR, Recording, hour_of

MIN = 60.0
MIN_POOL = 8
TAIL_Q = 0.8

# (day prior, night prior, floor, cap) in seconds; "room" is any room not named here
PRIORS: dict[str, tuple[float, float, float, float]] = {
    "bed": (3 * HOUR, 10 * HOUR, 90 * MIN, 16 * HOUR),
    "bathroom": (60 * MIN, 45 * MIN, 30 * MIN, 3 * HOUR),
    "hall": (2 * HOUR, 30 * MIN, 20 * MIN, 8 * HOUR),
    "room": (3 * HOUR, 90 * MIN, 40 * MIN, 8 * HOUR),
    "away": (8 * HOUR, 30 * MIN, 20 * MIN, 14 * HOUR),
    "stay": (60 * MIN, 45 * MIN, 30 * MIN, 3 * HOUR),  # time in the bathroom
}
# during the grace period thresholds are pulled towards these (like a fixed long timeout)
WIDE: dict[str, tuple[float, float]] = {
    "bed": (5 * HOUR, 14 * HOUR),
    "bathroom": (2 * HOUR, 2 * HOUR),
    "hall": (4 * HOUR, 2 * HOUR),
    "room": (4 * HOUR, 4 * HOUR),
    "away": (12 * HOUR, 2 * HOUR),
    "stay": (2 * HOUR, 2 * HOUR),
}
# Population defaults for a new home: per local hour, the limit (minutes) that 4 in 5 homes'
# own learned limits stay under (40 simulated homes, 14 days each, none of the evaluation's).
# Conservative for most homes, yet short enough to catch a fall; blended with the home's own
# limits as its history grows (fully its own after ``grace_days``). Rooms not named use "living".
POPULATION_MIN: dict[str, list[int]] = {
    "hall": [30] * 6 + [180] * 17 + [30],
    "living": [90, 90, 90, 90, 90, 100, 100, 115, 130, 130, 135, 130,
               125, 125, 125, 125, 120, 140, 165, 165, 145, 120, 105, 95],
    "bathroom": [30] * 24,
    "bedroom": [40] * 24,
    "kitchen": [40, 90, 90, 90, 90, 40, 45, 45, 45, 40, 40, 65, 75, 70] + [40] * 10,
    "stay": [30, 30, 30, 40, 45, 50, 50, 50, 50, 50] + [30] * 14,
    "away": [30] * 6 + [150] + [480] * 15 + [140, 30],
}  # fmt: skip
# What a care worker may set for a new home, in place of the population's limits (seconds, all
# hours): "bathroom: alert after 45 min" sets both the bathroom's silences and the time spent there.
LIMIT_ROOMS = ("bathroom", "kitchen", "living", "bedroom", "hall")
LIMIT_TABLES = {"bathroom": ("bathroom", "stay")}
PRIOR_SCALE = {"bed": 60 * MIN, "away": 60 * MIN, "stay": 10 * MIN, "bathroom": 10 * MIN}
DEFAULT_NIGHT = [h >= 23 or h < 6 for h in range(24)]
WAKE_PRIOR_S = 10.5 * HOUR  # new home: "not up" only after 10:30
WAKE_MIN_DAYS = 5
RECENT_WAKES = 4  # mornings that reveal a changed routine
NIGHT_SEEN_S = 4 * HOUR  # a morning counts if the history began this long before its midnight
BACK_TO_BED_S = 60 * MIN  # a day room visited and back in bed this soon: a night's trip, not the morning
LAST_DAYS = 3  # a wake time seen this recently is never "not up" (a changed routine, followed at once)
SURPRISE_SD = 2.0  # a morning later than its weekday's habit by this many spreads is a surprise,
SURPRISE_DAYS = 7  # ... which holds "not up" as late (+30 min) for this many days
SURPRISE_CAP_S = 2 * HOUR
BED_LATE_SD = 2.0  # to bed later than the evening's habit by this many spreads (and 30 min): late,
BED_LATE_MIN_S = 30 * MIN  # and the next morning's "not up" moves by as much (inactivity.BED_LATE_CAP_S)
# by day, "last seen in the hall, then nothing" is nearly always someone who went out past a missed
# door; and a daytime outing shorter than this (a visit, the market, a day-care day that moved) is
# not something door sensors alone can judge: no alert before it
DAY_HALL_FLOOR = 3 * HOUR
MAX_FACTOR = 1.15  # never alarm below the longest silence seen there, with a margin


def _kind(ctx: str) -> str:
    ctx = ctx.removeprefix("worn:")  # a worn wearable's stillness in a room: that room's priors
    return ctx if ctx in PRIORS else "room"


def tail_threshold(pool: list[float], per_week: float, budget: float, prior_scale: float) -> float:
    """Silence length exceeded ``budget`` times a week, from an exponential tail above the 80th pct."""
    xs = sorted(pool)
    u = xs[int(TAIL_Q * (len(xs) - 1))]
    exc = [x - u for x in xs if x > u]
    scale = (sum(exc) + 2 * prior_scale) / (len(exc) + 2)
    p_u = max(len(exc), 1) / len(xs)
    return u + scale * math.log(max(1.0, per_week * p_u / budget))


@dataclass(slots=True)
class Profile:
    """Learned thresholds of one home (plain data, JSON-able)."""

    days: float = 0.0
    night: list[bool] = field(default_factory=lambda: list(DEFAULT_NIGHT))
    sil: dict[str, list[float]] = field(default_factory=dict)  # ctx -> 24 thresholds (s)
    sil_usual: dict[str, list[float]] = field(default_factory=dict)  # ctx -> longest seen (s)
    stay: list[float] = field(default_factory=list)  # bathroom stay thresholds by hour
    stay_usual: list[float] = field(default_factory=list)
    stay_wake: float = 0.0  # bathroom visits straight after leaving bed (morning routine), any hour
    away: list[float] = field(default_factory=list)
    away_usual: list[float] = field(default_factory=list)
    away_seen: list[bool] = field(default_factory=list)  # outings ever began near this hour
    wake: dict[str, dict[str, float]] = field(default_factory=dict)  # daytype -> median, thr, n
    # evening's weekday -> usual time of going to bed for the night (s after that day's midnight)
    bedtime: dict[str, float] = field(default_factory=dict)
    bedtime_sd: float = 0.0
    wake_open_s: float = 4 * HOUR
    dev_limits: dict[str, int] = field(default_factory=dict)  # sensor -> active hours silent
    dev_usual: dict[str, int] = field(default_factory=dict)
    hb_interval_s: float | None = None
    hb_gap_s: float | None = None
    pair_s: dict[str, float] = field(default_factory=dict)  # noisy rooms: closer pairs to confirm
    noise: dict[str, float] = field(default_factory=dict)  # room -> lone spurious triggers a day
    use_seen: dict[str, float] = field(default_factory=dict)  # room -> share of uses its PIR sees

    @property
    def learned(self) -> bool:
        return self.days >= 7.0

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}  # type: ignore[attr-defined]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Profile:
        return cls(**d)


def _pool(by_hour: dict[int, list[float]], h: int, night: list[bool]) -> tuple[list[float], float]:
    """Silences near hour ``h``: +-1 h, else +-3 h, else the same phase; and how many hours that is."""
    for width in (1, 3):
        pool = [x for d in range(-width, width + 1) for x in by_hour.get((h + d) % 24, [])]
        if len(pool) >= MIN_POOL:
            return pool, 2 * width + 1
    hours = [k for k in range(24) if night[k] == night[h]]
    return [x for k in hours for x in by_hour.get(k, [])], len(hours)


def _table(
    samples: list[tuple[float, float]],
    kind: str,
    name: str,
    p: Profile,
    weeks: float,
    budget: float,
    utc_offset_s: float,
    grace: float,
    start_s: float | None = None,
) -> tuple[list[float], list[float]]:
    """Thresholds by hour; ``start_s`` replaces the population's limit (a care worker's, for a new
    home), tighter or wider than its floor and cap."""
    by_hour: dict[int, list[float]] = defaultdict(list)
    for start, dur in samples:
        by_hour[hour_of(start, utc_offset_s)].append(dur)
    day_prior, night_prior, floor, cap = PRIORS[kind]
    wide_day, wide_night = WIDE[kind]
    scale0 = PRIOR_SCALE.get(kind, 20 * MIN)
    thr, usual = [], []
    for h in range(24):
        # in bed, the two hours either side of the sleep window count as night (early/late nights)
        night = p.night[h] or (kind == "bed" and any(p.night[(h + d) % 24] for d in (-2, -1, 1, 2)))
        prior = night_prior if night else day_prior
        pop = POPULATION_MIN.get(name, POPULATION_MIN["living"] if kind == "room" else None)
        if start_s is not None:
            pop = [round(start_s / MIN)] * 24
        if pop is not None:
            prior = pop[h] * MIN
        pool, hours = _pool(by_hour, h, p.night)
        if len(pool) >= MIN_POOL and weeks > 0:
            x = tail_threshold(pool, len(pool) / hours / weeks, budget, scale0)
            x = max(x, max(pool) * MAX_FACTOR + 5 * MIN)
            top = max(pool)
        else:
            x, top = prior, prior
        if kind == "bed" and night:
            x = max(x, wide_night)  # a night in bed is judged by the wake time (no_wake), not here
        w = min(1.0, p.days / grace) if grace > 0 else 1.0
        # a new home: pulled towards the population's limit (wide where there is none) until grace_days
        wide = prior if pop is not None else (wide_night if night else wide_day)
        x = w * x + (1 - w) * max(x, wide)
        lo = floor
        if not p.night[h] and kind == "hall":
            lo = DAY_HALL_FLOOR
        elif not p.night[h] and kind == "away":  # by day, out is judged by the population's outings
            lo = max(DAY_HALL_FLOOR, POPULATION_MIN["away"][h] * MIN)
        if start_s is not None:
            lo, cap = min(lo, start_s), max(cap, start_s)
        thr.append(min(max(x, lo), cap))
        usual.append(min(top, cap))
    return thr, usual


def learn(
    rec: Recording,
    t0: float,
    t1: float,
    *,
    utc_offset_s: float,
    budget: float,
    grace_days: float,
    exclude: list[tuple[float, float]],
    room_budget: float | None = None,
    noisy: bool = False,
    starting: dict[str, float] | None = None,
) -> Profile:
    """Thresholds from a replayed history spanning [t0, t1).

    ``room_budget`` (default ``budget``) is the budget of silences in the ordinary rooms; ``noisy``
    says the home's motion sensors blip often (see :func:`_mornings`); ``starting`` (seconds by
    room of :data:`LIMIT_ROOMS`) replaces the population's limits, which the home's own replace
    in turn as days accrue.
    """
    starting_s = {t: float(v) for r, v in (starting or {}).items() for t in LIMIT_TABLES.get(r, (r,))}
    p = Profile(days=max(0.0, (t1 - t0) / DAY))
    weeks = p.days / 7.0
    gaps = [*exclude, *rec.gaps]

    def clean(start: float, dur: float) -> bool:
        return not any(a < start + dur and start < b for a, b in gaps)

    if p.days >= 1.5:  # the sleep window: hours spent mostly in bed
        in_bed = _in_bed_by_hour(rec, utc_offset_s)
        p.night = [in_bed[h] / (p.days * HOUR) >= 0.5 for h in range(24)]

    by_ctx: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for ctx, start, dur in rec.silences:
        if ctx != "away" and clean(start, dur):
            by_ctx[ctx].append((start, dur))
    for ctx in {"bed", "bathroom", "bedroom", "kitchen", "living", "hall", *by_ctx}:
        # the wearable's stillness is no quiet room's: it keeps the full budget
        worn = ctx.startswith("worn")
        b = budget if room_budget is None or _kind(ctx) != "room" else room_budget
        name = ctx.removeprefix("worn:")
        p.sil[ctx], p.sil_usual[ctx] = _table(
            by_ctx.get(ctx, []), _kind(ctx), name, p, weeks, b, utc_offset_s, grace_days,
            None if worn else starting_s.get(ctx),
        )  # fmt: skip
    baths = [(s, d) for c, s, d in rec.stays if c.startswith("bathroom") and clean(s, d)]
    p.stay, p.stay_usual = _table(
        baths, "stay", "stay", p, weeks, budget, utc_offset_s, grace_days, starting_s.get("stay")
    )
    morning = [
        d
        for c, s, d in rec.stays
        if c == "bathroom_wake" and clean(s, d) and not p.night[hour_of(s, utc_offset_s)]
    ]
    if len(morning) >= 3:
        p.stay_wake = min(max(morning) * 1.3 + 5 * MIN, PRIORS["stay"][3])
    outs = [(s, d) for c, s, d in rec.stays if c == "away" and clean(s, d) and d > 10 * MIN]
    p.away, p.away_usual = _table(outs, "away", "away", p, weeks, budget, utc_offset_s, grace_days)
    began = {hour_of(s, utc_offset_s) for s, _ in outs}
    p.away_seen = [any((h + d) % 24 in began for d in (-1, 0, 1)) for h in range(24)]
    _learn_wake(p, rec, utc_offset_s, exclude, t0 if noisy else -math.inf)
    _learn_bedtime(p, rec, utc_offset_s, exclude)
    _learn_devices(p, rec, grace_days)
    return p


def population_limits() -> dict[str, tuple[float, float]]:
    """The population's limits for a new home, by room of :data:`LIMIT_ROOMS`: (lowest, highest)
    over the hours of the day, in seconds (the bathroom's: the time spent there)."""
    out = {}
    for room in LIMIT_ROOMS:
        mins = POPULATION_MIN[LIMIT_TABLES.get(room, (room,))[-1]]
        out[room] = (min(mins) * MIN, max(mins) * MIN)
    return out


def _in_bed_by_hour(rec: Recording, utc_offset_s: float) -> list[float]:
    """Seconds spent in bed in each local hour of the day, over the whole history."""
    in_bed = [0.0] * 24
    for ctx, start, dur in rec.stays:
        if ctx != "bed":
            continue
        t = start
        while t < start + dur:
            step = min(start + dur, (math.floor((t + utc_offset_s) / HOUR) + 1) * HOUR - utc_offset_s) - t
            in_bed[hour_of(t, utc_offset_s)] += step
            t += max(step, 1.0)
    return in_bed


def _learn_wake(
    p: Profile, rec: Recording, utc_offset_s: float, exclude: list[tuple[float, float]], t0: float
) -> None:
    """Wake time per weekday: its usual time and the limit past which "not up" is raised."""
    dated = _mornings(rec, utc_offset_s, exclude, t0)
    by_wd: dict[int, list[float]] = defaultdict(list)
    for d, wake in dated:
        by_wd[(d + 3) % 7].append(wake)  # 1970-01-01 was a Thursday
    allw = [w for ws in by_wd.values() for w in ws]
    if not allw:
        return
    meds = _weekday_medians(by_wd, allw)
    sd = _wake_spread(by_wd, meds)
    # a changed routine: the last few mornings differ from the window's habit -> follow them.
    # Each morning is measured against its own weekday's usual time before them, so a weekend
    # lie-in (the weekend's normal) neither reads as a changed routine nor delays the weekdays'
    # alarms; before, the raw times of a Saturday and Sunday made a Monday's "not up" 45 min later.
    dated.sort()
    n_recent = min(RECENT_WAKES, len(dated) - 1)
    before: dict[int, list[float]] = defaultdict(list)
    for d, wake in dated[: len(dated) - n_recent]:
        before[(d + 3) % 7].append(wake)
    old = [w for ws in before.values() for w in ws]
    base = _weekday_medians(before, old) if old else meds
    offsets = [w - base[(d + 3) % 7] for d, w in dated[len(dated) - n_recent :]]
    late = [w - base[(d + 3) % 7] for d, w in dated if d > dated[-1][0] - LAST_DAYS]
    offset = None
    if len(dated) >= 2 * RECENT_WAKES and abs(statistics.median(offsets)) > 20 * MIN:
        offset = statistics.median(offsets)
    surprise = _surprise(dated, sd)
    for wd in range(7):
        own = by_wd.get(wd, [])
        shift = None if offset is None else base[wd] + offset
        med, thr = _wake_limit(meds[wd], own, sd, shift, base[wd] + max(offsets, default=0.0))
        if late:  # as late as a morning of the last few days is this home's normal now
            thr = max(thr, base[wd] + max(late) + 30 * MIN)
        if surprise is not None:  # a morning of the last week far later than its habit: as late
            thr = max(thr, surprise[0][wd] + surprise[1] + 30 * MIN)
        if len(allw) < WAKE_MIN_DAYS:  # few mornings seen: lean towards the late population limit
            w = (len(allw) - 1) / (WAKE_MIN_DAYS - 1)
            thr = max(thr, w * thr + (1 - w) * WAKE_PRIOR_S)
        p.wake[str(wd)] = {"median": med, "thr": min(thr, 14 * HOUR), "n": float(len(own))}
    p.wake_open_s = max(3 * HOUR, min(allw) - 2 * HOUR)


def _surprise(dated: list[tuple[int, float]], sd: float) -> tuple[dict[int, float], float] | None:
    """The weekday medians before the last ``SURPRISE_DAYS`` mornings, and how much later than its
    weekday's the latest of those mornings was, if more than ``SURPRISE_SD`` spreads (else None).

    A wake time that late is either a one-off or the first morning of a new routine, which is
    seldom followed at once by another just as late (a new day-station day brings an early bus, a
    weekend its own hour); for a week no morning is "not up" before as late. ``dated`` is sorted.
    """
    if len(dated) < 2:
        return None
    last = dated[-1][0]
    old = [(d, w) for d, w in dated if d <= last - SURPRISE_DAYS]
    if len(old) < 5:
        return None
    by: dict[int, list[float]] = defaultdict(list)
    for d, w in old:
        by[(d + 3) % 7].append(w)
    meds = _weekday_medians(by, [w for _, w in old])
    offs = [w - meds[(d + 3) % 7] for d, w in dated if d > last - SURPRISE_DAYS]
    big = [o for o in offs if o > SURPRISE_SD * sd]
    if not big:
        return None
    return meds, min(max(big), SURPRISE_CAP_S)


def _mornings(
    rec: Recording, utc_offset_s: float, exclude: list[tuple[float, float]], t0: float = -math.inf
) -> list[tuple[int, float]]:
    """(local day, wake time in seconds of that day) for each morning of the history.

    The wake time is the last bed exit before the first activity in a day room (kitchen, ...)
    between 03:00 and 15:00 that is not followed by going back to bed within ``BACK_TO_BED_S`` (a
    glass of water in the night, or a noisy sensor's pair while the resident was up for the toilet,
    made a 03:00 "wake", whose spread then put every "not up" of that weekday an hour later); a day
    whose first activity falls in an excluded incident is left out.
    In a noisy home (``t0`` given) so is a morning whose night the history did not see begin: its
    going to bed is missing, so its "wake" would be the first activity in a day room, which there may
    be a blip at 03:00 (where sensors hardly blip that first activity is a fair wake time, and a new
    home needs every morning it has).
    """
    stays = sorted(rec.stays, key=lambda s: s[1])
    bed_exits = [s + d for c, s, d in stays if c == "bed"]
    bed_starts = [s for c, s, _ in stays if c == "bed"]
    first_day: dict[int, float] = {}
    for c, s, _ in stays:
        if c in ("bed", "bedroom") or c.startswith("bathroom"):
            continue
        i = bisect.bisect_right(bed_starts, s)
        if i < len(bed_starts) and bed_starts[i] <= s + BACK_TO_BED_S:
            continue  # back in bed soon after: a trip in the night (or a noisy sensor's), not the morning
        local = s + utc_offset_s
        d = math.floor(local / DAY)
        if d * DAY - NIGHT_SEEN_S < t0 + utc_offset_s:
            continue  # the history began in this morning's night
        if 3 * HOUR <= local - d * DAY <= 15 * HOUR and d not in first_day:
            first_day[d] = s
    dated: list[tuple[int, float]] = []
    for d, first in first_day.items():
        if any(a <= first <= b for a, b in exclude):
            continue
        cands = [x for x in bed_exits if first - 2 * HOUR <= x <= first]
        wake = max(cands) if cands else first
        dated.append((d, wake + utc_offset_s - d * DAY))
    return dated


def nights(rec: Recording, utc_offset_s: float) -> list[tuple[int, float]]:
    """(local day of the evening, time of going to bed for the night in s after its midnight).

    A night is a stay in bed that began between 18:00 and 04:00 and, with the stays after it that
    began within ``BACK_TO_BED_S`` of leaving bed (trips in the night), lasted at least 3 h; a nap
    is none.
    """
    beds = sorted((s, s + d) for c, s, d in rec.stays if c == "bed")
    out: list[tuple[int, float]] = []
    i = 0
    while i < len(beds):
        start, end = beds[i]
        j = i + 1
        while j < len(beds) and beds[j][0] - end <= BACK_TO_BED_S:
            end = max(end, beds[j][1])
            j += 1
        local = start + utc_offset_s
        evening = math.floor((local - 12 * HOUR) / DAY)
        at = local - evening * DAY
        if 18 * HOUR <= at <= 28 * HOUR and end - start >= 3 * HOUR:
            out.append((evening, at))
        i = j
    return out


def _learn_bedtime(
    p: Profile, rec: Recording, utc_offset_s: float, exclude: list[tuple[float, float]]
) -> None:
    """The usual time of going to bed for the night, per evening's weekday, and its spread."""
    by_wd: dict[int, list[float]] = defaultdict(list)
    for d, at in nights(rec, utc_offset_s):
        t = d * DAY + at - utc_offset_s
        if not any(a <= t <= b for a, b in exclude):
            by_wd[(d + 3) % 7].append(at)
    allb = [b for bs in by_wd.values() for b in bs]
    if len(allb) < WAKE_MIN_DAYS:
        return
    # Friday and Saturday evenings may be later; a weekday with few evenings seen is judged by the
    # later of its own and its group's (the last evening before a refit is often still open)
    groups = {
        g: [b for wd in range(7) if (wd in (4, 5)) == g for b in by_wd.get(wd, [])] for g in (False, True)
    }
    for wd in range(7):
        own, grp = by_wd.get(wd, []), groups[wd in (4, 5)]
        usual = statistics.median(grp if len(grp) >= 2 else allb)
        if len(own) >= 2:
            usual = statistics.median(own)
        elif own:
            usual = max(usual, own[0])
        p.bedtime[str(wd)] = usual
    meds = {int(k): v for k, v in p.bedtime.items()}
    p.bedtime_sd = _wake_spread(by_wd, meds)


def _weekday_medians(by_wd: dict[int, list[float]], allw: list[float]) -> dict[int, float]:
    """Each weekday's median wake time; from its group (weekdays, weekend) or all days when few."""
    groups = {g: [w for wd in range(7) if (wd >= 5) == g for w in by_wd.get(wd, [])] for g in (False, True)}
    meds = {}
    for wd in range(7):
        own, grp = by_wd.get(wd, []), groups[wd >= 5]
        meds[wd] = statistics.median(own if len(own) >= 2 else grp if len(grp) >= 2 else allw)
    return meds


def _wake_spread(by_wd: dict[int, list[float]], meds: dict[int, float]) -> float:
    """A robust spread of wake times around each weekday's own median (at least 10 min)."""
    # residuals corrected for the few samples each weekday has
    resid = [
        (w - meds[wd]) * math.sqrt(len(ws) / (len(ws) - 1))
        for wd, ws in by_wd.items()
        if len(ws) >= 2
        for w in ws
    ]
    return max(1.4826 * statistics.median(abs(r) for r in resid), 10 * MIN) if resid else 45 * MIN


def _wake_limit(
    med: float, own: list[float], sd: float, shift: float | None, recent_max: float
) -> tuple[float, float]:
    """(usual wake time, limit) of one weekday; after a changed routine, the recent mornings'."""
    n_own = len(own)
    spread = sd * math.sqrt(1 + 1 / n_own) if n_own >= 2 else sd * 1.5  # the median is uncertain too
    thr = max(med + 2.5 * spread, max(own or [-math.inf]) + 15 * MIN)
    if shift is not None:
        recent_spread = 2.5 * sd * math.sqrt(1 + 1 / RECENT_WAKES)
        recent_thr = max(shift + 20 * MIN + recent_spread, recent_max + 15 * MIN)
        thr = max(thr, recent_thr) if shift > med else recent_thr
        med = shift
    return med, thr


def _learn_devices(p: Profile, rec: Recording, grace_days: float) -> None:
    """Sensors that report on most days get a limit of active hours without a report."""
    n_days = max(1.0, p.days)
    for s, days in rec.sensor_days.items():
        if len(days) < 0.7 * n_days or p.days < 2:
            continue
        longest = max(rec.runs.get(s, [0]) or [0])
        limit = max(6, math.ceil(2 * longest + 2))
        if p.days < grace_days:
            limit *= 2
        p.dev_limits[s] = limit
        p.dev_usual[s] = max(1, longest)
