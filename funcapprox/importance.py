"""What matters: for each setting an experiment searched, the share of the metric's variance it
explains on its own, with its best and worst value.

The shares are functional-ANOVA main effects: the metric as a function of the settings,
f = f0 + Σ f_j(x_j) + (interactions), and a setting's share is Var f_j / Var f, each variance
over the values the search tried, every value weighted alike. Two ways to get them:

* **Exact main effects on a full grid** (EXACT): when the measured trials cover every
  combination of the values tried, each equally often (a finished GridSearch), f_j(v) is simply
  the mean metric of the trials with x_j = v less the overall mean, the main effects are
  orthogonal, and their shares plus the share left to interactions sum to 1. With one trial per
  grid point, interactions include whatever noise the metric has.
* **fANOVA** (FANOVA; Hutter, Hoos & Leyton-Brown, "An Efficient Approach for Assessing
  Hyperparameter Importance", ICML 2014) for everything else: a sampled tuner (TPE, Random,
  Anneal, …), an unfinished grid, or one with holes where trials failed. A random forest is fitted
  to the measured trials and each tree's function is decomposed exactly over the product of the
  values tried (a tree is constant on boxes, so every marginal is a sum over its leaves); the
  shares are the trees' shares averaged, as the paper does. No maintained library does this
  without a dependency funcapprox does not have (optuna's FanovaImportanceEvaluator needs optuna;
  the `fanova` package, last released 2020, needs the pyrfr C++ extension), so it is done here on
  scikit-learn's RandomForestRegressor, which NNI 3.0 requires and so is always installed; the
  forest follows optuna's (64 trees, depth up to 64, fixed seed). On a sampled design these are
  estimates: a tuner that samples good regions more often confounds settings with each other.

Trials that finished without a metric (failed, diverged, cancelled) are left out and counted in
`excluded`; each value's count of them is in its Level, and a value all of whose trials failed
has no mean (it shows in `Effect.all_failed`). A numeric setting with more than MAX_LEVELS
distinct values (a continuous learning rate) is cut into BINS bins of equal counts. The hidden
sizes count as one setting per layer, hidden_size_1 … with 0 for a layer a network does not have,
as the study names them; in a stage-2 grid the networks {n1, 0, n3 > 0} do not exist, so the grid
is not full and fANOVA's product of values includes cells the forest can only extrapolate to.
Best and worst values are those with the highest and lowest mean measured metric.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from typing import Any, NamedTuple, Sequence

import numpy as np

from .config import ACTIVATIONS, HIDDEN_KEYS, LOSSES, OPTIMIZERS, parameter_name
from .errors import ConfigError, ExperimentError
from .results import Experiment, TrialRecord, TrialState

EXACT = "exact main effects on a full grid"
FANOVA = "fANOVA (Hutter et al. 2014) on a random forest of the trials"
METHODS = ("auto", "grid", "fanova")
MAX_LEVELS = 12  # a numeric setting with more distinct values is binned
BINS = 8
TREES = 64
MAX_DEPTH = 64
SEED = 0
NATURAL_ORDER = {"act": ACTIVATIONS, "optimizer": OPTIMIZERS, "loss": LOSSES}


class Level(NamedTuple):
    """One value of a setting (or, binned, a range of them) and how its trials did."""

    value: Any  # the value; a bin's (lowest, highest)
    label: str
    mean: float | None  # mean metric of its measured trials; None when every one failed
    count: int  # measured trials
    failed: int  # trials with it that finished without a metric


@dataclass(frozen=True)
class Effect:
    setting: str  # a TrainConfig field (act, lr, …) or hidden_size_N
    name: str  # as the search space names it (act_func, learning_rate, hidden_size_1, …)
    share: float  # of the metric's variance, explained by this setting alone (0 to 1)
    best: Any  # the value with the highest mean metric
    best_mean: float | None
    worst: Any  # the value with the lowest mean metric
    worst_mean: float | None
    n: int  # measured trials
    levels: tuple[Level, ...]

    @property
    def all_failed(self) -> tuple[Any, ...]:
        """Values none of whose trials gave a metric."""
        return tuple(level.value for level in self.levels if level.count == 0)

    def as_dict(self) -> dict[str, Any]:
        return {"setting": self.setting, "name": self.name, "share": self.share, "best": self.best,
                "best_mean": self.best_mean, "worst": self.worst, "worst_mean": self.worst_mean, "n": self.n,
                "all_failed": list(self.all_failed), "levels": [level._asdict() for level in self.levels]}


@dataclass(frozen=True)
class Importance:
    effects: tuple[Effect, ...]  # the largest share first
    interactions_share: float  # what the main effects leave: interactions (and noise)
    method: str  # EXACT or FANOVA
    n: int  # measured trials used
    excluded: int  # finished trials without a metric, left out
    variance: float  # of the measured metric
    note: str = ""  # a caveat to show beside the numbers, or ""

    @property
    def exact(self) -> bool:
        return self.method == EXACT

    def effect(self, setting: str) -> Effect:
        for effect in self.effects:
            if setting in (effect.setting, effect.name):
                return effect
        raise KeyError(setting)

    def as_dict(self) -> dict[str, Any]:
        return {"method": self.method, "exact": self.exact, "n": self.n, "excluded": self.excluded,
                "variance": self.variance, "interactions_share": self.interactions_share, "note": self.note,
                "effects": [e.as_dict() for e in self.effects]}


def importance(experiment: Experiment, method: str = "auto") -> Importance:
    """The share of the metric's variance each searched setting explains, largest first.

    `method`: "auto" (exact on a full grid, fANOVA otherwise), "grid" (exact, or an error when the
    measured trials are no full grid), or "fanova" (always the forest).
    """
    if method not in METHODS:
        raise ConfigError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    settings = _settings(experiment)
    measured = [t for t in experiment.trials if _measured(t)]
    failed = [t for t in experiment.trials if t.status.finished and not _measured(t)]
    if not measured:
        raise ExperimentError(f"experiment {experiment.id} has no trial with a metric to weigh settings by")
    y = np.array([t.metric for t in measured], dtype=float)
    columns = [_column(setting, measured, failed, y) for setting in settings]
    full = _full_grid([c.codes for c in columns])
    if method == "grid" and not full:
        raise ExperimentError(f"the measured trials of experiment {experiment.id} are not a full grid "
                              "(every combination of the values tried, equally often); use fANOVA")
    use = EXACT if full and method != "fanova" else FANOVA
    variance = float(np.var(y))
    notes = [] if settings else ["no setting was searched"]
    if failed:
        notes.append(f"{len(failed)} trial{'s' if len(failed) != 1 else ''} without a metric left out")
    if variance == 0 or len(measured) < 2:
        shares, rest = [0.0] * len(columns), 0.0
        notes.append("the metric does not vary: nothing to explain")
    elif use == EXACT:
        shares = [_main_effect(c.codes, len(c.levels), y) / variance for c in columns]
        rest = max(0.0, 1.0 - sum(shares))
    else:
        shares, rest = _fanova(columns, y)
        why = "" if full else ": not a full grid"
        notes.append(f"estimates from a random forest of {len(measured)} trials{why}")
    effects = [_effect(c, share, len(measured)) for c, share in zip(columns, shares)]
    effects.sort(key=lambda e: -e.share)
    return Importance(tuple(effects), rest, use, len(measured), len(failed), variance, "; ".join(notes))


def summary(result: Importance) -> str:
    """One line: each setting's share, then the interactions', and how they were found."""
    parts = [f"{e.name} {e.share:.0%}" for e in result.effects]
    parts.append(f"interactions {result.interactions_share:.0%}")
    return f"{', '.join(parts)} ({result.method}, {result.n} trials)"


# --- the settings and their values --------------------------------------------------------------


def _measured(t: TrialRecord) -> bool:
    return t.status is TrialState.SUCCEEDED and t.metric is not None and math.isfinite(t.metric)


def _settings(experiment: Experiment) -> list[str]:
    """The searched settings, the hidden sizes as one setting per layer."""
    names = []
    for name in experiment.searched():
        if name == "hidden":
            depth = max((len(h) for h in map(_hidden, experiment.trials) if h), default=1)
            names += list(HIDDEN_KEYS[:depth])
        else:
            names.append(name)
    return names


def _hidden(t: TrialRecord) -> list[int] | None:
    hidden = t.params.get("hidden")
    return list(hidden) if isinstance(hidden, (list, tuple)) else None


def _value(t: TrialRecord, setting: str) -> Any:
    if setting in HIDDEN_KEYS:
        hidden = _hidden(t)
        i = HIDDEN_KEYS.index(setting)
        return None if hidden is None else (hidden[i] if i < len(hidden) else 0)  # 0: no such layer
    return t.params.get(setting)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _label(value: Any) -> str:
    if isinstance(value, tuple) and len(value) == 2:
        return f"{_label(value[0])}–{_label(value[1])}"
    if _is_number(value):
        return f"{value:g}"
    return value if isinstance(value, str) else json.dumps(value)


class _Column(NamedTuple):
    setting: str
    levels: list[Level]
    codes: np.ndarray  # each measured trial's level
    numeric: bool
    points: np.ndarray  # each level's value on the forest's axis (numeric: the value, a bin's median)
    raw: np.ndarray  # each measured trial's value on that axis (for fitting; categories: their code)


def _column(setting: str, measured: Sequence[TrialRecord], failed: Sequence[TrialRecord],
            y: np.ndarray) -> _Column:
    values = [_value(t, setting) for t in measured]
    lost = [_value(t, setting) for t in failed]
    numeric = all(_is_number(v) for v in values + lost)
    key = lambda v: json.dumps(v, sort_keys=True)  # noqa: E731  (lists and dicts too)
    distinct = {key(v): v for v in values + lost}
    if numeric and len(distinct) > MAX_LEVELS:
        return _binned(setting, values, lost, y)
    if numeric:
        order = sorted(distinct.values())
    else:
        natural = [v for v in NATURAL_ORDER.get(setting, ()) if key(v) in distinct]
        order = natural + sorted((v for v in distinct.values() if v not in natural), key=_label)
    index = {key(v): i for i, v in enumerate(order)}
    codes = np.array([index[key(v)] for v in values])
    lost_codes = [index[key(v)] for v in lost]
    levels = _levels(order, [_label(v) for v in order], codes, lost_codes, y)
    points = np.array(order, dtype=float) if numeric else np.arange(len(order), dtype=float)
    return _Column(setting, levels, codes, numeric, points, points[codes] if len(codes) else np.array([]))


def _binned(setting: str, values: list[float], lost: list[float], y: np.ndarray) -> _Column:
    """BINS bins of about equal counts of measured values; a failed value goes to the nearest bin."""
    ordered = sorted(set(values))
    bins = [ordered[i * len(ordered) // BINS:(i + 1) * len(ordered) // BINS] for i in range(BINS)]
    bins = [b for b in bins if b]
    edges = [b[-1] for b in bins[:-1]]

    def which(v: float) -> int:
        return int(np.searchsorted(edges, v, side="left"))

    codes = np.array([which(v) for v in values])
    spans = [(b[0], b[-1]) for b in bins]
    levels = _levels(spans, [_label(s) for s in spans], codes, [which(v) for v in lost], y)
    points = np.array([float(np.median([v for v, c in zip(values, codes) if c == i])) for i in range(len(bins))])
    return _Column(setting, levels, codes, True, points, np.array(values, dtype=float))


def _levels(values: list, labels: list[str], codes: np.ndarray, lost: list[int], y: np.ndarray) -> list[Level]:
    counts = Counter(lost)
    levels = []
    for i, (value, label) in enumerate(zip(values, labels)):
        mine = y[codes == i]
        levels.append(Level(value, label, float(mine.mean()) if len(mine) else None, len(mine), counts.get(i, 0)))
    return levels


def _effect(column: _Column, share: float, n: int) -> Effect:
    rated = [level for level in column.levels if level.mean is not None]
    best = max(rated, key=lambda level: level.mean)
    worst = min(rated, key=lambda level: level.mean)
    return Effect(column.setting, parameter_name(column.setting), float(share), best.value, best.mean,
                  worst.value, worst.mean, n, tuple(column.levels))


# --- exact main effects -------------------------------------------------------------------------


def _full_grid(codes: list[np.ndarray]) -> bool:
    """Every combination of the values measured occurs, each equally often."""
    if not codes:
        return True
    cells = Counter(zip(*(c.tolist() for c in codes)))
    size = math.prod(len(set(c.tolist())) for c in codes)
    return len(cells) == size and len(set(cells.values())) == 1


def _main_effect(codes: np.ndarray, levels: int, y: np.ndarray) -> float:
    """Variance of the per-value means, weighted by their counts: Var f_j on a full grid."""
    mean = y.mean()
    return float(sum((codes == i).sum() * (y[codes == i].mean() - mean) ** 2
                     for i in range(levels) if (codes == i).any()) / len(y))


# --- fANOVA ---------------------------------------------------------------------------------------


def _fanova(columns: list[_Column], y: np.ndarray) -> tuple[list[float], float]:
    """Each setting's share of the variance of a random forest fitted to the trials, and the rest.

    The forest sees a numeric setting as one axis and a category as one 0/1 axis per value. Each
    tree is decomposed over the product of the values measured (a setting's `points`, each weighted
    alike): a leaf is a box, a set of values per setting, so the tree's mean, variance and each
    setting's marginal f_j(v) are sums over its leaves.
    """
    from sklearn.ensemble import RandomForestRegressor  # NNI 3.0 requires scikit-learn

    axes: list[tuple[int, int | None]] = []  # (column, category) for each of the forest's inputs
    inputs = []
    for j, column in enumerate(columns):
        rated = [i for i, level in enumerate(column.levels) if level.count]
        if column.numeric:
            axes.append((j, None))
            inputs.append(column.raw)
        else:
            for i in rated:
                axes.append((j, i))
                inputs.append((column.codes == i).astype(float))
    if not inputs:
        return [], 0.0
    forest = RandomForestRegressor(n_estimators=TREES, max_depth=MAX_DEPTH, min_samples_split=2,
                                   min_samples_leaf=1, random_state=SEED)
    forest.fit(np.column_stack(inputs), y)
    shares = np.zeros(len(columns))
    trees = 0
    for estimator in forest.estimators_:
        parts = _tree_shares(estimator.tree_, columns, axes)
        if parts is not None:
            shares += parts
            trees += 1
    if not trees:
        return [0.0] * len(columns), 0.0
    shares /= trees
    return [float(s) for s in shares], float(max(0.0, 1.0 - shares.sum()))


def _tree_shares(tree: Any, columns: list[_Column], axes: list[tuple[int, int | None]]) -> np.ndarray | None:
    """One tree's variance shares per setting, over the product of the values measured (None: it is flat)."""
    rated = [np.array([level.count > 0 for level in c.levels]) for c in columns]
    leaves: list[tuple[float, list[np.ndarray]]] = []
    stack = [(0, [r.copy() for r in rated])]
    while stack:
        node, boxes = stack.pop()
        left, right = tree.children_left[node], tree.children_right[node]
        if left == right:  # a leaf
            leaves.append((float(tree.value[node].ravel()[0]), boxes))
            continue
        j, category = axes[tree.feature[node]]
        threshold = tree.threshold[node]
        if category is None:
            goes_left = columns[j].points <= threshold
        else:  # the 0/1 axis of one value: left is "not this value"
            goes_left = np.arange(len(columns[j].levels)) != category
        for child, side in ((left, goes_left), (right, ~goes_left)):
            inner = [b.copy() for b in boxes]
            inner[j] &= side
            if inner[j].any():
                stack.append((child, inner))
    sizes = [r.sum() for r in rated]
    value = np.array([c for c, _ in leaves])
    volume = np.array([[box[j].sum() / sizes[j] for j in range(len(columns))] for _, box in leaves])
    weight = volume.prod(axis=1)
    mean = float(value @ weight)
    total = float(value**2 @ weight) - mean**2
    if total <= 1e-15 * max(1.0, mean * mean):
        return None
    shares = np.zeros(len(columns))
    for j in range(len(columns)):
        others = np.prod(np.delete(volume, j, axis=1), axis=1) if len(columns) > 1 else np.ones(len(leaves))
        marginal = np.zeros(len(columns[j].levels))
        for (_, box), c, o in zip(leaves, value, others):
            marginal[box[j]] += c * o
        picked = marginal[rated[j]]
        shares[j] = max(0.0, float((picked**2).mean()) - mean**2) / total
    return shares
