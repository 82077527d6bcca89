"""``eldercare models``: train and evaluate the detectors on simulated data.

``train fall`` writes the fall model shipped in the package (``eldercare/models/data``) unless
``--out`` says otherwise. ``evaluate`` runs :func:`eldercare.training.evaluate_fall.run` and
:func:`eldercare.training.evaluate_inactivity.run`, both writing into one report folder.
scikit-learn and the evaluation code are imported inside the commands, so ``eldercare --help`` and
the edge gateway never load them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from eldercare.models.fall import FallDetector

F = TypeVar("F", bound=Callable[..., Any])
FOLDER = click.Path(file_okay=False, path_type=Path)


def _simulated_part(command: F) -> F:
    """``--cache``, ``--sim-scale`` and ``--val-hours``: the simulated part, alike for ``train fall``
    (with or without ``--data``) and ``crossval`` (which share the cache)."""
    options = (
        click.option(
            "--cache",
            type=FOLDER,
            default=None,
            help="Keep and reuse simulated candidate rows in this folder between runs.",
        ),
        click.option(
            "--sim-scale",
            type=click.FloatRange(0, 1, min_open=True),
            default=1.0,
            show_default=True,
            help="Share of the simulated training amounts to draw (less: faster).",
        ),
        click.option(
            "--val-hours",
            type=click.FloatRange(min=1),
            default=30.0,
            show_default=True,
            help="Hours of simulated validation days per placement (threshold choice).",
        ),
    )
    for option in reversed(options):
        command = option(command)
    return command


def _real_trials(data_help: str, report: str) -> Callable[[F], F]:
    """``--data`` (the real datasets) and ``--out`` (the report folder), alike for ``crossval`` and
    ``padded-check``."""

    def decorate(command: F) -> F:
        command = click.option(
            "--out",
            "out_dir",
            type=FOLDER,
            default=Path("models-report"),
            show_default=True,
            help=f"Folder for {report}.",
        )(command)
        return click.option("--data", "data_dir", type=FOLDER, required=True, help=data_help)(command)

    return decorate


def _model_option(command: F) -> F:
    """``--model``: a trained model judged beside the shipped one (:func:`_candidate`)."""
    return click.option(
        "--model",
        "model_dir",
        type=FOLDER,
        default=None,
        help="Folder of a trained fall_model.npz/.json to judge beside the shipped one (e.g. a new one).",
    )(command)


def _candidate(model_dir: Path | None) -> FallDetector | None:
    """The fall model in ``model_dir`` (``--model``), or None; a folder without one is one readable line."""
    from eldercare.models.fall import MODEL_JSON, MODEL_NPZ, FallDetector

    if model_dir is None:
        return None
    try:
        return FallDetector.load(model_dir / MODEL_NPZ, model_dir / MODEL_JSON)
    except (OSError, ValueError, KeyError) as exc:
        raise click.ClickException(f"{model_dir}: not a fall model folder ({exc})") from None


def _needs_sklearn(what: str, exc: ImportError) -> click.ClickException:
    return click.ClickException(
        f"{what} needs scikit-learn ({exc.name} is missing): pip install 'eldercare[server]'"
    )


@click.group("models")
def models() -> None:
    """Train and evaluate the fall and inactivity detectors."""


@models.group("train")
def train() -> None:
    """Train a detector on simulated recordings."""


@train.command("fall")
@click.option("--seed", default=0, show_default=True, help="Seed of the training recordings.")
@click.option(
    "--out",
    "out_dir",
    type=FOLDER,
    default=None,
    help="Folder for fall_model.npz/.json [default: the package's eldercare/models/data].",
)
@click.option("--workers", default=2, show_default=True, help="Processes generating recordings.")
@click.option(
    "--seeds",
    "n_seeds",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Train with seeds SEED..SEED+N-1 and ship the mean log-odds of their trees "
    "(threshold chosen on their validation days pooled).",
)
@click.option(
    "--threshold-only",
    is_flag=True,
    help="Keep the trained trees; redo only the validation that picks the threshold.",
)
@click.option(
    "--data",
    "data_dir",
    type=FOLDER,
    default=None,
    help="Folder of real datasets (e.g. DIR/mobifall/) to train on beside the simulator.",
)
@_simulated_part
def train_fall(
    seed: int,
    out_dir: Path | None,
    workers: int,
    n_seeds: int,
    threshold_only: bool,
    data_dir: Path | None,
    cache: Path | None,
    sim_scale: float,
    val_hours: float,
) -> None:
    """Train the learned fall detector and record how (seed, data, versions, threshold)."""
    try:
        from eldercare.training.fall_train import rethreshold
        from eldercare.training.fall_train import train as do_train
        from eldercare.training.train_fall import train as train_real
        from eldercare.training.train_fall import train_seeds
        from eldercare.training.trials import DatasetError
    except ImportError as exc:
        raise _needs_sklearn("training", exc) from None
    if threshold_only and n_seeds > 1:
        raise click.ClickException("--threshold-only keeps the trees of one model; it takes no --seeds")
    try:
        if threshold_only:
            record = rethreshold(out_dir, workers=workers)
        elif n_seeds > 1:
            record = train_seeds(
                data_dir,
                list(range(seed, seed + n_seeds)),
                out_dir=out_dir,
                workers=workers,
                cache=cache,
                sim_scale=sim_scale,
                val_hours_each=val_hours,
            )
        elif data_dir is not None or cache is not None or sim_scale != 1.0 or val_hours != 30.0:
            record = train_real(
                data_dir,
                seed=seed,
                out_dir=out_dir,
                workers=workers,
                cache=cache,
                sim_scale=sim_scale,
                val_hours_each=val_hours,
            )
        else:
            record = do_train(seed=seed, out_dir=out_dir, workers=workers)
    except (DatasetError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    val = record["validation"]
    click.echo(
        f"fall model trained in {record['train_seconds']} s: threshold {record['threshold']:.3f}; "
        f"validation sensitivity {val['validation_sensitivity']:.3f} at "
        f"{val['validation_false_alarms_per_hour']:.3f} false alarms/h ({val['validation_day_hours']} h)"
    )


def _evaluators() -> list[tuple[str, Any]]:
    """The detectors' evaluations, by name."""
    from eldercare.training import evaluate_fall, evaluate_inactivity

    return [("fall", evaluate_fall.run), ("inactivity", evaluate_inactivity.run)]


