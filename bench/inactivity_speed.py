"""How fast the inactivity detector fits a home and follows its events, and how big its state is.

The platform refits every resident once a day on 21 days of events and keeps one detector per
resident in its alert engine, so what matters is: seconds per fit, events per second through
``update``/``check``, the cost of a clock tick, and the size of ``to_dict()`` as JSON.

    python bench/inactivity_speed.py            # table
    python bench/inactivity_speed.py --json     # the same numbers as JSON

Homes come from ``eldercare.simulators.routine.simulate_home`` (seeded). Figures are the median of
``--repeat`` runs on this machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from eldercare.models.inactivity import FIT_WINDOW_DAYS, InactivityDetector
from eldercare.simulators.routine import DAY, DEFAULT_START, simulate_home


def measure(seed: int, repeat: int) -> dict[str, float]:
    run = simulate_home(seed, FIT_WINDOW_DAYS + 7)
    hist, stream = run.split(DEFAULT_START + FIT_WINDOW_DAYS * DAY)
    fits, streams, ticks = [], [], []
    det = InactivityDetector().fit(hist)
    for _ in range(repeat):
        t0 = time.perf_counter()
        det = InactivityDetector().fit(hist)
        fits.append(time.perf_counter() - t0)
        live = InactivityDetector.from_dict(det.to_dict())
        t0 = time.perf_counter()
        for ev in stream:
            live.update(ev)
            live.check(ev[0])
        streams.append(time.perf_counter() - t0)
        now = stream[-1][0]
        t0 = time.perf_counter()
        for i in range(1000):
            live.check(now + 60 * i)
        ticks.append((time.perf_counter() - t0) / 1000)
    state = json.dumps(det.to_dict())
    return {
        "history_events": len(hist),
        "fit_s": statistics.median(fits),
        "stream_events": len(stream),
        "events_per_s": len(stream) / statistics.median(streams),
        "tick_us": statistics.median(ticks) * 1e6,
        "state_kb": len(state) / 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--homes", type=int, default=3)
    args = ap.parse_args()
    rows = {f"home {s}": measure(s, args.repeat) for s in range(args.homes)}
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'':8}{'history ev':>12}{'fit s':>8}{'events/s':>11}{'tick us':>9}{'state KB':>10}")
    for name, r in rows.items():
        print(
            f"{name:8}{r['history_events']:>12}{r['fit_s']:>8.2f}{r['events_per_s']:>11.0f}"
            f"{r['tick_us']:>9.1f}{r['state_kb']:>10.1f}"
        )


if __name__ == "__main__":
    main()
