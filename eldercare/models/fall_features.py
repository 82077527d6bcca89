"""Signal front end of the fall detectors: resampling, candidate impacts, orientation-free features.

Everything here is numpy only (it runs on a gateway) and works on a stream pushed in chunks of
any size: :class:`Resampler` turns irregular samples into a 50 Hz grid, :class:`CandidateStage`
finds candidate impacts on that grid and computes their features once enough signal after the
impact has arrived. Fed the same samples, chunked or whole, both produce identical output.

Resampling. Each grid point ``g_k = t_start + k / 50`` is the mean of the raw samples in
``[g_k - 10 ms, g_k + 10 ms)`` (a box anti-alias filter when the device samples faster than 50 Hz);
an empty bin is interpolated from its neighbours if they are at most :data:`GAP_FILL_S` apart and is
NaN otherwise. A silence longer than :data:`SEGMENT_GAP_S` ends a segment and the next sample starts
a new grid. Each axis is clipped at +-8 g first, so a +-16 g sensor looks like the +-8 g ones.

Candidates. A grid point is a candidate impact when |a| >= :data:`CANDIDATE_G` and it is the
largest |a| within +-1 s (the first of equal maxima). Features then describe the phases around it:
the seconds before (free-fall depth and duration, descent area, a pre-impact velocity estimate, how
far the body has already turned, and how much of the turn was made while the body was still held up
at 1 g: lying down on a bed turns under control, a fall turns with the sink), the impact (peak,
impulse, energy, width, jerk), and up to ten seconds after (change of the gravity direction against
before the candidate, whether it keeps turning after the impact, stillness and the longest still
stretch, continued stepping). They use |a|, the angle between mean gravity vectors and variances of
the vector, so they do not depend on how the device is worn.

Features are only ever appended to :data:`FEATURES`: a model trained on the first ones (the shipped
model of 2026-12-07 reads the first 31) loads and reads its own columns.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

FS = 50.0
DT = 1.0 / FS
GAP_FILL_S = 0.5
SEGMENT_GAP_S = 10.0
CLIP_G = 8.0
CANDIDATE_G = 1.35
NMS_N = 50  # +-1 s
PRE_N = 200  # 4 s of context before a candidate
POST_N = 500  # 10 s after it: long enough to see whether the wearer stays down
WINDOW_N = PRE_N + POST_N + 1
FEATURE_BATCH = 2000

FEATURES: tuple[str, ...] = (
    "peak_g",
    "pre_min_g",
    "dip_area_gs",
    "sink_area_3s_gs",
    "sink_time_3s_s",
    "freefall_s",
    "dip_to_peak_s",
    "impulse_gs",
    "impact_width_s",
    "jerk_gps",
    "pre_activity_g",
    "pre_vector_std_g",
    "posture_change_deg",
    "posture_early_deg",
    "post_settle_deg",
    "post_std_g",
    "post_vector_std_g",
    "post_late_vector_std_g",
    "post_mean_g",
    "post_still_fraction",
    "post_steps",
    "post_max_g",
    "post_seen_s",
    "pre_velocity_ms",
    "pre_rotation_deg",
    "post_rotation_deg",
    "late_posture_deg",
    "post_still_longest_s",
    "late_steps",
    "post_turn_rate_dps",
    "impact_energy_g2s",
    # appended last: a model trained on the features before them still reads its columns
    "pre_supported_turn_deg",
    "pre_supported_left_deg",
)
SUPPORT_BLOCK_N = 10  # 0.2 s blocks for the last supported posture before a candidate
SUPPORT_G = 0.12  # mean | |a| - 1 g | of a block held up by the body (no sink, no push)


def clean_input(t: np.ndarray, acc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate shapes; drop rows with NaN/inf; clip axes at +-8 g. Raises ``ValueError`` on bad shapes."""
    t = np.asarray(t, dtype=np.float64).reshape(-1)
    acc = np.asarray(acc, dtype=np.float64)
    if acc.ndim != 2 or acc.shape[1] != 3 or acc.shape[0] != t.shape[0]:
        msg = f"expected t of shape (n,) and acc of shape (n, 3); got {t.shape} and {acc.shape}"
        raise ValueError(msg)
    ok = np.isfinite(t) & np.isfinite(acc).all(axis=1)
    return t[ok], np.clip(acc[ok], -CLIP_G, CLIP_G)


