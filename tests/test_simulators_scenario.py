"""Scenario files: round trip, resolution of incidents, clear errors, truth as JSON lines."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from eldercare.simulators import scenario as sc
from eldercare.simulators.routine import DAY, HOUR, MINUTE, TruthRecord

EXAMPLE = """
name = "two homes"
seed = 5
start = 2026-01-05T00:00:00Z
days = 5
homes = 2

[[profile]]
home = 1
wake_h = 6.25
station_days = [1, 3]

[[incident]]
kind = "fall"
home = 0
day = 2
time = "10:30"
duration_min = 120
room = "kitchen"

[[incident]]
kind = "collapse"
home = 1
at = 2026-01-09T15:00:00Z
duration_min = "inf"

[random]
kinds = ["sos"]
first_day = 1
"""


def test_round_trip_and_resolution() -> None:
    s = sc.loads(EXAMPLE)
    assert sc.loads(sc.dumps(s)) == s
    assert s.profile_for(1).wake_h == 6.25 and s.profile_for(1).station_days == (1, 3)
    assert s.profile_for(1).resident == sc.home_ids("sim", 1)["resident"]
    inc0 = s.incidents_for(0)
    fall = next(i for i in inc0 if i.kind == "fall")
    assert (
        fall.t == s.start + 2 * DAY + 10.5 * HOUR and fall.duration == 120 * MINUTE and fall.room == "kitchen"
    )
    collapse = next(i for i in s.incidents_for(1) if i.kind == "collapse")
    assert collapse.t == s.start + 4 * DAY + 15 * HOUR and math.isinf(collapse.effective_duration)
    assert [i.kind for i in inc0].count("sos") == 1
    runs = list(s.runs())
    assert sorted(t.kind for t in runs[0].truth) == ["fall", "sos"]
    assert {t.site for t in runs[0].truth} == {sc.home_ids("sim", 0)["site"]}
    assert runs[0].events == s.simulate(0).events  # deterministic


@pytest.mark.parametrize("path", sorted(sc.SCENARIO_DIR.glob("*.toml")), ids=lambda p: p.stem)
def test_builtin_scenarios_load_and_round_trip(path: Path) -> None:
    s = sc.load(path)
    assert sc.loads(sc.dumps(s)) == s
    assert sc.builtin(path.stem) == path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("days = 3\n[[incident]]\nkind = 'flood'\nday = 1", "kind must be one of"),
        ("homes = 2\n[[incident]]\nkind = 'fall'\nhome = 5\nday = 1", "home must be an index"),
        ("days = 3\n[[incident]]\nkind = 'fall'\nday = 9", "day = 0..2"),
        ("[[incident]]\nkind = 'fall'\nday = 0\ntime = '25:00'", "expected HH:MM"),
        ("[[profile]]\nhome = 0\nwings = 2", "unknown field"),
        ("colour = 'red'", "unknown key"),
        ("days = 'many'", "days must be int"),
        ("days = 3\n[[incident]]\nkind = 'fall'\nday = 1\nduration_min = nan", "duration_min must be"),
        ("days = [", "not valid TOML"),
    ],
)
def test_bad_scenarios_say_where(text: str, message: str) -> None:
    with pytest.raises(sc.ScenarioError, match=message):
        sc.loads(text, "x.toml")


def test_unknown_builtin_lists_the_available() -> None:
    with pytest.raises(sc.ScenarioError, match="every-incident"):
        sc.builtin("nope")


def test_truth_jsonl_round_trip(tmp_path: Path) -> None:
    s = sc.loads(EXAMPLE)
    truth = [t for run in s.runs() for t in run.truth]
    path = tmp_path / "truth.jsonl"
    assert sc.write_truth(path, truth) == len(truth) == 4  # fall, collapse and one sos per home
    with path.open("a") as f:
        f.write('{"run": {"speed": 60}}\n')
    back = sc.read_truth(path)
    assert back == [TruthRecord.from_json(t.to_json()) for t in truth]
    assert any(t.end is None for t in back)  # the collapse never ends
    path.write_text("{not json\n")
    with pytest.raises(sc.ScenarioError, match=r"truth\.jsonl:1"):
        sc.read_truth(path)
