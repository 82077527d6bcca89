"""The real datasets a folder may hold, and their loaders.

``load_dir(DIR)`` reads every known dataset found as ``DIR/<name>/`` (or ``DIR`` itself when it is
one dataset's folder). Datasets stay outside the repository (their licences do not all allow
redistribution); docs/models.md lists each one's licence, citation and what is used.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from eldercare.training import mobifall, umafall, wedafall
from eldercare.training.trials import DatasetError, Trial

LOADERS: dict[str, Callable[[Path], list[Trial]]] = {
    mobifall.NAME: mobifall.load,
    wedafall.NAME: wedafall.load,
    umafall.NAME: umafall.load,
}


def load_dir(root: Path, only: tuple[str, ...] = ()) -> list[Trial]:
    """All trials of the known datasets under ``root``; a clear :class:`DatasetError` when none."""
    root = Path(root)
    if not root.is_dir():
        msg = f"{root}: not a folder"
        raise DatasetError(msg)
    names = [n for n in LOADERS if not only or n in only]
    trials: list[Trial] = []
    for name in names:
        if (root / name).is_dir():
            trials += LOADERS[name](root / name)
    if not trials:
        for name in names:
            try:
                trials += LOADERS[name](root)
            except DatasetError:
                continue
    if not trials:
        msg = f"{root}: no known dataset found (looked for {', '.join(names)} as sub-folders or here)"
        raise DatasetError(msg)
    return trials
