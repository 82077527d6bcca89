"""How fast resident routines render: seconds per simulated home-month, events per day.

python bench/simulate_routine.py [--homes 20] [--days 28] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from eldercare.simulators.routine import INCIDENT_KINDS, random_incidents, simulate_home


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--homes", type=int, default=20)
    ap.add_argument("--days", type=int, default=28)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = []
    for label, with_incidents in (("plain", False), ("every incident kind", True)):
        times, per_day = [], []
        for seed in range(args.homes):
            incs = random_incidents(seed, args.days, INCIDENT_KINDS, first_day=7) if with_incidents else []
            t0 = time.perf_counter()
            run = simulate_home(seed, args.days, incidents=incs, spurious_rate=1.0 if with_incidents else 0.0)
            times.append(time.perf_counter() - t0)
            per_day.append(len(run.events) / args.days)
        rows.append(
            {
                "case": label,
                "homes": args.homes,
                "days": args.days,
                "s_per_home_median": round(statistics.median(times), 4),
                "s_per_home_max": round(max(times), 4),
                "events_per_day_median": round(statistics.median(per_day)),
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'case':<22}{'homes':>6}{'days':>6}{'s/home p50':>12}{'s/home max':>12}{'events/day':>12}")
    for r in rows:
        print(
            f"{r['case']:<22}{r['homes']:>6}{r['days']:>6}{r['s_per_home_median']:>12}{r['s_per_home_max']:>12}"
            f"{r['events_per_day_median']:>12}"
        )


if __name__ == "__main__":
    main()
