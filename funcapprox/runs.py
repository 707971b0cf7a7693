"""A stand-alone training run: train one configuration and write everything into a folder."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from .artifacts import FIT_PLOT_FILE, claim_folder, save_run, staged_folder
from .config import TrainConfig
from .train import Evaluation, TrainResult, train
from .views.figures import save_fit_plot


def default_run_dir(config: TrainConfig, root: Path = Path("runs"), now: float | None = None) -> Path:
    """A new, empty folder `root/<function label>-<YYYYmmdd-HHMMSS>` (at `now`, default the current time), claimed for
    this run: a run started in the same second gets `…-2`, then `…-3`."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    return claim_folder(Path(root), f"{config.label}-{stamp}")


def run_training(
    config: TrainConfig, folder: Path, on_eval: Callable[[Evaluation], None] | None = None, force: bool = False
) -> TrainResult:
    """Train, then save configuration, history, metrics, weights and the fit plot in `folder`.

    The folder is checked before training starts, so a bad --out costs no training time; a folder
    that holds files (an earlier run) is refused unless `force`, and then replaced whole. The run
    is written beside `folder` and renamed into place when complete: a crash or Ctrl-C leaves
    `folder` as it was. A run that diverges is kept too (without weights or plot).
    """
    with staged_folder(folder, force) as staging:
        result = train(config, on_eval)
        save_run(staging, result)
        if result.ok:
            save_fit_plot(result.model, config, staging / FIT_PLOT_FILE)
    return result
