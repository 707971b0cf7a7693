"""The `funcapprox` command: parse options, call the library, format what it returns.

Heavy modules (torch, matplotlib, nni) are imported inside the commands that use
them, so `funcapprox --help` and the result readers start fast.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

import click

from .config import (
    ACTIVATIONS,
    DEFAULT_EPOCHS,
    DEFAULT_HOLDOUT,
    INITS,
    LOSSES,
    LR_SCHEDULES,
    OPTIMIZERS,
    REFINE_AUTO_WIDTH,
    REFINES,
    TrainConfig,
    function_text,
    parse_hidden,
)
from .errors import ConfigError, FuncApproxError
from .nni.config import ASSESSORS, TUNERS
from .nni.gather import GROUP_LIMIT

DEFAULTS = TrainConfig()


class UserError(click.ClickException):
    """A user mistake found after parsing (bad value combination): exit 2 like a parse error."""

    exit_code = 2


def _library_call(fn, *args, **kwargs):
    """Run a library function, turning its errors into one-line CLI errors."""
    try:
        return fn(*args, **kwargs)
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    except FuncApproxError as exc:
        raise click.ClickException(str(exc)) from None


class HiddenSizes(click.ParamType):
    name = "SIZES"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            return parse_hidden(value)
        except ConfigError as exc:
            self.fail(str(exc), param, ctx)


def _choice(names: tuple[str, ...]) -> click.Choice:
    return click.Choice(names, case_sensitive=False)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="funcapprox")
def cli() -> None:
    """Find the best hyper-parameters and the smallest network that approximates a function."""


holdout_option = click.option(
    "--holdout", type=float, default=None,
    help=f"A data file: the share of its points held out for the metric and the max error [default: "
         f"{DEFAULT_HOLDOUT}].")


@cli.command()
@click.option("--func", default=DEFAULTS.func, show_default=True,
              help="square, oscillator (quadratic = square), an expression in x such as 'sin(6*x)*exp(-x)', "
                   "or a data file of points x,y (.csv, .txt, .npy, .npz).")
@click.option("--domain", default="0,1", show_default=True, metavar="LO,HI",
              help="The x the function is learned on (a data file's is its range of x).")
@holdout_option
@click.option("--hidden", type=HiddenSizes(), default=",".join(map(str, DEFAULTS.hidden)), show_default=True,
              help="1-3 hidden layer sizes; a 0 ends the stack (64,0,0 is one layer).")
@click.option("--act", type=_choice(ACTIVATIONS), default=DEFAULTS.act, show_default=True)
@click.option("--optimizer", type=_choice(OPTIMIZERS), default=DEFAULTS.optimizer, show_default=True)
@click.option("--lr", type=float, default=DEFAULTS.lr, show_default=True, help="Learning rate.")
@click.option("--loss", type=_choice(LOSSES), default=DEFAULTS.loss, show_default=True)
@click.option("--epochs", type=int, default=None,
              help=f"Epochs [default: {DEFAULT_EPOCHS['square']} for square, {DEFAULT_EPOCHS['oscillator']} "
                   "for oscillator].")
@click.option("--samples", type=int, default=DEFAULTS.samples, show_default=True,
              help="Fresh random samples per epoch (a data file: an epoch is one pass over its training points).")
@click.option("--batch", type=int, default=DEFAULTS.batch, show_default=True, help="Mini-batch size.")
@click.option("--seed", type=int, default=DEFAULTS.seed, show_default=True)
@click.option("--seeds", type=int, default=DEFAULTS.seeds, show_default=True,
              help="Train with this many seeds at once (seed, seed+1, …) and report the median.")
@click.option("--init", type=_choice(INITS), default=DEFAULTS.init, show_default=True,
              help="spread: first-layer kinks tiled over [0, 1]; default: PyTorch's (the study's).")
@click.option("--lr-schedule", type=_choice(LR_SCHEDULES), default=DEFAULTS.lr_schedule, show_default=True,
              help="cosine: lr decays to 0 over the run; constant: the study's.")
@click.option("--refine", type=_choice(REFINES), default=DEFAULTS.refine, show_default=True,
              help="After training, Levenberg–Marquardt with unit flips and swaps (refine.py); auto: on one hidden "
                   f"layer of up to {REFINE_AUTO_WIDTH} units with a linear output, not for a data file.")
@click.option("--output-act", is_flag=True, help="Apply the activation after the output layer too (the study's code).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Run folder [default: runs/FUNC-TIMESTAMP]; one that holds files needs --force.")
@click.option("--force", is_flag=True, help="Replace the run already in --out (the whole folder).")
@click.option("--json", "as_json", is_flag=True, help="Print the final metrics as one JSON object.")
def train(func, domain, holdout, hidden, act, optimizer, lr, loss, epochs, samples, batch, seed, seeds, init,
          lr_schedule, refine, output_act, out, force, as_json):
    """Train one configuration and plot the fit.

    Example: funcapprox train --func oscillator --hidden 64,0,0 --act LeakyReLU --lr 0.005 --loss SmoothL1Loss

    Or your own function: funcapprox train --func "sin(6*x)*exp(-x)" --domain 0,2

    Or your measurements: funcapprox train --func measurements.csv
    """
    from .artifacts import check_run_dest
    from .runs import default_run_dir, run_training

    config = _library_call(
        TrainConfig, func=func, domain=domain, **({} if holdout is None else {"holdout": holdout}), hidden=hidden,
        act=act, optimizer=optimizer, lr=lr, loss=loss, epochs=epochs, samples=samples, batch=batch, seed=seed,
        seeds=seeds, init=init, lr_schedule=lr_schedule, refine=refine, output_act=output_act,
    )
    if out is not None:
        _library_call(check_run_dest, out, force)  # refused before the first line of output
    folder = out or _library_call(default_run_dir, config)  # a new folder, claimed: no other run gets it
    if not as_json:
        click.echo(f"training {_describe(config)} → {folder}", err=True)
    try:
        result = _library_call(run_training, config, folder, _progress_printer(config.epochs), force=force)
    except BaseException:
        if out is None:
            with contextlib.suppress(OSError):
                folder.rmdir()  # the claimed folder, if the run did not get into it
        raise
    summary = result.summary()
    if as_json:
        keys = ("status", "reason", "metric", "rms", "max_error", "max_error_x", "train_rms", "train_max_error",
                "n_params", "seconds", "refined", *SEED_KEYS)
        click.echo(json.dumps({**{k: summary[k] for k in keys if k in summary}, "run_dir": str(folder)}))
    else:
        _print_summary(summary, folder)
    if not result.ok:
        if not as_json:
            click.echo(f"Error: {result.diverged}", err=True)
        sys.exit(1)


SEED_KEYS = ("seeds", "metric_spread", "max_error_worst", "max_error_best", "median_seed")


def _describe(config: TrainConfig) -> str:
    seeds = f"seeds {config.seed}-{config.seed + config.seeds - 1}" if config.seeds > 1 else f"seed {config.seed}"
    return (f"{function_text(config.func, config.domain)} {config.arch} {config.act} {config.optimizer} "
            f"lr={config.lr:g} {config.loss}, {config.epochs} epochs, {seeds}")


def _progress_printer(epochs: int):
    """Print about ten evenly spaced progress lines, so a long run never looks frozen."""
    every = max(5, round(epochs / 10 / 5) * 5)

    def on_eval(e) -> None:
        if e.epoch % every == 0 or e.epoch == epochs:
            click.echo(f"  epoch {e.epoch:>{len(str(epochs))}}/{epochs}  metric {e.metric:6.3f}  "
                       f"rms {e.rms:.5f}  max error {e.max_error:.5f}", err=True)

    return on_eval


def _fmt(value, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _print_summary(s: dict, folder: Path) -> None:
    click.echo(f"metric      {_fmt(s['metric'], '.4f')}   (-log10 RMS error; worst of the last 5 evaluations)")
    if "seeds" in s:
        click.echo(f"seeds       {s['seeds']}: the median seed ({s['median_seed']}) is shown; metric spread "
                   f"{s['metric_spread']:.4f}, max error from {s['max_error_best']:.6f} to {s['max_error_worst']:.6f}")
    held = " on the held-out points" if "train_rms" in s else ""
    click.echo(f"rms         {_fmt(s['rms'], '.6f')}{held}")
    click.echo(f"max error   {_fmt(s['max_error'], '.6f')} at x = {_fmt(s['max_error_x'], '.3f')}{held}")
    if held:
        click.echo(f"training    rms {s['train_rms']:.6f}, max error {s['train_max_error']:.6f} on the points "
                   "it trained on")
    click.echo(f"parameters  {s['n_params']}")
    refined = ", then refined (refine.py)" if s.get("refined") else ""
    click.echo(f"time        {s['seconds']:.2f} s ({s['steps']} optimizer steps{refined})")
    click.echo(f"files       {folder}/")


# --- searching and reading experiments -------------------------------------------------------

workdir_option = click.option(
    "--workdir", type=click.Path(file_okay=False, path_type=Path), envvar="FUNCAPPROX_WORKDIR",
    default="experiments", show_default=True,
    help="Folder where experiments are kept (also FUNCAPPROX_WORKDIR).",
)
experiment_option = click.option(
    "--experiment", "experiment_id", default="latest", show_default=True,
    help="Experiment id, or latest (the most recent one in the work folder).",
)


@cli.command()
@click.option("--stage", type=click.Choice(("nonarch", "arch", "all", "smallest")), default="all", show_default=True,
              help="nonarch: activation, lr, optimizer, loss on {16,16,16}; arch: hidden sizes; all: both in turn; "
                   "smallest: the fewest parameters within --max-error (a width search, stage 1's settings).")
@click.option("--func", default=DEFAULTS.func, show_default=True,
              help="square, oscillator, an expression in x such as 'sin(6*x)*exp(-x)', or a data file of points "
                   "x,y (.csv, .txt, .npy, .npz; copied into the work folder).")
@click.option("--domain", default="0,1", show_default=True, metavar="LO,HI",
              help="The x the function is learned on (a data file's is its range of x).")
@holdout_option
@click.option("--space", "space_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Another NNI search-space JSON for the same parameters [default: search_spaces/STAGE.json].")
@click.option("--set", "set_pairs", multiple=True, metavar="NAME=VALUE",
              help="Fix a setting for every trial, e.g. --set act_func=Tanh (repeatable).")
@click.option("--from", "from_experiment", metavar="EXP_ID",
              help="Stage arch: take the fixed settings from this nonarch experiment [default: the latest].")
@click.option("--tuner", type=click.Choice(tuple(TUNERS)),
              default="GridSearch", show_default=True)
@click.option("--concurrency", type=click.IntRange(1, 64), default=2, show_default=True,
              help="Trials, or batched steps of trials, training at once.")
@click.option("--assessor", type=click.Choice(ASSESSORS),
              help="Stop unpromising trials early with this NNI assessor [default: none, every trial runs out].")
@click.option("--max-trials", type=click.IntRange(1), help="Stop after this many trials [default: the grid size].")
@click.option("--max-duration", help="Stop the experiment after this long, e.g. 30m.")
@click.option("--max-trial-duration", help="Fail a trial that runs longer than this, e.g. 5m.")
@click.option("--epochs", type=click.IntRange(1), help="Override the function's epoch budget (quick looks).")
@click.option("--seeds", type=click.IntRange(1), help="Train each configuration with N seeds; rank by the median.")
@click.option("--port", type=click.IntRange(1024, 65535), help="NNI manager and web UI port [default: a free one].")
@workdir_option
@click.option("--no-wait", is_flag=True, help="Start the experiment and return; follow it in the web UI.")
@click.option("--keep-ui", is_flag=True, help="Leave the NNI manager and web UI running after the search.")
@click.option("--dry-run", is_flag=True, help="Write and validate the experiment's files, print them, start nothing.")
@click.option("--platform", type=click.Choice(("local", "remote")), default="local", show_default=True,
              help="Where trials run: this computer, or the machines of --machines over SSH (NNI's remote service).")
@click.option("--machines", "machines_file", type=click.Path(dir_okay=False, path_type=Path),
              help="machines.yml for --platform remote: host, port, user, sshKeyFile, python per machine.")
@click.option("--max-error", type=float,
              help="Stage smallest: the max error a network must reach (the median of its seeds').")
@click.option("--depth", "depth", type=click.IntRange(1, 3),
              help="Stage smallest: only networks of this many hidden layers [default: 1, 2 and 3].")
@click.option("--resume", "resume_id", metavar="EXP_ID",
              help="Continue a stopped or interrupted experiment: run only what it has not run yet.")
@click.pass_context
def search(ctx, stage, func, domain, holdout, space_file, set_pairs, from_experiment, tuner, concurrency, assessor,
           max_trials,
           max_duration, max_trial_duration, epochs, seeds, port, workdir, no_wait, keep_ui, dry_run, platform,
           machines_file, max_error, depth, resume_id):
    """Search with NNI: stage 1 (nonarch), stage 2 (arch) with stage 1's best, or both.

    Example: funcapprox search --stage all --func oscillator

    The smallest network: funcapprox search --stage smallest --func oscillator --max-error 0.006
    """

    from .config import parse_set_values
    from .search.plan import plan_stage
    from .search.run import search as run_search

    workdir = workdir.resolve()
    if resume_id is not None:
        option = {p.name: p.opts[0] for p in ctx.command.params}
        given = [option[name] for name in ctx.params if name not in ("resume_id", "port", "workdir", "keep_ui")
                 and ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT]
        if given:
            raise click.UsageError(f"--resume continues the experiment as it was started; drop {', '.join(given)}")
        _resume(workdir, resume_id, port, keep_ui)
        return
    if stage == "all" and (space_file or from_experiment or no_wait):
        raise click.UsageError("--space, --from and --no-wait go with a single --stage (nonarch or arch)")
    if (platform == "remote") != (machines_file is not None):
        raise click.UsageError("--platform remote and --machines FILE go together")
    machines_file = machines_file.resolve() if machines_file is not None else None
    set_values = _library_call(parse_set_values, (*set_pairs, *([f"seeds={seeds}"] if seeds else [])))
    if holdout is not None:
        set_values["holdout"] = holdout
    limits = dict(tuner=tuner, concurrency=concurrency, max_trials=max_trials, max_duration=max_duration,
                  max_trial_duration=max_trial_duration, port=port, **({"assessor": assessor} if assessor else {}))
    widths = {"max_error": max_error, "depths": (depth,) if depth else None}
    if dry_run:
        plan = _library_call(plan_stage, "nonarch" if stage == "all" else stage, func, workdir, domain=domain,
                             space_file=space_file,
                             set_values=set_values, from_experiment=from_experiment, epochs=epochs,
                             machines_file=machines_file, **widths, **limits)
        _dry_run(plan)
        if stage == "all":
            click.echo("(stage arch would take its fixed settings from this stage's best trial)")
        return
    _search_call(run_search, stage, func, workdir, limits=limits, domain=domain, set_values=set_values,
                 space_file=space_file,
                 from_experiment=from_experiment, epochs=epochs, machines_file=machines_file, follow=not no_wait,
                 keep_ui=keep_ui, listener=_listener(keep_ui), **widths)


def _resume(workdir: Path, exp_id: str, port: int | None, keep_ui: bool) -> None:
    from .results import check_id
    from .search.run import resume_search

    _library_call(check_id, exp_id)
    _search_call(resume_search, workdir, exp_id, port=port, keep_ui=keep_ui, listener=_listener(keep_ui))


def _search_call(fn, *args, **kwargs):
    """A search's library call: a mistake in what was asked exits 2; once it runs, the live progress
    line is ended before the one-line error (Interrupted included: it says what was kept)."""
    try:
        return fn(*args, **kwargs)
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    except FuncApproxError as exc:
        click.echo("", err=True)
        raise click.ClickException(str(exc)) from None


def _listener(keep_ui: bool):
    """What `search` prints as the library tells it how the search goes."""
    from .search.run import Listener

    def on_plan(plan) -> None:
        if plan.handoff:
            source = f"best trial of {plan.from_experiment}" if plan.from_experiment else "--set"
            click.echo(f"stage arch fixes ({source}): " + ", ".join(f"{k}={v}" for k, v in plan.handoff.items()))
        where = f", on the machines of {plan.machines_file} over SSH" if plan.machines_file else ""
        trials = plan.max_trials or "up to " + str(plan.max_duration)
        batched = ""
        if plan.group_sizes and max(plan.group_sizes.values()) > 1 and plan.slots > plan.concurrency:  # a worker
            batched = f" (batched steps of up to {min(GROUP_LIMIT, max(plan.group_sizes.values()))} trials)"
        click.echo(f"stage {plan.stage} for {function_text(plan.func, plan.domain)}: {trials} trials, {plan.tuner}, "
                   f"concurrency {plan.concurrency}{batched}{where}")

    def on_outcome(outcome) -> None:
        if outcome.status == "RUNNING":  # --no-wait
            click.echo(f"not waiting; follow it at {outcome.launched.url}, stop it with "
                       f"`funcapprox experiments --stop {outcome.launched.id}`")
            return
        click.echo("", err=True)
        _print_outcome(outcome, keep_ui)

    return Listener(
        on_plan=on_plan,
        on_launch=lambda launched: click.echo(f"experiment {launched.id} started: web UI {launched.url}"),
        on_resume=lambda launched, plan: click.echo(f"experiment {launched.id} resumed: {plan.done} done, "
                                                    f"{plan.to_run} to run; web UI {launched.url}"),
        on_progress=_progress_line(),
        on_outcome=on_outcome,
        on_note=click.echo,
    )


def _dry_run(plan) -> None:
    from .search.plan import dry_run

    folder = plan.workdir / ".dry-run" / f"{plan.label}-{plan.stage}"
    config_file = _library_call(dry_run, plan, folder)
    click.echo(f"# {config_file} (validated by NNI's ExperimentConfig)")
    click.echo(config_file.read_text())
    click.echo(f"# {config_file.parent / 'search_space.json'}: {plan.grid_size or 'unbounded'} grid points")
    click.echo((config_file.parent / "search_space.json").read_text())


def _print_importance(experiment, fmt: str) -> None:
    from .importance import importance
    from .views.report.data import as_text

    result = _library_call(importance, experiment)
    if fmt == "json":
        click.echo(json.dumps(result.as_dict(), indent=2, default=str))
        return
    click.echo(f"experiment {experiment.id}: what matters ({result.method}, {result.n} trials"
               + (f"; {result.note}" if result.note else "") + ")")
    rows = [[e.name, f"{e.share:.1%}", f"{as_text(e.best)} ({_fmt(e.best_mean, '.3f')})",
             f"{as_text(e.worst)} ({_fmt(e.worst_mean, '.3f')})"] for e in result.effects]
    rows.append(["interactions", f"{result.interactions_share:.1%}", "", ""])
    _print_rows(["setting", "share", "best value (mean metric)", "worst value (mean metric)"], rows)


def _smallest_lines(experiment, max_error: float) -> list[str]:
    """The smallest network within `max_error`, how many of its seeds reached it, and how close the next
    smaller network of its depth came."""
    from .floor import PIECEWISE_LINEAR, floor_text
    from .views.pareto import closest_miss, seeds_within, smallest_within
    from .widths import wilson

    found = smallest_within(experiment.trials, max_error)

    def what(t) -> str:
        seeds = seeds_within(t, max_error)
        share = ""
        if seeds:
            low, high = wilson(*seeds)
            share = f"; {seeds[0]}/{seeds[1]} seeds reached it (95% Wilson interval {low:.2f}–{high:.2f})"
        return (f"{t.arch}, {t.n_params} parameters, max error {t.max_error:.5f}, metric {t.metric:.4f} "
                f"(trial {t.trial_id}{share})")

    if not found.reached:
        return [f"no network reached max error <= {max_error:g}; closest: {what(found.trial)}"]
    lines = [f"smallest network with max error <= {max_error:g}: {what(found.trial)}"]
    miss = closest_miss(experiment.trials, found.trial, max_error)
    if miss is not None:
        lines.append(f"the next smaller of its depth did not: {what(miss)}")
    params = found.trial.params
    act = params.get("act") if params.get("act") in PIECEWISE_LINEAR else "ReLU"  # smooth units have no floor
    return [*lines, floor_text(params.get("func"), params.get("domain", (0.0, 1.0)), max_error, act)]


def _print_outcome(outcome, keep_ui: bool) -> None:
    experiment = outcome.experiment
    counts = experiment.counts()
    click.echo(f"experiment {experiment.id} finished ({outcome.status}): "
               + ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items())))
    if experiment.succeeded():
        best = experiment.best()
        click.echo(f"best trial {best.trial_id}: metric {best.metric:.4f}, max error {_fmt(best.max_error, '.5f')}, "
                   f"{best.arch}, {best.n_params} parameters")
        _print_table(experiment.ranked()[:5], experiment)
        if experiment.meta.tuner_args:  # --stage smallest
            for line in _smallest_lines(experiment, experiment.meta.tuner_args["max_error"]):
                click.echo(line)
    if outcome.best_plot:
        click.echo(f"best fit plotted: {outcome.best_plot}")
    if outcome.report:
        click.echo(f"report: {outcome.report}")
    if keep_ui:
        click.echo(f"web UI still up at {outcome.launched.url}; stop it with "
                   f"`funcapprox experiments --stop {experiment.id}`")


def _progress_line():
    """Live progress: one line rewritten in place on a terminal, a line every 30 s otherwise."""
    tty = sys.stderr.isatty()
    last = [0.0]

    def show(p) -> None:
        counts = p.experiment.counts()
        done = p.finished_trials
        best = max(p.experiment.succeeded(), key=lambda t: t.metric, default=None)
        text = f"trials {done}/{p.total or '?'}: {counts.get('SUCCEEDED', 0)} ok, {counts.get('FAILED', 0)} failed, "
        if counts.get("EARLY_STOPPED"):
            text += f"{counts['EARLY_STOPPED']} stopped early, "
        text += f"{counts.get('RUNNING', 0)} running"
        if best is not None:
            text += f" | best {best.metric:.3f} {_short_params(best)}"
        text += f" | {_duration(p.elapsed)} elapsed"
        if p.eta is not None:
            text += f", ETA {_duration(p.eta)}"
        if tty:
            click.echo("\r\x1b[2K" + text, nl=False, err=True)
        elif p.elapsed - last[0] >= 30 or p.elapsed < last[0] or done == p.total:  # (a next stage starts at 0)
            last[0] = p.elapsed
            click.echo(text, err=True)

    return show


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def _short_params(trial) -> str:
    """The network and its training settings under the names the results table uses."""
    p = trial.params
    return trial.arch + " " + " ".join(f"{k}={p[k]}" for k in ("act", "lr", "optimizer", "loss") if k in p)


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "{" + ",".join(map(str, value + [0] * (3 - len(value)))) + "}"
    return str(value)


def _print_table(trials, experiment) -> None:
    columns = experiment.searched()
    headers = ["trial", "status", *columns, "metric", "rms", "max_error", "params", "seconds"]
    rows = [[t.trial_id, t.status, *(_cell(t.params.get(c)) for c in columns),
             _fmt(t.metric, ".4f"), _fmt(t.rms, ".5f"), _fmt(t.max_error, ".5f"), _cell(t.n_params),
             _fmt(t.seconds, ".1f")] for t in trials]
    _print_rows(headers, rows)


def _print_rows(headers: list[str], rows: list[list]) -> None:
    """A plain aligned text table."""
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    for row in [headers, *rows]:
        click.echo("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip())


@cli.command()
@experiment_option
@click.option("--top", type=click.IntRange(1), help="Show only the N best trials.")
@click.option("--format", "fmt", type=click.Choice(("table", "csv", "json")), default="table", show_default=True)
@click.option("--pareto", is_flag=True, help="Only the networks no other trial beats on both size and max error.")
@click.option("--by", type=click.Choice(("max_error", "metric")), default="max_error", show_default=True,
              help="With --pareto: the accuracy measure of the front.")
@click.option("--smallest", is_flag=True, help="The smallest network that reaches --max-error, in one line.")
@click.option("--max-error", type=click.FloatRange(min=0, min_open=True), help="The target for --smallest.")
@click.option("--importance", is_flag=True,
              help="Each searched setting's share of the metric's variance, with its best and worst value.")
@workdir_option
def results(experiment_id, top, fmt, pareto, by, smallest, max_error, importance, workdir):
    """Rank an experiment's trials, read from NNI's store (the manager need not run).

    Examples: funcapprox results --top 10; funcapprox results --pareto; funcapprox results --smallest --max-error 0.006
    """
    from .nni.store import load_experiment
    from .views.pareto import pareto_front

    if max_error is not None and not smallest:
        raise click.UsageError("--max-error goes with --smallest")
    experiment = _library_call(load_experiment, workdir.resolve(), experiment_id)
    if smallest and max_error is None and not (experiment.meta.tuner_args or {}).get("max_error"):
        raise click.UsageError("--smallest needs --max-error (only a --stage smallest experiment has its own)")
    if importance:
        _print_importance(experiment, fmt)
        return
    if smallest:
        max_error = max_error if max_error is not None else (experiment.meta.tuner_args or {}).get("max_error")
        for line in _library_call(_smallest_lines, experiment, max_error):
            click.echo(line)
        return
    ranked = pareto_front(experiment.trials, by) if pareto else experiment.ranked()
    shown = ranked[:top] if top else ranked
    if fmt == "json":
        click.echo(json.dumps([t.as_dict() for t in shown], indent=2))
    elif fmt == "csv":
        _print_csv(shown)
    elif pareto:
        click.echo(f"experiment {experiment.id}: {len(shown)} networks on the front of {by} against parameters")
        _print_rows(["arch", "params", "max_error", "metric", "trial"],
                    [[t.arch, t.n_params, _fmt(t.max_error, ".5f"), _fmt(t.metric, ".4f"), t.trial_id] for t in shown])
    else:
        counts = experiment.counts()
        func = function_text(experiment.func, experiment.meta.fixed.get("domain", (0.0, 1.0)))
        click.echo(f"experiment {experiment.id}: stage {experiment.stage}, {func}, "
                   + ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items())))
        _print_table(shown, experiment)
        failed = [t for t in shown if t.reason]
        for t in failed:
            click.echo(f"{t.trial_id} {t.status}: {t.reason}")


def _print_csv(trials) -> None:
    import csv

    from .config import field_names

    writer = csv.writer(sys.stdout, lineterminator="\n")
    fields = list(field_names())
    writer.writerow(["trial_id", "status", *fields, "metric", "rms", "max_error", "n_params", "seconds"])
    for t in trials:
        values = [",".join(map(str, v)) if isinstance(v, list) else v for v in (t.params.get(f) for f in fields)]
        writer.writerow([t.trial_id, t.status, *values, t.metric, t.rms, t.max_error, t.n_params, t.seconds])


@cli.command()
@click.option("--trial", "trial_id", default="best", show_default=True, help="best, or a trial id.")
@experiment_option
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="PNG to write [default: the experiment's funcapprox/ folder]; the history goes beside it.")
@click.option("--force", is_flag=True, help="Replace --out and its -history.png if they exist.")
@click.option("--retrain", is_flag=True, help="If the trial's weights are missing, train its configuration again.")
@workdir_option
def plot(trial_id, experiment_id, out, force, retrain, workdir):
    """Plot a trial's fit against the truth, and its metric history.

    Example: funcapprox plot --trial best --experiment latest
    """
    from .views.figures import plot_trial

    if out is not None and not force:  # the history is written as figures.plot_trial names it
        _refuse_existing(out, out.with_name(out.stem + "-history.png"))
    paths = _library_call(plot_trial, workdir.resolve(), experiment_id, trial_id, out, retrain)
    for path in paths:
        click.echo(f"wrote {path}")


@cli.command()
@experiment_option
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="HTML file to write [default: the experiment's funcapprox/report.html].")
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
@workdir_option
def report(experiment_id, out, force, workdir):
    """Write one self-contained HTML report of an experiment: best fit, Pareto front,
    parallel coordinates, per-parameter summaries, metric histories, failures.

    Example: funcapprox report --experiment latest --out report.html
    """
    from .views.report import write_report

    if out is not None and not force:
        _refuse_existing(out)
    path = _library_call(write_report, workdir.resolve(), experiment_id, out, replace=force or out is None)
    click.echo(f"wrote {path}")


def _refuse_existing(*paths: Path) -> None:
    """A user-given output file is not overwritten without --force."""
    for path in paths:
        if os.path.lexists(path):
            raise UserError(f"{path} already exists; add --force to replace it, or give another --out")


@cli.command()
@click.option("--stop", "stop_id", metavar="EXP_ID", help="Stop this experiment's NNI manager.")
@click.option("--view", "view_id", metavar="EXP_ID", help="Reopen this experiment's web UI, read-only (NNI's view).")
@click.option("--port", type=click.IntRange(1024, 65535), help="Port for --view [default: a free one].")
@workdir_option
def experiments(stop_id, view_id, port, workdir):
    """List the experiments in the work folder; stop one, or reopen its web UI.

    Example: funcapprox experiments --view 5g2kd1x0
    """
    from .search import registry

    workdir = workdir.resolve()
    if stop_id and view_id:
        raise click.UsageError("give --stop or --view, not both")
    if stop_id:
        click.echo(_library_call(registry.stop_experiment, workdir, stop_id))
        return
    if view_id:
        click.echo(_library_call(registry.view_experiment, workdir, view_id, port))
        return
    rows = _library_call(registry.list_experiments, workdir)
    if not rows:
        click.echo(f"no experiments in {workdir}; start one with `funcapprox search`")
        return
    headers = list(rows[0])
    _print_rows(headers, [[_cell(r[h]) for h in headers] for r in rows])


def main() -> None:
    try:
        cli(prog_name="funcapprox")
    except BrokenPipeError:  # `funcapprox … | head`: the reader left; whatever ran has been stopped
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error as Python exits
        sys.exit(1)
