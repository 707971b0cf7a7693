"""One self-contained HTML page about an experiment: what ran, what won, what mattered.

Everything is inline (figures as base64 PNG data URIs, the CSS, and a small script
for the interactive parallel-coordinates view), so the file opens offline and can be
mailed or archived as it is. Text from the experiment is escaped; the script gets its
data as JSON. The figures come from plot.py; this module only chooses and arranges.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import statistics
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

from ..artifacts import atomic_write, load_model
from ..config import ACTIVATIONS, ALIASES, HIDDEN_KEYS, LOSSES, OPTIMIZERS, field_names, params_to_settings
from ..errors import ConfigError, ExperimentError, FuncApproxError
from ..nni.store import load_experiment
from ..results import META_DIR, TERMINAL, Experiment, TrialRecord
from .pareto import pareto_front, smallest_within

REPORT_FILE = "report.html"
NEAR_BEST = 2.0  # the smallest network shown beside the best is within this factor of its max error
TOP_HISTORY = 5  # trials in the history figure
MAX_VALUES = 12  # a numeric parameter with more distinct values is binned in the per-parameter summaries
BINS = 5
FAN = 0.5  # the part of a category's band its lines fan out over in the parallel view
COLOR_LOW, COLOR_HIGH = 0.0, 0.88  # the part of viridis used: its last, pale yellow is hard to see on white
SECTIONS = (
    ("summary", "Summary"), ("best", "Best fit"), ("pareto", "Size against error"),
    ("parallel", "Parallel coordinates"), ("params", "Parameters"), ("history", "History"),
    ("failures", "Failures"), ("trials", "All trials"),
)
STUDY_NAMES = {setting: name for name, setting in ALIASES.items()}  # act → act_func, lr → learning_rate
NATURAL_ORDER = {"act": ACTIVATIONS, "optimizer": OPTIMIZERS, "loss": LOSSES, "output_act": (False, True)}
METRIC_NOTE = ("metric = −log10 of the RMS error on the 101-point grid x = 0, 0.01, …, 1, the worst of the last "
               "5 evaluations; higher is better (2 means an RMS error of 0.01). Max error is read on 1001 points.")


def write_report(workdir: Path, experiment_id: str = "latest", out: Path | None = None, replace: bool = True) -> Path:
    """Write the experiment's report as one HTML file; by default `<workdir>/<id>/funcapprox/report.html`.

    With replace=False an existing `out` is refused (ConfigError), also one that appears while the page is made.
    """
    experiment = load_experiment(Path(workdir), experiment_id)
    if not experiment.succeeded():
        raise ExperimentError(f"experiment {experiment.id} has no succeeded trial yet; nothing to report")
    out = Path(out) if out else experiment.folder / META_DIR / REPORT_FILE
    if out.is_dir():
        raise ConfigError(f"--out {out} is a folder; give the HTML file to write")
    if not out.parent.is_dir():
        raise ConfigError(f"the folder of --out {out} does not exist")
    exists = ConfigError(f"{out} already exists; add --force to replace it, or give another --out")
    if not replace and os.path.lexists(out):
        raise exists
    page = render_report(experiment)
    try:
        atomic_write(out, page, replace=replace)
    except FileExistsError:
        raise exists from None
    except OSError as exc:
        raise FuncApproxError(f"cannot write the report {out}: {exc.strerror}") from None
    return out


def render_report(experiment: Experiment) -> str:
    """The whole page as text."""
    best = experiment.best()
    front = pareto_front(experiment.trials)
    body = "\n".join((
        _summary(experiment, best),
        _best(best, front),
        _pareto(experiment, best, front),
        _parallel(experiment),
        _params(experiment),
        _history(experiment),
        _failures(experiment),
        _trials(experiment),
    ))
    title = f"funcapprox report: experiment {experiment.id} ({experiment.func}, stage {experiment.stage})"
    nav = " ".join(f'<a href="#{key}">{name}</a>' for key, name in SECTIONS)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title>
<style>{CSS}</style>
</head>
<body>
<main>
<header>
<h1>{_e(title)}</h1>
<nav>{nav}</nav>
</header>
{body}
<footer>Written by funcapprox {_e(_version())} on {_e(_when(time.time()))} from {_e(str(experiment.folder))}.
The page is self-contained: it needs no network.</footer>
</main>
<script>{SCRIPT}</script>
</body>
</html>
"""