class Resampler:
    """Irregular samples in, 50 Hz grid out, chunk by chunk.

    ``push`` and ``flush`` return a list of items: ``("grid", k0, values)`` (grid rows k0.. of the
    current segment, NaN where a gap was too long to fill) and ``("end", t_start)`` closing a segment.
    Segments start with ``("start", t_start)``.
    """

    def __init__(self) -> None:
        self._t = np.zeros(0)
        self._a = np.zeros((0, 3))
        self._t0: float | None = None
        self._k_next = 0
        self._t_last = -np.inf

    def push(self, t: np.ndarray, acc: np.ndarray) -> list[tuple]:
        t, acc = clean_input(t, acc)
        if len(t) == 0:
            return []
        # out-of-order or repeated times cannot be placed on a grid already emitted: drop them
        running = np.maximum.accumulate(np.concatenate([[self._t_last], t]))
        keep = t > running[:-1]
        t, acc = t[keep], acc[keep]
        if len(t) == 0:
            return []
        out: list[tuple] = []
        prev = np.concatenate([[self._t_last], t[:-1]])
        cuts = np.flatnonzero(t - prev > SEGMENT_GAP_S)
        bounds = [0, *cuts.tolist(), len(t)]
        for s, e in itertools.pairwise(bounds):
            if s == e:
                continue
            if self._t0 is None or s in cuts:
                if self._t0 is not None:
                    out += self._close()
                self._t0 = float(t[s])
                self._k_next = 0
                self._t = np.zeros(0)
                self._a = np.zeros((0, 3))
                out.append(("start", self._t0))
            self._t = np.concatenate([self._t, t[s:e]])
            self._a = np.concatenate([self._a, acc[s:e]])
            out += self._emit(final=False)
        self._t_last = float(t[-1])
        return out

    def flush(self) -> list[tuple]:
        return self._close() if self._t0 is not None else []

    def _close(self) -> list[tuple]:
        out = self._emit(final=True)
        out.append(("end", self._t0))
        self._t0 = None
        self._t = np.zeros(0)
        self._a = np.zeros((0, 3))
        return out

    def _emit(self, final: bool) -> list[tuple]:
        t, a, t0 = self._t, self._a, self._t0
        assert t0 is not None
        if len(t) == 0:
            return []
        x = (t[-1] - t0) / DT
        k_end = int(np.floor(x + 0.5)) if final else int(np.floor(x - 0.5))
        if k_end < self._k_next:
            return []
        ks = np.arange(self._k_next, k_end + 1)
        g = t0 + ks * DT
        lo = np.searchsorted(t, t0 + (ks - 0.5) * DT, side="left")
        hi = np.searchsorted(t, t0 + (ks + 0.5) * DT, side="left")
        vals = np.full((len(ks), 3), np.nan)
        full = hi > lo
        if full.any():
            lo_f, hi_f = lo[full], hi[full]
            sums = np.add.reduceat(a[lo_f[0] : hi_f[-1]], lo_f - lo_f[0], axis=0)
            vals[full] = sums / (hi_f - lo_f)[:, None]
        empty = ~full
        if empty.any():
            p = lo[empty] - 1
            q = hi[empty]
            ok = (p >= 0) & (q < len(t))
            p_c, q_c = np.clip(p, 0, len(t) - 1), np.clip(q, 0, len(t) - 1)
            span = t[q_c] - t[p_c]
            ok &= (span <= GAP_FILL_S) & (span > 0)
            w = np.where(ok, (g[empty] - t[p_c]) / np.where(span > 0, span, 1.0), 0.0)[:, None]
            interp = a[p_c] * (1 - w) + a[q_c] * w
            vals[empty] = np.where(ok[:, None], interp, np.nan)
        self._k_next = k_end + 1
        nxt = np.searchsorted(t, t0 + (self._k_next - 0.5) * DT, side="left")
        keep_from = max(0, int(nxt) - 1)
        self._t, self._a = t[keep_from:], a[keep_from:]
        return [("grid", int(ks[0]), vals)]


