"""How much faster than real time the fall detectors run on one core.

Prints seconds of signal per second of CPU for batch ``detect`` and for the streaming form fed in
1 s chunks (as a gateway would), on simulated daily activity per placement. ``--json`` prints JSON.
Goal: >= 1000x real time for the learned detector on one core.

    python bench/fall_speed.py [--hours 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from eldercare.models.fall import FallDetector, ThresholdFallDetector, _Detector
from eldercare.simulators.wearable import PLACEMENTS, synth_day


def _cpu(fn: object) -> float:
    t0 = time.process_time()
    fn()  # type: ignore[operator]
    return time.process_time() - t0


def _stream(det: _Detector, t: np.ndarray, acc: np.ndarray, chunk_s: float) -> int:
    s = det.stream()
    n = 0
    step = int(chunk_s * 50)
    for i in range(0, len(t), step):
        n += len(s.push(t[i : i + step], acc[i : i + step]))
    return n + len(s.flush())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=2.0, help="hours of signal per placement")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    dets: dict[str, _Detector] = {"model": FallDetector.pretrained(), "threshold": ThresholdFallDetector()}
    rows = []
    for j, placement in enumerate(PLACEMENTS):
        day = synth_day(np.random.default_rng([4321, j]), args.hours, placement)
        seconds = float(day.t[-1] - day.t[0])
        for name, det in dets.items():
            t, acc = day.t, day.acc
            batch = min(_cpu(lambda d=det, t=t, a=acc: d.detect(t, a)) for _ in range(3))
            stream1 = _cpu(lambda d=det, t=t, a=acc: _stream(d, t, a, 1.0))
            rows.append(
                {
                    "detector": name,
                    "placement": placement,
                    "signal_s": round(seconds),
                    "batch_x_realtime": round(seconds / max(batch, 1e-9)),
                    "stream_1s_chunks_x_realtime": round(seconds / max(stream1, 1e-9)),
                }
            )
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'detector':<10} {'placement':<9} {'signal s':>9} {'batch x rt':>11} {'stream(1 s) x rt':>17}")
    for r in rows:
        print(
            f"{r['detector']:<10} {r['placement']:<9} {r['signal_s']:>9} {r['batch_x_realtime']:>11,} "
            f"{r['stream_1s_chunks_x_realtime']:>17,}"
        )


if __name__ == "__main__":
    main()
