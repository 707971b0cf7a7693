"""The report's data, computed from an Experiment: plain records and numbers, no HTML.

What was searched and how to show each parameter, the metric by value, the parallel view's
axes and lines, the fits, the Pareto front, the histories. html.py turns these into the page;
the plain-text labels (a network as {16,16,16}, a number as 0.005) are made here because the
data carries them (tick labels, value groups, legend entries).
"""

from __future__ import annotations

import math
import statistics
from typing import Any, Callable, NamedTuple, Sequence

from ...artifacts import load_model
from ...config import ACTIVATIONS, DEFAULT_DOMAIN, HIDDEN_KEYS, LOSSES, OPTIMIZERS, function_text, parameter_name
from ...errors import FuncApproxError
from ...results import Experiment, TrialRecord, TrialState
from ..pareto import pareto_front, smallest_within

NEAR_BEST = 2.0  # the smallest network shown beside the best is within this factor of its max error
TOP_HISTORY = 5  # trials in the history figure
MAX_VALUES = 12  # a numeric parameter with more distinct values is binned in the per-parameter summaries
BINS = 5
FAN = 0.5  # the part of a category's band its lines fan out over in the parallel view
COLOR_LOW, COLOR_HIGH = 0.0, 0.88  # the part of viridis used: its last, pale yellow is hard to see on white
NATURAL_ORDER = {"act": ACTIVATIONS, "optimizer": OPTIMIZERS, "loss": LOSSES, "output_act": (False, True)}


# --- what was searched ------------------------------------------------------------------------


class Param(NamedTuple):
    """A searched parameter as the report shows it."""

    name: str  # as the search space names it: act_func, learning_rate, hidden_size_1, …
    kind: str  # "category" or "number"
    get: Callable[[TrialRecord], Any]  # its value in a trial (None when the trial has none)
    order: tuple = ()  # a category's values in display order


def searched_settings(experiment: Experiment) -> list[str]:
    return experiment.searched()


def _setting(name: str) -> Callable[[TrialRecord], Any]:
    return lambda t: t.params.get(name)


def _hidden(t: TrialRecord) -> list[int] | None:
    hidden = t.params.get("hidden")
    return list(hidden) if isinstance(hidden, (list, tuple)) else None


def _layer(i: int) -> Callable[[TrialRecord], Any]:
    def get(t: TrialRecord) -> int | None:
        hidden = _hidden(t)
        return None if hidden is None else (hidden[i] if i < len(hidden) else 0)  # 0: no such layer

    return get


def _depth(t: TrialRecord) -> int | None:
    hidden = _hidden(t)
    return None if hidden is None else len(hidden)


def _param(name: str, trials: Sequence[TrialRecord]) -> Param:
    label = parameter_name(name)
    values = [v for v in (t.params.get(name) for t in trials) if v is not None]
    if values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return Param(label, "number", _setting(name))
    natural = NATURAL_ORDER.get(name, ())
    seen = {as_text(v): v for v in values}
    ordered = [v for v in natural if as_text(v) in seen]
    ordered += sorted((v for k, v in seen.items() if v not in natural), key=as_text)
    return Param(label, "category", _setting(name), tuple(ordered))


def parallel_params(experiment: Experiment) -> list[Param]:
    """The axes of the parallel-coordinates view: one per searched parameter, a layer size per layer."""
    params = []
    for name in searched_settings(experiment):
        if name == "hidden":
            depth = max((len(h) for h in map(_hidden, experiment.trials) if h), default=1)
            params += [Param(HIDDEN_KEYS[i], "number", _layer(i)) for i in range(depth)]
        else:
            params.append(_param(name, experiment.trials))
    return params


def summary_params(experiment: Experiment) -> list[Param]:
    """The parameters summarised one by one; networks by their first layer's size and their depth."""
    params = []
    for name in searched_settings(experiment):
        if name == "hidden":
            params += [Param("hidden_size_1 (layer 1)", "number", _layer(0)),
                       Param("depth (hidden layers)", "number", _depth)]
        else:
            params.append(_param(name, experiment.trials))
    return params


