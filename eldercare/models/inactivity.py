"""Inactivity detection: alert when a home's present silence is unusual *for this home at this hour*.

Batch use (the interface fixed in the design notes)::

    from eldercare.models.inactivity import InactivityDetector
    det = InactivityDetector().fit(history)        # (t_s, sensor_kind, room, value), >= 7 days
    alerts = det.detect(stream, until=t_end)       # InactivityAlert(t, kind, room, reason, ...)

Streaming use, as the platform's alert engine drives it with events *and* a clock::

    det = InactivityDetector.from_dict(row.state)  # the fitted model stored per resident
    det.update(event)                              # every event of the home, in time order
    for alert in det.check(now):                   # call at least once a minute, and at events
        raise_alert(alert.alert_kind, alert.severity, alert.explain("zh-CN"), alert.reason)
    row.state = det.to_dict()                      # plain JSON, never pickle

``detect`` is ``check(t)`` before each ``update``, then ``check(until)``: the same alerts, at the
same times, as a live engine calling ``check`` often enough. An alert's ``.t`` is when it would be
raised, which is usually between events.

What it learns (:mod:`.inactivity_profile`) from a replay of the history through the same
:class:`~.inactivity_track.Tracker` that follows the live stream: silences by context (in bed,
each room, away after the front door) and by the hour they began; bathroom stays; outings and
day-station absences; the sleep window (hours mostly in bed); the usual wake time on weekdays and
weekends, and the usual time of going to bed for the night per evening; for each sensor, how
many hours of activity elsewhere it can stay silent; the gateway's heartbeat interval. Naps and
TV evenings are simply long silences at their usual hours.

Alert kinds: ``inactivity`` (a silence longer than this home ever has at this hour, in a room or
in bed), ``no_wake`` (still in bed well after the usual wake time), ``bathroom_too_long``,
``night_wandering`` (went out, or was last seen in the hall, at night and has not come back),
``device_silent`` (one sensor silent while the rest of the home is active; a motion sensor that
missed, in a row, more uses of the bed, door or appliances in its room than its learned hit rate
explains; or no gateway heartbeat: a device problem, not a silent home; resident alerts are held
while the gateway is silent; where no heartbeat is known, in a home of one, the worn wearable
falling silent together with every sensor is taken for the gateway in the same way). One resident
alert per silence: new confirmed activity starts a new one.

Refitting: the platform should call ``fit`` once a day (e.g. at 03:00 local) with the last
``21`` days of the home's events (:data:`FIT_WINDOW_DAYS`), passing the periods of confirmed
incidents and gateway outages as ``exclude`` so they are not learned as normal, and then replay
the events since the window's end with ``update`` (or keep calling ``update``: ``fit`` leaves the
detector in the state at the end of the history). Refit the detector that has been running (its
stored state), not a new one: it remembers what it raised, so a silence, stay or morning already
alerted is not alerted again after the refit. A sensor's silence under way at the end of the
history is not learned as its normal (it may be dying), and is judged against the new limit.

A silence is never alarmed below the longest seen at that hour, so a new routine's longer silences
are accepted the night after they are first seen, and old ones leave the window in three weeks; a
morning of the last three days, as late as it was for its weekday, is never "not up" (a later
routine is followed after one morning), and a lasting shift of the last four mornings against
their weekdays' habit moves the usual wake time itself (a weekend lie-in is no changed routine).
A morning of the last week far later than its weekday's habit holds "not up" as late for a week,
and a night begun far later than that evening's habit moves the next morning's "not up" by as
much (the bed mat's "in bed" for the night, :attr:`.inactivity_track.Tracker.night_t`).

Sensitivity: thresholds are divided by ``sensitivity`` (default 1.0). After a false alarm the
platform lowers it (e.g. ``det.sensitivity *= 0.85`` down to 0.5; thresholds get longer); after a
missed incident or for a frailer resident it raises it. Homes with fewer than ``grace_days`` of
history start from population limits per hour and room (:data:`.inactivity_profile.POPULATION_MIN`,
what 4 homes in 5 stay under once learned: 1.5-2.75 h in the living room, 40 min in the kitchen, 30
min in the bathroom, 14 h in bed at night), blended with the home's own limits as days accrue;
"not up" starts near 10:30 and moves towards the home's own wake time from the second morning.

Noisy sensors (10-20 % of motion events lost or spurious): a PIR trigger is evidence, not proof
(:mod:`.inactivity_track`). Each room's noise rate is learned (triggers while nobody was home, and
lone ones while the resident was elsewhere, over the time they could be counted); lone triggers where
the resident is count once there are more than that rate explains. A lone trigger elsewhere from a
quiet sensor may be the resident walking on (the judgement gets more lenient); from a noisy one only
soon after the last activity, right after another trigger, or more often than its noise explains. In
a noisy room two triggers must come closer together to count, and a single trigger there just after
activity elsewhere is a provisional move, judged by the more lenient of the two rooms. After the
front door, an inner room's trigger counts as someone coming home only if the hall saw them come in.

Local time: hours of the day are ``(t + utc_offset_s) mod 1 day``; pass the site's offset
(28800 for China). The simulator's homes live in UTC.
"""

