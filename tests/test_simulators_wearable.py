"""The wearable accelerometer simulator: deterministic by seed and physically plausible."""

from __future__ import annotations

import numpy as np
import pytest

from eldercare.simulators.wearable import (
    ADL_KINDS,
    FALL_KINDS,
    LOOKALIKE_KINDS,
    PLACEMENTS,
    Person,
    WearableError,
    _lie_down,
    _sitting,
    _State,
    random_rotation,
    rotate,
    synth_day,
    synth_session,
)


def test_same_seed_same_stream_other_seed_other_stream() -> None:
    a = synth_session(np.random.default_rng(11), ["walk", "fall_sideways", "lie"], "wrist")
    b = synth_session(np.random.default_rng(11), ["walk", "fall_sideways", "lie"], "wrist")
    c = synth_session(np.random.default_rng(12), ["walk", "fall_sideways", "lie"], "wrist")
    np.testing.assert_array_equal(a.t, b.t)
    np.testing.assert_array_equal(a.acc, b.acc)
    assert a.labels == b.labels
    assert len(a.t) != len(c.t) or not np.array_equal(a.acc, c.acc, equal_nan=True)


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_resting_reads_one_g(placement: str) -> None:
    s = synth_session(np.random.default_rng(3), ["sit"], placement, gap_rate=0.0, noise_g=0.005)
    m = np.linalg.norm(s.acc, axis=1)
    assert abs(float(np.median(m)) - 1.0) < 0.06


def test_every_kind_renders_and_falls_are_labelled() -> None:
    rng = np.random.default_rng(5)
    kinds = [*ADL_KINDS, *LOOKALIKE_KINDS, *FALL_KINDS]
    s = synth_session(rng, kinds, "pendant")
    assert s.acc.shape == (len(s.t), 3)
    assert np.all(np.diff(s.t) >= 0)
    fall_labels = [lab.kind for lab in s.labels if lab.is_fall]
    assert fall_labels == list(FALL_KINDS)
    finite = s.acc[np.isfinite(s.acc).all(axis=1)]
    assert np.abs(finite).max() <= 8.0  # clipped like a +-8 g sensor
    # sampled at ~50 Hz with jitter
    assert 0.018 < float(np.median(np.diff(s.t))) < 0.022


def test_hard_falls_have_a_dip_then_an_impact() -> None:
    for seed in range(5):
        s = synth_session(np.random.default_rng(seed), ["stand", "fall_forward"], "waist", gap_rate=0.0)
        t_imp = s.labels[0].t_impact
        m = np.linalg.norm(s.acc, axis=1)
        before = m[(s.t > t_imp - 1.2) & (s.t < t_imp - 0.05)]
        around = m[np.abs(s.t - t_imp) < 0.2]
        assert before.min() < 0.85
        assert around.max() > 1.8


def test_soft_collapse_impact_is_low() -> None:
    peaks = []
    for seed in range(8):
        s = synth_session(np.random.default_rng(seed), ["walk", "soft_collapse"], "waist", gap_rate=0.0)
        t_imp = s.labels[0].t_impact
        peaks.append(np.linalg.norm(s.acc[np.abs(s.t - t_imp) < 0.2], axis=1).max())
    assert max(peaks) < 3.2


def test_ordinary_lie_down_often_lands_on_the_mattress_with_a_bounded_peak() -> None:
    """About half of the ordinary lyings down let go at the end and land on the mattress (a peak of
    1.3-2.6 g, bounded well below a fall on the floor) and about half are followed by a few seconds
    of settling in."""
    peaks, settled = [], 0
    for seed in range(60):
        rng = np.random.default_rng(seed)
        st = _State(_sitting(rng), "sit", Person.sample(rng), 50.0)
        seg = _lie_down(rng, st)
        assert st.pclass == "lie" and seg.marks == []  # daily activity, not a labelled look-alike
        peaks.append(float(np.linalg.norm(seg.lin + np.array([0.0, 0.0, 1.0]), axis=1).max()))
        settled += bool(np.any(seg.act == 0.6))
    landed = np.array(peaks) > 1.25
    assert 15 <= landed.sum() <= 45
    assert max(peaks) <= 3.0
    assert 15 <= settled <= 45


def test_rotation_keeps_magnitude() -> None:
    rng = np.random.default_rng(0)
    v = rng.normal(size=(100, 3))
    r = random_rotation(rng)
    np.testing.assert_allclose(np.linalg.norm(v @ r, axis=1), np.linalg.norm(v, axis=1))
    rv = rng.normal(size=(100, 3))
    np.testing.assert_allclose(np.linalg.norm(rotate(v, rv), axis=1), np.linalg.norm(v, axis=1))
    assert np.isclose(np.linalg.det(r), 1.0)


def test_gaps_and_nan_rows_appear_when_asked() -> None:
    s = synth_session(np.random.default_rng(2), ["walk", "walk"], "waist", gap_rate=0.01)
    assert np.diff(s.t).max() > 0.05
    assert np.isnan(s.acc).any()


def test_day_stream_lasts_about_as_asked() -> None:
    s = synth_day(np.random.default_rng(4), 0.5, "waist")
    hours = (s.t[-1] - s.t[0]) / 3600
    assert 0.3 < hours < 1.0
    assert not any(lab.is_fall for lab in s.labels)


def test_unknown_names_are_refused() -> None:
    with pytest.raises(WearableError):
        synth_session(np.random.default_rng(0), ["moonwalk"], "waist")
    with pytest.raises(WearableError):
        synth_session(np.random.default_rng(0), ["walk"], "ankle")
