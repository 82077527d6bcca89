"""From raw home events to *evidence of activity* and a *context* (where the resident is).

The same :class:`Tracker` replays the history in ``fit`` (recording silences, stays, bed exits
and per-sensor silences) and follows the live stream in ``detect``/``update``, so what is
learned and what is judged are measured the same way.

Why PIR events need confirmation: a motion sensor also fires on sunlight, pets and radio noise,
and 10-20 % of events can be spurious. One isolated trigger must not reset the silence clock of
someone lying on the floor, so a PIR event counts as activity only when it is corroborated: a
second trigger in the same room within ``confirm_s``, confirmed activity in the same room or any
room shortly before (walking between rooms), or a door / bed / appliance event just before.
Bed, door and appliance switch-ons are strong evidence on their own (and confirm a PIR in their
own room, or the hall for the front door). An SOS press is activity too (the platform raises the
SOS alert itself).

How noisy a home's motion sensors are is learned, not assumed: in the replayed history, triggers
while nobody was home and lone triggers in a room the resident was not in (not following another
trigger, long after the last activity) are counted per room, each over the time in which it could
have been counted (:func:`noise_rates`). A room with many of them needs its pairs closer together
(:func:`pair_window`); lone triggers where the resident is count once there are more than that rate
explains (:func:`beyond_noise`), and the detector weighs a lone trigger elsewhere against it before
taking it as the resident having moved.

All state is plain JSON-able data (:meth:`Tracker.to_dict`), so the platform can store it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

DAY = 86_400.0
HOUR = 3_600.0
TRANSITION_S = 90.0  # a PIR this soon after activity elsewhere is someone walking between rooms
WAKE_BATH_S = 900.0  # a bathroom visit this soon after leaving bed: the morning routine (longer)
STRONG_S = 120.0  # a PIR this soon after a door/bed/appliance event is confirmed by it
PLUG_ON_W = 20.0  # an appliance switched on (W)
PLUG_OFF_W = 5.0
PLUG_IDLE_S = 600.0  # off this long before a switch-on counts as a person (not a thermostat)
CYCLE_S = 15 * 60.0  # two quick switch-ons this close together: a thermostat cycling
UP_OUT_OF_BED_S = 1800.0  # out of bed this long in the morning: up for the day
NIGHT_TRIP_S = 3600.0  # back in bed this soon after leaving it: a trip in the night, the same night
CHAIN_S = 120.0  # a lone PIR this soon after a trigger in another room may be someone walking
MIN_PAIR_S = 90.0  # in the noisiest homes two triggers must come this close to confirm each other
NOISE_FLOOR_PER_DAY = 1.0  # lone spurious triggers a day assumed in any room, however clean it looked
NOISE_PAIRS_PER_DAY = 1 / 14  # chance pairs of spurious triggers in one room tolerated: one a fortnight
MANY_P = 0.01  # lone triggers where the resident is count as them once noise explains them this rarely
MANY_P_MOVED = 0.001  # ... and in a room they may only have seemed to move to (one trigger)
DAY_ROOMS_EXCLUDED = ("bed", "bedroom", "bathroom", "unknown")
# the wearable: a reading (steps in the last minute, about every minute while worn and in range)
# with at least WALK_STEPS is the resident walking; readings more than WORN_GAP_S apart mean it was
# off or out of range in between (not worn is unknown, never still)
WALK_STEPS = 8.0
WORN_GAP_S = 180.0
WORN_MIN_S = 300.0  # shorter stillness is not learned (it never decides an alarm)
WORN_ROOMS = ("bathroom",)  # rooms whose stillness is learned apart (short, and rarely shared)
WALK_ROOM_S = 90.0  # a motion trigger this close to a walk is where the walk ended
# Where no gateway heartbeat is known, in a home of one, the worn wearable is its one steady
# reporter: when it stops with every other sensor of the home, in a room where it is not taken off
# (not in bed, not washing in the bathroom, not out or in the hall on the way out), the gateway or
# its network is down far more likely than the resident, whose wearable would go on saying "still".
# QUIET_ALL_S of such a silence: the gateway is reported silent, and when anything reports again
# the resident's whereabouts are unknown until they move (as after a heartbeat gap).
QUIET_ALL_S = 600.0
WEAR_OFF_CTX = ("bed", "bathroom", "hall", "away", "unknown")
WEAR_TICK_S = 90.0  # it reports about every minute: its last reading this close to the home's last event


def worn_ctx(room: str) -> str:
    """The context a worn wearable's stillness is learned and judged in: ``worn:<room>`` or ``worn``."""
    return f"worn:{room}" if room in WORN_ROOMS else "worn"


