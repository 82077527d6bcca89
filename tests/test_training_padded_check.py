"""The independent check's protocol replayed: a raw trial at the device's own rate padded with quiet
standing before, after or on both sides, judged by ``detect`` per trial. Simulated stand-ins only."""

from __future__ import annotations

import numpy as np
import pytest

from eldercare.models.fall import ThresholdFallDetector
from eldercare.models.fall_wear import still_as_a_table
from eldercare.simulators.wearable import synth_session
from eldercare.training import padded_check as pc
from eldercare.training.trials import Trial


def _raw(kinds: list[str], seed: int, fs: float, subject: str) -> tuple[Trial, float]:
    s = synth_session(np.random.default_rng([5, seed]), kinds, "waist", fs=fs, gap_rate=0.0, range_g=16.0)
    imp = [lab.t_impact for lab in s.labels if lab.is_fall]
    kind = kinds[-1] if imp else ""
    return Trial("toy", subject, "waist", kinds[-1], kind, s.t, s.acc, imp[0] if imp else None), fs


@pytest.mark.parametrize("where", pc.WHERE)
def test_padding_keeps_the_trial_and_moves_its_impact(where: str) -> None:
    tr, fs = _raw(["stand", "fall_backward"], 1, 200.0, "toy:1")
    t, acc, imp = pc.padded(tr, fs, where, np.random.default_rng(0))
    n_pad = round(pc.PAD_S * fs)
    n_before = n_pad if where in ("before", "both") else 0
    assert len(t) == len(tr.t) + n_pad * (2 if where == "both" else 1)
    assert np.array_equal(acc[n_before : n_before + len(tr.t)], tr.acc)
    n_after = n_pad if where in ("after", "both") else 0
    assert t[0] == 0.0
    for part in (t[: n_before + 1], t[len(t) - n_after - 1 :]):  # each pad runs on at the device's rate
        assert np.allclose(np.diff(part), 1 / fs)
    assert tr.t_impact is not None and imp is not None
    assert imp - t[n_before] == pytest.approx(tr.t_impact - tr.t[0], abs=1e-9)  # same place in the trial


def test_quiet_standing_sways_like_a_body_unless_told_not_to() -> None:
    rng = np.random.default_rng(1)
    up = np.array([0.1, -0.98, 0.05])
    body = pc.quiet_standing(up, 30.0, 50.0, rng)
    table = pc.quiet_standing(up, 30.0, 50.0, rng, sway=False)
    assert abs(np.linalg.norm(body.mean(axis=0)) - 1.0) < 0.01
    assert not still_as_a_table(body) and still_as_a_table(table)


def test_run_judges_every_trial_under_every_detector() -> None:
    raw = [
        _raw(["stand", "fall_forward"], 2, 200.0, "toy:1"),
        _raw(["stand", "fall_sideways"], 3, 25.0, "toy:2"),
        _raw(["walk", "sit_down", "sit"], 4, 100.0, "toy:3"),
    ]
    res = pc.run(raw, {"threshold": ThresholdFallDetector()}, where="both")
    assert [r["fs"] for r in res["trials"]] == [200.0, 25.0, 100.0]
    assert res["summary"]["all"]["falls"] == 2 and res["summary"]["all"]["adl"] == 1
    assert all(isinstance(r["threshold"], bool) for r in res["trials"])
    with pytest.raises(ValueError, match="where must be one of"):
        pc.padded(raw[0][0], 200.0, "middle", np.random.default_rng(0))


def test_paired_differences_resample_people_for_both_models() -> None:
    def rec(subject: str, is_fall: bool, base: bool, other: bool, place: str = "waist") -> dict[str, object]:
        return {
            "dataset": "toy",
            "subject": subject,
            "placement": place,
            "is_fall": is_fall,
            "a": base,
            "b": other,
        }

    # b catches one more fall for each of four people and raises one more alarm for one of them
    results = [rec(f"p{i}", True, False, True) for i in range(4)]
    results += [rec(f"p{i}", True, True, True) for i in range(4)]
    results += [rec(f"p{i}", False, False, i == 0) for i in range(4)]
    results += [rec("p9", True, True, True, place="wrist")]
    out = pc.paired(results, "a", "b", n_boot=500)
    falls, daily = out["toy/waist"]["falls"], out["toy/waist"]["daily"]
    assert (falls["a"], falls["b"], falls["trials"], falls["people"]) == (4, 8, 8, 4)
    assert falls["difference"] == [0.5, 0.5, 0.5]  # every person gains half their falls: no spread
    assert (daily["a"], daily["b"]) == (4, 3) and daily["difference"][0] == -0.25
    assert daily["difference"][1] < -0.25 < daily["difference"][2] <= 0.0  # one person's alarm: it spreads
    assert out["toy/wrist"]["falls"]["difference"] == [0.0, 0.0, 0.0] and "daily" not in out["toy/wrist"]
    assert out["all"]["falls"]["trials"] == 9
