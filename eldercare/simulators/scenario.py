"""Scenario files (TOML): which homes, what happens to whom and when; and the ground truth they leave.

A scenario names a seed, a start, a number of days and of homes, resident habits to override,
incidents at fixed times and incidents drawn at random. Example (see ``scenarios/*.toml``)::

    name = "a fall and a night out"
    seed = 42
    start = 2026-01-05T00:00:00Z   # a Monday; the simulated homes live in UTC
    days = 14
    homes = 3
    couples = 0.3                  # optional: share of homes with two residents

    [[profile]]                    # overrides for one home's resident (fields of ResidentProfile)
    home = 1
    wake_h = 6.5
    station_days = [1, 3]

    [[incident]]
    kind = "fall"
    home = 2                       # 0-based index of the home
    day = 9                        # 0-based day of the run ...
    time = "10:30"                 # ... and time of day; or: at = 2026-01-14T10:30:00Z
    duration_min = 180             # optional; "inf" never ends
    room = "kitchen"               # optional

    [random]                       # optional: each home gets one incident of each kind
    kinds = ["no_wake", "sos"]
    first_day = 7

Ground truth is JSON lines, one :class:`~eldercare.simulators.routine.TruthRecord` per line
(:func:`write_truth` / :func:`read_truth`); lines with a ``"run"`` key describe a live run's clock
and are skipped by :func:`read_truth`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random
import tomllib
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from eldercare.simulators.routine import (
    DAY,
    DEFAULT_START,
    HOUR,
    INCIDENT_KINDS,
    MINUTE,
    HomeRun,
    Incident,
    ResidentProfile,
    SimulationError,
    TruthRecord,
    random_incidents,
    simulate_home,
)

SCENARIO_DIR = Path(__file__).parent / "scenarios"


class ScenarioError(SimulationError):
    """A scenario file that cannot be read or does not make sense; the message names the place."""


def home_seed(seed: int, home: int) -> int:
    """Each home's own seed, stable for a scenario seed and home index."""
    return int.from_bytes(hashlib.sha256(f"{seed}:home:{home}".encode()).digest()[:4], "big")


def home_ids(prefix: str, home: int) -> dict[str, str]:
    """Identifiers of home ``home`` (0-based): site, gateway, resident. Shared with the seeder."""
    n = f"{home + 1:04d}"
    return {"site": f"{prefix}-home-{n}", "gateway": f"{prefix}-gw-{n}", "resident": f"{prefix}-res-{n}"}


@dataclasses.dataclass(frozen=True, slots=True)
class IncidentSpec:
    """One incident as written in the file; resolved to an :class:`Incident` by the scenario."""

    kind: str
    home: int
    day: int | None = None
    time: str | None = None  # "HH:MM" or "HH:MM:SS"
    at: float | None = None  # epoch seconds (from a TOML datetime)
    duration_min: float | None = None
    room: str | None = None
    sensor: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Scenario:
    name: str = "scenario"
    seed: int = 0
    start: float = DEFAULT_START
    days: int = 14
    homes: int = 1
    drop_rate: float = 0.0
    spurious_rate: float = 0.0
    prefix: str = "sim"
    profiles: tuple[tuple[int, tuple[tuple[str, Any], ...]], ...] = ()
    incidents: tuple[IncidentSpec, ...] = ()
    random_kinds: tuple[str, ...] = ()
    random_first_day: int = 0
    couples: float = 0.0  # share of homes with two residents (see .couple)

    def is_couple(self, home: int) -> bool:
        from eldercare.simulators.couple import is_couple

        return is_couple(self.seed, home, self.couples)

    def partner_for(self, home: int) -> ResidentProfile | None:
        """The second resident of a home of two (its id: the first's plus ``-2``), else None."""
        if not self.is_couple(home):
            return None
        from eldercare.simulators.couple import partner_of

        first = self.profile_for(home)
        return partner_of(first, home_seed(self.seed, home), f"{first.resident}-2")

    def profile_for(self, home: int) -> ResidentProfile:
        base = ResidentProfile.draw(
            home_seed(self.seed, home), resident=home_ids(self.prefix, home)["resident"]
        )
        for h, overrides in self.profiles:
            if h == home:
                base = dataclasses.replace(base, **dict(overrides))
        return base

    def incidents_for(self, home: int) -> list[Incident]:
        out = []
        for spec in self.incidents:
            if spec.home != home:
                continue
            if spec.at is not None:
                t = spec.at
            else:
                t = self.start + (spec.day or 0) * DAY + _time_of_day(spec.time or "00:00")
            dur = None if spec.duration_min is None else spec.duration_min * MINUTE
            out.append(Incident(spec.kind, t, dur, spec.room, spec.sensor))
        if self.random_kinds:
            rng = random.Random(f"{self.seed}:random-incidents:{home}")
            out += random_incidents(rng, self.days, self.random_kinds, self.start, self.random_first_day)
        return sorted(out, key=lambda i: i.t)

    def simulate(self, home: int) -> HomeRun:
        ids = home_ids(self.prefix, home)
        partner = self.partner_for(home)
        if partner is not None:
            from eldercare.simulators.couple import simulate_couple

            return simulate_couple(
                home_seed(self.seed, home),
                self.days,
                start=self.start,
                incidents=self.incidents_for(home),
                profiles=(self.profile_for(home), partner),
                drop_rate=self.drop_rate,
                spurious_rate=self.spurious_rate,
                site=ids["site"],
            )
        return simulate_home(
            home_seed(self.seed, home),
            self.days,
            start=self.start,
            incidents=self.incidents_for(home),
            profile=self.profile_for(home),
            drop_rate=self.drop_rate,
            spurious_rate=self.spurious_rate,
            site=ids["site"],
        )

    def runs(self) -> Iterator[HomeRun]:
        """One home at a time, so that many homes never sit in memory together."""
        for home in range(self.homes):
            yield self.simulate(home)


