"""The cross-validation report: ``fall_crossval.json`` (everything, per trial) and a Markdown summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

NAMES = {
    "learned": "learned (real + sim), wear check",
    "learned_no_wear_check": "same, no wear check",
    "shipped": "shipped before",
    "shipped_with_wear_check": "shipped before + wear check",
    "threshold": "threshold 2.5 g",
    "candidate": "new model (--model), wear check",
    "candidate_no_wear_check": "new model, no wear check",
}


def _ci(v: list[float]) -> str:
    if v[0] != v[0]:  # NaN: no trials of this sort
        return "-"
    return f"{v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]"


def markdown(res: dict[str, Any]) -> str:
    s = res["summary"]
    models = res["models"]
    head = s["all"]
    first = "; ".join(
        f"{NAMES[m]}: sensitivity {head[m]['sensitivity'][0]:.3f}, "
        f"specificity {head[m]['specificity'][0]:.3f}"
        for m in models
    )
    lines = [
        f"Real trials, leave-subjects-out ({len(res['folds'])} folds; models trained without real "
        f"data see every trial as new; {head['falls']} falls, "
        f"{head['adl']} daily-activity trials): {first}.",
        "",
        "Sensitivity (falls caught) and specificity (daily-activity trials without an alarm), "
        "95 % intervals from a bootstrap over people. All figures in this table are on real recordings.",
        "",
        "| group | falls | ADL | " + " | ".join(f"{NAMES[m]} sens. | spec." for m in models) + " |",
        "|---|---|---|" + "---|---|" * len(models),
    ]
    for g, row in s.items():
        cells = " | ".join(f"{_ci(row[m]['sensitivity'])} | {_ci(row[m]['specificity'])}" for m in models)
        lines.append(f"| {g} | {row['falls']} | {row['adl']} | {cells} |")
    st = res["streams"]
    lines += [
        "",
        "Long streams (simulated days with device removal, hard sitting and lying down, getting up "
        "from bed, stumbles and jumps; simulated falls of every kind): these figures are simulated.",
        "",
        "| model | false alarms / h | sensitivity on simulated falls | ... by kind |",
        "|---|---|---|---|",
    ]
    if st.get("learned_mean_fa_per_hour") is not None:
        lines.append(
            f"| learned, mean of the folds' models | {st['learned_mean_fa_per_hour']:.3f} | "
            f"{st['learned_mean_sim_sensitivity']:.3f} | |"
        )
    for m in NAMES:
        if m not in st:
            continue
        kinds = ", ".join(f"{k} {v:.2f}" for k, v in st[m].get("sim_fall_sensitivity_by_kind", {}).items())
        lines.append(
            f"| {NAMES[m]} | {st[m]['false_alarms_per_hour']:.3f} ({st[m]['false_alarms']} in "
            f"{st[m]['hours']} h) | {st[m]['sim_fall_sensitivity']:.3f} | {kinds} |"
        )
    if res["folds"]:
        lines += [
            "",
            "| fold | people held out | threshold | FA/h (sim days) | sens. (sim falls) |",
            "|---|---|---|---|---|",
        ]
    for f in res["folds"]:
        lines.append(
            f"| {f['fold']} | {', '.join(f['test_subjects'])} | {f['threshold']:.3f} | "
            f"{f['streams']['false_alarms_per_hour']:.3f} | {f['streams']['sim_fall_sensitivity']:.3f} |"
        )
    lines += ["", f"Took {res['seconds']} s.", ""]
    return "\n".join(lines)


def write(res: dict[str, Any], out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "fall_crossval.json").write_text(
        json.dumps(res, indent=1, default=str) + "\n", encoding="utf-8"
    )
    md = out_dir / "fall_crossval.md"
    md.write_text(markdown(res), encoding="utf-8")
    return md
