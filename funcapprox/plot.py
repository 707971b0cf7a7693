"""Figures: compute plain data first, then draw it and return the Figure (never show it)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import NamedTuple, Sequence

import matplotlib

matplotlib.use("Agg")  # files, not windows: works on machines without a screen
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from .artifacts import atomic_write  # noqa: E402
from .config import TrainConfig  # noqa: E402

DOT_EVERY = 10  # red dots at every 10th fine-grid point: x = 0, 0.01, …, 1.0


class FitData(NamedTuple):
    x: np.ndarray
    truth: np.ndarray
    prediction: np.ndarray
    max_error: float
    max_error_x: float
    title: str

    @property
    def error(self) -> np.ndarray:
        return self.prediction - self.truth


def fit_data(model, config: TrainConfig) -> FitData:
    """The network and its target on the fine evaluation grid."""
    import torch

    from .targets import grid, target
    from .train import FINE_POINTS

    x = grid(FINE_POINTS)
    with torch.no_grad():
        prediction = model(x).squeeze(1).numpy().astype(float)
    truth = target(config.func)(x).squeeze(1).numpy().astype(float)
    abs_error = np.abs(prediction - truth)
    worst = int(abs_error.argmax())
    title = (
        f"{config.func}: {config.arch} {config.act}, {config.n_params} parameters — "
        f"max error {abs_error[worst]:.4f} at x = {x[worst].item():.3f}"
    )
    return FitData(x.squeeze(1).numpy(), truth, prediction, float(abs_error[worst]), float(x[worst]), title)


def draw_fit(data: FitData) -> Figure:
    """Truth as a blue curve, the network as red points, max error marked; error panel below."""
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(8, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1.4]}, layout="constrained"
    )
    worst = int(np.abs(data.error).argmax())
    top.plot(data.x, data.truth, color="tab:blue", lw=2, label="truth")
    top.plot(data.x[::DOT_EVERY], data.prediction[::DOT_EVERY], "o", color="tab:red", ms=3.5, label="network")
    top.annotate(
        f"max error {data.max_error:.4f}",
        xy=(data.x[worst], data.prediction[worst]),
        xytext=(0.5, 0.08),
        textcoords="axes fraction",
        ha="center",
        arrowprops={"arrowstyle": "->", "color": "black"},
    )
    top.vlines(data.x[worst], data.truth[worst], data.prediction[worst], color="black", lw=2)
    top.set_ylabel("y")
    top.legend(loc="upper right")
    top.set_title(data.title, fontsize=10)
    bottom.axhline(0, color="grey", lw=0.8)
    bottom.plot(data.x, data.error, color="tab:red", lw=1)
    bottom.plot([data.x[worst]], [data.error[worst]], "kx", ms=8)
    bottom.set_xlabel("x")
    bottom.set_ylabel("network − truth")
    return fig


class HistoryData(NamedTuple):
    epochs: np.ndarray
    metric: np.ndarray
    max_error: np.ndarray
    label: str


def history_data(history: Sequence, label: str = "") -> HistoryData:
    """From a list of Evaluation records or of dicts with the same keys."""
    get = (lambda e, k: e[k]) if history and isinstance(history[0], dict) else getattr
    return HistoryData(
        np.array([get(e, "epoch") for e in history], dtype=float),
        np.array([get(e, "metric") for e in history], dtype=float),
        np.array([get(e, "max_error") for e in history], dtype=float),
        label,
    )


def draw_history(runs: Sequence[HistoryData], title: str = "metric history") -> Figure:
    """The metric (-log10 RMS, higher is better) against epoch, one line per run."""
    fig, ax = plt.subplots(figsize=(8, 4), layout="constrained")
    for run in runs:
        ax.plot(run.epochs, run.metric, lw=1.2, label=run.label or None)
    ax.set_xlabel("epoch")
    ax.set_ylabel("metric  (−log10 RMS error)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if any(run.label for run in runs):
        ax.legend(fontsize=8)
    return fig


def save_figure(fig: Figure, path: Path, dpi: int = 110) -> Path:
    """Write `fig` as a PNG (atomically) and release it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    atomic_write(Path(path), buffer.getvalue())
    return Path(path)