def _time_of_day(text: str) -> float:
    try:
        parts = [int(p) for p in text.split(":")]
        h, m, s = [*parts, 0, 0][:3]
    except ValueError:
        raise ScenarioError(f"time {text!r}: expected HH:MM or HH:MM:SS") from None
    if not (0 <= h < 24 and 0 <= m < 60 and 0 <= s < 60) or len(parts) > 3:
        raise ScenarioError(f"time {text!r}: expected HH:MM or HH:MM:SS")
    return h * HOUR + m * MINUTE + s


def _epoch(value: Any, where: str) -> float:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise ScenarioError(f"{where}: expected a date-time like 2026-01-05T00:00:00Z, not {value!r}")


_TOP = {
    "couples",
    "name",
    "seed",
    "start",
    "days",
    "homes",
    "drop_rate",
    "spurious_rate",
    "prefix",
    "profile",
    "incident",
    "random",
}
_PROFILE_FIELDS = {f.name for f in dataclasses.fields(ResidentProfile)} - {"resident"}
_INCIDENT_KEYS = {"kind", "home", "day", "time", "at", "duration_min", "room", "sensor"}


def loads(text: str, source: str = "<scenario>") -> Scenario:
    """Parse and check a scenario; every error names the file and the entry."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{source}: not valid TOML: {exc}") from None
    unknown = set(data) - _TOP
    if unknown:
        raise ScenarioError(f"{source}: unknown key(s) {', '.join(sorted(unknown))}")

    def num(key: str, kind: type, default: Any) -> Any:
        v = data.get(key, default)
        if kind is float and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if not isinstance(v, kind) or isinstance(v, bool):
            raise ScenarioError(f"{source}: {key} must be {kind.__name__}, not {v!r}")
        return v

    sc = Scenario(
        name=num("name", str, "scenario"),
        seed=num("seed", int, 0),
        start=_epoch(data.get("start", DEFAULT_START), f"{source}: start"),
        days=num("days", int, 14),
        homes=num("homes", int, 1),
        drop_rate=num("drop_rate", float, 0.0),
        spurious_rate=num("spurious_rate", float, 0.0),
        prefix=num("prefix", str, "sim"),
        couples=num("couples", float, 0.0),
    )
    if sc.days < 1 or sc.homes < 1:
        raise ScenarioError(f"{source}: days and homes must be >= 1")
    if not 0.0 <= sc.couples <= 1.0:
        raise ScenarioError(f"{source}: couples is a share of homes, 0..1")
    profiles = [_profile(p, sc, f"{source}: profile[{i}]") for i, p in enumerate(data.get("profile", []))]
    incidents = [_incident(e, sc, f"{source}: incident[{i}]") for i, e in enumerate(data.get("incident", []))]
    rnd = data.get("random", {})
    kinds = tuple(rnd.get("kinds", ()))
    for k in kinds:
        if k not in INCIDENT_KINDS:
            raise ScenarioError(f"{source}: random.kinds: unknown kind {k!r}")
    first = rnd.get("first_day", 0)
    if not isinstance(first, int) or not 0 <= first < sc.days:
        raise ScenarioError(f"{source}: random.first_day must be 0..{sc.days - 1}")
    return dataclasses.replace(
        sc, profiles=tuple(profiles), incidents=tuple(incidents), random_kinds=kinds, random_first_day=first
    )


def _home_index(entry: dict[str, Any], sc: Scenario, where: str, default: int | None = None) -> int:
    home = entry.get("home", default)
    if not isinstance(home, int) or not 0 <= home < sc.homes:
        raise ScenarioError(f"{where}: home must be an index 0..{sc.homes - 1}")
    return home


def _profile(p: dict[str, Any], sc: Scenario, where: str) -> tuple[int, tuple[tuple[str, Any], ...]]:
    """A ``[[profile]]`` entry: a home's index and the resident profile fields it overrides."""
    home = _home_index(p, sc, where)
    bad = set(p) - _PROFILE_FIELDS - {"home"}
    if bad:
        raise ScenarioError(f"{where}: unknown field(s) {', '.join(sorted(bad))}")
    items = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in p.items() if k != "home"))
    return home, items


