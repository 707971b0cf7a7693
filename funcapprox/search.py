"""A search stage from start to finish: launch, follow, stop the manager, keep the results."""

from __future__ import annotations

import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import warm
from .errors import FuncApproxError
from .experiment import Launched, Progress, StagePlan, launch, mark, stop, wait
from .figures import plot_best
from .results import Experiment, load_experiment


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


def _follow(launched: Launched, plan: StagePlan, on_progress, poll: float) -> str:
    """Wait for the experiment; on Ctrl-C, SIGTERM or a lost manager, stop it and keep what finished."""
    try:
        return wait(launched, plan.workdir, on_progress, poll=poll, total=plan.max_trials)
    except KeyboardInterrupt:
        stop(launched.id, plan.workdir)
        mark(plan.workdir, launched.id, status="INTERRUPTED")
        raise Interrupted(
            f"search interrupted; experiment {launched.id} stopped, its finished trials are kept "
            f"(funcapprox results --experiment {launched.id})"
        ) from None
    except FuncApproxError:
        stop(launched.id, plan.workdir)
        mark(plan.workdir, launched.id, status="ERROR")
        raise


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
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        with warm.worker() as socket_path:  # lives as long as we follow the experiment
            plan.warm_socket = socket_path
            launched = launch(plan)
            if on_launch is not None:
                on_launch(launched)
            status = _follow(launched, plan, on_progress, poll)
    finally:
        signal.signal(signal.SIGTERM, previous)
    if not keep_ui:
        stop(launched.id, plan.workdir)
    experiment = load_experiment(plan.workdir, launched.id)
    mark(plan.workdir, launched.id, status=status, finished=True)
    return StageOutcome(launched, experiment, status, plot_best(experiment), _report(experiment))


def _report(experiment: Experiment) -> Path | None:
    """The experiment's HTML report, when at least one trial succeeded."""
    from .report import write_report

    if not experiment.succeeded():
        return None
    return write_report(experiment.folder.parent, experiment.id)

