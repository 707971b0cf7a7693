"""A search stage from start to finish: launch, follow, stop the manager, keep the results."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from ..errors import ConfigError, ExperimentError, FuncApproxError, Interrupted
from ..nni import warm
from ..nni.config import trial_command
from ..nni.manager import Launched, Progress, create, kill_leftover, live_status, restart, stop, wait
from ..nni.remote import check_machine, fetch_trials
from ..nni.store import load_experiment, prepare_store
from ..results import META_DIR, Experiment, RunMeta, experiment_ids, read_meta, resolve_id, update_meta, write_meta
from ..views.figures import plot_best
from .plan import StagePlan, check_workdir, grid_group_sizes, plan_stage, run_meta, write_stage_files
from .resume import ResumePlan, plan_resume


@dataclass
class StageOutcome:
    launched: Launched
    experiment: Experiment
    status: str
    best_plot: Path | None
    report: Path | None = None


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def _follow(launched: Launched, workdir: Path, on_progress, poll: float, total: int | None, *,
            on_launch: Callable[[], None] | None = None, interrupted: bool = False, machines=None,
            already: int = 0) -> str:
    """Wait for the experiment; on Ctrl-C, SIGTERM, SIGHUP or a lost manager, stop it and keep what finished."""
    try:
        if interrupted:  # the signal came while the manager was starting: it is up now, stop it
            raise KeyboardInterrupt
        if on_launch is not None:
            on_launch()
        return wait(launched, workdir, on_progress, poll=poll, total=total, already=already)
    except KeyboardInterrupt:
        _stop_and_keep(launched, workdir, "INTERRUPTED", machines)
        raise Interrupted(
            f"search interrupted; experiment {launched.id} stopped, its finished trials are kept "
            f"(funcapprox results --experiment {launched.id}); continue it with "
            f"`funcapprox search --resume {launched.id}`"
        ) from None
    except FuncApproxError as exc:
        _stop_and_keep(launched, workdir, "ERROR", machines)
        raise type(exc)(f"{exc}; once the cause is fixed, continue it with "
                        f"`funcapprox search --resume {launched.id}`") from None
    except BaseException:  # anything else (the output's pipe closed, a bug): never leave the manager running
        _stop_and_keep(launched, workdir, "ERROR", machines)
        raise


def _stop_and_keep(launched: Launched, workdir: Path, status: str, machines) -> None:
    with _signals_ignored():  # a second Ctrl-C must not leave the manager half stopped
        stop(launched.id, workdir)
        _fetch(machines, workdir, launched.id)
        update_meta(workdir, launched.id, status=status)


def _fetch(machines, workdir: Path, exp_id: str) -> None:
    """Bring remote trials' files here; a machine that cannot be reached is reported, not fatal."""
    if not machines:
        return
    try:
        fetch_trials(machines, workdir, exp_id)
    except FuncApproxError as exc:
        print(f"funcapprox: could not fetch every remote trial's files ({exc}); results come from NNI's "
              "store alone for those", file=sys.stderr)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def _signals_ignored():
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


class _Deferred:
    hit = False


