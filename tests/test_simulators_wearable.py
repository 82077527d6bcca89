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
    Z,
    _fall,
    _lie_down,
    _sitting,
    _State,
    _upright,
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


_FS = 100.0  # the segments' internal rate (twice the sensor's)


def _before_the_bump(seg_lin: np.ndarray, seg_pos: np.ndarray) -> tuple[float, float, float, float, float]:
    """Physics of a segment up to its first bump (|a| over 1.2 g), from its noise-free motion:
    vertical descent of the device (m, from its world vertical acceleration), time under 0.6 g in
    the 1.5 s before (s), share of the trunk's turn before the bump made while |a| stays within
    0.1 g of 1 g, the whole turn of the segment (degrees) and the bump's peak (g, within 0.6 s)."""
    m = np.linalg.norm(seg_lin + Z, axis=1)
    bump = int(np.argmax(m > 1.2))
    assert bump > 0
    v = np.cumsum(seg_lin[:bump, 2] * 9.81 / _FS)
    descent = float(-np.cumsum(v / _FS).min())
    free_fall = float((m[max(0, bump - int(1.5 * _FS)) : bump] < 0.6).sum() / _FS)
    up = rotate(np.repeat(Z[None], bump, 0), seg_pos[:bump])
    step = np.degrees(np.arccos(np.clip(np.sum(up[1:] * up[:-1], axis=1), -1.0, 1.0)))
    near = np.abs(m[1:bump] - 1.0) < 0.1
    share = float(step[near].sum() / max(step.sum(), 1e-9))
    ends = rotate(np.array([Z, Z]), seg_pos[[0, -1]])
    turn = float(np.degrees(np.arccos(np.clip(ends[0] @ ends[1], -1.0, 1.0))))
    return descent, free_fall, share, turn, float(m[bump : bump + int(0.6 * _FS)].max())


def _flops(placement: str, n: int = 30) -> np.ndarray:
    out = []
    for seed in range(n):
        rng = np.random.default_rng([seed, 17])
        st = _State(_sitting(rng), "sit", Person.sample(rng), _FS, placement)
        seg = _lie_down(rng, st, hard=True)
        assert [k for _, k in seg.marks] == ["lie_down_hard"] and st.pclass == "lie"
        out.append(_before_the_bump(seg.lin, seg.pos))
    return np.array(out)


def _falls(kinds: tuple[str, ...], n: int = 10) -> np.ndarray:
    out = []
    for kind in kinds:
        for seed in range(n):
            rng = np.random.default_rng([seed, 18])
            sitting = kind == "fall_from_chair"
            st = _State(
                _sitting(rng) if sitting else _upright(rng),
                "sit" if sitting else "up",
                Person.sample(rng),
                _FS,
            )
            seg = _fall(rng, st, kind, "waist")
            out.append(_before_the_bump(seg.lin, seg.pos))
    return np.array(out)


def test_flopping_back_onto_a_bed_turns_about_the_hips_at_the_waist() -> None:
    """Lying down hard (flopping back from the bed's edge) turns the trunk 60-100 degrees about the
    hips: a waist device, near that axis, descends a few cm (the mattress) where a fall from standing
    drops it most of a metre, has no free fall, makes most of the turn at about 1 g, and lands softly
    on the mattress (1.3-2.2 g). Still a hard look-alike: the same turn as a fall, in under a second,
    then a bump."""
    flop = _flops("waist")
    falls = _falls(("fall_forward", "fall_backward", "fall_sideways"))
    descent, free_fall, share, turn, peak = flop.T
    assert descent.max() < 0.2 and np.median(descent) < 0.15
    assert np.median(falls[:, 0]) > 0.5 and np.median(descent) < 0.25 * np.median(falls[:, 0])
    assert free_fall.max() == 0.0 and falls[:, 1].min() >= 0.1
    assert np.median(share) >= 0.7 and np.median(falls[:, 2]) <= 0.3
    assert 60 <= np.median(turn) <= 100
    assert peak.min() >= 1.3 and peak.max() <= 2.2


@pytest.mark.parametrize("placement", ["pendant", "wrist"])
def test_flopping_back_swings_a_chest_or_wrist_device_less_than_a_fall(placement: str) -> None:
    """Far from the hips a pendant or a wrist swings through a quarter circle and is stopped by the
    mattress: a real look-alike (it sinks a few tenths of a metre and lands at 1.3-4 g), but with a
    shorter descent and less time near free fall than a fall from standing, and a lower peak."""
    flop = _flops(placement)
    falls = _falls(("fall_forward", "fall_backward", "fall_sideways"))
    descent, free_fall, _, turn, peak = flop.T
    assert 0.15 < np.median(descent) < 0.6 * np.median(falls[:, 0])
    assert np.median(free_fall) < 0.05 and free_fall.max() < falls[:, 1].min() + 0.1
    assert 60 <= np.median(turn) <= 100
    assert peak.min() >= 1.3 and peak.max() < 4.0 and np.median(peak) < np.median(falls[:, 4])


def test_flopping_back_leaves_the_rest_of_a_session_as_it_was() -> None:
    """The flop draws its details from a generator of its own, so what comes after it in a session
    is the same however the flop is drawn: here, two sessions differing only in the placement the
    flop sees give the same trunk motion everywhere else."""
    segs = []
    for placement in ("waist", "pendant"):
        rng = np.random.default_rng(5)
        st = _State(_sitting(rng), "sit", Person.sample(rng), _FS, placement)
        seg = _lie_down(rng, st, hard=True)
        segs.append((seg, rng.random(4)))
    (a, next_a), (b, next_b) = segs
    np.testing.assert_array_equal(next_a, next_b)
    assert len(a.act) == len(b.act)
    np.testing.assert_array_equal(a.pos, b.pos)


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