from __future__ import annotations

import copy
import itertools
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

from eldercare import i18n
from eldercare.models import inactivity_text as text
from eldercare.models.inactivity_profile import (
    BED_LATE_MIN_S,
    BED_LATE_SD,
    LIMIT_ROOMS,
    PRIORS,
    WAKE_PRIOR_S,
    Profile,
    learn,
)
from eldercare.models.inactivity_track import (
    DAY,
    HOUR,
    QUIET_ALL_S,
    STRONG_S,
    USES_MIN,
    WORN_GAP_S,
    Event,
    Recording,
    Tracker,
    beyond_noise,
    noise_rates,
    pair_window,
    room_name,
    worn_ctx,
)

log = logging.getLogger(__name__)

FIT_WINDOW_DAYS = 21
STATE_VERSION = 1
NO_WAKE_WINDOW_S = 5 * HOUR  # after the wake threshold, "not up" is judged this long
BED_LATE_CAP_S = 2.5 * HOUR  # "not up" moves by at most this after going to bed late
DETACHED_S = 12 * HOUR  # detect(): a stream starting this long after the history is not its sequel
WEAK_DEFER_S = 45 * 60.0  # an unconfirmed pair of triggers where the resident is defers an alarm this long
QUIET_ROOM_FACTOR = 10.0  # in a quiet home, rooms' silences get a tenth of the budget (see fit)
STEADY_DAYS = 3.0  # history needed to call a room's appliances thermostat-free
NOISY_PER_DAY = 3.0  # a room with more lone triggers a day than this has a noisy sensor
HALL_AWAY_MAX_S = 4 * HOUR
MOVE_S = 5 * 60.0  # a lone trigger elsewhere this soon after the last activity: maybe walked on
# a worn wearable's stillness is never alarmed sooner: where the walk ended is a guess in a home of
# two (the partner's triggers), and half an hour in a chair after a walk is nothing
WORN_FLOOR_S = 60 * 60.0
# the worn wearable and the whole home silent together (no heartbeat known): resident alarms are
# held at most this long after the wearable's last reading (a resident who took it off and then
# fell is still alarmed; the simulator's outages last 2 h)
OUTAGE_HOLD_S = 3 * HOUR
SETTLE_S = 20 * 60.0  # back in bed (or quiet in the bedroom) this long before "not up" counts
ALERT_KINDS = ("inactivity", "no_wake", "bathroom_too_long", "night_wandering", "device_silent")
# the platform's alert kinds (design notes) for each detector kind
PLATFORM_KIND = {
    "inactivity": "inactivity",
    "no_wake": "inactivity",
    "bathroom_too_long": "inactivity",
    "night_wandering": "night_wandering",
    "device_silent": "device_offline",
}


