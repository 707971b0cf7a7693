"""A stand-alone training run: train one configuration and write everything into a folder."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from .artifacts import FIT_PLOT_FILE, prepare_dir, save_run
from .config import TrainConfig
from .figures import save_fit_plot
from .train import Evaluation, TrainResult, train


def default_run_dir(config: TrainConfig, root: Path = Path("runs")) -> Path:
    return root / f"{config.func}-{time.strftime('%Y%m%d-%H%M%S')}"


def run_training(
    config: TrainConfig, folder: Path, on_eval: Callable[[Evaluation], None] | None = None
) -> TrainResult:
    """Train, then save configuration, history, metrics, weights and the fit plot in `folder`.

    The folder is checked before training starts, so a bad --out costs no training time.
    """
    folder = prepare_dir(folder)
    result = train(config, on_eval)
    save_run(folder, result)
    if result.ok:
        save_fit_plot(result.model, config, folder / FIT_PLOT_FILE)
    return result