# --- what was searched ------------------------------------------------------------------------


class Param(NamedTuple):
    """A searched parameter as the report shows it."""

    name: str  # as the search space names it: act_func, learning_rate, hidden_size_1, …
    kind: str  # "category" or "number"
    get: Callable[[TrialRecord], Any]  # its value in a trial (None when the trial has none)
    order: tuple = ()  # a category's values in display order


def searched_settings(experiment: Experiment) -> list[str]:
    """The configuration fields the tuner chose: those not fixed for the stage.

    A field added to TrainConfig after the experiment ran is missing from its fixed
    settings too; it counts only if some trial received it or the trials differ in it.
    """
    fixed = experiment.meta.get("fixed", {})
    received: set[str] = set()
    for t in experiment.trials:
        try:
            received |= set(params_to_settings(t.nni_params))
        except ConfigError:
            pass
    names = []
    for name in field_names():
        if name == "func" or name in fixed:
            continue
        seen = {json.dumps(t.params.get(name), sort_keys=True) for t in experiment.trials}
        if name in received or len(seen) > 1:
            names.append(name)
    return names


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
    label = STUDY_NAMES.get(name, name)
    values = [v for v in (t.params.get(name) for t in trials) if v is not None]
    if values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return Param(label, "number", _setting(name))
    natural = NATURAL_ORDER.get(name, ())
    seen = {_text(v): v for v in values}
    ordered = [v for v in natural if _text(v) in seen]
    ordered += sorted((v for k, v in seen.items() if v not in natural), key=_text)
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


def _finished_without_metric(t: TrialRecord) -> bool:
    return t.status in TERMINAL and (t.status != "SUCCEEDED" or t.metric is None)