TRACKED_SENSOR_KINDS = ("pir", "bed")  # doors and plugs report only when used: no silence rule
# a motion sensor that misses one use after another of the bed, door or appliances in its room,
# more often in a row than this rarely happens by its learned hit rate, has failed
DEAD_P = 1e-4
USES_MIN = 8  # uses in a room needed to learn how often its motion sensor sees them

Event = tuple[float, str, str, float]


# other names for the rooms the detector treats specially (real installations name rooms freely)
ROOM_ALIASES = {
    "bath": "bathroom", "toilet": "bathroom", "wc": "bathroom", "restroom": "bathroom",
    "shower": "bathroom", "washroom": "bathroom", "卫生间": "bathroom", "厕所": "bathroom",
    "living_room": "living", "livingroom": "living", "lounge": "living", "sitting_room": "living",
    "客厅": "living", "hallway": "hall", "entrance": "hall", "entry": "hall", "corridor": "hall",
    "front_door": "hall", "门厅": "hall", "bed_room": "bedroom", "master_bedroom": "bedroom",
    "卧室": "bedroom", "厨房": "kitchen",
}  # fmt: skip


def room_name(room: str) -> str:
    r = room.strip().lower().replace(" ", "_").replace("-", "_")
    return ROOM_ALIASES.get(r, r)


