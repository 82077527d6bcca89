"""Words for inactivity alerts, in every language of the message catalogue (``inact.*`` keys of
:mod:`eldercare.i18n`), for care workers who read Chinese first.

Kept apart from the detector so wording can change (and be reviewed by care staff) without
touching the logic. Every function takes plain numbers and returns the explanation in each
language, ``{"en": ..., "zh-CN": ...}``; durations, rooms and sensors are worded per language too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eldercare import i18n

Texts = dict[str, str]


def room(name: str, locale: str) -> str:
    """Where the resident is: ``in the kitchen``, ``在厨房``; an unknown room by its own name."""
    if not name:
        return i18n.t("inact.room.none", locale)
    key = f"inact.room.{name}"
    return i18n.t(key, locale) if i18n.has(key) else i18n.t("inact.room.other", locale, room=name)


def sensor(kind: str, locale: str) -> str:
    key = f"inact.sensor.{kind}"
    return i18n.t(key, locale) if i18n.has(key) else kind


def dur(seconds: float, locale: str) -> str:
    """``2 h 10 min``, ``25 min``: what a care worker reads at a glance."""
    m = max(0, round(seconds / 60))
    h, m = divmod(m, 60)
    if h and m:
        return i18n.t("inact.dur.h_min", locale, h=h, m=m)
    return i18n.t("inact.dur.h", locale, h=h) if h else i18n.t("inact.dur.min", locale, m=m)


def clock(seconds_of_day: float) -> str:
    s = int(seconds_of_day) % 86_400
    return f"{s // 3600:02d}:{(s % 3600) // 60:02d}"


def _learned(key: str, learned: bool) -> str:
    return f"{key}.learned" if learned else f"{key}.new"


PerLocale = Callable[[str], str]


def _say(key: str, **fields: Any) -> Texts:
    """Message ``key`` in every language; a field given as a function of the locale (a duration,
    a room, a sensor) is worded in each language too."""
    return i18n.localized(
        lambda loc: i18n.t(key, loc, **{k: v(loc) if callable(v) else v for k, v in fields.items()})
    )


def _dur(seconds: float) -> PerLocale:
    return lambda loc: dur(seconds, loc)


def _room(name: str) -> PerLocale:
    return lambda loc: room(name, loc)


def _sensor(kind: str) -> PerLocale:
    return lambda loc: sensor(kind, loc)


def inactivity(where: str, observed: float, expected: float, hour: int, learned: bool) -> Texts:
    key = _learned("inact.inactivity.bed" if where == "bed" else "inact.inactivity.room", learned)
    return _say(key, observed=_dur(observed), expected=_dur(expected), room=_room(where), hour=f"{hour:02d}")


def worn_still(observed: float, expected: float, learned: bool) -> Texts:
    """The resident's own wearable has not walked (a home of two: the partner moves meanwhile)."""
    return _say(_learned("inact.worn_still", learned), observed=_dur(observed), expected=_dur(expected))


def bathroom(observed: float, expected: float, learned: bool) -> Texts:
    return _say(_learned("inact.bathroom", learned), observed=_dur(observed), expected=_dur(expected))


def no_wake(now_s: float, usual_s: float, latest_s: float, learned: bool) -> Texts:
    """Times are seconds after local midnight."""
    return _say(
        _learned("inact.no_wake", learned), now=clock(now_s), usual=clock(usual_s), latest=clock(latest_s)
    )


def night_wandering(left_s: float, observed: float, expected: float, learned: bool) -> Texts:
    key = _learned("inact.night_wandering", learned)
    return _say(key, left=clock(left_s), observed=_dur(observed), expected=_dur(expected))


def night_hall(observed: float, expected: float) -> Texts:
    return _say("inact.night_hall", observed=_dur(observed), expected=_dur(expected))


def away_long(left_s: float, observed: float, expected: float) -> Texts:
    return _say("inact.away_long", left=clock(left_s), observed=_dur(observed), expected=_dur(expected))


def device_silent(kind: str, where: str, active_hours: int, usual_hours: int) -> Texts:
    return _say(
        "inact.device_silent",
        sensor=_sensor(kind),
        room=_room(where),
        active_hours=active_hours,
        usual_hours=usual_hours,
    )


def sensor_missed_uses(where: str, missed: int, seen_share: float) -> Texts:
    return _say("inact.sensor_missed_uses", room=_room(where), missed=missed, pct=round(100 * seen_share))


def gateway_silent(observed: float, expected: float) -> Texts:
    return _say("inact.gateway_silent", observed=_dur(observed), expected=_dur(expected))


def home_quiet(observed: float) -> Texts:
    return _say("inact.home_quiet", observed=_dur(observed))


def sensor_suspect(kind: str, where: str, ctx: str, observed: float, silent_hours: int) -> Texts:
    return _say(
        "inact.sensor_suspect",
        observed=_dur(observed),
        ctx=_room(ctx),
        sensor=_sensor(kind),
        room=_room(where),
        silent_hours=silent_hours,
    )