def _groups(param: Param, trials: Sequence[TrialRecord]) -> list[tuple[str, list[TrialRecord]]]:
    """Trials by the parameter's value; a numeric parameter with many distinct values in BINS ranges."""
    values = {t.trial_id: param.get(t) for t in trials}
    present = [v for v in values.values() if v is not None]
    if param.kind == "category":
        order = [_text(v) for v in param.order]
    else:
        distinct = sorted(set(present))
        if len(distinct) > MAX_VALUES:
            chunks = [distinct[i * len(distinct) // BINS:(i + 1) * len(distinct) // BINS] for i in range(BINS)]
            groups = [(f"{_number(c[0])}–{_number(c[-1])}", [t for t in trials if values[t.trial_id] is not None
                                                              and c[0] <= values[t.trial_id] <= c[-1]])
                      for c in chunks if c]
            return groups
        order = [_text(v) for v in distinct]
    groups = [(label, [t for t in trials if values[t.trial_id] is not None and _text(values[t.trial_id]) == label])
              for label in order]
    missing = [t for t in trials if values[t.trial_id] is None]
    return groups + ([("?", missing)] if missing else [])


def param_summaries(experiment: Experiment) -> list[ParamSummary]:
    """Metric by value for each searched parameter, the parameters that matter most first."""
    summaries = []
    for param in summary_params(experiment):
        rows = []
        for label, trials in _groups(param, experiment.trials):
            metrics = sorted(t.metric for t in trials if t.status == "SUCCEEDED" and t.metric is not None)
            failed = sum(1 for t in trials if _finished_without_metric(t))
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
        labels = [_text(v) for v in param.order]
        labels += ["?"] if any(v is None for v in values) else []
        at = {label: (i + 0.5) / len(labels) for i, label in enumerate(labels)}
        texts = [_text(v) if v is not None else "?" for v in values]
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
        ticks = [{"at": scale(v), "label": _number(v), "pick": True} for v in distinct]
    else:
        ticks = [{"at": k / 4, "label": _number(unscale(k / 4)), "pick": False} for k in range(5)]
    title = param.name + (" (log)" if log else "")
    positions = [scale(float(v)) if v is not None else 0.0 for v in values]
    return {"name": param.name, "title": title, "ticks": ticks}, positions, [_text(v) for v in values]


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


# --- sections ---------------------------------------------------------------------------------


def _summary(experiment: Experiment, best: TrialRecord) -> str:
    meta = experiment.meta
    counts = experiment.counts()
    searched = searched_settings(experiment)
    fixed = meta.get("fixed", {})
    limits = [meta.get("tuner", "?")]
    if meta.get("concurrency"):
        limits.append(f"concurrency {meta['concurrency']}")
    if meta.get("max_trials"):
        limits.append(f"max trials {meta['max_trials']}")
    if meta.get("max_duration"):
        limits.append(f"max duration {meta['max_duration']}")
    if meta.get("grid_size"):
        limits.append(f"grid of {meta['grid_size']} points")
    duration = (experiment.end - experiment.start) if experiment.start and experiment.end else None
    stage = {"nonarch": "nonarch: hyper-parameters on a fixed network",
             "arch": "arch: network sizes with stage 1's settings fixed"}.get(experiment.stage, experiment.stage)
    rows = [
        ("experiment", _e(experiment.id)),
        ("stage", _e(stage)),
        ("function", _e(experiment.func)),
        ("tuner", _e(", ".join(str(x) for x in limits))),
        ("status", _e(str(meta.get("status", "?")))),
        ("started", _e(_when(experiment.start))),
        ("ended", _e(_when(experiment.end))),
        ("duration", _e(_duration(duration))),
        ("trials", _e(f"{len(experiment.trials)}: " + ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items()))
                      )),
        ("searched", _e(", ".join(STUDY_NAMES.get(n, n) for n in searched) or "nothing")),
        ("fixed", " ".join(f"<code>{_e(k)}={_e(_text(v))}</code>" for k, v in fixed.items())),
    ]
    handoff = meta.get("handoff") or {}
    if meta.get("from_experiment") or handoff:
        source = (f"the best trial of experiment {meta['from_experiment']}" if meta.get("from_experiment")
                  else "--set")
        rows.append(("fixed from", _e(source) + (": " + " ".join(
            f"<code>{_e(k)}={_e(_text(v))}</code>" for k, v in handoff.items()) if handoff else "")))
    if meta.get("space_source"):
        rows.append(("search space", f"<code>{_e(str(meta['space_source']))}</code>"))
    best_rows = [
        ("trial", f"<b>{_e(best.trial_id)}</b>"),
        ("network", _e(f"{best.arch}, {_count(best.n_params)} parameters")),
        ("searched values", _e(_choices(best, searched) or "-")),
        ("metric", _e(_fmt(best.metric, ".4f"))),
        ("RMS error", _e(_fmt(best.rms, ".5f"))),
        ("max error", _e(_fmt(best.max_error, ".5f"))),
        ("training time", _e(_fmt(best.seconds, ".1f") + " s")),
        ("configuration", " ".join(f"<code>{_e(k)}={_e(_text(v))}</code>" for k, v in best.params.items())),
    ]
    values = _choices(best, [n for n in searched if n != "hidden"])
    headline = (f"Best trial <b>{_e(best.trial_id)}</b>: {_e(best.arch)} {_e(values)} — "
                f"metric <b>{_e(_fmt(best.metric, '.3f'))}</b>, max error <b>{_e(_fmt(best.max_error, '.4g'))}</b>, "
                f"{_e(_count(best.n_params))} parameters.")
    return f"""<section id="summary">
<h2>Summary</h2>
<p class="headline">{headline}</p>
{_kv(rows)}
<h3>Best trial</h3>
{_kv(best_rows)}
<p class="note">{_e(METRIC_NOTE)}</p>
</section>"""


def _best(best: TrialRecord, front: list[TrialRecord]) -> str:
    parts = [_fit_figure(best, f"The best trial, {best.trial_id}")]
    if best.max_error is not None and front:
        limit = NEAR_BEST * best.max_error
        small = smallest_within(front, limit).trial
        if small.trial_id == best.trial_id:
            parts.append(f"<p>The best trial is also the smallest network on the Pareto front within {NEAR_BEST:g}× "
                         f"its max error (≤ {_e(_fmt(limit, '.4g'))}).</p>")
        else:
            parts.append(f"<p>{_compare(small, best, limit)}</p>")
            parts.append(_fit_figure(small, f"The smallest network within {NEAR_BEST:g}× the best's max error, "
                                            f"trial {small.trial_id}"))
    return f"""<section id="best">
<h2>Best fit</h2>
{chr(10).join(parts)}
</section>"""


