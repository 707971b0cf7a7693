"""The report's data as one HTML page, and the page written to its file.

Text from the experiment is escaped here; the figures (drawn by plot.py) go in as PNG data
URIs; the parallel view's script gets its data as JSON. The CSS and the script are the package
files report.css and report.js, inlined at render time, so the page opens offline.
"""

from __future__ import annotations

import base64
import html
import json
import os
import time
from importlib import resources
from pathlib import Path
from typing import Any

from ...artifacts import atomic_write
from ...config import parameter_name
from ...errors import ConfigError, ExperimentError, FuncApproxError
from ...nni.store import load_experiment
from ...results import META_DIR, Experiment, TrialRecord
from .data import (
    NEAR_BEST,
    Fit,
    History,
    NearBest,
    Overview,
    Params,
    Pareto,
    as_text,
    choices,
    report_data,
)

REPORT_FILE = "report.html"
CSS_FILE, SCRIPT_FILE = "report.css", "report.js"  # beside this module, package data
SECTIONS = (
    ("summary", "Summary"), ("best", "Best fit"), ("pareto", "Size against error"),
    ("parallel", "Parallel coordinates"), ("params", "Parameters"), ("importance", "What matters"),
    ("history", "History"),
    ("failures", "Failures"), ("trials", "All trials"),
)
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
    data = report_data(experiment)
    o = data.overview
    body = "\n".join((
        _summary(o, data.near_best.best),
        _best(data.near_best),
        _pareto(o, data.pareto),
        _parallel(data.parallel),
        _params(data.params),
        _importance(data.importance),
        _history(data.history),
        _failures(data.failures, o),
        _trials(data.ranked, o.searched),
    ))
    title = f"funcapprox report: experiment {o.experiment_id} ({o.func}, stage {o.stage})"
    nav = " ".join(f'<a href="#{key}">{name}</a>' for key, name in SECTIONS)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title>
<style>
{asset(CSS_FILE)}</style>
</head>
<body>
<main>
<header>
<h1>{_e(title)}</h1>
<nav>{nav}</nav>
</header>
{body}
<footer>Written by funcapprox {_e(_version())} on {_e(_when(time.time()))} from {_e(str(o.folder))}.
The page is self-contained: it needs no network.</footer>
</main>
<script>
{asset(SCRIPT_FILE)}</script>
</body>
</html>
"""


def asset(name: str) -> str:
    """A file shipped beside this module (report.css, report.js), as text to inline."""
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


# --- sections ---------------------------------------------------------------------------------


def _summary(o: Overview, best: TrialRecord) -> str:
    rows = [
        ("experiment", _e(o.experiment_id)),
        ("stage", _e(o.stage_text)),
        ("function", _e(o.func)),
        ("tuner", _e(o.tuner)),
        ("status", _e(o.status)),
        ("started", _e(_when(o.start))),
        ("ended", _e(_when(o.end))),
        ("duration", _e(_duration(o.duration))),
        ("trials", _e(f"{o.trials}: " + ", ".join(f"{n} {s.lower()}" for s, n in o.counts))),
        ("searched", _e(", ".join(parameter_name(n) for n in o.searched) or "nothing")),
        ("fixed", _codes(o.fixed)),
    ]
    if o.source is not None:
        rows.append(("fixed from", _e(o.source) + (": " + _codes(o.handoff) if o.handoff else "")))
    if o.space_source is not None:
        rows.append(("search space", f"<code>{_e(o.space_source)}</code>"))
    best_rows = [
        ("trial", f"<b>{_e(best.trial_id)}</b>"),
        ("network", _e(f"{best.arch}, {_count(best.n_params)} parameters")),
        ("searched values", _e(choices(best, o.searched) or "-")),
        ("metric", _e(_fmt(best.metric, ".4f"))),
        ("RMS error", _e(_fmt(best.rms, ".5f"))),
        ("max error", _e(_fmt(best.max_error, ".5f"))),
        ("training time", _e(_fmt(best.seconds, ".1f") + " s")),
        ("configuration", _codes(best.params)),
    ]
    values = choices(best, [n for n in o.searched if n != "hidden"])
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


def _best(near: NearBest) -> str:
    best, small = near.best, near.small
    parts = [_fit_figure(near.best_fit, f"The best trial, {best.trial_id}")]
    if small is not None and near.limit is not None:
        if near.small_fit is None:
            parts.append(f"<p>The best trial is also the smallest network on the Pareto front within {NEAR_BEST:g}× "
                         f"its max error (≤ {_e(_fmt(near.limit, '.4g'))}).</p>")
        else:
            parts.append(f"<p>{_compare(small, best, near.limit)}</p>")
            parts.append(_fit_figure(near.small_fit, f"The smallest network within {NEAR_BEST:g}× the best's max "
                                                     f"error, trial {small.trial_id}"))
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


def _fit_figure(fit: Fit, caption: str) -> str:
    from ..plot import draw_fit

    trial = fit.trial
    if fit.data is None:
        return (f"<p class='warn'>{_e(caption)}: no figure, {_e(str(fit.problem))}. "
                f"<code>funcapprox plot --trial {_e(trial.trial_id)} --retrain</code> trains it again.</p>")
    return _figure(draw_fit(fit.data), f"{caption}: {trial.arch}, {trial.n_params} parameters. Truth in blue, the "
                   "network in red (every 10th point of the 1001-point grid); the black bar marks the max error. "
                   "Below: network − truth.", alt=fit.data.title)


def _pareto(o: Overview, pareto: Pareto) -> str:
    from ..plot import draw_pareto

    figure = _figure(draw_pareto(pareto.plot, f"experiment {o.experiment_id}: max error against parameters"),
                     "Every succeeded trial in grey; the Pareto front (no other trial has both fewer parameters and "
                     "a lower max error) in red, labelled with its networks.", alt="Pareto front")
    rows = [[t.arch, _count(t.n_params), _fmt(t.max_error, ".5f"), _fmt(t.metric, ".4f"), t.trial_id,
             ", ".join(notes)] for t, notes in pareto.front]
    note = ("<p class='note'>Every trial of this experiment trains a network of the same size, so the front is one "
            "point: the lowest max error.</p>") if pareto.one_size else ""
    return f"""<section id="pareto">