def hour_of(t: float, utc_offset_s: float) -> int:
    return int(((t + utc_offset_s) % DAY) // HOUR)


@dataclass(slots=True)
class Recording:
    """What a replay of the history saw; turned into thresholds by :mod:`.inactivity_profile`."""

    silences: list[tuple[str, float, float]] = field(default_factory=list)  # ctx, start, duration
    stays: list[tuple[str, float, float]] = field(default_factory=list)  # ctx, entered, duration
    runs: dict[str, list[int]] = field(default_factory=dict)  # sensor -> active-hour runs
    sensor_days: dict[str, set[int]] = field(default_factory=dict)  # sensor -> days it reported
    gaps: list[tuple[float, float]] = field(default_factory=list)  # gateway silences (excluded)
    heartbeats: int = 0
    blips: dict[str, int] = field(default_factory=dict)  # room -> lone triggers, resident elsewhere
    blip_s: dict[str, float] = field(default_factory=dict)  # room -> time a lone trigger would count
    away_s: float = 0.0  # time out of the front door (from 2 min after it), when every PIR is noise
    away_trig: dict[str, int] = field(default_factory=dict)  # room -> triggers in that time
    uses: dict[str, list[int]] = field(default_factory=dict)  # room -> [bed/door/appliance uses, seen]
    # the outing under way: it counts only if it ends with the front door (someone came back);
    # one that ends with movement inside was a door opened for a visitor or a parcel, not an outing
    out_s: float = 0.0
    out_trig: dict[str, int] = field(default_factory=dict)
    # room -> switch-ons soon after a switch-off that followed another such within CYCLE_S (a hob's
    # thermostat); and the last quick switch-on seen there
    cycles: dict[str, int] = field(default_factory=dict)
    quick_on: dict[str, float] = field(default_factory=dict)

    def end_outing(self, came_back: bool) -> None:
        if came_back:
            self.away_s += self.out_s
            for r, n in self.out_trig.items():
                self.away_trig[r] = self.away_trig.get(r, 0) + n
        self.out_s, self.out_trig = 0.0, {}


def pair_window(blips_per_day: float, confirm_s: float) -> float:
    """How close two lone triggers in one room must be to count as a person, given the home's noise.

    Lone, never-confirmed triggers (sunlight, heating, pets, radio noise, dropped neighbours) arrive
    roughly at random; at ``b`` a day in a room, two of them fall within ``x`` seconds of each other
    about ``b * b * x / 86400`` times a day. ``x`` is chosen so that this happens at most once a
    fortnight, but never shorter than a PIR's re-trigger time allows (then three are needed).
    """
    if blips_per_day <= 0:
        return confirm_s
    x = DAY * NOISE_PAIRS_PER_DAY / (blips_per_day * blips_per_day)
    return max(min(confirm_s, x), min(MIN_PAIR_S, confirm_s))


def beyond_noise(n: int, blips_per_day: float, span: float, p: float = 0.01) -> bool:
    """``n`` lone triggers in ``span`` seconds are more than a sensor blipping ``blips_per_day`` explains.

    Spurious triggers arrive roughly as a Poisson process; this is its upper tail at level ``p``.
    """
    if n < 2:
        return False
    mu = max(blips_per_day, NOISE_FLOOR_PER_DAY) * max(span, 0.0) / DAY
    return 1.0 - sum(math.exp(-mu) * mu**k / math.factorial(k) for k in range(n)) < p


AWAY_NOISE_MIN_S = 12 * HOUR  # out this long in all: the triggers meanwhile measure the noise


def noise_rates(rec: Recording) -> dict[str, float]:
    """Spurious triggers a day per room: every count of noise over the time it was counted in.

    Triggers while nobody was home, and lone triggers while the resident was elsewhere (not near
    any other trigger), are both noise; each is counted only in the time it could have been, so
    pooled over that time they give the rate itself rather than the share of it that was seen.
    """
    rooms = set(rec.away_trig) | set(rec.blips) | set(rec.blip_s)
    out = {}
    for r in rooms:
        exposure = rec.away_s + rec.blip_s.get(r, 0.0)
        if exposure >= AWAY_NOISE_MIN_S:
            n = rec.away_trig.get(r, 0) + max(rec.blips.get(r, 0), 0)
            out[r] = round(n * DAY / exposure, 2)
    return out


class Trigger(NamedTuple):
    """What a PIR trigger is judged by: where the resident was, this room's recent triggers."""

    here: bool  # in the room the resident was last placed (their bedroom while in bed)
    recent: list[float]  # this room's unconfirmed triggers in the last two confirm windows
    away: bool  # last seen going out of the front door
    gone: bool  # ... and it has not opened again
    came_in: bool  # the hall saw someone come in since the front door last opened


@dataclass(slots=True)
class Tracker:
    """Follows one home: context, last confirmed activity, pending PIRs, per-sensor silence."""

    confirm_s: float = 300.0
    utc_offset_s: float = 0.0
    wake_open_s: float = 4 * HOUR  # the morning's "up" bookkeeping starts at this local time
    hb_gap_s: float | None = None  # a heartbeat gap longer than this is a gateway outage
    last_t: float | None = None
    act_t: float | None = None  # last confirmed activity
    ctx: str = "unknown"  # bed, a room, away (after the front door), unknown
    ctx_t: float | None = None  # when the context was entered
    bed: bool = False
    bed_exit_t: float | None = None
    night_t: float | None = None  # went to bed for the night (a short trip out since does not count)
    out_t: float | None = None  # first movement outside the bedroom while the bed says "in bed"
    out_n: int = 0
    bath_wake: bool = False  # the present bathroom visit began just after leaving bed
    strong_t: float = -math.inf
    strong_room: str = ""  # where the last door/bed/appliance event was
    front_open_t: float = 0.0  # the front door last opened
    up_day: int = -1  # the local day (from wake_open_s) on which the resident was last "up"
    pending: dict[str, float] = field(default_factory=dict)  # room -> last unconfirmed PIR time
    walk: dict[str, bool] = field(default_factory=dict)  # room -> its pending PIR followed another
    noise: dict[str, bool] = field(default_factory=dict)  # room -> its pending burst counted as noise
    since: dict[str, int] = field(default_factory=dict)  # room -> lone triggers since the last activity
    weak: dict[str, float] = field(default_factory=dict)  # room -> last pair too far apart to confirm
    held: list[float] = field(default_factory=list)  # [last activity, the alarm deferred to] (see check)
    pair_s: dict[str, float] = field(default_factory=dict)  # room -> pair window (noisy rooms)
    quiet: list[str] = field(default_factory=list)  # rooms whose sensor hardly ever blips
    steady: list[str] = field(default_factory=list)  # rooms whose appliances never cycle by themselves
    noise_rate: dict[str, float] = field(default_factory=dict)  # room -> spurious triggers a day
    ctx_alt: str | None = None  # the context before a move seen by one trigger only (may be noise)
    burst: dict[str, list[float]] = field(default_factory=dict)  # room -> recent unconfirmed PIRs
    room_last: dict[str, float] = field(default_factory=dict)  # room -> last confirmed activity
    plug: dict[str, list[float]] = field(default_factory=dict)  # room -> [last W, off since]
    seen_t: dict[str, float] = field(default_factory=dict)  # sensor -> last report
    hb_t: float | None = None
    hb_resumed_t: float | None = None
    # per-sensor silence, counted in hours in which the rest of the home was active
    bin_h: int | None = None
    bin_seen: list[str] = field(default_factory=list)
    bin_active: list[str] = field(default_factory=list)
    run: dict[str, int] = field(default_factory=dict)
    dev_due: dict[str, float] = field(default_factory=dict)  # sensor -> when its run hit the limit
    dev_sent: list[str] = field(default_factory=list)  # sensors alerted in their present silence
    use_t: dict[str, float] = field(default_factory=dict)  # room -> a use its PIR has not seen yet
    # room -> uses missed since its PIR's last trigger; the learned share of uses it sees
    use_missed: dict[str, int] = field(default_factory=dict)
    use_seen_p: dict[str, float] = field(default_factory=dict)
    shared: bool = False  # a home of two: movement elsewhere while in bed may be the partner's
    wear_t: float | None = None  # the wearable's last reading (worn and in range)
    still_t: float | None = None  # since when the worn wearable has not walked (out of bed)
    still_room: str = ""  # the room where that walk ended (motion seen there just before and after)
    walk_room: str = ""  # the room of the trigger just before the walk's reading, until the next one
    pir_t: float | None = None  # the last motion trigger, confirmed or not, and its room
    pir_room: str = ""
    rec: Recording | None = None

    # time --------------------------------------------------------------------------------------

    def day_of(self, t: float) -> int:
        return math.floor((t + self.utc_offset_s - self.wake_open_s) / DAY)

    def hour(self, t: float) -> int:
        return hour_of(t, self.utc_offset_s)

    def close_bins(self, t: float, limits: dict[str, int] | None = None) -> None:
        """Close every whole hour before ``t``: count it against the sensors that stayed silent."""
        h_now = math.floor(t / HOUR)
        if self.bin_h is None:
            self.bin_h = h_now
            return
        while self.bin_h < h_now:
            seen, active = set(self.bin_seen), set(self.bin_active)
            for s in list(self.run):
                if s in seen:
                    self._end_run(s)
                elif active - {s}:
                    self.run[s] += 1
                    lim = limits.get(s) if limits else None
                    # >=: after a refit the limit may have dropped below a silence already under way
                    if lim is not None and self.run[s] >= lim and s not in self.dev_sent:
                        self.dev_due.setdefault(s, (self.bin_h + 1) * HOUR)
            for s in seen - set(self.run):
                self.run[s] = 0
            self.bin_seen, self.bin_active = [], []
            self.bin_h += 1
            if not seen and not active and self.bin_h < h_now:  # skip quiet hours in one step
                self.bin_h = h_now

    def _end_run(self, s: str) -> None:
        if self.rec is not None and self.run.get(s, 0) > 0:
            self.rec.runs.setdefault(s, []).append(self.run[s])
        self.run[s] = 0
        self.dev_due.pop(s, None)
        if s in self.dev_sent:
            self.dev_sent.remove(s)

    # events ------------------------------------------------------------------------------------

    def update(self, ev: Event, limits: dict[str, int] | None = None) -> None:
        self._update(ev, limits)
        rec = self.rec
        if rec is not None and (rec.out_s or rec.out_trig) and not self._gone():
            front = str(ev[1]).lower() == "door" and room_name(str(ev[2])) in ("hall", "")
            rec.end_outing(came_back=front)

    def _update(self, ev: Event, limits: dict[str, int] | None) -> None:
        t, kind, value = float(ev[0]), str(ev[1]).lower(), float(ev[3])
        room = room_name(str(ev[2]))
        self.close_bins(t, limits)
        self.settle_uses(t)
        if self.rec is not None:
            self._record_exposure(t)
        quiet = self.all_quiet()
        if quiet is not None and t - quiet > QUIET_ALL_S:
            # the whole home, wearable too, was silent: nothing is known about that time
            if self.rec is not None:
                self.rec.gaps.append((quiet, t))
            self.hb_resumed_t = t
            self.act_t, self.ctx, self.ctx_t, self.ctx_alt = t, "unknown", t, None
        self.last_t = t
        if kind == "heartbeat":
            self._heartbeat(t)
            return
        key = f"{kind}:{room}"
        if kind in TRACKED_SENSOR_KINDS:
            if key not in self.bin_seen:
                self.bin_seen.append(key)
            if self.rec is not None:
                self.rec.sensor_days.setdefault(key, set()).add(math.floor(t / DAY))
        prev_seen = self.seen_t.get(key, -math.inf)
        self.seen_t[key] = t
        if kind == "pir" and value >= 0.5:
            if self.walk_room and self.still_t is not None and 0 <= t - self.still_t <= WALK_ROOM_S:
                self.still_room = room if room == self.walk_room else ""
                self.walk_room = ""
            self.pir_t, self.pir_room = t, room
            self._motion(t, room, key, prev_seen)
        elif kind == "bed":
            self._bed(t, value >= 0.5, key)
        elif kind == "door":
            self._door(t, room, value >= 0.5, key)
        elif kind == "plug":
            self._plug(t, room, value, key)
        elif kind == "sos" and value >= 0.5:
            self._activity(t, room if room else self.ctx, room, key)
        elif kind == "wearable":
            self._worn(t, value)

    def all_quiet(self) -> float | None:
        """When the home went quiet (its last event) if the worn wearable went quiet with it (its last
        reading within WEAR_TICK_S before), in a home with no heartbeat known and a context where it
        stays on; else None.

        Not proof of an outage by itself: callers wait WORN_GAP_S (the wearable missed) before
        holding an alarm and QUIET_ALL_S before calling the gateway silent.
        """
        w, last = self.wear_t, self.last_t
        if self.hb_gap_s is not None or self.shared or w is None or last is None or self.act_t is None:
            return None  # (in a home of two the partner's quiet spells leave the resident's wearable alone)
        if w < last - WEAR_TICK_S or self.ctx in WEAR_OFF_CTX:
            return None  # it stopped before the rest (taken off), or is off / out of range here
        return last

    def _worn(self, t: float, steps: float) -> None:
        """A reading of the resident's own wearable: walking, or still since ``still_t``.

        In bed (this resident's own mat) the stillness is the bed's business; after a gap (taken
        off, out of range) it starts again from the first reading: what happened in between is
        unknown. Replaying history, a stillness that ended with walking or in bed is learned as
        ``worn`` (its silences, by the hour they began).
        """
        gap = self.wear_t is None or t - self.wear_t > WORN_GAP_S
        if gap or self.bed or steps >= WALK_STEPS:
            s = self.still_t
            if self.rec is not None and s is not None and not gap and t - s >= WORN_MIN_S:
                self.rec.silences.append((worn_ctx(self.still_room), s, t - s))
            self.still_t = t
            # where the walk ended: the room of the motion trigger just before this reading, if the
            # next one (within WALK_ROOM_S) is there too; else unknown (the partner may be moving)
            self.still_room = ""
            walked = steps >= WALK_STEPS and self.pir_t is not None and t - self.pir_t <= WALK_ROOM_S
            self.walk_room = self.pir_room if walked else ""
        self.wear_t = t

    def _record_exposure(self, t: float) -> None:
        """Replaying history: the time in which triggers measure the sensors' noise."""
        assert self.rec is not None
        if self._gone() and self.act_t is not None and self.last_t is not None:
            # nobody home: how noisy the motion sensors are can be read off directly
            span = t - max(self.last_t, self.act_t + CHAIN_S)
            if span > 0 and (self.hb_gap_s is None or t - self.last_t <= self.hb_gap_s):
                self.rec.out_s += span
        if self.last_t is not None:
            self._expose(t)

    # motion --------------------------------------------------------------------------------------

    def _motion(self, t: float, room: str, key: str, prev_seen: float) -> None:
        """A PIR trigger: the resident there (confirmed, or walking on), or one to wait on."""
        if room in self.use_t:
            self._judge_use(room, True, t)
        self.use_missed.pop(room, None)
        trig = self._trigger(t, room)
        confirmed = self._confirms(t, room, trig)
        walking_on = (
            self.act_t is not None
            and t - self.act_t <= TRANSITION_S
            and (self.ctx != "away" or room == "hall" or trig.came_in)
        )
        if self.rec is not None and trig.gone and self.act_t is not None and t - self.act_t > CHAIN_S:
            self.rec.out_trig[room] = self.rec.out_trig.get(room, 0) + 1
        if confirmed or walking_on:
            self._moved(t, room, key, confirmed, trig.recent)
        else:
            self._unconfirmed(t, room, key, prev_seen, trig)

    def _trigger(self, t: float, room: str) -> Trigger:
        hall_t = self.seen_t.get("pir:hall", -math.inf)
        return Trigger(
            here=room == self.ctx or (room == "bedroom" and self.ctx == "bed"),
            recent=[x for x in self.burst.get(room, []) if t - x <= 2 * self.confirm_s],
            away=self.ctx == "away",
            gone=self._gone(),
            # after the front door, a walk starts in the hall: an inner room's lone trigger counts
            # only when the hall saw someone come in (after the door opened, not before)
            came_in=hall_t >= self.front_open_t and t - hall_t <= CHAIN_S,
        )

    def _confirms(self, t: float, room: str, trig: Trigger) -> bool:
        """Is this trigger the resident? Each rule on its own; the first that holds decides."""
        recent, here, gone = trig.recent, trig.here, trig.gone
        # gone out: the door that closed behind them is no walk to the kitchen; only a door
        # opened again (coming back) or the hall seeing them come in is
        back = not gone or room == "hall" or trig.came_in
        walked = back and self.act_t is not None and bool(recent) and recent[0] - self.act_t <= self.confirm_s
        # a second trigger confirms where the resident is, or shortly after they were active
        # elsewhere (walked there); out of the blue it takes a third (spurious pairs are common)
        if (here or walked) and recent and t - recent[-1] <= self.pair_s.get(room, self.confirm_s):
            return True
        if here and room in self.quiet:  # a quiet sensor where they are: them
            return True
        if here and self._many(room, t):  # more lone triggers where they are than noise makes
            return True
        # nobody home: a burst in a room whose sensor blips often takes one trigger more
        if len(recent) >= (3 if trig.away and room in self.pair_s else 2):
            return True
        last_here = self.room_last.get(room, -math.inf)
        # soon after activity here (a noisy sensor: and none elsewhere since, nor out)
        if t - last_here <= self.confirm_s and (room in self.quiet or (last_here == self.act_t and not gone)):
            return True
        # just after a door, bed or appliance in this room (or the hall); the front door that
        # closed behind them vouches for no noisy sensor's trigger after it
        shut = gone and self.strong_t > self.front_open_t and room in self.pair_s
        return t - self.strong_t <= STRONG_S and room in (self.strong_room, "hall") and not shut

    def _moved(self, t: float, room: str, key: str, confirmed: bool, recent: list[float]) -> None:
        """The trigger is the resident: their context becomes this room (or the bed)."""
        if self.rec is not None and recent and self.noise.pop(room, False):
            self.rec.blips[room] -= 1  # it was the resident after all
        self.pending.pop(room, None)
        self.burst.pop(room, None)
        self.walk.pop(room, None)
        ctx = room
        if self.bed:
            # in a home of two, the resident's own bed mat says when they get up, not the others'
            ctx = "bed" if room == "bedroom" or self.shared or not self._left_bed(t) else room
        # one trigger just after activity elsewhere: walked on, or (in a room whose sensor blips
        # often) a spurious trigger while the resident stays put; until the room confirms it,
        # either may be true. Nobody stays in the hall or outside.
        provisional = (
            not confirmed
            and ctx != self.ctx
            and room in self.pair_s
            and self.ctx not in ("unknown", "hall", "away")
        )
        alt = self.ctx if provisional else None
        last_here = self.room_last.get(room)
        self._activity(t, ctx, room, key)
        self.ctx_alt = alt
        if alt is not None:  # a provisional move does not vouch for the room's next trigger
            if last_here is None:
                self.room_last.pop(room, None)
            else:
                self.room_last[room] = last_here

    def _unconfirmed(self, t: float, room: str, key: str, prev_seen: float, trig: Trigger) -> None:
        """A trigger not (yet) taken as the resident: kept pending, counted as noise while learning."""
        recent = trig.recent
        others = [v for k, v in self.seen_t.items() if k.startswith("pir:") and k != key]
        # seen walking in since the last activity: a later lone trigger there does not undo it
        walked_in = self.walk.get(room, False) and self.pending.get(room, -math.inf) > (self.act_t or 0)
        near = any(t - v <= CHAIN_S for v in others) or t - prev_seen <= CHAIN_S
        self.walk[room] = walked_in or near
        if self.rec is not None and not recent:
            # a lone trigger away from where the resident was last seen, long after: noise?
            far = not trig.here and (self.act_t is None or t - self.act_t > CHAIN_S)
            self.noise[room] = far and not near and self.ctx not in ("away", "unknown")
            if self.noise[room]:
                self.rec.blips[room] = self.rec.blips.get(room, 0) + 1
        if recent and t - recent[-1] <= self.confirm_s:
            self.weak[room] = t
        self.pending[room] = t
        self.burst[room] = [*recent, t]
        self.since[room] = self.since.get(room, 0) + 1

    # bed, doors, appliances ----------------------------------------------------------------------

    def _bed(self, t: float, in_bed: bool, key: str) -> None:
        self._used("bedroom", t)
        self.out_t, self.out_n = None, 0
        if (
            in_bed
            and not self.bed
            and not (
                self.night_t is not None
                and self.bed_exit_t is not None
                and self.night_t <= self.bed_exit_t
                and t - self.bed_exit_t <= NIGHT_TRIP_S
            )
        ):
            self.night_t = t  # a new stay in bed, not the return from a trip in the night
        self.bed = in_bed
        if not in_bed:
            self.bed_exit_t = t
        self.strong_t, self.strong_room = t, "bedroom"
        self._activity(t, "bed" if in_bed else "bedroom", "bedroom", key)

    def _door(self, t: float, room: str, opened: bool, key: str) -> None:
        if opened:
            self._used(room or "hall", t)
        self.strong_t, self.strong_room = t, room or "hall"
        front = room in ("hall", "")
        if front and opened:
            self.front_open_t = t
        if front:  # the front door: the resident may have gone out
            self._activity(t, "away", "hall", key)
        else:  # a bathroom, fridge or wardrobe door: someone is in that room
            self._activity(t, "bed" if room == "bedroom" and self.bed else room, room, key)

    def _plug(self, t: float, room: str, watts: float, key: str) -> None:
        last_w, off_since = self.plug.get(room, [0.0, -math.inf])
        switched_on = watts >= PLUG_ON_W and last_w < PLUG_OFF_W
        quick = t - off_since < PLUG_IDLE_S
        if switched_on and quick and self.rec is not None:
            if t - self.rec.quick_on.get(room, -math.inf) <= CYCLE_S:
                self.rec.cycles[room] = self.rec.cycles.get(room, 0) + 1
            self.rec.quick_on[room] = t
        # switched on after a while off, or in a room whose appliances never cycle by themselves (a
        # TV switched on again after a visit to the toilet): someone is there
        if switched_on and (not quick or room in self.steady):
            self._used(room, t)
            self.strong_t, self.strong_room = t, room
            self._activity(t, room, room, key)
        if watts < PLUG_OFF_W <= last_w:
            off_since = t
        self.plug[room] = [watts, off_since]

    def _used(self, room: str, t: float) -> None:
        """Someone used the bed, a door or an appliance in ``room``: its motion sensor should see them."""
        if f"pir:{room}" not in self.seen_t and room not in self.use_seen_p:
            return  # no motion sensor known there
        if self.seen_t.get(f"pir:{room}", -math.inf) >= t - STRONG_S:
            self._judge_use(room, True, t)  # seen on the way in
        else:
            self.use_t.setdefault(room, t)

    def settle_uses(self, t: float) -> None:
        """Uses whose motion sensor stayed silent for ``STRONG_S`` after them were missed."""
        for room, used in list(self.use_t.items()):
            if t - used > STRONG_S:
                self._judge_use(room, False, used + STRONG_S)

    def _judge_use(self, room: str, seen: bool, t: float) -> None:
        self.use_t.pop(room, None)
        if self.rec is not None:
            n = self.rec.uses.setdefault(room, [0, 0])
            n[0] += 1
            n[1] += seen
        if seen:
            return
        self.use_missed[room] = self.use_missed.get(room, 0) + 1
        s = f"pir:{room}"
        if self.failed_by_uses(room) and s not in self.dev_sent:
            self.dev_due.setdefault(s, t)

    def failed_by_uses(self, room: str) -> bool:
        """``room``'s motion sensor missed more uses in a row than its hit rate makes plausible."""
        p = self.use_seen_p.get(room)
        return p is not None and (1.0 - p) ** self.use_missed.get(room, 0) < DEAD_P

    def _expose(self, t: float) -> None:
        """Add the time since the last event in which a lone trigger in a room would count as a blip.

        The conditions of the blip rule (resident elsewhere, well after their last activity, no
        other trigger just before, none in the room shortly before) stay fixed between events.
        """
        assert self.rec is not None and self.last_t is not None
        if self.act_t is None or self.ctx in ("away", "unknown"):
            return
        if self.hb_gap_s is not None and t - self.last_t > self.hb_gap_s:
            return
        floor = max(self.last_t, self.act_t + CHAIN_S)
        if floor >= t:  # the resident was active just now: no trigger could have been a blip
            return
        pirs = sorted(((v, k[4:]) for k, v in self.seen_t.items() if k.startswith("pir:")), reverse=True)
        own = "bedroom" if self.ctx == "bed" else self.ctx
        for seen, r in pirs:
            if r == own:
                continue
            others = pirs[0][0] if pirs[0][1] != r else pirs[1][0] if len(pirs) > 1 else -math.inf
            start = max(floor, others + CHAIN_S, seen + CHAIN_S)
            burst = self.burst.get(r)
            if burst:
                start = max(start, burst[-1] + 2 * self.confirm_s)
            if start < t:
                self.rec.blip_s[r] = self.rec.blip_s.get(r, 0.0) + (t - start)

    def _many(self, room: str, t: float) -> bool:
        """This trigger and the lone ones before it in ``room`` since the last activity: beyond noise?"""
        if self.act_t is None or room not in self.noise_rate:
            return False
        n = self.since.get(room, 0) + 1
        p = MANY_P if self.ctx_alt is None else MANY_P_MOVED
        return beyond_noise(n, self.noise_rate[room], t - self.act_t, p=p)

    def _gone(self) -> bool:
        """Out of the front door and it has not opened again: nobody is home."""
        return self.ctx == "away" and self.front_open_t - (self.ctx_t or 0.0) <= 60.0

    def _left_bed(self, t: float) -> bool:
        """Activity outside the bedroom while the bed says "in bed": up, or a spurious trigger?

        Up (a bed exit the radio lost) once there are three confirmed movements over 3+ minutes;
        in a home with noisy sensors, only if the first came soon after a bedroom trigger.
        """
        if self.out_t is None or t - self.out_t > 1800.0:
            self.out_t, self.out_n = t, 0
            # in a noisy home, only after the bedroom's sensor (if any) saw someone getting up just
            # before, unless the gateway was down meanwhile (the bed exit may have been lost with it)
            stale = self.hb_resumed_t is not None and t - self.hb_resumed_t < 3 * HOUR
            seen = self.seen_t.get("pir:bedroom", t) >= t - self.confirm_s
            if self.pair_s and not seen and not stale:
                self.out_t = None
                return False
        self.out_n += 1
        if self.out_n >= 3 and t - self.out_t >= 180.0:
            self.bed, self.bed_exit_t = False, self.out_t
            self.out_t, self.out_n = None, 0
            return True
        return False

    def _heartbeat(self, t: float) -> None:
        if self.rec is not None:
            self.rec.heartbeats += 1
        if self.hb_t is not None and self.hb_gap_s is not None and t - self.hb_t > self.hb_gap_s:
            # the gateway was down: nothing is known about that time, so the silence starts anew
            if self.rec is not None:
                self.rec.gaps.append((self.hb_t, t))
            self.hb_resumed_t = t
            if self.act_t is not None:  # where the resident is now is unknown until they move
                self.act_t, self.ctx, self.ctx_t, self.ctx_alt = t, "unknown", t, None
        self.hb_t = t

    def _activity(self, t: float, ctx: str, room: str, key: str) -> None:
        if self.shared and self.bed:  # a home of two: while this resident's mat says "in bed", the
            ctx = "bed"  # doors, plugs and movement elsewhere are the partner's
        rec = self.rec
        if rec is not None and self.act_t is not None and self.ctx != "unknown":
            rec.silences.append((self.ctx, self.act_t, t - self.act_t))
        if ctx == self.ctx and self.ctx_alt is not None and t - (self.ctx_t or t) > self.confirm_s:
            # a room entered on one trigger and confirmed only long after: most likely the resident
            # comes in now (that trigger was noise); the stay there starts now
            self.ctx_t = t
        if ctx != self.ctx:
            if rec is not None and self.ctx_t is not None and self.ctx != "unknown":
                label = "bathroom_wake" if self.ctx == "bathroom" and self.bath_wake else self.ctx
                rec.stays.append((label, self.ctx_t, t - self.ctx_t))
            self.ctx, self.ctx_t = ctx, t
            self.bath_wake = (
                ctx == "bathroom" and self.bed_exit_t is not None and t - self.bed_exit_t <= WAKE_BATH_S
            )
        self.act_t = t
        self.ctx_alt = None
        self.since = {}
        self.weak = {}
        if room:
            self.room_last[room] = t
        if key not in self.bin_active:
            self.bin_active.append(key)
        if ctx not in DAY_ROOMS_EXCLUDED or (
            not self.bed and self.bed_exit_t is not None and t - self.bed_exit_t >= UP_OUT_OF_BED_S
        ):
            self.up_day = self.day_of(t)

    def finish(self) -> None:
        """End of a replayed history: close the outing under way so its noise is learned too.

        A sensor's silence still under way is not learned: it may be the sensor dying, and a refit
        must not take that for its normal (it is judged against the limit instead).
        """
        if self.rec is None or self.last_t is None:
            return
        self.rec.end_outing(came_back=True)  # still out: nothing says they were in

    # state -------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__slots__ if k != "rec"}  # type: ignore[attr-defined]
        d["strong_t"] = None if math.isinf(self.strong_t) else self.strong_t
        d["plug"] = {r: [v[0], None if math.isinf(v[1]) else v[1]] for r, v in self.plug.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Tracker:
        d = dict(d)
        d["strong_t"] = -math.inf if d.get("strong_t") is None else d["strong_t"]
        d["plug"] = {r: [v[0], -math.inf if v[1] is None else v[1]] for r, v in d.get("plug", {}).items()}
        return cls(**d)