def _incident(e: dict[str, Any], sc: Scenario, where: str) -> IncidentSpec:
    """An ``[[incident]]`` entry, checked as far as it can be before a run."""
    bad = set(e) - _INCIDENT_KEYS
    if bad:
        raise ScenarioError(f"{where}: unknown key(s) {', '.join(sorted(bad))}")
    kind = e.get("kind")
    if kind not in INCIDENT_KINDS:
        raise ScenarioError(f"{where}: kind must be one of {', '.join(INCIDENT_KINDS)}, not {kind!r}")
    home = _home_index(e, sc, where, default=0)
    at = _epoch(e["at"], f"{where}: at") if "at" in e else None
    day = e.get("day")
    if at is None and (not isinstance(day, int) or not 0 <= day < sc.days):
        raise ScenarioError(f"{where}: give at = <date-time> or day = 0..{sc.days - 1} with time")
    if "time" in e:
        _time_of_day(str(e["time"]))
    dur = e.get("duration_min")
    if isinstance(dur, str) and dur == "inf":
        dur = math.inf
    if dur is not None and (not isinstance(dur, int | float) or not dur >= 0):  # nan too
        raise ScenarioError(f'{where}: duration_min must be a number of minutes or "inf"')
    minutes = None if dur is None else float(dur)
    spec = IncidentSpec(kind, home, day, e.get("time"), at, minutes, e.get("room"), e.get("sensor"))
    try:
        Incident(kind, 0.0, None, spec.room, spec.sensor)
    except SimulationError as exc:
        raise ScenarioError(f"{where}: {exc}") from None
    return spec


def load(path: str | Path) -> Scenario:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{p}: {exc.strerror}") from None
    return loads(text, str(p))


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "inf" if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} to TOML")


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def dumps(sc: Scenario) -> str:
    """The scenario as TOML that :func:`loads` reads back to an equal scenario."""
    lines = [
        f"name = {_toml_value(sc.name)}",
        f"seed = {sc.seed}",
        f"start = {_iso(sc.start)}",
        f"days = {sc.days}",
        f"homes = {sc.homes}",
        f"drop_rate = {_toml_value(float(sc.drop_rate))}",
        f"spurious_rate = {_toml_value(float(sc.spurious_rate))}",
        f"prefix = {_toml_value(sc.prefix)}",
        f"couples = {_toml_value(float(sc.couples))}",
    ]
    for home, items in sc.profiles:
        lines += ["", "[[profile]]", f"home = {home}"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in items]
    for spec in sc.incidents:
        lines += ["", "[[incident]]", f"kind = {_toml_value(spec.kind)}", f"home = {spec.home}"]
        if spec.at is not None:
            lines.append(f"at = {_iso(spec.at)}")
        if spec.day is not None:
            lines.append(f"day = {spec.day}")
        if spec.time is not None:
            lines.append(f"time = {_toml_value(spec.time)}")
        if spec.duration_min is not None:
            dur = spec.duration_min
            lines.append("duration_min = " + ('"inf"' if math.isinf(dur) else _toml_value(float(dur))))
        for key in ("room", "sensor"):
            if getattr(spec, key) is not None:
                lines.append(f"{key} = {_toml_value(getattr(spec, key))}")
    if sc.random_kinds:
        lines += [
            "",
            "[random]",
            f"kinds = {_toml_value(list(sc.random_kinds))}",
            f"first_day = {sc.random_first_day}",
        ]
    return "\n".join(lines) + "\n"


# Ground truth as JSON lines ------------------------------------------------------------------


def write_truth(path: str | Path, records: Iterable[TruthRecord], extra: dict[str, Any] | None = None) -> int:
    """Write one JSON object per record; returns how many. ``extra`` is merged into every line."""
    n = 0
    with Path(path).open("w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps({**rec.to_json(), **(extra or {})}, ensure_ascii=False) + "\n")
            n += 1
    return n


def read_truth(path: str | Path) -> list[TruthRecord]:
    out = []
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ScenarioError(f"{p}: {exc.strerror}") from None
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ScenarioError(f"{p}:{i}: not JSON: {exc.msg}") from None
        if isinstance(d, dict) and "run" in d:
            continue
        try:
            if not isinstance(d, dict):
                raise TypeError(f"expected a JSON object, got {line.strip()[:40]}")
            out.append(TruthRecord.from_json(d))
        except TypeError as exc:
            raise ScenarioError(f"{p}:{i}: not a truth record: {exc}") from None
    return out


def builtin(name: str) -> Path:
    """Path of a scenario shipped with the package, by file stem."""
    p = SCENARIO_DIR / f"{name}.toml"
    if not p.is_file():
        names = ", ".join(sorted(x.stem for x in SCENARIO_DIR.glob("*.toml")))
        raise ScenarioError(f"no built-in scenario {name!r}; available: {names}")
    return p


def read_clock(path: str | Path) -> dict[str, Any] | None:
    """The live run's clock from a truth file (its last ``{"run": ...}`` line), or None."""
    clock = None
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ScenarioError(f"{path}: {exc.strerror}") from None
    for line in lines:
        if line.startswith('{"run"'):
            try:
                d = json.loads(line)
            except json.JSONDecodeError:
                continue
            clock = {**(clock or {}), **d["run"]}
    return clock
