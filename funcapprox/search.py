"""A search stage from start to finish: launch, follow, stop the manager, keep the results."""

from __future__ import annotations

import contextlib
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import warm
from .errors import FuncApproxError
from .experiment import Launched, Progress, StagePlan, launch, mark, remote_machines, resume, stop, wait
from .figures import plot_best
from .machines import check_machine, fetch_trials
from .results import Experiment, check_id, load_experiment, read_meta
from .resume import ResumePlan


class Interrupted(FuncApproxError):
    """The user stopped the search (Ctrl-C or SIGTERM); finished trials are kept."""


@dataclass
class StageOutcome:
    launched: Launched
    experiment: Experiment
    status: str
    best_plot: Path | None
    report: Path | None = None


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def _follow(launched: Launched, workdir: Path, on_progress, poll: float, total: int | None) -> str:
    """Wait for the experiment; on Ctrl-C, SIGTERM or a lost manager, stop it and keep what finished."""
    try:
        return wait(launched, workdir, on_progress, poll=poll, total=total)
    except KeyboardInterrupt:
        with _signals_ignored():  # a second Ctrl-C must not leave the manager half stopped
            stop(launched.id, workdir)
            mark(workdir, launched.id, status="INTERRUPTED")
        raise Interrupted(
            f"search interrupted; experiment {launched.id} stopped, its finished trials are kept "
            f"(funcapprox results --experiment {launched.id}); continue it with "
            f"`funcapprox search --resume {launched.id}`"
        ) from None
    except FuncApproxError as exc:
        with _signals_ignored():
            stop(launched.id, workdir)
            mark(workdir, launched.id, status="ERROR")
        raise type(exc)(f"{exc}; once the cause is fixed, continue it with "
                        f"`funcapprox search --resume {launched.id}`") from None


@contextlib.contextmanager
def _signals_ignored():
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def _sigterm_interrupts():
    """SIGTERM (a service manager, `kill`) stops the search like Ctrl-C does."""
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_stage(
    plan: StagePlan,
    *,
    follow: bool = True,
    keep_ui: bool = False,
    on_launch: Callable[[Launched], None] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    poll: float = 2.0,
) -> StageOutcome:
    """Launch the stage; unless `follow` is off, wait for it, stop its manager and plot its best.

    Ctrl-C or SIGTERM stops the experiment cleanly and raises Interrupted: the trials
    that finished stay readable by `results` and `plot`.
    """
    if not follow:
        launched = launch(plan)
        if on_launch is not None:
            on_launch(launched)
        return StageOutcome(launched, load_experiment(plan.workdir, launched.id), "RUNNING", None)
    machines = plan.machines
    for machine in machines or ():
        check_machine(machine)  # a clear error now, not failed trials later
    with _sigterm_interrupts(), warm.worker(enabled=not machines) as socket_path:  # lives while we follow
        plan.warm_socket = socket_path
        launched = launch(plan)
        if on_launch is not None:
            on_launch(launched)
        status = _follow(launched, plan.workdir, on_progress, poll, plan.max_trials)
    return _finish(launched, plan.workdir, status, keep_ui, machines)


def resume_stage(
    workdir: Path,
    exp_id: str,
    *,
    port: int | None = None,
    keep_ui: bool = False,
    on_launch: Callable[[Launched, ResumePlan], None] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    poll: float = 2.0,
) -> StageOutcome | ResumePlan:
    """Run what a stopped experiment has not run yet (see resume.py); the plan alone if nothing is left."""
    machines = remote_machines(read_meta(Path(workdir) / check_id(exp_id)))
    with _sigterm_interrupts(), warm.worker(enabled=not machines) as socket_path:
        launched, plan = resume(workdir, exp_id, port=port, warm_socket=socket_path)
        if launched is None:
            return plan
        if on_launch is not None:
            on_launch(launched, plan)
        total = len(plan.experiment.trials) + plan.to_run
        status = _follow(launched, workdir, on_progress, poll, total)
    return _finish(launched, workdir, status, keep_ui, machines)


def _finish(launched: Launched, workdir: Path, status: str, keep_ui: bool, machines=None) -> StageOutcome:
    """Stop the manager (unless kept for its web UI), bring remote trials' files here, record
    the end, plot the best, write the report."""
    if not keep_ui:
        with _signals_ignored():
            stop(launched.id, workdir)
    if machines:
        fetch_trials(machines, workdir, launched.id)
    experiment = load_experiment(workdir, launched.id)
    mark(workdir, launched.id, status=status, finished=True)
    return StageOutcome(launched, experiment, status, plot_best(experiment), _report(experiment))


def _report(experiment: Experiment) -> Path | None:
    """The experiment's HTML report, when at least one trial succeeded."""
    from .report import write_report

    if not experiment.succeeded():
        return None
    return write_report(experiment.folder.parent, experiment.id)

