"""Labelled simulated data for training and evaluating the fall detector.

Every item is drawn from ``numpy.random.default_rng([seed, purpose, index])``, so training
(``seed`` 0 by default) and evaluation (another seed) never share a recording.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from eldercare.models.fall_features import candidate_features
from eldercare.simulators.wearable import (
    FALL_KINDS,
    LOOKALIKE_KINDS,
    PLACEMENTS,
    Session,
    synth_day,
    synth_session,
)

MATCH_BEFORE_S = 1.5
MATCH_AFTER_S = 1.5
EPISODE_S = 60.0  # after a fall's impact, further detections belong to the same fall

_PREFIX: dict[str, list[list[str]]] = {
    "fall_from_bed": [["lie"]],
    "fall_from_chair": [["sit"], ["walk", "sit"]],
}
_UPRIGHT_PREFIX = [["walk"], ["stand"], ["walk", "stand"], ["stairs_down"], ["stand", "walk"]]
_SUFFIX = [[], ["walk"], ["sit"], ["stand"]]


def _choice(rng: np.random.Generator, options: list[list[str]]) -> list[str]:
    return list(options[int(rng.integers(0, len(options)))])


@dataclass(frozen=True)
class Clip:
    """One labelled recording: what happened, who wore it where, and the samples."""

    kind: str
    placement: str
    session: Session


def _truncate(rng: np.random.Generator, s: Session, t_event: float, p: float) -> Session:
    """With probability ``p`` the recording stops 2.5-6 s after the event (as short public clips do)."""
    if rng.random() >= p:
        return s
    keep = s.t <= t_event + rng.uniform(2.5, 6.0)
    return Session(s.t[keep], s.acc[keep], [lab for lab in s.labels if lab.t_impact <= s.t[keep][-1]])


def clips(
    seed: int,
    purpose: int,
    kinds: tuple[str, ...],
    n_each: int,
    truncate_p: float = 0.2,
    shard: tuple[int, int] = (0, 1),
) -> Iterator[Clip]:
    """``n_each`` clips of every kind in ``kinds`` at every placement (``shard``: part k of n)."""
    i = -1
    for kind in kinds:
        for placement in PLACEMENTS:
            for _ in range(n_each):
                i += 1
                if i % shard[1] != shard[0]:
                    continue
                rng = np.random.default_rng([seed, purpose, i])
                pre = _choice(rng, _PREFIX.get(kind, _UPRIGHT_PREFIX))
                s = synth_session(rng, [*pre, kind, *_choice(rng, _SUFFIX)], placement)
                marks = [lab.t_impact for lab in s.labels if lab.kind == kind]
                if marks:
                    s = _truncate(rng, s, marks[0], truncate_p)
                yield Clip(kind, placement, s)


def fall_clips(
    seed: int, n_each: int, truncate_p: float = 0.2, shard: tuple[int, int] = (0, 1)
) -> Iterator[Clip]:
    return clips(seed, 1, FALL_KINDS, n_each, truncate_p, shard)


def soft_collapse_clips(
    seed: int, n_each: int, truncate_p: float = 0.2, shard: tuple[int, int] = (0, 1)
) -> Iterator[Clip]:
    """More soft collapses for training: the hardest falls to tell from lying down hard."""
    return clips(seed, 4, ("soft_collapse",), n_each, truncate_p, shard)


def lookalike_clips(
    seed: int, n_each: int, truncate_p: float = 0.2, shard: tuple[int, int] = (0, 1)
) -> Iterator[Clip]:
    return clips(seed, 2, LOOKALIKE_KINDS, n_each, truncate_p, shard)


def day_streams(
    seed: int, hours_each: float, placements: tuple[str, ...] = PLACEMENTS, pieces: int = 1
) -> Iterator[Clip]:
    """Long daily-activity streams (look-alikes included, no falls): ``pieces`` per placement."""
    for j, placement in enumerate(placements):
        for k in range(pieces):
            rng = np.random.default_rng([seed, 3, j, k])
            yield Clip("day", placement, synth_day(rng, hours_each / pieces, placement))


def label_candidates(s: Session) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Candidates of a recording with labels: 1 = a fall's impact, 0 = not a fall, -1 = ignore.

    Returns (times, features, labels, kind index into the session labels or -1).
    """
    times, x = candidate_features(s.t, s.acc)
    y = np.zeros(len(times), dtype=np.int64)
    which = np.full(len(times), -1)
    for j, lab in enumerate(s.labels):
        if not lab.is_fall:
            continue
        d = times - lab.t_impact
        hit = (d >= -MATCH_BEFORE_S) & (d <= MATCH_AFTER_S)
        y[(d > MATCH_AFTER_S) & (d <= EPISODE_S) & (y == 0)] = -1
        y[hit] = 1
        which[hit] = j
    return times, x, y, which