class CandidateStage:
    """Finds candidate impacts on one segment's grid and returns their windows when complete.

    ``add`` appends grid rows and returns ``(k, window)`` pairs whose window ``[k - PRE_N, k + POST_N]``
    is complete; ``close`` returns the rest with the missing tail as NaN (end of segment or stream).
    The buffer keeps only what pending candidates still need (a few seconds).
    """

    def __init__(self) -> None:
        self._buf = np.zeros((0, 3))
        self._k0 = 0
        self._scan = 0
        self._pending: list[int] = []

    def add(self, k_start: int, vals: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        if k_start != self._k0 + len(self._buf):
            msg = "grid rows must arrive in order"
            raise ValueError(msg)
        self._buf = np.concatenate([self._buf, vals]) if len(self._buf) else vals.copy()
        return self._process(final=False)

    def close(self) -> list[tuple[np.ndarray, np.ndarray]]:
        out = self._process(final=True)
        self._buf = np.zeros((0, 3))
        return out

    def _process(self, final: bool) -> list[tuple[np.ndarray, np.ndarray]]:
        n_end = self._k0 + len(self._buf)
        limit = n_end if final else n_end - NMS_N
        if limit > self._scan:
            self._pending += self._scan_candidates(self._scan, limit, final)
            self._scan = limit
        ready = [k for k in self._pending if final or k + POST_N < n_end]
        self._pending = [k for k in self._pending if k not in set(ready)]
        out: list[tuple[np.ndarray, np.ndarray]] = []
        if ready:
            ks = np.asarray(ready)
            out.append((ks, self._windows(ks)))
        keep_from = min([self._scan - PRE_N - 1, *(k - PRE_N for k in self._pending)])
        drop = max(0, keep_from - self._k0)
        if drop and not final:
            self._buf = self._buf[drop:]
            self._k0 += drop
        return out

    def _scan_candidates(self, start: int, stop: int, final: bool) -> list[int]:
        mag = np.sqrt(np.sum(self._buf**2, axis=1))
        mag = np.where(np.isfinite(mag), mag, -np.inf)
        rel = np.arange(start - self._k0, stop - self._k0)
        idx = rel[mag[rel] >= CANDIDATE_G]
        if len(idx) == 0:
            return []
        pad = np.concatenate([np.full(NMS_N, -np.inf), mag, np.full(NMS_N, -np.inf)])
        win = np.lib.stride_tricks.sliding_window_view(pad, 2 * NMS_N + 1)[idx]
        left = win[:, :NMS_N].max(axis=1)
        right = win[:, NMS_N + 1 :].max(axis=1)
        centre = win[:, NMS_N]
        is_peak = (centre > left) & (centre >= right)
        # a left context cut by the buffer start is not the segment start: the buffer keeps NMS_N
        # rows before the scan point, so the padding only ever stands for the segment's edges
        return (idx[is_peak] + self._k0).tolist()

    def _windows(self, ks: np.ndarray) -> np.ndarray:
        rows = ks[:, None] - self._k0 + np.arange(-PRE_N, POST_N + 1)[None, :]
        inside = (rows >= 0) & (rows < len(self._buf))
        w = self._buf[np.clip(rows, 0, max(len(self._buf) - 1, 0))]
        return np.where(inside[..., None], w, np.nan)


# ---------------------------------------------------------------------------------------------
# features


def _masked(x: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = valid.sum(axis=1)
    return np.where(valid, x, 0.0), n


def _mean(x: np.ndarray, valid: np.ndarray, default: float = 0.0) -> np.ndarray:
    xs, n = _masked(x, valid)
    return np.where(n > 0, xs.sum(axis=1) / np.maximum(n, 1), default)


def _std(x: np.ndarray, valid: np.ndarray, default: float = 0.0) -> np.ndarray:
    mu = _mean(x, valid)
    d = np.where(valid, x - mu[:, None], 0.0)
    n = valid.sum(axis=1)
    return np.where(n > 1, np.sqrt((d**2).sum(axis=1) / np.maximum(n, 1)), default)


def _vec_std(a: np.ndarray, valid: np.ndarray) -> np.ndarray:
    return np.sqrt(sum(_std(a[..., j], valid) ** 2 for j in range(3)))


def _vec_mean(a: np.ndarray, valid: np.ndarray) -> np.ndarray:
    return np.stack([_mean(a[..., j], valid) for j in range(3)], axis=1)


def _angle_deg(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    nu = np.linalg.norm(u, axis=1)
    nv = np.linalg.norm(v, axis=1)
    ok = (nu > 0.2) & (nv > 0.2)
    cos = np.sum(u * v, axis=1) / np.where(ok, nu * nv, 1.0)
    return np.where(ok, np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))), 0.0)