<h2>Size against error</h2>
{figure}
{note}
<h3>The front, smallest first</h3>
{_table(["arch", "params", "max error", "metric", "trial", ""], rows, numeric={1, 2, 3}, cls="front")}
</section>"""


def _parallel(data: dict[str, Any]) -> str:
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


def _params(params: Params) -> str:
    from ..plot import draw_metric_by_value

    if not params.summaries:
        return '<section id="params"><h2>Parameters</h2><p>Nothing was searched.</p></section>'
    figure = _figure(draw_metric_by_value(params.panels), "The final metric of every succeeded trial by the value it "
                     "tried (boxes: quartiles, red: median); the count of failed trials under each value.",
                     alt="metric by parameter value")
    cards = []
    for s in params.summaries:
        rows = [[r.label, str(r.count), str(r.failed) if r.failed else "", _fmt(r.median, ".3f"), _fmt(r.best, ".3f"),
                 _fmt(r.worst, ".3f")] for r in s.rows]
        line = ""
        if s.extremes is not None:
            top, low = s.extremes
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


def _importance(result) -> str:
    if isinstance(result, str) or not result.effects:
        why = result if isinstance(result, str) else "nothing was searched"
        return f'<section id="importance"><h2>What matters</h2><p>{_e(why)}.</p></section>'
    rows = [[e.name, f"{e.share:.1%}", as_text(e.best), _fmt(e.best_mean, ".3f"), as_text(e.worst),
             _fmt(e.worst_mean, ".3f")] for e in result.effects]
    rows.append(["interactions (and noise)", f"{result.interactions_share:.1%}", "", "", "", ""])
    note = f"<p class='note'>{_e(result.note)}.</p>" if result.note else ""
    return f"""<section id="importance">
<h2>What matters</h2>
<p>The share of the final metric's variance each searched setting explains on its own ({_e(result.method)},
{result.n} trials), with the values of the highest and lowest mean metric.</p>
{note}
{_table(["setting", "share", "best value", "its mean", "worst value", "its mean"], rows, numeric={1, 3, 5})}
</section>"""


def _history(history: History) -> str:
    from ..plot import draw_history

    if not history.runs:
        return '<section id="history"><h2>History</h2><p>No trial recorded its evaluations.</p></section>'
    figure = _figure(draw_history(history.runs, f"metric history of the {history.shown} best trials"),
                     "The metric at every evaluation (every 5 epochs) of the best trials; the final result is the "
                     "worst of the last 5, so a curve that still swings late scores lower.", alt="metric history")
    return f"""<section id="history">
<h2>History</h2>
{figure}
</section>"""


def _failures(failed: list[TrialRecord], o: Overview) -> str:
    if not failed:
        return '<section id="failures"><h2>Failures</h2><p class="none">none: no trial failed.</p></section>'
    rows = [[t.trial_id, t.status, choices(t, o.searched), t.reason or "no reason recorded"] for t in failed]
    return f"""<section id="failures">
<h2>Failures</h2>
<p>{len(failed)} of {o.trials} trials finished without a metric.</p>
{_table(["trial", "status", "searched values", "reason"], rows, cls="failures")}
</section>"""


def _trials(ranked: list[TrialRecord], columns: list[str]) -> str:
    rows = [[str(rank), t.trial_id, t.status, *(as_text(t.params.get(c)) for c in columns), _fmt(t.metric, ".4f"),
             _fmt(t.rms, ".5f"), _fmt(t.max_error, ".5f"), _count(t.n_params), _fmt(t.seconds, ".1f")]
            for rank, t in enumerate(ranked, 1)]
    headers = ["#", "trial", "status", *(parameter_name(c) for c in columns), "metric", "rms", "max error",
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


def _codes(settings: dict[str, Any]) -> str:
    """Settings as `name=value` code spans."""
    return " ".join(f"<code>{_e(k)}={_e(as_text(v))}</code>" for k, v in settings.items())


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
    from ..plot import png_bytes

    dpi = 100
    width, height = (round(x * dpi) for x in fig.get_size_inches())
    data = base64.b64encode(png_bytes(fig, dpi=dpi)).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" width="{width}" height="{height}" alt="{_e(alt)}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def _json_for_script(data: Any) -> str:
    """JSON safe inside a <script> element: no "</script>" or "<!--" can appear in it."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
