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
from ..config import TrainConfig, function_text  # noqa: E402

DOT_EVERY = 10  # red dots at every 10th fine-grid point: x = 0, 0.01, …, 1.0


class SamplePoints(NamedTuple):
    """A data file's points in its own units, and the network's error at each (held: not trained on)."""

    train_x: np.ndarray
    train_y: np.ndarray
    train_error: np.ndarray
    held_x: np.ndarray
    held_y: np.ndarray
    held_error: np.ndarray


class FitData(NamedTuple):
    x: np.ndarray
    truth: np.ndarray | None  # None for a data file: its function is known only at its points
    prediction: np.ndarray
    max_error: float
    max_error_x: float
    title: str
    points: SamplePoints | None = None

    @property
    def error(self) -> np.ndarray:
        return self.prediction - self.truth


def fit_data(model, config: TrainConfig) -> FitData:
    """The network and its target on the fine evaluation grid, in the function's own units; for a data
    file, the network on that grid and its points, the max error read on the held-out ones."""
    import torch

    from ..targets import Target, grid
    from ..train import FINE_POINTS

    f = Target(config.func, config.domain, config.holdout)
    u = grid(FINE_POINTS)

    def network(u: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return f.own(model(u).double()).squeeze(1).numpy().astype(float)

    prediction = network(u)
    x = f.x(u.double()).squeeze(1).numpy().astype(float)
    points = None
    if f.samples is not None:
        parts = []
        for part_u, part_y in f.points():
            own_y = f.own(part_y.double()).squeeze(1).numpy()
            parts += [f.x(part_u.double()).squeeze(1).numpy(), own_y, network(part_u) - own_y]
        points = SamplePoints(*parts)
        measured_x, abs_error = (points.held_x, np.abs(points.held_error)) if len(points.held_x) else \
            (points.train_x, np.abs(points.train_error))
        truth, where = None, "held-out " if len(points.held_x) else ""
    else:
        truth = f.unit(u).squeeze(1).numpy().astype(float) if f.identity else f.values(torch.from_numpy(x)).numpy()
        measured_x, abs_error, where = x, np.abs(prediction - truth), ""
    worst = int(abs_error.argmax())
    name, digits = (function_text(config.func), ".4g") if config.is_data else (config.func, ".4f")
    title = (
        f"{name}: {config.arch} {config.act}, {config.n_params} parameters — "
        f"max {where}error {abs_error[worst]:{digits}} at x = {measured_x[worst]:{'.4g' if config.is_data else '.3f'}}"
    )
    return FitData(x, truth, prediction, float(abs_error[worst]), float(measured_x[worst]), title, points)


def draw_fit(data: FitData) -> Figure:
    """Truth as a blue curve, the network as red points, max error marked; error panel below.
    A data file: its points in blue (held-out ones as open orange circles), the network as a red curve."""
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(8, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1.4]}, layout="constrained"
    )
    if data.points is not None:
        _draw_points(data, top, bottom)
        return fig
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


def _draw_points(data: FitData, top, bottom) -> None:
    p = data.points
    size = 12 if len(p.train_x) + len(p.held_x) <= 2000 else 3
    top.scatter(p.train_x, p.train_y, s=size, color="tab:blue", alpha=0.6, lw=0,
                label=f"trained on ({len(p.train_x)} points)", zorder=2)
    if len(p.held_x):
        top.scatter(p.held_x, p.held_y, s=size * 2.5, facecolor="none", edgecolor="tab:orange", lw=1.2,
                    label=f"held out ({len(p.held_x)} points)", zorder=3)
    top.plot(data.x, data.prediction, color="tab:red", lw=1.5, label="network", zorder=4)
    held = len(p.held_x) > 0
    xs, ys, errors = (p.held_x, p.held_y, p.held_error) if held else (p.train_x, p.train_y, p.train_error)
    worst = int(np.abs(errors).argmax())
    top.vlines(xs[worst], ys[worst], ys[worst] + errors[worst], color="black", lw=2, zorder=5)
    top.annotate(f"max {'held-out ' if held else ''}error {data.max_error:.4g}", xy=(xs[worst], ys[worst]),
                 xytext=(0.5, 0.08), textcoords="axes fraction", ha="center",
                 arrowprops={"arrowstyle": "->", "color": "black"})
    top.set_ylabel("y")
    top.legend(loc="best", fontsize=8)
    top.set_title(data.title, fontsize=10)
    bottom.axhline(0, color="grey", lw=0.8)
    bottom.scatter(p.train_x, p.train_error, s=6, color="tab:blue", alpha=0.6, lw=0)
    if held:
        bottom.scatter(p.held_x, p.held_error, s=14, facecolor="none", edgecolor="tab:orange", lw=1)
    bottom.plot([xs[worst]], [errors[worst]], "kx", ms=8)
    bottom.set_xlabel("x")
    bottom.set_ylabel("network − data")


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
    floor: tuple[np.ndarray, np.ndarray, str] | None = None  # (fewest parameters, max error, label): floor.py


def floor_curve(func: str, domain, act: str, errors: np.ndarray) -> tuple[np.ndarray, np.ndarray, str] | None:
    """The provable fewest parameters of one hidden layer against the max error, over the range of `errors`;
    None where funcapprox does not know the floor (floor.py)."""
    from ..floor import floor

    errors = errors[np.isfinite(errors) & (errors > 0)]
    if not len(errors) or floor(func, domain, float(errors.min()), act) is None:
        return None
    levels = np.geomspace(errors.min() / 2, errors.max() * 2, 40)
    needed = np.array([floor(func, domain, float(e), act).needed_params for e in levels], dtype=float)
    return needed, levels, f"provable floor: one layer of {act} units"


def pareto_data(trials: Sequence, marks: dict | None = None, floor=None) -> ParetoData:
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
        floor,
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
    if data.floor is not None:  # no network left of it reaches that max error
        needed, levels, label = data.floor
        ax.step(needed, levels, where="pre", color="black", lw=1.2, ls="--", label=label, zorder=3)
    ax.set_xscale("log")
    # Plain counts at 1, 2 and 5 times powers of ten: readable however narrow the range.
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    errors = data.max_error[np.isfinite(data.max_error) & (data.max_error > 0)]
    if len(errors) and errors.max() / errors.min() > 20:  # errors spanning decades: a log axis keeps them apart
        ax.set_yscale("log")
    ax.set_xlabel("parameters (log scale)")
    ax.set_ylabel("max error")
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