def _supported_turn(
    a: np.ndarray, m: np.ndarray, valid: np.ndarray, g_pre: np.ndarray, g_post: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """How far the trunk had turned while still held up, and how far it had left to turn.

    Lying down on a bed turns the trunk from upright to lying under control (|a| stays near 1 g) and
    at most lets go for the last few tenths of a second; in a fall the turn comes with the sink and
    the impact. The last 0.2 s block in the 2 s before the candidate whose |a| stays within
    :data:`SUPPORT_G` of 1 g is the last supported posture: its angle from the posture before
    (4-1.5 s earlier) is the turn made under control, its angle to the posture after (1-6 s) the
    turn left for the drop. No supported block: no turn under control, all of it left.
    """
    c0 = PRE_N
    nb = 10
    lo = c0 - round(0.1 * FS) - nb * SUPPORT_BLOCK_N
    seg = slice(lo, lo + nb * SUPPORT_BLOCK_N)
    blocks = a[:, seg].reshape(len(a), nb, SUPPORT_BLOCK_N, 3)
    bval = valid[:, seg].reshape(len(a), nb, SUPPORT_BLOCK_N)
    nval = bval.sum(axis=2)
    dev = np.where(bval, np.abs(m[:, seg].reshape(len(a), nb, SUPPORT_BLOCK_N) - 1.0), 0.0).sum(axis=2)
    supported = (nval >= SUPPORT_BLOCK_N // 2) & (dev < SUPPORT_G * np.maximum(nval, 1))
    last = nb - 1 - np.argmax(supported[:, ::-1], axis=1)
    bsum = np.where(bval[..., None], blocks, 0.0).sum(axis=2) / np.maximum(nval, 1)[..., None]
    g_last = bsum[np.arange(len(a)), last]
    g_last = np.where(supported.any(axis=1)[:, None], g_last, g_pre)
    return _angle_deg(g_pre, g_last), _angle_deg(g_last, g_post)


def features(win: np.ndarray) -> np.ndarray:
    """Features (C, len(FEATURES)) of candidate windows (C, WINDOW_N, 3), NaN where unseen."""
    c0 = PRE_N
    valid = np.isfinite(win).all(axis=2)
    a = np.where(valid[..., None], win, 0.0)
    m = np.sqrt(np.sum(a**2, axis=2))
    peak = m[:, c0]

    def sl(lo: float, hi: float) -> slice:
        return slice(c0 + round(lo * FS), c0 + round(hi * FS))

    pre = sl(-1.5, 0)
    m_pre, v_pre = m[:, pre], valid[:, pre]
    pre_min = np.where(v_pre.any(axis=1), np.where(v_pre, m_pre, np.inf).min(axis=1), 1.0)
    dip = sl(-2.0, 0)
    dip_area = (np.where(valid[:, dip], np.maximum(0.0, 1.0 - m[:, dip]), 0.0)).sum(axis=1) * DT
    freefall = (v_pre & (m_pre < 0.6)).sum(axis=1) * DT
    # a slow collapse sinks for longer than a drop: unsupported descent over the 3 s before
    sink = sl(-3.0, 0)
    sink_area = (np.where(valid[:, sink], np.maximum(0.0, 1.0 - m[:, sink]), 0.0)).sum(axis=1) * DT
    sink_time = (valid[:, sink] & (m[:, sink] < 0.9)).sum(axis=1) * DT
    argmin = np.where(v_pre, m_pre, np.inf).argmin(axis=1)
    dip_to_peak = (m_pre.shape[1] - argmin) * DT

    imp = sl(-0.2, 0.3)
    impulse = np.where(valid[:, imp], np.maximum(0.0, m[:, imp] - 1.0), 0.0).sum(axis=1) * DT
    half = 1.0 + 0.5 * (peak - 1.0)
    near = sl(-0.2, 0.2)
    width = (valid[:, near] & (m[:, near] >= half[:, None])).sum(axis=1) * DT
    jwin = slice(c0 - 10, c0 + 11)
    d = np.diff(a[:, jwin], axis=1)
    dv = valid[:, jwin][:, 1:] & valid[:, jwin][:, :-1]
    jerk = np.where(dv, np.linalg.norm(d, axis=2), 0.0).max(axis=1) / DT

    # velocity just before the impact, as if the fall were vertical: the largest accumulated
    # (1 - |a|) over any stretch ending at the candidate (m/s); a drop from standing reaches more than
    # sitting down or flopping onto a bed, however the device is worn
    vwin = sl(-1.5, 0)
    short = np.where(valid[:, vwin], 1.0 - m[:, vwin], 0.0)[:, ::-1]
    pre_velocity = np.maximum(0.0, np.cumsum(short, axis=1).max(axis=1)) * DT * 9.81
    energy = np.where(valid[:, imp], (m[:, imp] - 1.0) ** 2, 0.0).sum(axis=1) * DT

    before = sl(-4.0, -1.0)
    pre_act = _std(m[:, before], valid[:, before])
    pre_vstd = _vec_std(a[:, before], valid[:, before])
    g_pre = _vec_mean(a[:, sl(-4.0, -1.5)], valid[:, sl(-4.0, -1.5)])
    falling = sl(-0.6, -0.1)
    pre_rot = _angle_deg(g_pre, _vec_mean(a[:, falling], valid[:, falling]))
    post = sl(1.0, 6.0)
    g_post = _vec_mean(a[:, post], valid[:, post])
    posture = _angle_deg(g_pre, g_post)
    first = sl(0.3, 1.5)
    g_first = _vec_mean(a[:, first], valid[:, first])
    posture_early = _angle_deg(g_pre, g_first)
    early, late = sl(1.0, 3.0), sl(4.0, 6.0)
    settle = _angle_deg(_vec_mean(a[:, early], valid[:, early]), _vec_mean(a[:, late], valid[:, late]))
    # a fall ends lying at the impact; lying down after sitting on a bed turns the trunk afterwards,
    # and a wearer who recovers turns back toward the posture before
    late10 = sl(6.0, 10.0)
    g_late10 = _vec_mean(a[:, late10], valid[:, late10])
    post_rot = _angle_deg(g_first, g_late10)
    late_posture = _angle_deg(g_pre, g_late10)
    post_std = _std(m[:, post], valid[:, post])
    post_vstd = _vec_std(a[:, post], valid[:, post])
    post_late_vstd = _vec_std(a[:, late], valid[:, late])
    post_mean = _mean(m[:, post], valid[:, post], default=1.0)
    # stillness in half-second blocks over 1-10 s: share of still blocks (first 5 s), longest still run
    long_post = sl(1.0, 10.0)
    nb = (long_post.stop - long_post.start) // 25
    blocks = a[:, long_post].reshape(len(a), nb, 25, 3)
    bvalid = valid[:, long_post].reshape(len(a), nb, 25)
    bstd = np.sqrt(
        sum(
            _std(blocks[..., j].reshape(-1, 25), bvalid.reshape(-1, 25), default=np.nan) ** 2
            for j in range(3)
        )
    ).reshape(len(a), nb)
    seen = np.isfinite(bstd) & (bvalid.sum(axis=2) >= 10)
    is_still = seen & (bstd < 0.05)
    s10, i10 = seen[:, :10], is_still[:, :10]
    still = np.where(s10.any(axis=1), i10.sum(axis=1) / np.maximum(s10.sum(axis=1), 1), 0.0)
    run = np.zeros(len(a))
    longest = np.zeros(len(a))
    for b in range(nb):
        run = np.where(is_still[:, b], run + 0.5, 0.0)
        longest = np.maximum(longest, run)
    # how fast the gravity direction wanders after the impact, 1 s block to block (deg/s)
    bmean = np.stack(
        [_vec_mean(a[:, sl(1.0 + k, 2.0 + k)], valid[:, sl(1.0 + k, 2.0 + k)]) for k in range(9)], 1
    )
    turn = np.stack([_angle_deg(bmean[:, k], bmean[:, k + 1]) for k in range(8)], 1)
    turn_rate = np.median(turn, axis=1)
    sup_turn, sup_left = _supported_turn(a, m, valid, g_pre, g_post)
    steps = (valid[:, post] & (m[:, post] > 1.3)).sum(axis=1) * DT
    late_steps = (valid[:, late10] & (m[:, late10] > 1.3)).sum(axis=1) * DT
    post_max = np.where(valid[:, post], m[:, post], 0.0).max(axis=1)
    post_seen = valid[:, c0 + 1 :].sum(axis=1) * DT
    return np.column_stack(
        [
            peak,
            pre_min,
            dip_area,
            sink_area,
            sink_time,
            freefall,
            dip_to_peak,
            impulse,
            width,
            jerk,
            pre_act,
            pre_vstd,
            posture,
            posture_early,
            settle,
            post_std,
            post_vstd,
            post_late_vstd,
            post_mean,
            still,
            steps,
            post_max,
            post_seen,
            pre_velocity,
            pre_rot,
            post_rot,
            late_posture,
            longest,
            late_steps,
            turn_rate,
            energy,
            sup_turn,
            sup_left,
        ]
    )


def candidate_features(t: np.ndarray, acc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All candidates of a whole recording: their times (s) and features, for training and analysis."""
    times: list[np.ndarray] = []
    feats: list[np.ndarray] = []
    for t0, ks, win in iter_windows(Resampler(), [(t, acc)], flush=True):
        for s in range(0, len(ks), FEATURE_BATCH):
            times.append(t0 + ks[s : s + FEATURE_BATCH] * DT)
            feats.append(features(win[s : s + FEATURE_BATCH]))
    if not times:
        return np.zeros(0), np.zeros((0, len(FEATURES)))
    return np.concatenate(times), np.concatenate(feats)


def iter_windows(
    resampler: Resampler,
    chunks: list[tuple[np.ndarray, np.ndarray]],
    flush: bool,
    stage: list[Any] | None = None,
) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """Drive resampler and candidate stage; returns (segment start time, candidate indices, windows).

    ``stage`` is a one-element list holding the open segment's ``[t_start, CandidateStage]`` so a
    streaming caller can keep it between calls.
    """
    state: list[Any] = stage if stage is not None else [None]
    out: list[tuple[float, np.ndarray, np.ndarray]] = []
    items: list[tuple] = []
    for t, acc in chunks:
        items += resampler.push(t, acc)
    if flush:
        items += resampler.flush()
    for item in items:
        if item[0] == "start":
            state[0] = (item[1], CandidateStage())
        elif item[0] == "grid":
            t0, st = state[0]
            out += [(t0, ks, w) for ks, w in st.add(item[1], item[2])]
        elif item[0] == "end":
            t0, st = state[0]
            out += [(t0, ks, w) for ks, w in st.close()]
            state[0] = None
    return out