def _compare(small: TrialRecord, best: TrialRecord, limit: float) -> str:
    """One sentence on what the smaller network gives up and saves."""
    head = (f"The smallest network on the Pareto front with a max error within {NEAR_BEST:g}× the best trial's "
            f"(≤ {_fmt(limit, '.4g')}) is trial <b>{_e(small.trial_id)}</b>, {_e(small.arch)}: ")
    errors = f"max error {_fmt(small.max_error, '.4g')} against {_fmt(best.max_error, '.4g')}"
    if small.n_params == best.n_params:
        return head + _e(f"the same {_count(small.n_params)} parameters as the best trial, {errors}.")
    if small.n_params and best.n_params and small.n_params < best.n_params:
        ratio = best.n_params / small.n_params
        return head + _e(f"{_count(small.n_params)} parameters, {ratio:.1f}× fewer than the best trial's "
                         f"{_count(best.n_params)} ({best.arch}), {errors}.")
    return head + _e(f"{_count(small.n_params)} parameters against the best trial's {_count(best.n_params)}, "
                     f"{errors}.")


def _fit_figure(trial: TrialRecord, caption: str) -> str:
    from .plot import draw_fit, fit_data

    try:
        if trial.output_dir is None:
            raise FuncApproxError(f"trial {trial.trial_id} has no output folder")
        model = load_model(trial.output_dir, trial.config)
    except FuncApproxError as exc:
        return (f"<p class='warn'>{_e(caption)}: no figure, {_e(str(exc))}. "
                f"<code>funcapprox plot --trial {_e(trial.trial_id)} --retrain</code> trains it again.</p>")
    data = fit_data(model, trial.config)
    return _figure(draw_fit(data), f"{caption}: {trial.arch}, {trial.n_params} parameters. Truth in blue, the "
                   "network in red (every 10th point of the 1001-point grid); the black bar marks the max error. "
                   "Below: network − truth.", alt=data.title)


def _pareto(experiment: Experiment, best: TrialRecord, front: list[TrialRecord]) -> str:
    from .plot import draw_pareto, pareto_data

    marks = {f"best metric ({best.trial_id})": best}
    small = None
    if best.max_error is not None and front:
        small = smallest_within(front, NEAR_BEST * best.max_error).trial
        if small.trial_id != best.trial_id:
            marks[f"smallest within {NEAR_BEST:g}× ({small.trial_id})"] = small
    data = pareto_data(experiment.trials, marks)
    figure = _figure(draw_pareto(data, f"experiment {experiment.id}: max error against parameters"),
                     "Every succeeded trial in grey; the Pareto front (no other trial has both fewer parameters and "
                     "a lower max error) in red, labelled with its networks.", alt="Pareto front")
    rows = []
    for t in front:
        notes = [note for note, who in (("best metric", best), (f"smallest within {NEAR_BEST:g}×", small))
                 if who is not None and who.trial_id == t.trial_id]
        rows.append([t.arch, _count(t.n_params), _fmt(t.max_error, ".5f"), _fmt(t.metric, ".4f"), t.trial_id,
                     ", ".join(notes)])
    sizes = {t.n_params for t in experiment.succeeded()}
    note = ("<p class='note'>Every trial of this experiment trains a network of the same size, so the front is one "
            "point: the lowest max error.</p>") if len(sizes) == 1 else ""
    return f"""<section id="pareto">
<h2>Size against error</h2>
{figure}
{note}
<h3>The front, smallest first</h3>
{_table(["arch", "params", "max error", "metric", "trial", ""], rows, numeric={1, 2, 3}, cls="front")}
</section>"""


def _parallel(experiment: Experiment) -> str:
    data = parallel_data(experiment)
    swatches = ", ".join(data["gradient"])
    return f"""<section id="parallel">
<h2>Parallel coordinates</h2>
<p>One line per succeeded trial, through the value it tried on each searched parameter to its final metric,
coloured by that metric (the best trial bold). On a category axis the lines of each value fan out a little,
better metrics higher. <b>Drag an axis by its name</b> to move it, for example next to the
metric; <b>click a value</b> on an axis to pick out the trials that used it; hover a line for its trial.</p>
<div class="pc-bar"><span class="legend">metric {_e(_fmt(data['low'], '.3f'))}
<span class="ramp" style="background: linear-gradient(to right, {swatches})"></span>
{_e(_fmt(data['high'], '.3f'))}</span> <button type="button" id="pc-reset">reset</button></div>
<svg id="pc-svg" viewBox="0 0 1000 460" role="img" aria-label="parallel coordinates of the trials"></svg>
<p id="pc-status" class="note"></p>
<noscript><p class="warn">This view needs JavaScript; the tables under Parameters hold the same figures.</p></noscript>
<script type="application/json" id="pc-data">{_json_for_script(data)}</script>
</section>"""


