"""Scoring is pure: truth and alert rows in, caught / missed / delays / false alarms / ack times out."""

from __future__ import annotations

import pytest

from eldercare.scoring import AlertRow, Clock, TrailRow, score
from eldercare.simulators.routine import TruthRecord

T0 = 1_800_000_000.0


def _alert(
    i: int, kind: str, resident: str | None, t: float, ack: float | None = None, site: str | None = None
):
    return AlertRow(i, kind, resident, site, None, t, t, ack, None)


def test_caught_missed_delay_and_false_alarms() -> None:
    truth = [
        TruthRecord("fall", "r1", T0, T0, T0 + 3600, "kitchen", site="h1"),
        TruthRecord("fall", "r2", T0 + 100, T0 + 100, T0 + 3700, "living", site="h2"),
        TruthRecord("no_wake", "r1", T0 + 86400, T0 + 86400, T0 + 86400 + 14400, "bedroom", site="h1"),
        TruthRecord("gateway_outage", "r3", T0 + 500, T0 + 500, T0 + 7700, site="h3"),
    ]
    alerts = [
        _alert(1, "fall", "r1", T0 + 35),  # caught, 35 s
        _alert(2, "inactivity", "r1", T0 + 86400 + 3 * 3600),  # no_wake caught after 3 h
        _alert(3, "device_offline", None, T0 + 620, site="h3"),  # outage caught via the site
        _alert(4, "fall", "r4", T0 + 5000),  # nobody fell: false alarm
        _alert(5, "sos", "r2", T0 + 200),  # wrong kind for r2's fall: false alarm
        _alert(6, "pipeline_stalled", None, T0 + 10),  # about the platform: not scored
    ]
    rep = score(truth, alerts, residents=4, period_s=7 * 86400)
    j = rep.to_json()
    assert j["kinds"]["fall"] == {
        "incidents": 2,
        "caught": 1,
        "missed": 1,
        "under_way": 0,
        "delay_median_s": 35.0,
        "delay_p90_s": 35.0,
    }
    assert j["kinds"]["no_wake"]["caught"] == 1 and j["kinds"]["no_wake"]["delay_median_s"] == 3 * 3600
    assert j["kinds"]["gateway_outage"]["delay_median_s"] == 120.0
    assert j["false_alarms"] == {"fall": 1, "sos": 1}
    assert j["resident_weeks"] == 4.0 and j["false_alarms_per_resident_week"] == 0.5
    assert "fall" in rep.table() and "误报" in rep.table()


def test_an_incident_whose_window_is_still_open_when_the_run_ends_is_under_way_not_missed() -> None:
    # a bathroom stay began 10 simulated minutes before the run stopped: its alert is not due yet
    truth = [TruthRecord("bathroom_too_long", "r1", T0, T0 + 1800, T0 + 3600, "bathroom", site="h1")]
    clock = {"wall_start": 1000.0, "sim_start": T0 - 3600, "speed": 60.0, "sim_now": T0 + 600}
    rep = score(truth, [], residents=1, clock=clock)
    assert (rep.kinds["bathroom_too_long"].under_way, rep.kinds["bathroom_too_long"].missed) == (1, 0)
    assert rep.to_json()["kinds"]["bathroom_too_long"]["under_way"] == 1 and "进行中" in rep.table()
    # once its end and the 2-hour window have passed without an alert, it is missed
    over = score(truth, [], residents=1, clock={**clock, "sim_now": T0 + 3600 + 7201})
    assert (over.kinds["bathroom_too_long"].under_way, over.kinds["bathroom_too_long"].missed) == (0, 1)
    # without a clock nothing says the run ended early: as before, not caught is missed
    assert score(truth, [], residents=1, period_s=86400).kinds["bathroom_too_long"].missed == 1


def test_alert_too_late_or_too_early_does_not_count() -> None:
    truth = [TruthRecord("sos", "r1", T0, T0, T0, "living", site="h1")]
    late = score(truth, [_alert(1, "sos", "r1", T0 + 3 * 3600)], residents=1, window_s=3600, period_s=86400)
    early = score(truth, [_alert(1, "sos", "r1", T0 - 600)], residents=1, period_s=86400)
    assert late.kinds["sos"].caught == 0 and late.false_alarms == {"sos": 1}
    assert early.kinds["sos"].caught == 0


def test_clock_maps_wall_clock_alert_times_to_simulated_time() -> None:
    clock = {"wall_start": 1000.0, "sim_start": T0, "speed": 60.0, "sim_now": T0 + 7 * 86400}
    truth = [TruthRecord("fall", "r1", T0 + 600, T0 + 600, T0 + 4200, site="h1")]
    # opened 11 wall seconds after start = 660 simulated seconds: 60 s after the fall
    rep = score(truth, [_alert(1, "fall", "r1", 1011.0)], residents=2, clock=clock)
    assert rep.kinds["fall"].delays == [pytest.approx(60.0)]
    assert rep.resident_weeks == pytest.approx(2.0)
    assert Clock.from_json(clock).to_sim(1001.0) == T0 + 60


