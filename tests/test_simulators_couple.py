"""Homes of two: shared PIRs with one hold-off, a bed and a button each, one partner's fall masked."""

from __future__ import annotations

import pytest

from eldercare.simulators.couple import simulate_couple
from eldercare.simulators.routine import DAY, DEFAULT_START, HOUR, MINUTE, Incident, SimulationError

S = DEFAULT_START


def test_couple_is_deterministic_and_shares_sensors() -> None:
    a, b = simulate_couple(5, 5), simulate_couple(5, 5)
    assert a.events == b.events and a.sensor_ids == b.sensor_ids
    assert a.partner is not None and a.partner.resident == "resident-2"
    assert abs(a.profile.wake_h - a.partner.wake_h) <= 0.4
    ids = set(a.sensor_ids)
    assert {"bed-1", "bed-2"} <= ids and {s.id for s in a.sensors} >= ids
    assert a.events == sorted(a.events)
    hold = a.profile.pir_holdoff_s
    last: dict[str, float] = {}
    for (t, kind, _, _), sensor in zip(a.events, a.sensor_ids, strict=True):
        if kind == "pir":
            assert t - last.get(sensor, -1e18) >= hold
            last[sensor] = t


def test_one_partner_falls_the_other_goes_on() -> None:
    run = simulate_couple(7, 4, incidents=[Incident("fall", S + 2 * DAY + 10 * HOUR, resident="resident-2")])
    [tr] = run.truth
    assert tr.resident == "resident-2"
    during = [e for e in run.events if tr.t + 15 * MINUTE <= e[0] < tr.end]
    assert len([e for e in during if e[1] == "pir"]) > 10  # the partner still moves about


def test_device_incidents_are_recorded_once() -> None:
    incs = [
        Incident("gateway_outage", S + DAY + 12 * HOUR),
        Incident("device_offline", S + 2 * DAY, sensor="bed-2"),
    ]
    run = simulate_couple(3, 4, incidents=incs)
    assert sorted(t.kind for t in run.truth) == ["device_offline", "gateway_outage"]
    assert next(t for t in run.truth if t.kind == "device_offline").sensor == "bed-2"
    assert not [e for e in run.events if S + DAY + 12 * HOUR <= e[0] < S + DAY + 14 * HOUR]
    bed2 = [e for e, s in zip(run.events, run.sensor_ids, strict=True) if s == "bed-2"]
    assert bed2 and not [e for e in bed2 if S + 2 * DAY <= e[0] < S + 2 * DAY + 12 * HOUR]
    with pytest.raises(SimulationError, match="no resident"):
        simulate_couple(3, 2, incidents=[Incident("sos", S + DAY, resident="resident-9")])


def test_scenario_couples_share_and_ids() -> None:
    from eldercare.simulators import scenario as sc

    s = sc.loads("homes = 8\ndays = 2\ncouples = 0.5\n")
    assert sc.loads(sc.dumps(s)) == s
    couples = [i for i in range(8) if s.is_couple(i)]
    assert 0 < len(couples) < 8
    run = s.simulate(couples[0])
    assert run.partner is not None and run.partner.resident == run.profile.resident + "-2"
    assert "bed-2" in run.sensor_ids
    assert s.simulate(next(i for i in range(8) if i not in couples)).partner is None
    with pytest.raises(sc.ScenarioError, match="couples"):
        sc.loads("couples = 1.5")