def _params(experiment: Experiment) -> str:
    import numpy as np

    from .plot import MetricByValue, draw_metric_by_value

    summaries = param_summaries(experiment)
    if not summaries:
        return '<section id="params"><h2>Parameters</h2><p>Nothing was searched.</p></section>'
    panels = [MetricByValue(s.name, [r.label for r in s.rows], [np.array(r.metrics) for r in s.rows],
                            [r.failed for r in s.rows]) for s in summaries]
    figure = _figure(draw_metric_by_value(panels), "The final metric of every succeeded trial by the value it "
                     "tried (boxes: quartiles, red: median); the count of failed trials under each value.",
                     alt="metric by parameter value")
    cards = []
    for s in summaries:
        rows = [[r.label, str(r.count), str(r.failed) if r.failed else "", _fmt(r.median, ".3f"), _fmt(r.best, ".3f"),
                 _fmt(r.worst, ".3f")] for r in s.rows]
        medians = [r for r in s.rows if r.median is not None]
        line = ""
        if len(medians) > 1:
            top = max(medians, key=lambda r: r.median)
            low = min(medians, key=lambda r: r.median)
            line = (f"<p class='note'>highest median: <b>{_e(top.label)}</b> ({top.median:.3f}); lowest: "
                    f"<b>{_e(low.label)}</b> ({low.median:.3f})</p>")
        table = _table(["value", "trials", "failed", "median", "best", "worst"], rows, numeric={1, 2, 3, 4, 5})
        cards.append(f"<div class='card'><h3>{_e(s.name)}</h3>{line}{table}</div>")
    return f"""<section id="params">
<h2>Parameters</h2>
<p>How the final metric depends on each searched parameter, whatever the others were; the parameters whose values'
medians lie furthest apart come first.</p>
{figure}
<div class="cards">
{chr(10).join(cards)}
</div>
</section>"""


def _history(experiment: Experiment) -> str:
    from .figures import trial_history
    from .plot import draw_history, history_data

    searched = searched_settings(experiment)
    top = [t for t in experiment.ranked() if t.status == "SUCCEEDED" and t.metric is not None][:TOP_HISTORY]
    runs = [history_data(trial_history(t), f"{t.trial_id} {_short(t, searched)}") for t in top]
    runs = [r for r in runs if len(r.epochs)]
    if not runs:
        return '<section id="history"><h2>History</h2><p>No trial recorded its evaluations.</p></section>'
    figure = _figure(draw_history(runs, f"metric history of the {len(top)} best trials"),
                     "The metric at every evaluation (every 5 epochs) of the best trials; the final result is the "
                     "worst of the last 5, so a curve that still swings late scores lower.", alt="metric history")
    return f"""<section id="history">
<h2>History</h2>
{figure}
</section>"""


def _failures(experiment: Experiment) -> str:
    failed = [t for t in experiment.trials if _finished_without_metric(t)]
    if not failed:
        return '<section id="failures"><h2>Failures</h2><p class="none">none: no trial failed.</p></section>'
    searched = searched_settings(experiment)
    rows = [[t.trial_id, t.status, _choices(t, searched), t.reason or "no reason recorded"] for t in failed]
    return f"""<section id="failures">
<h2>Failures</h2>
<p>{len(failed)} of {len(experiment.trials)} trials finished without a metric.</p>
{_table(["trial", "status", "searched values", "reason"], rows, cls="failures")}
</section>"""


def _trials(experiment: Experiment) -> str:
    columns = searched_settings(experiment)
    rows = [[str(rank), t.trial_id, t.status, *(_text(t.params.get(c)) for c in columns), _fmt(t.metric, ".4f"),
             _fmt(t.rms, ".5f"), _fmt(t.max_error, ".5f"), _count(t.n_params), _fmt(t.seconds, ".1f")]
            for rank, t in enumerate(experiment.ranked(), 1)]
    headers = ["#", "trial", "status", *(STUDY_NAMES.get(c, c) for c in columns), "metric", "rms", "max error",
               "params", "seconds"]
    n = len(columns)
    return f"""<section id="trials">
<h2>All trials</h2>
<details><summary>{len(rows)} trials, best first</summary>
{_table(headers, rows, numeric={0, *range(3 + n, 8 + n)})}
</details>
</section>"""