def test_time_to_acknowledge_per_tier() -> None:
    alerts = [
        _alert(1, "fall", "r1", T0, ack=T0 + 120),
        _alert(2, "fall", "r2", T0, ack=T0 + 900),
        _alert(3, "sos", "r3", T0),  # never acknowledged
    ]
    trail = [
        TrailRow(1, T0, "opened", 1),
        TrailRow(1, T0 + 1, "notified", 1),
        TrailRow(1, T0 + 120, "acknowledged", 1),
        TrailRow(2, T0, "opened", 1),
        TrailRow(2, T0 + 300, "escalated", 2),
        TrailRow(2, T0 + 900, "acknowledged", 2),
    ]
    rep = score([], alerts, trail, residents=3, period_s=86400)
    assert rep.ack == {1: [120.0], 2: [600.0]}  # from when the alert reached the tier
    j = rep.to_json()["time_to_ack"]
    assert j["1"]["acknowledged"] == 1 and j["2"]["median_s"] == 600.0


def test_inactivity_detector_figures_as_models_evaluate_gives_them() -> None:
    """Only the detector's own alerts count for it (a fall the wearable caught does not), delays are
    in the home's own time when the alert carries it, and its stray alerts are per resident-week."""
    truth = [
        TruthRecord("collapse", "r1", T0, T0, None, "kitchen", site="h1"),
        TruthRecord("fall", "r2", T0, T0, T0 + 3600, "living", site="h2"),
        TruthRecord("bathroom_too_long", "r3", T0, T0 + 1800, T0 + 7200, "bathroom", site="h3"),
        TruthRecord("no_wake", "r4", T0 + 900_000, T0 + 900_000, None, "bedroom", site="h4"),  # not yet
    ]
    clock = Clock(wall_start=T0, sim_start=T0, speed=60.0)  # a 60x run: wall times map to sim times
    sim = {"collapse": T0 + 2400, "bathroom": T0 + 3000}
    alerts = [
        # opened 50 wall-s after T0 (sim T0 + 3000 by the clock), but the home's own time is exact
        AlertRow(1, "inactivity", "r1", "h1", None, T0 + 50, T0 + 50, None, None, sim["collapse"]),
        AlertRow(2, "fall", "r2", "h2", None, T0 + 1, T0 + 1, None, None),  # the wearable's, not ours
        AlertRow(3, "inactivity", "r3", "h3", None, T0 + 50, T0 + 50, None, None, sim["bathroom"]),
        AlertRow(4, "inactivity", "r2", "h2", None, T0 + 9000, T0 + 9000, None, None, T0 + 400_000),
    ]
    rep = score(truth, alerts, residents=4, clock=clock, period_s=7 * 86400, now=T0 + 500_000)
    d = rep.to_json()["inactivity"]
    assert d["incidents"] == 3 and d["caught"] == 2  # collapse, bathroom; the fall was not ours
    assert d["delay_median_s"] == pytest.approx(2700.0)  # 2400 and 3000 s, in the homes' time
    assert d["false_alarms"] == 1 and d["false_alarms_per_resident_week"] == pytest.approx(0.25)
    assert "inactivity detector" in rep.table() and "caught 2 of 3" in rep.table()
    assert rep.to_json()["kinds"]["fall"]["caught"] == 1  # the platform did catch the fall


def test_a_later_detection_joined_to_an_open_alert_still_counts_for_the_detector() -> None:
    """Nobody closes alerts in an unattended run: the detector's next detection joins the open alert
    (``detected_again``); offline it would be an alert of its own, so it is scored as one."""
    truth = [
        TruthRecord("bathroom_too_long", "r1", T0, T0 + 1800, T0 + 3600, "bathroom", site="h1"),
        TruthRecord("no_wake", "r1", T0 + 86400, T0 + 86400, T0 + 90000, "bedroom", site="h1"),
    ]
    alerts = [_alert(1, "inactivity", "r1", T0 + 2000)]
    trail = [TrailRow(1, T0 + 2000, "opened", 1), TrailRow(1, T0 + 86400 + 3600, "detected_again", None)]
    d = score(truth, alerts, trail, residents=1, period_s=2 * 86400).to_json()["inactivity"]
    assert (d["incidents"], d["caught"], d["false_alarms"]) == (2, 2, 0)
    assert d["delay_median_s"] == pytest.approx((2000 + 3600) / 2)