def _heartbeat_interval(events: list[Event]) -> float | None:
    """The gateway's usual heartbeat interval (median gap), once ten heartbeats were seen."""
    hbs = [e[0] for e in events if e[1] == "heartbeat"]
    if len(hbs) < 10:
        return None
    diffs = sorted(b - a for a, b in itertools.pairwise(hbs))
    return diffs[len(diffs) // 2]


class Candidate(NamedTuple):
    """One way the present silence may end in an alert; the earliest ``due`` wins."""

    due: float  # when it would be raised
    kind: str  # detector kind (inactivity, bathroom_too_long, no_wake, ...)
    how: str  # what was judged: "silence", "away", "stay" or "no_wake"
    expected: float  # the usual duration (s)
    threshold: float  # the limit applied (s)
    since: float  # start of what was measured (for no_wake: the usual wake time, s of the day)


class InactivityError(ValueError):
    """Bad input to the inactivity detector (unsorted events, a bad state, ...)."""


@dataclass(frozen=True, slots=True)
class InactivityAlert:
    """One alert: when it would be raised, what kind, where, and why in words.

    ``expected_s`` is what is usual here (the longest silence or stay seen at this hour; for
    ``no_wake``, how late after the usual wake time is still normal; for a sensor, its usual
    silent hours in seconds); ``observed_s`` the same quantity now; ``threshold_s`` the alarm
    threshold that was crossed; ``since`` when the silence (or stay, or absence) began.
    """

    t: float
    kind: str
    room: str
    severity: str
    reasons: dict[str, str]  # why, in every language of the catalogue: {"en": ..., "zh-CN": ...}
    expected_s: float
    observed_s: float
    threshold_s: float
    since: float
    sensor: str = ""

    @property
    def alert_kind(self) -> str:
        """The platform's alert kind: ``inactivity``, ``night_wandering`` or ``device_offline``."""
        return PLATFORM_KIND[self.kind]

    @property
    def reason(self) -> str:
        """Why, in English (logs, tests)."""
        return self.reasons["en"]

    @property
    def reason_zh(self) -> str:
        return self.reasons["zh-CN"]

    def explain(self, locale: str = "en") -> str:
        """Why, in ``locale`` (a tag such as ``zh`` is enough), English if we do not speak it."""
        return self.reasons.get(i18n.supported(locale) or "en") or self.reasons["en"]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_event(ev: Sequence[Any]) -> Event:
    try:
        t, kind, room, value = ev
        out = (float(t), str(kind), str(room), float(value))
    except (TypeError, ValueError) as exc:
        msg = f"an event must be (t_seconds, sensor_kind, room, value), not {ev!r}"
        raise InactivityError(msg) from exc
    if not math.isfinite(out[0]):
        msg = f"event time must be finite, not {out[0]!r}"
        raise InactivityError(msg)
    return out


class InactivityDetector:
    """Per-home inactivity detector; see the module docstring.

    Parameters
    ----------
    sensitivity : float
        Divides every threshold; < 1 after false alarms, > 1 for frailer residents.
    grace_days : float
        History needed before thresholds are fully the home's own (wide priors before).
    utc_offset_s : float
        The site's offset from UTC, for hours of the day.
    confirm_s : float
        A PIR trigger needs a second one in the same room within this to count (spurious PIRs).
    budget : float
        Expected silences per week per hour of the day allowed past a threshold (tail model).
    shared : bool
        Someone else lives in the home (a couple): movement outside the bedroom while this
        resident's own bed mat says "in bed" is not taken for a lost bed exit (it is most likely
        the partner's). Feed this resident's own bed mat only.

    Examples
    --------
    >>> det = InactivityDetector().fit([])          # no history: the population's limits
    >>> for t in (0.0, 60.0, 120.0):                 # three triggers: someone in the kitchen
    ...     det.update((t, "pir", "kitchen", 1.0))
    >>> [a.kind for a in det.check(1800.0)]          # half an hour later, just after midnight
    []
    >>> [(a.kind, a.room) for a in det.check(3 * 3600.0)]
    [('inactivity', 'kitchen')]
    """

    def __init__(
        self,
        sensitivity: float = 1.0,
        grace_days: float = 7.0,
        utc_offset_s: float = 0.0,
        confirm_s: float = 300.0,
        budget: float = 0.01,
        starting_limits: dict[str, float] | None = None,
        shared: bool = False,
    ) -> None:
        if not sensitivity > 0:
            msg = f"sensitivity must be > 0, not {sensitivity}"
            raise InactivityError(msg)
        bad = {r: v for r, v in (starting_limits or {}).items() if r not in LIMIT_ROOMS or not v > 0}
        if bad:
            msg = f"starting limits are seconds > 0 for rooms {', '.join(LIMIT_ROOMS)}, not {bad}"
            raise InactivityError(msg)
        self.sensitivity = sensitivity
        self.starting_limits = dict(starting_limits or {})
        self.grace_days = grace_days
        self.utc_offset_s = utc_offset_s
        self.confirm_s = confirm_s
        self.budget = budget
        self.shared = shared
        self.profile_: Profile | None = None
        self._tr = Tracker(confirm_s=confirm_s, utc_offset_s=utc_offset_s, shared=shared)
        self._alerted: dict[str, Any] = dict.fromkeys(("episode", "hb", "stay", "day", "still", "quiet"))

    # learning ----------------------------------------------------------------------------------

    def fit(
        self, history: Iterable[Sequence[Any]], *, exclude: Iterable[tuple[float, float]] = ()
    ) -> InactivityDetector:
        """Learn the home's rhythm from its history; leaves the detector at the history's end."""
        events = [_check_event(e) for e in history]
        if any(b[0] < a[0] for a, b in itertools.pairwise(events)):
            events.sort(key=lambda e: e[0])
        hb_interval = _heartbeat_interval(events)
        hb_gap = None if hb_interval is None else max(3 * hb_interval, 600.0)
        t0 = events[0][0] if events else 0.0
        t1 = events[-1][0] if events else 0.0
        tr = self._replay(events, hb_gap, {}, [], {}, [])
        # a home whose sensors blip often (noise) needs two triggers closer together to believe them
        days = max((t1 - t0) / DAY, 1.0)
        assert tr.rec is not None
        noise = noise_rates(tr.rec)
        pair_s = {r: w for r, b in noise.items() if (w := pair_window(b, self.confirm_s)) < self.confirm_s}
        noisy = bool(noise) and sum(noise.values()) / len(noise) >= NOISY_PER_DAY
        # in a home whose sensors rarely blip, one trigger in the room where the resident is, is them
        rooms = {room_name(e[2]) for e in events if e[1] == "pir"}
        quiet = [] if noisy else sorted(rooms - set(pair_s))
        # rooms whose appliances were seen for some days and never cycled (no thermostat): a quick
        # switch-on there is someone, as after a longer time off
        plugs = {room_name(e[2]) for e in events if e[1] == "plug"}
        steady = sorted(plugs - set(tr.rec.cycles)) if days >= STEADY_DAYS else []
        tr = self._replay(events, hb_gap, pair_s, quiet, noise, steady)
        assert tr.rec is not None
        # in a quiet home one trigger resets a room's silence, so its silences are short and
        # alarms come early: once its history is long enough to trust, its rooms can afford a
        # rarer tail (a tenth of the budget). Where spurious triggers are common they already
        # delay the alarm for a real collapse (a pair in the resident's room defers it, a lone one
        # elsewhere may move them), so there the tail keeps the full budget.
        p = learn(
            tr.rec,
            t0,
            t1,
            utc_offset_s=self.utc_offset_s,
            budget=self.budget,
            room_budget=self.budget if noisy or days < self.grace_days else self.budget / QUIET_ROOM_FACTOR,
            grace_days=self.grace_days,
            exclude=[(float(a), float(b)) for a, b in exclude],
            noisy=noisy,
            starting=self.starting_limits,
        )
        p.hb_interval_s, p.hb_gap_s = hb_interval, hb_gap
        p.pair_s, p.noise = pair_s, noise
        p.use_seen = {r: round((k + 1) / (n + 2), 3) for r, (n, k) in tr.rec.uses.items() if n >= USES_MIN}
        tr.use_seen_p = dict(p.use_seen)
        tr.rec = None
        tr.wake_open_s = p.wake_open_s
        # a refit does not raise again what this detector already raised: the same silence, stay,
        # morning or gateway gap keeps its alert, as does a sensor still silent since its alert
        tr.dev_sent = [s for s in self._tr.dev_sent if tr.run.get(s, 0) > 0]
        self.profile_, self._tr = p, tr
        log.debug("inactivity profile learned from %.1f days, %s events", p.days, len(events))
        return self

    def _replay(
        self,
        events: list[Event],
        hb_gap: float | None,
        pair_s: dict[str, float],
        quiet: list[str],
        noise: dict[str, float],
        steady: list[str],
    ) -> Tracker:
        tr = Tracker(
            confirm_s=self.confirm_s,
            utc_offset_s=self.utc_offset_s,
            hb_gap_s=hb_gap,
            pair_s=dict(pair_s),
            quiet=list(quiet),
            noise_rate=dict(noise),
            steady=list(steady),
            shared=self.shared,
        )
        tr.rec = Recording()
        for ev in events:
            tr.update(ev)
        tr.finish()
        return tr

    def _restart(self) -> None:
        """Forget where the resident was (keep what was learned)."""
        old = self._tr
        self._tr = Tracker(
            confirm_s=old.confirm_s,
            utc_offset_s=old.utc_offset_s,
            wake_open_s=old.wake_open_s,
            hb_gap_s=old.hb_gap_s,
            pair_s=dict(old.pair_s),
            quiet=list(old.quiet),
            noise_rate=dict(old.noise_rate),
            steady=list(old.steady),
            use_seen_p=dict(old.use_seen_p),
            shared=old.shared,
        )
        self._alerted = dict.fromkeys(("episode", "hb", "stay", "day", "still", "quiet"))

    def _profile(self) -> Profile:
        if self.profile_ is None:
            msg = "this InactivityDetector is not fitted yet: call fit(history) first (fit([]) for priors)"
            raise InactivityError(msg)
        return self.profile_

    # streaming ---------------------------------------------------------------------------------

    def update(self, event: Sequence[Any]) -> None:
        """Take one event of the home (in time order)."""
        p = self._profile()
        ev = _check_event(event)
        if self._tr.last_t is not None and ev[0] < self._tr.last_t - 1e-6:
            msg = f"event at {ev[0]} is older than the last one ({self._tr.last_t}); events must be in order"
            raise InactivityError(msg)
        self._tr.update(ev, self._limits(p))

    def check(self, now: float) -> list[InactivityAlert]:
        """Alerts due by ``now`` not yet returned, in time order."""
        p = self._profile()
        tr = self._tr
        tr.close_bins(now, self._limits(p))
        tr.settle_uses(now)
        out: list[InactivityAlert] = []
        if p.hb_gap_s is not None and tr.hb_t is not None and self._alerted["hb"] != tr.hb_t:
            due = tr.hb_t + p.hb_gap_s
            if due <= now:
                self._alerted["hb"] = tr.hb_t
                why = text.gateway_silent(p.hb_gap_s, p.hb_interval_s or p.hb_gap_s)
                out.append(
                    InactivityAlert(
                        due, "device_silent", "", "medium", why,
                        p.hb_interval_s or 0.0, p.hb_gap_s, p.hb_gap_s, tr.hb_t, "gateway",
                    )
                )  # fmt: skip
        quiet = tr.all_quiet()
        if quiet is not None and self._alerted.get("quiet") != quiet and quiet + QUIET_ALL_S <= now:
            self._alerted["quiet"] = quiet
            due = quiet + QUIET_ALL_S
            why = text.home_quiet(QUIET_ALL_S)
            out.append(
                InactivityAlert(due, "device_silent", "", "medium", why, 0.0, QUIET_ALL_S, QUIET_ALL_S,
                                quiet, "gateway")
            )  # fmt: skip
        for s, due in sorted(tr.dev_due.items(), key=lambda kv: kv[1]):
            if due <= now:
                del tr.dev_due[s]
                tr.dev_sent.append(s)
                kind, _, room = s.partition(":")
                usual = p.dev_usual.get(s, 1)
                hours = p.dev_limits.get(s, 0)
                if kind == "pir" and tr.failed_by_uses(room):
                    why = text.sensor_missed_uses(room, tr.use_missed[room], tr.use_seen_p[room])
                else:
                    why = text.device_silent(kind, room, hours, usual)
                out.append(
                    InactivityAlert(
                        due, "device_silent", room, "low", why,
                        usual * HOUR, hours * HOUR, hours * HOUR, due - hours * HOUR, s,
                    )
                )  # fmt: skip
        a = self._resident(p, now)
        if a is None and (a := self._still(p, now)) is not None:
            self._alerted["still"] = tr.still_t
            out.append(a)
        elif a is not None:
            if tr.still_t is not None and tr.still_t <= a.since:
                self._alerted["still"] = tr.still_t  # the same silence of theirs: one alert
            self._alerted["episode"] = tr.act_t
            if a.kind == "no_wake":
                self._alerted["day"] = tr.day_of(a.t)
            elif a.kind == "bathroom_too_long":
                self._alerted["stay"] = tr.ctx_t
            out.append(a)
        return sorted(out, key=lambda x: x.t)

    def detect(self, stream: Iterable[Sequence[Any]], until: float | None = None) -> list[InactivityAlert]:
        """All alerts over ``stream`` (and up to ``until``), without changing this detector's state.

        The stream continues from the end of the fitted history (or of the events given to
        ``update``); if it starts before that, or more than 12 h after it, it is taken as a
        separate recording and followed from an unknown context (no alert until the first
        confirmed activity).
        """
        run = copy.deepcopy(self)
        events = [_check_event(e) for e in stream]
        if any(b[0] < a[0] for a, b in itertools.pairwise(events)):
            events.sort(key=lambda e: e[0])
        last = run._tr.last_t
        if events and last is not None and not last <= events[0][0] <= last + DETACHED_S:
            run._restart()  # the stream does not continue the history: start without a context
        alerts: list[InactivityAlert] = []
        for ev in events:
            alerts += run.check(ev[0])
            run.update(ev)
        if until is not None:
            alerts += run.check(float(until))
        elif run._tr.last_t is not None:
            alerts += run.check(run._tr.last_t)
        return alerts

    # decisions ---------------------------------------------------------------------------------

    def _limits(self, p: Profile) -> dict[str, int]:
        return {s: max(2, math.ceil(n / self.sensitivity)) for s, n in p.dev_limits.items()}

    def _table(self, p: Profile, ctx: str) -> tuple[list[float], list[float]]:
        if ctx in p.sil:
            return p.sil[ctx], p.sil_usual[ctx]
        day, night, _, _ = PRIORS["room"]
        prior = [night if p.night[h] else day for h in range(24)]
        return prior, prior

    def _resident(self, p: Profile, now: float) -> InactivityAlert | None:
        """The resident's silence, judged: an alert once the earliest limit has passed, else None."""
        tr = self._tr
        a = tr.act_t
        if a is None or tr.ctx == "unknown" or self._alerted["episode"] == a:
            return None
        h = tr.hour(a)
        if tr.ctx == "away":
            ctx = "away"
            thr = p.away[h] / self.sensitivity
            kind = "night_wandering" if p.night[h] else "inactivity"
            cands = [Candidate(a + thr, kind, "away", p.away_usual[h], thr, a)]
        else:
            ctx, silence = self._silence(p, a, h)
            cands = [silence, *self._stay(p, a), *self._wake(p, a)]
        c = min(cands)
        due = self._deferred(p, a, c.due, ctx)
        if due > now:
            return None
        if p.hb_gap_s is not None and tr.hb_t is not None and due > tr.hb_t + p.hb_gap_s:
            return None  # the gateway is silent: that is a device alert, not a silent home
        quiet = tr.all_quiet()
        if quiet is not None and quiet + WORN_GAP_S < due < quiet + OUTAGE_HOLD_S:
            # the wearable stopped with everything else (it would go on saying "still" on a resident
            # lying there): most likely the gateway, held while nothing reports, for a while
            if now < quiet + OUTAGE_HOLD_S:
                return None
            due = quiet + OUTAGE_HOLD_S
        return self._explain(p, c._replace(due=due), ctx, a, h)

    def _silence(self, p: Profile, a: float, h: int) -> tuple[str, Candidate]:
        """Where the resident most likely is, and how long a silence there may last."""
        tr, sens = self._tr, self.sensitivity
        ctx = tr.ctx
        if ctx == "bedroom" and self._lost_bed_event(p, h):
            ctx = "bed"  # most likely in bed: the radio lost the bed sensor's "in bed"
        table, usual = self._table(p, ctx)
        thr = table[h] / sens
        if tr.ctx_alt is not None:  # seen in a new room once only: maybe still in the old one
            alt = "bed" if tr.ctx_alt == "bedroom" and self._lost_bed_event(p, h) else tr.ctx_alt
            t_alt, u_alt = self._table(p, alt)
            if t_alt[h] / sens > thr:
                ctx, thr, usual = alt, t_alt[h] / sens, u_alt
        for r in self._moved(p, a, ctx, walk=True):  # maybe walked on to a room seen only once
            t_r, u_r = self._table(p, "bed" if r == "bedroom" and tr.bed else r)
            if t_r[h] / sens > thr:
                ctx, thr, usual = r, min(t_r[h] / sens, 3 * thr), u_r
        if ctx == "hall" and not p.night[h] and tr.ctx_alt is not None:
            # one noisy trigger in the hall after a room: still there, or gone on to a room that
            # has not seen them yet; not out (the front door would have said so)
            rooms = [r for r in p.sil if r not in ("bed", "hall") and not r.startswith("worn")]
            thr = max(self._table(p, r)[0][h] for r in rooms) / sens
        elif ctx == "hall" and not p.night[h]:
            # by day, last seen in the hall and nothing since: most likely out (door unseen),
            # though they may have fallen there: an outing's limit, but at most HALL_AWAY_MAX_S
            thr = max(thr, min(p.away[h] / sens, HALL_AWAY_MAX_S))
        kind = "inactivity"
        if ctx == "bathroom":
            kind = "bathroom_too_long"
        elif ctx == "hall" and p.night[h]:
            kind = "night_wandering"
        return ctx, Candidate(a + thr, kind, "silence", usual[h], thr, a)

    def _still(self, p: Profile, now: float) -> InactivityAlert | None:
        """A home of two: this resident's worn wearable has not walked for longer than it ever
        does at this hour (out of bed), whoever moves through the home's sensors meanwhile.

        The partner resets the home's silence; the wearable is the resident's own. Not worn (no
        reading for WORN_GAP_S) is unknown: no alert.
        """
        tr = self._tr
        s = tr.still_t
        if not self.shared or s is None or tr.wear_t is None or tr.bed or self._alerted.get("still") == s:
            return None
        h = tr.hour(s)
        ctx = worn_ctx(tr.still_room)
        table, usual = self._table(p, ctx if ctx in p.sil else "worn")
        thr = max(table[h], WORN_FLOOR_S) / self.sensitivity
        due = s + thr
        if due > now or tr.wear_t < due - WORN_GAP_S:
            return None  # not yet, or the wearable stopped reporting before the limit: unknown
        if p.hb_gap_s is not None and tr.hb_t is not None and due > tr.hb_t + p.hb_gap_s:
            return None  # the gateway is silent: that is a device alert, not a silent resident
        why = text.worn_still(due - s, usual[h], p.learned)
        return InactivityAlert(due, "inactivity", tr.still_room, "high", why, usual[h], due - s, thr, s)

    def _stay(self, p: Profile, a: float) -> list[Candidate]:
        """A bathroom visit longer than this home's visits at that hour (whatever the silence says)."""
        tr = self._tr
        if (
            tr.ctx != "bathroom"
            # left? a noisy sensor's trigger just after one elsewhere proves little here
            or self._moved(p, a, "bathroom", walk=False)
            or tr.ctx_alt is not None  # seen there once only (a noisy sensor): maybe never went in
            or tr.ctx_t is None
            or self._alerted["stay"] == tr.ctx_t
        ):
            return []
        hs = tr.hour(tr.ctx_t)
        thr_s = p.stay[hs] / self.sensitivity
        if tr.bath_wake and not p.night[hs]:
            thr_s = max(thr_s, p.stay_wake / self.sensitivity)
        return [Candidate(tr.ctx_t + thr_s, "bathroom_too_long", "stay", p.stay_usual[hs], thr_s, tr.ctx_t)]

    def _wake(self, p: Profile, a: float) -> list[Candidate]:
        if self._tr.ctx not in ("bed", "bedroom"):
            return []
        nw = self._no_wake(p, a)
        return [] if nw is None else [nw]

    def _deferred(self, p: Profile, a: float, due: float, ctx: str) -> float:
        """``due``, pushed back while a trigger since ``a`` may still turn out to be the resident.

        Taken in time order, each against ``due`` as deferred so far: a trigger that came while
        an earlier one held the alarm back holds it back in turn (judged each against the first
        due time, a quiet home's "not up" came due in the past as soon as the resident's next
        lone trigger came after it, minutes before their movements confirmed them).
        """
        tr = self._tr
        # two triggers a few minutes apart where the resident is: too far apart to be sure it was
        # them (a noisy sensor makes such pairs every day), too likely them to alarm right now
        weak_rooms = {tr.ctx if tr.ctx != "bed" else "bedroom", ctx if ctx != "bed" else "bedroom"}
        if tr.ctx == "bed" and not self.shared:
            # in bed, a quiet sensor's pair elsewhere: a bed exit the radio (or the gateway) lost,
            # not yet the three movements that say so (in a shared home: the partner)
            weak_rooms |= {r for r in tr.weak if p.noise.get(r, 0.0) < NOISY_PER_DAY}
        held = tr.held[1] if tr.held and tr.held[0] == a else -math.inf
        first, due = due, max(due, held)
        marks = [(x, r, False) for r, pt in tr.pending.items() for x in {*tr.burst.get(r, []), pt}]
        marks += [(w, r, True) for r in weak_rooms if (w := tr.weak.get(r)) is not None]
        for x, r, weak in sorted(marks):
            if not a < x <= due:
                continue
            if weak:
                due = max(due, x + WEAK_DEFER_S)
                continue
            # an unconfirmed PIR may still turn out to be activity: wait
            here = r == tr.ctx or (r == "bedroom" and tr.ctx == "bed")
            burst = tr.burst.get(r, [])
            if p.noise.get(r, 0.0) < NOISY_PER_DAY:  # a quiet sensor's trigger is most likely a person
                due = max(due, x + 2 * tr.confirm_s)
            elif here or len(burst) >= 2 or (burst and burst[0] - a <= tr.confirm_s):
                # a noisy sensor: wait only where one more trigger would confirm it
                due = max(due, x + (tr.pair_s.get(r, tr.confirm_s) if here else tr.confirm_s))
        if due > first:  # held back: a trigger that comes before this time holds it back in turn,
            tr.held = [a, due]  # even once the one that held it is no longer pending
        return due

    def _explain(self, p: Profile, c: Candidate, ctx: str, a: float, h: int) -> InactivityAlert:
        """The alert for candidate ``c``: its room, severity and words (English and Chinese)."""
        tr = self._tr
        due, kind, how, expected, thr, since = c
        observed = due - since
        room = "bedroom" if ctx == "bed" else ("" if ctx == "away" else ctx)
        if how == "stay":  # the stay is in the bathroom, whichever room the silence was judged by
            room = tr.ctx
        if how == "no_wake":
            local = due + tr.utc_offset_s
            midnight = math.floor(local / DAY) * DAY
            usual_s = since  # for no_wake, since holds the usual wake time (seconds of the day)
            why = text.no_wake(local - midnight, usual_s, usual_s + expected, p.learned)
            observed = local - midnight - usual_s
            since = midnight - tr.utc_offset_s + usual_s
            sev = "high" if observed > 2 * expected else "medium"
        elif how == "stay":
            why = text.bathroom(observed, expected, p.learned)
            sev = "high"
        elif ctx == "away" and kind == "night_wandering":
            why = text.night_wandering(a + tr.utc_offset_s, observed, expected, p.away_seen[h])
            sev = "high"
        elif ctx == "away":
            why = text.away_long(a + tr.utc_offset_s, observed, expected)
            sev = "medium"
        elif kind == "night_wandering":
            why = text.night_hall(observed, expected)
            sev = "high"
        elif kind == "bathroom_too_long":
            why = text.bathroom(due - (tr.ctx_t or a), expected, p.learned)
            sev = "high"
        elif (suspect := self._suspect(p)) is not None:
            # the home looks silent, but a sensor that should see the resident looks dead
            kind_s, _, room_s = suspect.partition(":")
            why = text.sensor_suspect(kind_s, room_s, ctx, observed, tr.run.get(suspect, 0))
            return InactivityAlert(due, "device_silent", room_s, "medium", why, expected, observed,
                                   thr, since, suspect)  # fmt: skip
        else:
            why = text.inactivity(ctx, observed, expected, h, p.learned)
            sev = "high" if observed >= 2 * expected or ctx != "bed" else "medium"
        return InactivityAlert(due, kind, room, sev, why, expected, observed, thr, since)

    def _moved(self, p: Profile, a: float, ctx: str, *, walk: bool) -> list[str]:
        """Rooms whose trigger since the last activity ``a`` may be the resident walking on from ``ctx``.

        From a quiet sensor, any; from one that blips often, only soon after that activity, more
        often than its noise explains, or (``walk``) right after a trigger elsewhere.
        """
        tr = self._tr
        return [
            r
            for r, pt in tr.pending.items()
            if pt > a
            and r not in (ctx, "hall")
            and (
                p.noise.get(r, 0.0) < NOISY_PER_DAY
                or pt - a <= MOVE_S
                or (walk and tr.walk.get(r, False))
                or beyond_noise(tr.since.get(r, 0), p.noise.get(r, 0.0), pt - a)
            )
        ]

    def _lost_bed_event(self, p: Profile, h: int) -> bool:
        """In the bedroom at night without having left the bed since entering it: in bed, surely."""
        tr = self._tr
        near_night = any(p.night[(h + d) % 24] for d in (-1, 0, 1))
        entered = tr.ctx_t if tr.ctx_t is not None else -math.inf
        return near_night and (tr.bed_exit_t is None or tr.bed_exit_t < entered - 60.0)

    def _suspect(self, p: Profile) -> str | None:
        """A motion sensor that is probably dead: the present silence is more likely its fault."""
        tr = self._tr
        own = f"pir:{tr.ctx}"
        # the resident came into the room (appliance) but its sensor did not see them come in
        if (
            own in p.dev_limits
            and tr.ctx_t is not None
            and tr.seen_t.get(own, -math.inf) < tr.ctx_t - STRONG_S
        ):
            return own
        worst, ratio = None, 1.0
        for s, usual in p.dev_usual.items():
            if s.startswith("pir:") and tr.run.get(s, 0) >= max(6, 1.5 * usual + 1):
                r = tr.run[s] / max(usual, 1)
                if r >= ratio:
                    worst, ratio = s, r
        return worst

    def _no_wake(self, p: Profile, a: float) -> Candidate | None:
        """Still in bed (or quiet in the bedroom) well past the usual wake time of the day."""
        tr = self._tr
        base = (tr.ctx_t if tr.ctx == "bed" and tr.ctx_t is not None else a) + SETTLE_S
        d0 = tr.day_of(a)
        best = None
        for d in (d0, d0 + 1):
            if tr.up_day == d or self._alerted["day"] == d:
                continue
            midnight = d * DAY - tr.utc_offset_s  # day d starts at wake_open after this midnight
            w = p.wake.get(str((d + 3) % 7))  # 1970-01-01 was a Thursday
            med = w["median"] if w else WAKE_PRIOR_S - 2 * HOUR
            thr_s = w["thr"] if w else WAKE_PRIOR_S
            # a night begun far later than usual moves its morning by as much (the same night's sleep)
            margin = (thr_s - med) / self.sensitivity + self._late_night(p, midnight)
            thr_abs = midnight + med + margin
            due = max(thr_abs, base)
            if due <= thr_abs + NO_WAKE_WINDOW_S and (best is None or due < best[0]):
                best = Candidate(due, "no_wake", "no_wake", margin, thr_abs - midnight, med)
        return best

    def _late_night(self, p: Profile, midnight: float) -> float:
        """How much later than usual for that evening the resident went to bed the night before
        the morning starting at ``midnight``, when far beyond the usual spread (else 0)."""
        tr = self._tr
        if tr.ctx != "bed" or tr.night_t is None or not p.bedtime:
            return 0.0
        evening = midnight - DAY
        if not evening + 18 * HOUR <= tr.night_t <= midnight + 4 * HOUR:
            return 0.0
        usual = p.bedtime.get(str(round((evening + tr.utc_offset_s) / DAY + 3) % 7))
        if usual is None:
            return 0.0
        late = tr.night_t - (evening + usual)
        if late <= max(BED_LATE_SD * p.bedtime_sd, BED_LATE_MIN_S):
            return 0.0
        return min(late, BED_LATE_CAP_S)

    # what a care worker sees ---------------------------------------------------------------------

    def own_share(self) -> float:
        """How far the limits are this home's own (0: the starting limits; 1: after ``grace_days``)."""
        days = self._profile().days
        return min(1.0, days / self.grace_days) if self.grace_days > 0 else 1.0

    def limits_at(self, t: float) -> dict[str, float]:
        """The limits in effect at ``t``'s hour, seconds by room of :data:`LIMIT_ROOMS` (the
        bathroom's: the time spent there), sensitivity applied: what raises an alert now."""
        p = self._profile()
        h = self._tr.hour(t)
        out = {}
        for room in LIMIT_ROOMS:
            table = p.stay if room == "bathroom" else self._table(p, room)[0]
            out[room] = table[h] / self.sensitivity
        return out

    # state -------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able state: parameters, the learned profile and the streaming state."""
        return {
            "version": STATE_VERSION,
            "params": {
                "sensitivity": self.sensitivity,
                "grace_days": self.grace_days,
                "utc_offset_s": self.utc_offset_s,
                "confirm_s": self.confirm_s,
                "budget": self.budget,
                "starting_limits": dict(self.starting_limits),
                "shared": self.shared,
            },
            "profile": None if self.profile_ is None else self.profile_.to_dict(),
            "tracker": self._tr.to_dict(),
            "alerted": dict(self._alerted),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InactivityDetector:
        if not isinstance(d, dict) or d.get("version") != STATE_VERSION:
            msg = f"not an inactivity detector state of version {STATE_VERSION}"
            raise InactivityError(msg)
        try:
            det = cls(**d["params"])
            det.profile_ = None if d["profile"] is None else Profile.from_dict(d["profile"])
            det._tr = Tracker.from_dict(d["tracker"])
            det._alerted = dict(d["alerted"])
        except (KeyError, TypeError) as exc:
            msg = f"inactivity detector state is incomplete or malformed: {exc}"
            raise InactivityError(msg) from exc
        return det