# --- formatting -------------------------------------------------------------------------------


def _e(text: str) -> str:
    return html.escape(str(text), quote=True)


def _text(value: Any) -> str:
    """A setting as the report writes it: {16,16,16} for networks, 0.005 for numbers."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, (list, tuple)):
        sizes = list(value) + [0] * (len(HIDDEN_KEYS) - len(value))
        return "{" + ",".join(str(s) for s in sizes) + "}"
    return str(value)


def _number(value: float) -> str:
    return f"{value:.4g}"


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _count(value: int | None) -> str:
    return "?" if value is None else f"{value:,}"


def _when(stamp: float | None) -> str:
    return "-" if stamp is None else time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(stamp))


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("funcapprox")
    except PackageNotFoundError:
        return "(not installed)"


def _choices(trial: TrialRecord, searched: list[str]) -> str:
    """The values the tuner chose for this trial, under the search space's names (the network as {n1,n2,n3})."""
    parts = [trial.arch] if "hidden" in searched else []
    parts += [f"{STUDY_NAMES.get(n, n)}={_text(trial.params.get(n))}" for n in searched if n != "hidden"]
    return " ".join(parts)


def _short(trial: TrialRecord, searched: list[str]) -> str:
    """A legend label: the network and the searched values, without the names."""
    return " ".join([trial.arch, *(_text(trial.params.get(n)) for n in searched if n != "hidden")])


def _kv(rows: list[tuple[str, str]]) -> str:
    """A two-column table of (name, HTML already escaped)."""
    body = "\n".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="kv">\n{body}\n</table>'


