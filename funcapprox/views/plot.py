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
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

from ..artifacts import atomic_write  # noqa: E402
from ..config import TrainConfig  # noqa: E402

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
    """The network and its target on the fine evaluation grid, in the function's own units."""
    import torch

    from ..targets import Target, grid
    from ..train import FINE_POINTS

    f = Target(config.func, config.domain)
    u = grid(FINE_POINTS)
    with torch.no_grad():
        prediction = f.own(model(u).double()).squeeze(1).numpy().astype(float)
    x = f.x(u.double()).squeeze(1).numpy().astype(float)
    truth = f.unit(u).squeeze(1).numpy().astype(float) if f.identity else f.values(torch.from_numpy(x)).numpy()
    abs_error = np.abs(prediction - truth)
    worst = int(abs_error.argmax())
    title = (
        f"{config.func}: {config.arch} {config.act}, {config.n_params} parameters — "
        f"max error {abs_error[worst]:.4f} at x = {x[worst]:.3f}"
    )
    return FitData(x, truth, prediction, float(abs_error[worst]), float(x[worst]), title)


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


class ParetoData(NamedTuple):
    n_params: np.ndarray  # every succeeded trial with a max error
    max_error: np.ndarray
    front_params: np.ndarray  # the Pareto front, smallest first
    front_error: np.ndarray
    front_labels: list[str]  # the front's architectures
    marks: list[tuple[str, int, float]]  # (what, parameters, max error) of trials to point out


def pareto_data(trials: Sequence, marks: dict | None = None) -> ParetoData:
    """Max error against parameter count from TrialRecords; `marks` maps a label to a trial to point out."""
    from .pareto import measured, pareto_front

    front = pareto_front(list(trials))
    placed = measured(list(trials))
    return ParetoData(
        np.array([t.n_params for t in placed], dtype=float),
        np.array([t.max_error for t in placed], dtype=float),
        np.array([t.n_params for t in front], dtype=float),
        np.array([t.max_error for t in front], dtype=float),
        [t.arch for t in front],
        [(label, t.n_params, t.max_error) for label, t in (marks or {}).items()
         if t.n_params is not None and t.max_error is not None],
    )


def draw_pareto(data: ParetoData, title: str = "max error against network size") -> Figure:
    """All trials as grey points on a log parameter axis; the front as a labelled red staircase."""
    fig, ax = plt.subplots(figsize=(8, 4.8), layout="constrained")
    ax.scatter(data.n_params, data.max_error, s=16, color="0.6", alpha=0.6, lw=0, label="succeeded trials", zorder=2)
    if len(data.front_params):
        ax.step(data.front_params, data.front_error, where="post", color="tab:red", lw=1.2, alpha=0.7, zorder=3)
        ax.scatter(data.front_params, data.front_error, s=36, color="tab:red", zorder=4, label="Pareto front")
        for i, (x, y, label) in enumerate(zip(data.front_params, data.front_error, data.front_labels)):
            below = i % 2  # alternate above and below, so neighbours of similar size and error stay legible
            ax.annotate(label, (x, y), textcoords="offset points", xytext=(5, -12 if below else 6), fontsize=8,
                        color="darkred")
    styles = [{"marker": "*", "s": 190, "facecolor": "gold", "edgecolor": "black"},
              {"marker": "o", "s": 150, "facecolor": "none", "edgecolor": "tab:blue", "linewidths": 2}]
    for (label, x, y), style in zip(data.marks, styles * len(data.marks)):
        ax.scatter([x], [y], label=label, zorder=5, **style)
    ax.set_xscale("log")
    # Plain counts at 1, 2 and 5 times powers of ten: readable however narrow the range.
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    errors = data.max_error[np.isfinite(data.max_error) & (data.max_error > 0)]
    if len(errors) and errors.max() / errors.min() > 20:  # errors spanning decades: a log axis keeps them apart
        ax.set_yscale("log")
    ax.set_xlabel("parameters (log scale)")
    ax.set_ylabel("max error on [0, 1]")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="best")
    return fig


class MetricByValue(NamedTuple):
    name: str  # the parameter
    labels: list[str]  # its values, in display order
    metrics: list[np.ndarray]  # the final metrics of the succeeded trials with each value
    failed: list[int]  # how many trials with each value did not succeed


def draw_metric_by_value(panels: Sequence[MetricByValue], title: str = "") -> Figure:
    """One panel per parameter: a box per value with every trial's metric as a dot over it."""
    cols = min(len(panels), 2) or 1
    rows = max(1, -(-len(panels) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.3 * rows), layout="constrained", squeeze=False)
    jitter = np.random.default_rng(0)  # fixed: the same report twice draws the same dots
    for ax, panel in zip(axes.flat, panels):
        positions = np.arange(1, len(panel.labels) + 1)
        filled = [(p, m) for p, m in zip(positions, panel.metrics) if len(m)]
        if filled:
            ax.boxplot([m for _, m in filled], positions=[p for p, _ in filled], widths=0.55, showfliers=False,
                       medianprops={"color": "tab:red", "lw": 2}, boxprops={"color": "0.35"},
                       whiskerprops={"color": "0.35"}, capprops={"color": "0.35"})
        for p, m in filled:
            ax.scatter(p + jitter.uniform(-0.17, 0.17, len(m)), m, s=12, color="tab:blue", alpha=0.55, lw=0,
                       zorder=3)
        ticks = [f"{label}\n({n} failed)" if n else label for label, n in zip(panel.labels, panel.failed)]
        ax.set_xticks(positions, ticks, fontsize=8, rotation=0 if len(panel.labels) <= 6 else 30)
        ax.set_xlim(0.4, len(panel.labels) + 0.6)
        ax.set_title(panel.name, fontsize=10)
        ax.set_ylabel("metric", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def png_bytes(fig: Figure, dpi: int = 100) -> bytes:
    """`fig` as PNG bytes (without matplotlib's software tag), and release it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def save_figure(fig: Figure, path: Path, dpi: int = 110) -> Path:
    """Write `fig` as a PNG (atomically) and release it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    atomic_write(Path(path), buffer.getvalue())
    return Path(path)