@contextlib.contextmanager
def _signals_deferred():
    """Hold Ctrl-C, SIGTERM and SIGHUP while a manager starts: stopping it halfway would leave
    it running unrecorded. Afterwards `hit` says whether one came."""
    deferred = _Deferred()

    def note(signum, frame):
        deferred.hit = True

    previous = {s: signal.signal(s, note) for s in STOP_SIGNALS}
    try:
        yield deferred
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def _stop_signals_interrupt():
    """SIGTERM (a service manager, `kill`) and SIGHUP (the terminal closed) stop the search like Ctrl-C."""
    previous = {s: signal.signal(s, _raise_interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def run_stage(
    plan: StagePlan,
    *,
    follow: bool = True,
    keep_ui: bool = False,
    on_launch: Callable[[Launched], None] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    poll: float = 0.5,
) -> StageOutcome:
    """Launch the stage; unless `follow` is off, wait for it, stop its manager and plot its best.

    Ctrl-C, SIGTERM or SIGHUP stops the experiment cleanly and raises Interrupted: the
    trials that finished stay readable by `results` and `plot`.
    """
    if not follow:
        launched = launch(plan)
        if on_launch is not None:
            on_launch(launched)
        return StageOutcome(launched, load_experiment(plan.workdir, launched.id), "RUNNING", None)
    machines = plan.machines
    for machine in machines or ():
        check_machine(machine)  # a clear error now, not failed trials later
    # The warm worker lives while we follow; it serves trials whose files go under the work folder.
    with _stop_signals_interrupt(), warm.worker(enabled=not machines, root=plan.workdir, sizes=plan.group_sizes,
                                                trainers=plan.concurrency) as socket_path:
        plan = replace(plan, warm_socket=socket_path)
        with _signals_deferred() as deferred:
            launched = launch(plan)
        status = _follow(launched, plan.workdir, on_progress, poll, plan.max_trials, machines=machines,
                         on_launch=on_launch and (lambda: on_launch(launched)), interrupted=deferred.hit)
    return _finish(launched, plan.workdir, status, keep_ui, machines)


def resume_stage(
    workdir: Path,
    exp_id: str,
    *,
    port: int | None = None,
    keep_ui: bool = False,
    on_launch: Callable[[Launched, ResumePlan], None] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    poll: float = 0.5,
) -> StageOutcome | ResumePlan:
    """Run what a stopped experiment has not run yet (see resume.py); the plan alone if nothing is left."""
    exp_id = resolve_id(Path(workdir), exp_id)
    machines = remote_machines(read_meta(Path(workdir) / exp_id))
    for machine in machines or ():
        check_machine(machine)
    _fetch(machines, workdir, exp_id)  # what remote trials left decides what is left to run
    meta = read_meta(Path(workdir) / exp_id)
    sizes = None if machines else _recorded_group_sizes(Path(workdir), exp_id, meta)
    with _stop_signals_interrupt(), warm.worker(enabled=not machines, root=Path(workdir), sizes=sizes,
                                                trainers=meta.concurrency or 2) as socket_path:
        with _signals_deferred() as deferred:
            launched, plan = resume(workdir, exp_id, port=port, warm_socket=socket_path)
        if launched is None:
            return plan
        already = sum(1 for t in plan.experiment.trials if t.status.finished)
        status = _follow(launched, workdir, on_progress, poll, already + plan.to_run, machines=machines,
                         on_launch=on_launch and (lambda: on_launch(launched, plan)), interrupted=deferred.hit,
                         already=already)
    return _finish(launched, workdir, status, keep_ui, machines)


def _finish(launched: Launched, workdir: Path, status: str, keep_ui: bool, machines=None) -> StageOutcome:
    """Stop the manager (unless kept for its web UI), bring remote trials' files here, record
    the end, plot the best, write the report."""
    if status == "DONE" and not keep_ui and not machines:
        # Every trial has ended and NNI's store is final: plot and report while the manager shuts down,
        # which takes it seconds (its tuner's exit, then its trials' cleanup).
        with _stopping_meanwhile(launched.id, workdir):
            update_meta(workdir, launched.id, status=status, finished=True)
            return _outcome(launched, workdir, status)
    with _signals_ignored():
        if not keep_ui:
            stop(launched.id, workdir)
        _fetch(machines, workdir, launched.id)
        update_meta(workdir, launched.id, status=status, finished=True)
    return _outcome(launched, workdir, status)


@contextlib.contextmanager
def _stopping_meanwhile(exp_id: str, workdir: Path):
    """Stop the manager in the background while the block runs; back only once it is stopped (a second
    Ctrl-C then must not leave it half stopped), with the stop's own error if it had one."""
    failed: list[BaseException] = []

    def stop_it() -> None:
        try:
            stop(exp_id, workdir)
        except BaseException as exc:  # raised in the caller's thread, below
            failed.append(exc)

    stopping = threading.Thread(target=stop_it, name=f"stop {exp_id}")
    stopping.start()
    try:
        yield
    finally:
        with _signals_ignored():
            stopping.join()
    if failed:
        raise failed[0]


def _outcome(launched: Launched, workdir: Path, status: str) -> StageOutcome:
    experiment = load_experiment(workdir, launched.id)
    return StageOutcome(launched, experiment, status, plot_best(experiment), _report(experiment))


def _report(experiment: Experiment) -> Path | None:
    """The experiment's HTML report, when at least one trial succeeded."""
    from ..views.report import write_report

    if not experiment.succeeded():
        return None
    return write_report(experiment.folder.parent, experiment.id)


# --- a whole search: stages in turn, and what follows a resume -----------------------------------


@dataclass(frozen=True)
class Listener:
    """What the caller (the CLI) is told as a search goes on; every part is optional."""

    on_plan: Callable[[StagePlan], None] | None = None  # a stage is planned and about to start
    on_launch: Callable[[Launched], None] | None = None
    on_resume: Callable[[Launched, ResumePlan], None] | None = None
    on_progress: Callable[[Progress], None] | None = None
    on_outcome: Callable[[StageOutcome], None] | None = None
    on_note: Callable[[str], None] | None = None  # a sentence for the user


def _tell(callback: Callable | None, *args) -> None:
    if callback is not None:
        callback(*args)


def search(stage: str, func: str, workdir: Path, *, limits: dict, domain=(0.0, 1.0), set_values: dict | None = None,
           space_file: Path | None = None, from_experiment: str | None = None, epochs: int | None = None,
           machines_file: Path | None = None, follow: bool = True, keep_ui: bool = False,
           listener: Listener = Listener(), max_error: float | None = None,
           depths: tuple[int, ...] | None = None) -> list[StageOutcome]:
    """`funcapprox search`: one stage, or (`all`) stage 1 then stage 2 with stage 1's best; `smallest`: the
    width search for the fewest parameters within `max_error` (widths.py)."""
    outcomes = []
    for name in ("nonarch", "arch") if stage == "all" else (stage,):
        next_stage = None
        if stage == "all" and name == "nonarch":  # recorded, so that --resume can go on with stage 2
            next_stage = {"stage": "arch", "set_values": set_values, "epochs": epochs,
                          "limits": {k: v for k, v in limits.items() if k != "port"},
                          "machines_file": str(machines_file) if machines_file else None}
        plan = plan_stage(name, func, workdir, domain=domain, space_file=space_file, set_values=set_values,
                          from_experiment=from_experiment, epochs=epochs, machines_file=machines_file,
                          next_stage=next_stage, max_error=max_error, depths=depths, **limits)
        outcomes.append(_run_planned(plan, follow, keep_ui, listener))
    return outcomes


def resume_search(workdir: Path, exp_id: str, *, port: int | None = None, keep_ui: bool = False,
                  listener: Listener = Listener()) -> list[StageOutcome | ResumePlan]:
    """`funcapprox search --resume`: what the experiment has left, then stage 2 if it was stage 1 of `all`."""
    first = resume_stage(workdir, exp_id, port=port, keep_ui=keep_ui, on_launch=listener.on_resume,
                         on_progress=listener.on_progress)
    if isinstance(first, StageOutcome):
        _tell(listener.on_outcome, first)
    else:
        _tell(listener.on_note, f"experiment {first.id} has nothing left to run ({first.done} done)")
    done: list[StageOutcome | ResumePlan] = [first]
    experiment = first.experiment
    then = experiment.meta.next_stage
    stage2 = [i for i in experiment_ids(workdir) if read_meta(workdir / i).from_experiment == experiment.id]
    if stage2:
        _tell(listener.on_note, f"stage 2 of this search is experiment {stage2[-1]}; continue it with "
                                f"`funcapprox search --resume {stage2[-1]}`")
    elif isinstance(then, dict) and experiment.succeeded():  # stage 1 of `--stage all`: go on with stage 2
        plan = plan_stage(then["stage"], experiment.func, workdir, from_experiment=experiment.id,
                          domain=experiment.meta.fixed.get("domain", (0.0, 1.0)),
                          set_values=then.get("set_values"), epochs=then.get("epochs"),
                          machines_file=then.get("machines_file"), **then.get("limits", {}), port=port)
        done.append(_run_planned(plan, True, keep_ui, listener))
    return done


def _run_planned(plan: StagePlan, follow: bool, keep_ui: bool, listener: Listener) -> StageOutcome:
    _tell(listener.on_plan, plan)
    outcome = run_stage(plan, follow=follow, keep_ui=keep_ui, on_launch=listener.on_launch,
                        on_progress=listener.on_progress)
    _tell(listener.on_outcome, outcome)
    return outcome


# --- starting an experiment, or starting it again ------------------------------------------------


def launch(plan: StagePlan) -> Launched:
    """Write the stage's files and start the experiment (NNI's create, locked down: nni/launch.py)."""
    workdir = plan.workdir
    check_workdir(workdir)
    try:
        staging = Path(tempfile.mkdtemp(prefix=".new-", dir=workdir))
    except OSError as exc:
        raise ExperimentError(f"cannot write to the work folder {workdir}: {exc.strerror}") from None
    try:
        launched = create(write_stage_files(plan, staging), workdir, plan.port)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    try:
        staging.rename(launched.folder / META_DIR)
        write_meta(launched.folder, run_meta(plan, launched.id, port=launched.port, url_prefix=launched.prefix))
    except BaseException as exc:  # a manager nobody recorded would run on unseen: stop it
        stop(launched.id, workdir)
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, OSError):
            raise ExperimentError(f"experiment {launched.id} started but its files could not be written "
                                  f"({exc.strerror}); it was stopped") from None
        raise
    return launched


def resume(workdir: Path, exp_id: str, *, port: int | None = None, warm_socket: str | None = None,
           ) -> tuple[Launched | None, ResumePlan]:
    """Restart a stopped experiment's manager (NNI's resume) to run what it has not run yet (see resume.py).

    Returns no Launched when nothing is left to run.
    """
    experiment = load_experiment(workdir, exp_id)
    folder = workdir / experiment.id
    meta = experiment.meta
    if not meta.fixed:
        raise ConfigError(f"experiment {experiment.id} was not started by funcapprox search; it cannot be resumed here")
    if live_status(experiment.id, meta) is not None:
        raise ExperimentError(f"experiment {experiment.id} is still running; "
                              f"stop it first with `funcapprox experiments --stop {experiment.id}`")
    plan = plan_resume(experiment, _recorded_space(workdir, experiment.id))
    if plan.to_run == 0:
        return None, plan
    check_workdir(workdir)
    machines = remote_machines(meta)
    service = None
    if machines:
        from ..nni.remote import manager_ip_for, remote_training_service, trial_python

        command = trial_command(meta.fixed, python=trial_python(machines))
        service = remote_training_service(machines, manager_ip_for(machines))  # machines.yml as it is now
    else:
        command = trial_command(meta.fixed, warm=warm_socket, batched=meta.batched)
    kill_leftover(experiment.id)  # trials of a manager that died may still be running
    prepare_store(folder, plan, command, workdir=workdir, training_service=service)
    launched = restart("resume", experiment.id, workdir, port)
    resumes = (*meta.resumes, {"at": time.time(), "to_run": plan.to_run})
    try:
        update_meta(workdir, experiment.id, status="RUNNING", port=launched.port, url_prefix=launched.prefix,
                    resumes=resumes)
    except BaseException as exc:  # a manager nobody recorded would run on unseen: stop it
        stop(experiment.id, workdir)
        if isinstance(exc, (OSError, ExperimentError)):
            raise ExperimentError(f"experiment {experiment.id} was resumed but its run.json could not be written "
                                  f"({getattr(exc, 'strerror', None) or exc}); it was stopped") from None
        raise
    return launched, plan


def _recorded_space(workdir: Path, exp_id: str) -> dict:
    """The search space funcapprox wrote for the experiment (its own copy, not NNI's store)."""
    folder = Path(workdir) / exp_id / META_DIR
    try:
        return json.loads((folder / "search_space.json").read_text())
    except (OSError, ValueError, RecursionError):
        raise ExperimentError(f"experiment {exp_id} has no readable search space in {folder}; "
                              "it cannot be resumed") from None


def _recorded_group_sizes(workdir: Path, exp_id: str, meta: RunMeta) -> dict[str, int] | None:
    """The group sizes of the grid the experiment started with (StagePlan.group_sizes), for its resume;
    None when its trials did not train in batched steps (an experiment's trials all train alike)."""
    if not meta.batched or not meta.fixed:
        return None
    try:
        return grid_group_sizes(meta.fixed, _recorded_space(workdir, exp_id))
    except (ExperimentError, ConfigError):
        return None  # resume says what is wrong


def remote_machines(meta: RunMeta) -> list | None:
    """The machines a remote experiment ran on (its machines.yml, read again), None for a local one."""
    if not meta.machines_file:
        return None
    from ..nni.remote import load_search_machines

    return load_search_machines(meta.machines_file)