@models.command("evaluate")
@click.option(
    "--out",
    "out_dir",
    type=FOLDER,
    default=Path("models-report"),
    show_default=True,
    help="Folder for the Markdown, JSON and PNG report.",
)
@click.option("--seed", default=20261129, show_default=True, help="Seed of the evaluation recordings.")
@click.option(
    "--only", type=click.Choice(["fall", "inactivity"]), default=None, help="Evaluate one detector only."
)
@click.option(
    "--fall-scale",
    type=click.FloatRange(0, 1, min_open=True),
    default=1.0,
    show_default=True,
    help="Share of the fall evaluation's simulated falls, look-alikes and days (less: faster).",
)
def evaluate(out_dir: Path, seed: int, only: str | None, fall_scale: float) -> None:
    """Score the detectors on recordings training never saw, beside their baselines."""
    summary: dict[str, Any] = {}
    for name, run in _evaluators():
        if only and name != only:
            continue
        click.echo(f"evaluating {name} ...")
        if name == "fall" and fall_scale != 1.0:
            from eldercare.training import evaluate_fall as ef

            res = run(
                out_dir,
                seed,
                n_falls_each=max(1, round(ef.N_FALLS_EACH * fall_scale)),
                n_lookalikes_each=max(1, round(ef.N_LOOKALIKES_EACH * fall_scale)),
                day_hours_each=ef.DAY_HOURS_EACH * fall_scale,
            )
        else:
            res = run(out_dir, seed)
        summary[name] = res.get("targets", {}) if isinstance(res, dict) else {}
    click.echo(json.dumps(summary, indent=2))
    click.echo(f"report written to {out_dir}")