def _table(headers: list[str], rows: list[list[str]], numeric: set[int] = frozenset(), cls: str = "") -> str:
    """A table of plain text cells (escaped here); `numeric` columns align right."""
    def cell(tag: str, i: int, text: str) -> str:
        return f"<{tag}{' class=num' if i in numeric else ''}>{_e(text)}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(headers))
    body = "\n".join("<tr>" + "".join(cell("td", i, c) for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f'<table class="data {cls}">\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>'


def _figure(fig, caption: str, alt: str) -> str:
    """A matplotlib Figure as an inline PNG with its caption."""
    from .plot import png_bytes

    dpi = 100
    width, height = (round(x * dpi) for x in fig.get_size_inches())
    data = base64.b64encode(png_bytes(fig, dpi=dpi)).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" width="{width}" height="{height}" alt="{_e(alt)}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def _json_for_script(data: Any) -> str:
    """JSON safe inside a <script> element: no "</script>" or "<!--" can appear in it."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


CSS = """
:root { --fg: #1f2328; --muted: #59636e; --line: #d8dee4; --soft: #f6f8fa; --accent: #0969da; }
* { box-sizing: border-box; }
body { margin: 0; background: #eef0f3; color: var(--fg);
  font: 15px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1100px; margin: 0 auto; padding: 20px 32px 48px; background: #fff; min-height: 100vh; }
header { border-bottom: 2px solid var(--fg); margin-bottom: 8px; }
h1 { font-size: 24px; margin: 12px 0 6px; }
h2 { font-size: 20px; margin: 0 0 12px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 16px; margin: 18px 0 6px; }
nav { padding: 4px 0 10px; font-size: 14px; }
nav a { color: var(--accent); text-decoration: none; margin-right: 14px; white-space: nowrap; }
nav a:hover { text-decoration: underline; }
section { margin-top: 34px; scroll-margin-top: 12px; }
.headline { font-size: 16px; background: #eef6ff; border-left: 4px solid var(--accent); padding: 10px 14px; }
.note { color: var(--muted); font-size: 13px; }
.warn { background: #fff8c5; border-left: 4px solid #d4a72c; padding: 8px 12px; }
code { font: 12.5px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: var(--soft);
  padding: 1px 4px; border-radius: 4px; white-space: nowrap; }
table { border-collapse: collapse; font-size: 14px; margin: 6px 0; }
th, td { padding: 4px 10px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
thead th { border-bottom: 2px solid #afb8c1; background: var(--soft); }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
table.data tbody tr:nth-child(even) { background: #fafbfc; }
table.data tbody tr:hover { background: #eef6ff; }
table.kv { width: 100%; }
table.kv th { color: var(--muted); font-weight: 500; width: 11em; }
table.kv td code { display: inline-block; margin: 1px 0; }
table.failures td:last-child { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  font-size: 12.5px; word-break: break-word; }
figure { margin: 14px 0 18px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 4px; max-width: 820px; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(440px, 1fr)); gap: 14px; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 4px 14px 10px; }
.card h3 { margin-top: 8px; }
.card table { width: 100%; font-size: 13px; }
.card th, .card td { padding: 3px 8px; }
details summary { cursor: pointer; color: var(--accent); margin: 4px 0 8px; }
footer { margin-top: 40px; padding-top: 10px; border-top: 1px solid var(--line); color: var(--muted); font-size: 12px; }
.pc-bar { display: flex; justify-content: space-between; align-items: center; font-size: 13px; color: var(--muted); }
.ramp { display: inline-block; width: 160px; height: 10px; margin: 0 6px; vertical-align: middle;
  border-radius: 2px; }
button { font: inherit; font-size: 13px; padding: 2px 12px; border: 1px solid var(--line); border-radius: 6px;
  background: var(--soft); cursor: pointer; }
#pc-svg { width: 100%; height: auto; display: block; user-select: none; -webkit-user-select: none;
  border: 1px solid var(--line); border-radius: 6px; margin-top: 6px; background: #fff; }
.pc-line { fill: none; stroke-width: 1.5; opacity: 0.7; }
.pc-line:hover { stroke-width: 4; opacity: 1; }
.pc-best { stroke-width: 3.5; opacity: 1; }
.pc-dim { opacity: 0.07; }
.pc-axis line { stroke: #57606a; stroke-width: 1; }
.pc-axis text { font-size: 12px; fill: #24292f; paint-order: stroke; stroke: #fff; stroke-width: 3px;
  stroke-linejoin: round; }
.pc-axis .pc-title { font-size: 13px; font-weight: 600; cursor: grab; }
.pc-grip { fill: transparent; cursor: grab; touch-action: none; }
.pc-dragging .pc-title { fill: var(--accent); cursor: grabbing; }
.pc-dragging line { stroke: var(--accent); stroke-width: 2; }
.pc-pick { cursor: pointer; }
.pc-axis .pc-pick:hover { fill: var(--accent); }
.pc-axis .pc-on { fill: var(--accent); font-weight: 700; }
"""

SCRIPT = r"""
(function () {
  "use strict";
  var svg = document.getElementById("pc-svg");
  var source = document.getElementById("pc-data");
  if (!svg || !source) { return; }
  var data = JSON.parse(source.textContent);
  var NS = svg.namespaceURI;  // the SVG namespace, as the HTML parser set it
  var W = 1000, H = 460, TOP = 56, BOTTOM = H - 24, PAD = 95;
  var order = data.axes.map(function (axis, i) { return i; });
  var initial = order.slice();
  var drag = null;    // {axis, x} while an axis is being moved
  var picked = null;  // {axis, label}: the value whose trials stand out
  var status = document.getElementById("pc-status");
  var hint = "Drag an axis by its name to reorder; click a value to pick out its trials.";

  function make(name, attrs, parent) {
    var node = document.createElementNS(NS, name);
    Object.keys(attrs).forEach(function (key) { node.setAttribute(key, attrs[key]); });
    parent.appendChild(node);
    return node;
  }
  function slotX(slot) {
    var n = order.length;
    return n < 2 ? W / 2 : PAD + slot * (W - 2 * PAD) / (n - 1);
  }
  function axisX(a) { return drag && drag.axis === a ? drag.x : slotX(order.indexOf(a)); }
  function y(t) { return BOTTOM - t * (BOTTOM - TOP); }
  function chosen(line) { return !picked || line.text[picked.axis] === picked.label; }

  function render() {
    while (svg.firstChild) { svg.removeChild(svg.firstChild); }
    var group = make("g", {"class": "pc-lines"}, svg);
    var lines = data.lines.filter(function (l) { return !chosen(l); })
      .concat(data.lines.filter(chosen));  // picked lines on top
    lines.forEach(function (line) {
      var d = order.map(function (a, k) {
        return (k ? "L" : "M") + axisX(a).toFixed(1) + "," + y(line.pos[a]).toFixed(1);
      }).join(" ");
      var cls = "pc-line" + (line.best ? " pc-best" : "") + (chosen(line) ? "" : " pc-dim");
      var path = make("path", {"d": d, "stroke": line.color, "class": cls, "data-trial": line.id}, group);
      make("title", {}, path).textContent = line.tip;
    });
    order.forEach(drawAxis);
    svg.setAttribute("data-order", order.map(function (a) { return data.axes[a].name; }).join(","));
  }

  function drawAxis(a) {
    var axis = data.axes[a];
    var cls = "pc-axis" + (drag && drag.axis === a ? " pc-dragging" : "");
    var g = make("g", {"class": cls, "data-axis": axis.name, "transform": "translate(" + axisX(a).toFixed(1) + ",0)"},
                 svg);
    make("line", {"x1": 0, "x2": 0, "y1": TOP, "y2": BOTTOM}, g);
    axis.ticks.forEach(function (tick) {
      var ty = y(tick.at).toFixed(1);
      make("line", {"x1": -4, "x2": 0, "y1": ty, "y2": ty}, g);
      var on = picked && picked.axis === a && picked.label === tick.label;
      var text = make("text", {"x": -7, "y": ty, "dy": "0.32em", "text-anchor": "end",
                               "class": "pc-tick" + (tick.pick ? " pc-pick" : "") + (on ? " pc-on" : "")}, g);
      text.textContent = tick.label;
      if (tick.pick) { text.addEventListener("click", function () { pick(a, tick.label); }); }
    });
    var grip = make("rect", {"x": -48, "y": TOP - 42, "width": 96, "height": 30, "class": "pc-grip"}, g);
    var title = make("text", {"x": 0, "y": TOP - 22, "text-anchor": "middle", "class": "pc-title"}, g);
    title.textContent = axis.title;
    make("title", {}, grip).textContent = "drag to move the " + axis.name + " axis";
    [grip, title].forEach(function (node) {
      node.addEventListener("pointerdown", function (ev) { startDrag(ev, a); });
    });
  }

  function svgX(ev) {
    return new DOMPoint(ev.clientX, ev.clientY).matrixTransform(svg.getScreenCTM().inverse()).x;
  }
  function startDrag(ev, a) {
    ev.preventDefault();
    drag = {axis: a, x: axisX(a)};
    window.addEventListener("pointermove", moveDrag);
    window.addEventListener("pointerup", endDrag);
    window.addEventListener("pointercancel", endDrag);
    render();
  }
  function moveDrag(ev) {
    if (!drag) { return; }
    drag.x = Math.max(PAD - 50, Math.min(W - PAD + 50, svgX(ev)));
    order = order.slice().sort(function (p, q) { return axisX(p) - axisX(q); });
    render();
  }
  function endDrag() {
    drag = null;
    window.removeEventListener("pointermove", moveDrag);
    window.removeEventListener("pointerup", endDrag);
    window.removeEventListener("pointercancel", endDrag);
    render();
  }

  function pick(a, label) {
    var same = picked && picked.axis === a && picked.label === label;
    picked = same ? null : {axis: a, label: label};
    render();
    describe();
  }
  function describe() {
    if (!status) { return; }
    if (!picked) { status.textContent = hint; return; }
    var metrics = data.lines.filter(chosen).map(function (l) { return l.metric; })
      .sort(function (p, q) { return p - q; });
    var n = metrics.length;
    var text = data.axes[picked.axis].name + " = " + picked.label + ": ";
    if (!n) {
      text += "no succeeded trial.";
    } else {
      var median = n % 2 ? metrics[(n - 1) / 2] : (metrics[n / 2 - 1] + metrics[n / 2]) / 2;
      text += n + " succeeded trial" + (n > 1 ? "s" : "") + ", metric median " + median.toFixed(3) +
        ", best " + metrics[n - 1].toFixed(3) + ", worst " + metrics[0].toFixed(3) + ". Click it again to clear.";
    }
    status.textContent = text;
  }

  document.getElementById("pc-reset").addEventListener("click", function () {
    order = initial.slice();
    picked = null;
    render();
    describe();
  });
  render();
  describe();
})();
"""