# --- numbers the sections show ----------------------------------------------------------------


class ValueSummary(NamedTuple):
    label: str
    count: int  # succeeded trials with this value
    failed: int  # trials with this value that finished without a metric
    median: float | None
    best: float | None
    worst: float | None
    metrics: tuple[float, ...]


class ParamSummary(NamedTuple):
    name: str
    rows: list[ValueSummary]

    @property
    def spread(self) -> float:
        """How far apart the values' median metrics lie: a rough measure of how much the parameter matters."""
        medians = [r.median for r in self.rows if r.median is not None]
        return max(medians) - min(medians) if medians else 0.0

    @property
    def extremes(self) -> tuple[ValueSummary, ValueSummary] | None:
        """The values with the highest and the lowest median metric, when more than one value has one."""
        medians = [r for r in self.rows if r.median is not None]
        if len(medians) < 2:
            return None
        return max(medians, key=lambda r: r.median), min(medians, key=lambda r: r.median)


def finished_without_metric(t: TrialRecord) -> bool:
    return t.status.finished and (t.status is not TrialState.SUCCEEDED or t.metric is None)


def _groups(param: Param, trials: Sequence[TrialRecord]) -> list[tuple[str, list[TrialRecord]]]:
    """Trials by the parameter's value; a numeric parameter with many distinct values in BINS ranges."""
    values = {t.trial_id: param.get(t) for t in trials}
    present = [v for v in values.values() if v is not None]
    if param.kind == "category":
        order = [as_text(v) for v in param.order]
    else:
        distinct = sorted(set(present))
        if len(distinct) > MAX_VALUES:
            chunks = [distinct[i * len(distinct) // BINS:(i + 1) * len(distinct) // BINS] for i in range(BINS)]
            groups = [(f"{as_number(c[0])}–{as_number(c[-1])}", [t for t in trials if values[t.trial_id] is not None
                                                              and c[0] <= values[t.trial_id] <= c[-1]])
                      for c in chunks if c]
            return groups
        order = [as_text(v) for v in distinct]
    groups = [(label, [t for t in trials if values[t.trial_id] is not None and as_text(values[t.trial_id]) == label])
              for label in order]
    missing = [t for t in trials if values[t.trial_id] is None]
    return groups + ([("?", missing)] if missing else [])


def param_summaries(experiment: Experiment) -> list[ParamSummary]:
    """Metric by value for each searched parameter, the parameters that matter most first."""
    summaries = []
    for param in summary_params(experiment):
        rows = []
        for label, trials in _groups(param, experiment.trials):
            metrics = sorted(t.metric for t in trials if t.status is TrialState.SUCCEEDED and t.metric is not None)
            failed = sum(1 for t in trials if finished_without_metric(t))
            if not metrics and not failed:
                continue
            rows.append(ValueSummary(label, len(metrics), failed, statistics.median(metrics) if metrics else None,
                                     metrics[-1] if metrics else None, metrics[0] if metrics else None,
                                     tuple(metrics)))
        summaries.append(ParamSummary(param.name, rows))
    return sorted(summaries, key=lambda s: -s.spread)


def _axis(param: Param, values: list[Any], metrics: list[float],
          searched: bool = True) -> tuple[dict[str, Any], list[float], list[str]]:
    """An axis for the parallel view: its ticks, and each value's position (0 bottom, 1 top) and label.

    A searched parameter takes a few values, each worth a tick (and a log scale if they span one); a
    measured one (the metric) gets a linear scale with evenly spaced ticks.

    On a category axis the lines of one value fan out over part of its band, better metrics higher,
    so that a crowded value still shows how many trials it had and how they did.
    """
    if param.kind == "category":
        labels = [as_text(v) for v in param.order]
        labels += ["?"] if any(v is None for v in values) else []
        at = {label: (i + 0.5) / len(labels) for i, label in enumerate(labels)}
        texts = [as_text(v) if v is not None else "?" for v in values]
        positions = [at[s] for s in texts]
        for label in labels:
            members = sorted((i for i, s in enumerate(texts) if s == label), key=lambda i: metrics[i])
            for rank, i in enumerate(members):
                spread = rank / (len(members) - 1) - 0.5 if len(members) > 1 else 0.0
                positions[i] += spread * FAN / len(labels)
        ticks = [{"at": at[label], "label": label, "pick": True} for label in labels]
        return {"name": param.name, "title": param.name, "ticks": ticks}, positions, texts
    numbers = [float(v) for v in values if v is not None]
    low, high = (min(numbers), max(numbers)) if numbers else (0.0, 1.0)
    # Sizes 4 to 32, or lr 0.005 to 0.05: equal ratios at equal distances.
    log = searched and low > 0 and high / low >= 8

    f = math.log10 if log else float

    def scale(v: float) -> float:
        return 0.5 if high == low else (f(v) - f(low)) / (f(high) - f(low))

    def unscale(t: float) -> float:
        v = f(low) + t * (f(high) - f(low))
        return 10 ** v if log else v

    distinct = sorted(set(numbers))
    if searched and len(distinct) <= 8:
        ticks = [{"at": scale(v), "label": as_number(v), "pick": True} for v in distinct]
    else:
        ticks = [{"at": k / 4, "label": as_number(unscale(k / 4)), "pick": False} for k in range(5)]
    title = param.name + (" (log)" if log else "")
    positions = [scale(float(v)) if v is not None else 0.0 for v in values]
    return {"name": param.name, "title": title, "ticks": ticks}, positions, [as_text(v) for v in values]


def parallel_data(experiment: Experiment) -> dict[str, Any]:
    """Everything the parallel-coordinates script draws: axes with ticks, and one line per succeeded trial."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    done = sorted(experiment.succeeded(), key=lambda t: (t.metric, -t.sequence))  # the best drawn last, on top
    best = experiment.best()
    metrics = [t.metric for t in done]
    axes, positions, texts = [], [], []
    for param in parallel_params(experiment):
        axis, pos, text = _axis(param, [param.get(t) for t in done], metrics)
        axes.append(axis)
        positions.append(pos)
        texts.append(text)
    axis, pos, text = _axis(Param("metric", "number", lambda t: t.metric), metrics, metrics, searched=False)
    axis["title"] = "metric ↑"
    axes.append(axis)
    positions.append(pos)
    texts.append([f"{t.metric:.4f}" for t in done])
    low, high = min(t.metric for t in done), max(t.metric for t in done)
    colors = colormaps["viridis"]

    def color(m: float) -> str:
        return to_hex(colors(COLOR_LOW + (COLOR_HIGH - COLOR_LOW) * ((m - low) / (high - low) if high > low else 1)))

    lines = []
    for i, t in enumerate(done):
        tip = f"trial {t.trial_id}: " + ", ".join(f"{a['name']}={texts[k][i]}" for k, a in enumerate(axes))
        lines.append({"id": t.trial_id, "pos": [round(p[i], 5) for p in positions], "text": [s[i] for s in texts],
                      "color": color(t.metric), "metric": t.metric, "best": t.trial_id == best.trial_id, "tip": tip})
    gradient = [color(low + (high - low) * k / 10) for k in range(11)]
    return {"axes": axes, "lines": lines, "low": low, "high": high, "gradient": gradient}


# --- what each section shows ------------------------------------------------------------------


class Overview(NamedTuple):
    """The experiment as the summary names it."""

    experiment_id: str
    stage: str  # as recorded: nonarch, arch
    stage_text: str  # described: "arch: network sizes with stage 1's settings fixed"
    func: str
    folder: Any  # Path of the experiment
    tuner: str  # the tuner and its limits: "GridSearch, concurrency 2, max trials 4"
    status: str
    start: float | None
    end: float | None
    duration: float | None  # seconds
    trials: int
    counts: tuple[tuple[str, int], ...]  # (status, trials), by status
    searched: list[str]  # settings the tuner chose
    fixed: dict[str, Any]
    source: str | None  # where the handed-over settings came from; None when nothing was handed over
    handoff: dict[str, Any]
    space_source: str | None


class Fit(NamedTuple):
    """A trial's fit figure data, or why there is none."""

    trial: TrialRecord
    data: Any  # plot.FitData, None when the network could not be loaded
    problem: str | None


class NearBest(NamedTuple):
    """The best trial, and the smallest network on the front within NEAR_BEST times its max error."""

    best: TrialRecord
    best_fit: Fit
    limit: float | None  # NEAR_BEST × the best's max error; None without a max error or a front
    small: TrialRecord | None
    small_fit: Fit | None  # only when the smallest is another trial


class FrontRow(NamedTuple):
    trial: TrialRecord
    notes: list[str]  # "best metric", "smallest within 2×"


class Pareto(NamedTuple):
    plot: Any  # plot.ParetoData
    front: list[FrontRow]  # smallest first
    one_size: bool  # every succeeded trial has the same number of parameters


class Params(NamedTuple):
    summaries: list[ParamSummary]  # the parameters that matter most first
    panels: list[Any]  # plot.MetricByValue, one per summary


class History(NamedTuple):
    shown: int  # the best trials asked for (at most TOP_HISTORY)
    runs: list[Any]  # plot.HistoryData of those that recorded evaluations


class ReportData(NamedTuple):
    """Everything the page shows, section by section."""

    overview: Overview
    near_best: NearBest
    pareto: Pareto
    parallel: dict[str, Any]
    params: Params
    importance: Any  # importance.Importance, or the reason there is none (str)
    history: History
    failures: list[TrialRecord]  # finished without a metric
    ranked: list[TrialRecord]  # every trial, best first


def report_data(experiment: Experiment) -> ReportData:
    """The data of every section of the report (the experiment needs a succeeded trial)."""
    best = experiment.best()
    front = pareto_front(experiment.trials)
    searched = searched_settings(experiment)
    near = near_best(best, front)
    return ReportData(
        overview=overview(experiment, searched),
        near_best=near,
        pareto=pareto(experiment, near, front),
        parallel=parallel_data(experiment),
        params=params(experiment),
        importance=what_matters(experiment),
        history=history(experiment, searched),
        failures=[t for t in experiment.trials if finished_without_metric(t)],
        ranked=list(experiment.ranked()),
    )


def _function(fixed: dict[str, Any]) -> str:
    """The function as the report names it; a data file with its held-out share and content address."""
    text = function_text(fixed.get("func", "?"), fixed.get("domain", DEFAULT_DOMAIN))
    if fixed.get("data"):
        text += f" ({fixed.get('holdout', 0):.0%} of its points held out; sha256 {fixed['data'][:12]}…)"
    return text


def overview(experiment: Experiment, searched: list[str]) -> Overview:
    meta = experiment.meta
    limits = [meta.tuner]
    if meta.concurrency:
        limits.append(f"concurrency {meta.concurrency}")
    if meta.max_trials:
        limits.append(f"max trials {meta.max_trials}")
    if meta.max_duration:
        limits.append(f"max duration {meta.max_duration}")
    if meta.grid_size:
        limits.append(f"grid of {meta.grid_size} points")
    duration = (experiment.end - experiment.start) if experiment.start and experiment.end else None
    stage = {"nonarch": "nonarch: hyper-parameters on a fixed network",
             "arch": "arch: network sizes with stage 1's settings fixed"}.get(experiment.stage, experiment.stage)
    handoff = meta.handoff
    source = None
    if meta.from_experiment or handoff:
        source = f"the best trial of experiment {meta.from_experiment}" if meta.from_experiment else "--set"
    return Overview(
        experiment_id=experiment.id, stage=experiment.stage, stage_text=stage, func=_function(meta.fixed),
        folder=experiment.folder, tuner=", ".join(str(x) for x in limits), status=meta.status,
        start=experiment.start, end=experiment.end, duration=duration, trials=len(experiment.trials),
        counts=tuple(sorted(experiment.counts().items())), searched=searched, fixed=meta.fixed,
        source=source, handoff=handoff,
        space_source=meta.space_source or None,
    )


def fit(trial: TrialRecord) -> Fit:
    """The trial's network against the truth, from its saved weights."""
    from ..plot import fit_data

    try:
        if trial.output_dir is None:
            raise FuncApproxError(f"trial {trial.trial_id} has no output folder")
        model = load_model(trial.output_dir, trial.config)
    except FuncApproxError as exc:
        return Fit(trial, None, str(exc))
    return Fit(trial, fit_data(model, trial.config), None)


def near_best(best: TrialRecord, front: list[TrialRecord]) -> NearBest:
    best_fit = fit(best)
    if best.max_error is None or not front:
        return NearBest(best, best_fit, None, None, None)
    limit = NEAR_BEST * best.max_error
    small = smallest_within(front, limit).trial
    return NearBest(best, best_fit, limit, small, None if small.trial_id == best.trial_id else fit(small))


def pareto(experiment: Experiment, near: NearBest, front: list[TrialRecord]) -> Pareto:
    import numpy as np

    from ..plot import floor_curve, pareto_data

    best, small = near.best, near.small
    marks = {f"best metric ({best.trial_id})": best}
    if small is not None and small.trial_id != best.trial_id:
        marks[f"smallest within {NEAR_BEST:g}× ({small.trial_id})"] = small
    rows = [FrontRow(t, [note for note, who in (("best metric", best), (f"smallest within {NEAR_BEST:g}×", small))
                         if who is not None and who.trial_id == t.trial_id]) for t in front]
    sizes = {t.n_params for t in experiment.succeeded()}
    errors = np.array([t.max_error for t in experiment.succeeded() if t.max_error is not None], dtype=float)
    floor = floor_curve(best.params.get("func"), best.params.get("domain", DEFAULT_DOMAIN),
                        best.params.get("act", "ReLU"), errors)
    return Pareto(pareto_data(experiment.trials, marks, floor), rows, len(sizes) == 1)


def params(experiment: Experiment) -> Params:
    import numpy as np

    from ..plot import MetricByValue

    summaries = param_summaries(experiment)
    panels = [MetricByValue(s.name, [r.label for r in s.rows], [np.array(r.metrics) for r in s.rows],
                            [r.failed for r in s.rows]) for s in summaries]
    return Params(summaries, panels)


def what_matters(experiment: Experiment) -> Any:
    """Each searched setting's share of the metric's variance (importance.py), or why there is none."""
    from ...importance import importance

    try:
        return importance(experiment)
    except FuncApproxError as exc:
        return str(exc)


def history(experiment: Experiment, searched: list[str]) -> History:
    from ..figures import trial_history
    from ..plot import history_data

    top = [t for t in experiment.ranked() if t.status is TrialState.SUCCEEDED and t.metric is not None][:TOP_HISTORY]
    runs = [history_data(trial_history(t), f"{t.trial_id} {short_label(t, searched)}") for t in top]
    return History(len(top), [r for r in runs if len(r.epochs)])


# --- labels: settings as plain text -----------------------------------------------------------


def as_text(value: Any) -> str:
    """A setting as the report writes it: {16,16,16} for networks, 0.005 for numbers."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return as_number(value)
    if isinstance(value, (list, tuple)):
        sizes = list(value) + [0] * (len(HIDDEN_KEYS) - len(value))
        return "{" + ",".join(str(s) for s in sizes) + "}"
    return str(value)


def as_number(value: float) -> str:
    return f"{value:.4g}"


def choices(trial: TrialRecord, searched: list[str]) -> str:
    """The values the tuner chose for this trial, under the search space's names (the network as {n1,n2,n3})."""
    parts = [trial.arch] if "hidden" in searched else []
    parts += [f"{parameter_name(n)}={as_text(trial.params.get(n))}" for n in searched if n != "hidden"]
    return " ".join(parts)


def short_label(trial: TrialRecord, searched: list[str]) -> str:
    """A legend label: the network and the searched values, without the names."""
    return " ".join([trial.arch, *(as_text(trial.params.get(n)) for n in searched if n != "hidden")])