@models.command("crossval")
@_real_trials("Folder of real datasets (e.g. DIR/mobifall/).", "fall_crossval.md and .json")
@click.option("--seed", default=0, show_default=True, help="Seed of the simulated training recordings.")
@click.option("--folds", default=6, show_default=True, help="Groups of people (leave one group out).")
@click.option("--workers", default=1, show_default=True, help="Processes generating recordings.")
@_simulated_part
@_model_option
@click.option(
    "--no-learned",
    is_flag=True,
    help="Judge only the fixed models (shipped, --model, threshold): no per-fold training.",
)
def crossval(
    data_dir: Path,
    out_dir: Path,
    seed: int,
    folds: int,
    workers: int,
    cache: Path | None,
    sim_scale: float,
    val_hours: float,
    model_dir: Path | None,
    no_learned: bool,
) -> None:
    """Fall detector: leave-subjects-out cross-validation on real trials, beside its baselines."""
    try:
        from eldercare.training import crossval as cv
        from eldercare.training.datasets import load_dir
        from eldercare.training.report import write
        from eldercare.training.trials import DatasetError
    except ImportError as exc:
        raise _needs_sklearn("cross-validation", exc) from None
    if folds < 2:
        raise click.BadParameter("needs at least 2", param_hint="--folds")
    try:
        trials = load_dir(data_dir)
    except DatasetError as exc:
        raise click.ClickException(str(exc)) from None
    candidate = _candidate(model_dir)
    res = cv.run(
        trials,
        seed=seed,
        k=folds,
        workers=workers,
        cache=cache,
        sim_scale=sim_scale,
        val_hours_each=val_hours,
        candidate=candidate,
        learn=not no_learned,
    )
    md = write(res, out_dir)
    click.echo(md.read_text(encoding="utf-8").split("\n\n")[0])
    click.echo(f"report written to {out_dir}")


@models.command("padded-check")
@_real_trials(
    "Folder of real datasets holding umafall/, mobifall/ and/or weda-fall/ (raw trials at their own rate).",
    "fall_padded_check.json and .md",
)
@click.option(
    "--pad",
    "where",
    type=click.Choice(["before", "after", "both"]),
    multiple=True,
    default=("before", "after", "both"),
    show_default=True,
    help="Where the 30 s of quiet standing go.",
)
@click.option(
    "--placement",
    "placements",
    multiple=True,
    default=("waist", "chest", "wrist", "thigh"),
    show_default=True,
    help="Placements to judge.",
)
@_model_option
def padded_check(
    data_dir: Path, out_dir: Path, where: tuple[str, ...], placements: tuple[str, ...], model_dir: Path | None
) -> None:
    """Fall detector, judged as the independent check does: detect() per raw trial padded with standing."""
    from eldercare.training import padded_check as pc
    from eldercare.training.trials import DatasetError

    try:
        raw = pc.load_raw_dir(data_dir, placements)
    except DatasetError as exc:
        raise click.ClickException(str(exc)) from None
    detectors = pc.default_detectors(_candidate(model_dir))
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = {w: pc.run(raw, detectors, where=w) for w in where}
    lines = [
        "| padding | group | falls | daily | " + " | ".join(f"{m} sens. / spec." for m in detectors) + " |",
        "| --- | --- | --- | --- | " + " | ".join("---" for _ in detectors) + " |",
    ]
    for w, res in runs.items():
        for group, row in res["summary"].items():
            if group != "all" and not group.startswith(("dataset=", "placement=", "fall_kind=")):
                continue
            cells = [
                f"{row[m]['sensitivity'][0]:.3f} / {row[m]['specificity'][0]:.3f}".replace("nan", "-")
                for m in detectors
            ]
            lines.append(f"| {w} | {group} | {row['falls']} | {row['adl']} | " + " | ".join(cells) + " |")
    if "candidate" in detectors:
        lines += ["", *_paired_lines(runs, pc.paired)]
    (out_dir / "fall_padded_check.json").write_text(json.dumps(runs, indent=1), encoding="utf-8")
    md = "\n".join(lines) + "\n"
    (out_dir / "fall_padded_check.md").write_text(md, encoding="utf-8")
    click.echo(md)


def _paired_lines(runs: dict[str, Any], paired: Callable[..., dict[str, Any]]) -> list[str]:
    """The candidate against the shipped model on the same trials, per dataset and placement, with
    paired intervals over people (also kept in each run's ``paired`` entry of the JSON)."""
    lines = [
        "Candidate against shipped, same trials: falls caught and quiet daily trials (shipped -> candidate), "
        "difference of shares with a 95 % paired bootstrap interval over people.",
        "",
        "| padding | group | falls caught | difference [95 %] | quiet daily | difference [95 %] |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for w, res in runs.items():
        res["paired"] = paired(res["trials"], "shipped", "candidate")
        for group, row in res["paired"].items():
            cells = []
            for what in ("falls", "daily"):
                c = row.get(what)
                if c is None:
                    cells += ["-", "-"]
                    continue
                d, lo, hi = c["difference"]
                cells += [
                    f"{c['shipped']} -> {c['candidate']} of {c['trials']}",
                    f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]",
                ]
            lines.append(f"| {w} | {group} | " + " | ".join(cells) + " |")
    return lines