def test_the_platforms_score_counts_a_detection_joined_to_an_open_alert_as_caught() -> None:
    """The demo's fall and bathroom stay landed in the one home whose resident was in: the fall's
    inactivity alert stayed open, the bathroom stay's detection joined it, and the platform's table
    said "missed" while the detector's own line said caught. Both count it; it is no false alarm."""
    truth = [
        TruthRecord("fall", "r1", T0, T0, T0 + 600, "bathroom", site="h1"),
        TruthRecord(
            "bathroom_too_long",
            "r1",
            T0 + 4 * 3600,
            T0 + 4 * 3600 + 1800,
            T0 + 5 * 3600,
            "bathroom",
            site="h1",
        ),
    ]
    alerts = [_alert(1, "fall", "r1", T0 + 60), _alert(2, "inactivity", "r1", T0 + 2400)]
    trail = [
        TrailRow(1, T0 + 60, "opened", 1),
        TrailRow(2, T0 + 2400, "opened", 1),
        TrailRow(2, T0 + 4 * 3600 + 2500, "detected_again", None),
    ]
    rep = score(truth, alerts, trail, residents=1, period_s=86400).to_json()
    assert rep["kinds"]["bathroom_too_long"]["caught"] == 1
    assert rep["kinds"]["bathroom_too_long"]["delay_median_s"] == 2500
    assert rep["false_alarms"] == {}
    assert (rep["inactivity"]["caught"], rep["inactivity"]["false_alarms"]) == (2, 0)


def test_alerts_opened_once_the_run_stopped_are_not_its_false_alarms() -> None:
    # the run's last clock line is its end: its gateways' goodbye statuses ("offline") open
    # device_offline alerts at and after it, on a platform that keeps running
    clock = {"wall_start": 1000.0, "sim_start": T0, "speed": 60.0, "sim_now": T0 + 3600}

    def offline(i: int, wall: float, sim_at: float | None = None) -> AlertRow:
        return AlertRow(i, "device_offline", None, f"h{i}", None, wall, wall, None, None, sim_at)

    alerts = [
        offline(1, 1000.0 + 30.0),  # 30 wall-s in, T0 + 1800 simulated: a false alarm of the run
        offline(2, 1000.0 + 61.0),  # a second after the run stopped (T0 + 3660)
        offline(3, 1000.0 + 60.5, sim_at=T0 + 3600),  # stamped with the goodbye status's own time
    ]
    rep = score([], alerts, residents=3, clock=clock)
    assert rep.to_json()["false_alarms"] == {"device_offline": 1}
    # a runner that lagged at the end: its last clock line says T0 + 3000, but it stopped stepping
    # at wall 1000 + 60: an alert opened at wall 1000 + 55 is still the run's false alarm
    lagged = {**clock, "sim_now": T0 + 3000, "wall_stopped": 1000.0 + 60.0}
    late = [offline(4, 1000.0 + 55.0), offline(5, 1000.0 + 60.2)]
    assert score([], late, residents=2, clock=lagged).to_json()["false_alarms"] == {"device_offline": 1}


def test_alerts_opened_before_the_run_began_are_not_its_own() -> None:
    # the same homes ran a minute before (the goodbyes of that run opened device_offline alerts,
    # its fall is still open): this run's score counted them as its false alarms
    clock = {"wall_start": 1000.0, "sim_start": T0, "speed": 60.0, "sim_now": T0 + 3600}
    truth = [TruthRecord("sos", "r1", T0 + 600, T0 + 600, T0 + 600, site="h1")]
    alerts = [
        AlertRow(1, "device_offline", None, "h1", None, 950.0, 950.0, None, None),
        # stamped with that run's home time, which falls inside this run's simulated span
        AlertRow(2, "fall", "r2", "h2", None, 900.0, 900.0, 990.0, None, T0 + 100),
        AlertRow(3, "sos", "r1", "h1", None, 1010.0, 1010.0, None, None),  # this run's SOS
    ]
    trail = [TrailRow(2, 990.0, "acknowledged", 1)]
    rep = score(truth, alerts, trail, residents=2, clock=clock).to_json()
    assert rep["kinds"]["sos"]["caught"] == 1
    assert rep["false_alarms"] == {} and rep["time_to_ack"] == {}


def test_a_second_sos_press_joined_to_the_open_sos_alert_is_caught() -> None:
    """Pressed twice in an unattended run: the platform joined the second press to the open SOS alert
    (``detected_again``) and the score called it missed, as if nothing had seen it."""
    truth = [
        TruthRecord("sos", "r1", T0, T0, T0, "hall", "sos-1", site="h1"),
        TruthRecord("sos", "r1", T0 + 900, T0 + 900, T0 + 900, "hall", "sos-1", site="h1"),
    ]
    alerts = [_alert(1, "sos", "r1", T0 + 20)]
    trail = [TrailRow(1, T0 + 20, "opened", 1), TrailRow(1, T0 + 930, "detected_again", None)]
    rep = score(truth, alerts, trail, residents=1, period_s=86400).to_json()
    assert rep["kinds"]["sos"] == {**rep["kinds"]["sos"], "caught": 2, "missed": 0}
    assert rep["false_alarms"] == {} and rep["inactivity"]["incidents"] == 0
