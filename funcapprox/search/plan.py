"""Plan a search stage: its fixed settings (stage 1's best handed to stage 2), its space, its
limits and the files NNI reads. Starts nothing (search/run.py does).
"""

from __future__ import annotations

import shlex
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from ..artifacts import copy_data_file, write_json
from ..config import (
    DEFAULT_DOMAIN,
    DEFAULT_HOLDOUT,
    HIDDEN_KEYS,
    TrainConfig,
    function_text,
    group_key,
    is_data_file,
    parameter_name,
    params_to_settings,
    searchable_names,
)
from ..errors import ConfigError, ExperimentError
from ..nni.config import WIDTH_SEARCH, assessor_config, experiment_config, to_yaml, trial_command, tuner_config
from ..nni.gather import GROUP_LIMIT
from ..nni.store import load_experiment
from ..results import Experiment, RunMeta, experiment_ids, read_meta, write_meta
from ..widths import DEFAULT_MAX_WIDTH, MAX_DEPTH
from .space import default_space_path, grid_points, grid_size, in_group_order, load_space, normalize_space

NONARCH_HIDDEN = (16, 16, 16)  # the study's fixed network for stage 1

# A trial leaves about 80 KiB (its files, NNI's store and logs): the study's 306 trials about 25 MiB.
MIN_FREE_BYTES = 64 * 2**20

MAX_SLOTS = 64  # NNI trials at once, thin clients included (each a Python process of about 20 MB)
MAX_LISTED_GRID = 100_000  # grid points counted for grouping; a larger grid trains its trials one by one

SMALLEST_SEEDS = 5  # --stage smallest judges a network by the median of this many seeds' max errors
SMALLEST_MAX_TRIALS = 64  # far more than a width search takes (about 8 trials a depth)

# Settings stage 2 takes over from stage 1's best trial: everything but the network.
HANDOFF_EXCLUDE = ("hidden", "func", "domain", "seed", "holdout", "data")


@dataclass(frozen=True)
class StagePlan:
    """Everything decided before an experiment starts (a new plan, not a change, for anything else)."""

    stage: str
    fixed: dict[str, Any]
    space: dict[str, Any]
    workdir: Path
    tuner: str = "GridSearch"
    tuner_args: dict[str, Any] | None = None  # the width search's (stage smallest)
    concurrency: int = 2
    max_trials: int | None = None
    max_duration: str | None = None
    max_trial_duration: str | None = None
    assessor: str | None = None  # NNI's early stopping (nni/config.py ASSESSORS); None: every trial runs out
    port: int | None = None
    handoff: dict[str, Any] = field(default_factory=dict)  # settings taken from stage 1
    from_experiment: str | None = None
    space_source: str = ""
    warm_socket: str | None = None  # a running funcapprox.nni.warm worker for the trials
    next_stage: dict[str, Any] | None = None  # stage 2's arguments when this is stage 1 of `--stage all`
    machines_file: Path | None = None  # --platform remote: NNI's SSH training service on these machines

    @cached_property
    def machines(self) -> list | None:
        from ..nni.remote import load_search_machines

        return load_search_machines(self.machines_file) if self.machines_file else None

    @property
    def func(self) -> str:
        return self.fixed["func"]

    @property
    def domain(self) -> tuple[float, float]:
        return tuple(self.fixed.get("domain", DEFAULT_DOMAIN))

    @property
    def label(self) -> str:
        """The function in a few safe characters (TrainConfig.label), for folder names."""
        return TrainConfig(func=self.func, domain=self.domain, holdout=self.fixed.get("holdout", DEFAULT_HOLDOUT)).label

    @property
    def name(self) -> str:
        return f"funcapprox {self.label} {self.stage}"

    @property
    def grid_size(self) -> int | None:
        return None if self.tuner == WIDTH_SEARCH else grid_size(self.space)

    @cached_property
    def group_sizes(self) -> dict[str, int] | None:
        """The grid's configurations by group key, when its trials train in batched steps (nni/gather.py;
        each trial as a step of its own where no warm worker takes it); None where they do not: no grid
        tuner, trials on remote machines."""
        if self.tuner != "GridSearch" or self.machines_file is not None:
            return None
        return grid_group_sizes(self.fixed, self.space)

    @property
    def slots(self) -> int:
        """NNI's trialConcurrency. Gathered trials are thin clients waiting in the warm worker, so there
        are enough for `concurrency` groups training and as many more gathering meanwhile."""
        from ..nni.warm import available

        sizes = self.group_sizes
        if not sizes or not available():  # without a worker each trial trains in its own process
            return self.concurrency
        return min(MAX_SLOTS, 2 * self.concurrency * min(GROUP_LIMIT, max(sizes.values())))


def grid_group_sizes(fixed: dict[str, Any], space: dict[str, Any]) -> dict[str, int] | None:
    """How many of the grid's configurations share each group key (config.group_key); None for a grid
    too large to list. Points that make no valid configuration are left out (they fail at once)."""
    size = grid_size(space)
    if size is None or size > MAX_LISTED_GRID:
        return None
    sizes: dict[str, int] = {}
    for point in grid_points(space):
        try:
            key = group_key(TrainConfig.from_dict({**fixed, **params_to_settings(point)}))
        except ConfigError:
            continue
        sizes[key] = sizes.get(key, 0) + 1
    return sizes


def latest_finished(workdir: Path, stage: str, func: str, domain: tuple[float, float] = DEFAULT_DOMAIN,
                    holdout: float = DEFAULT_HOLDOUT) -> Experiment | None:
    """The newest experiment of `stage` for the same function (`func` on `domain`; a data file: the same
    content, named by the work folder's copy, and the same held-out share) with a succeeded trial."""
    for exp_id in reversed(experiment_ids(workdir)):
        meta = read_meta(workdir / exp_id)
        same = (meta.func == func and tuple(meta.fixed.get("domain", DEFAULT_DOMAIN)) == tuple(domain)
                and meta.fixed.get("holdout", DEFAULT_HOLDOUT) == holdout)
        if meta.stage != stage or not same:
            continue
        experiment = load_experiment(workdir, exp_id)
        if experiment.succeeded():
            return experiment
    return None


def handoff_from(experiment: Experiment) -> dict[str, Any]:
    """Stage 1's best settings for stage 2: all but the network, the function and the seed."""
    best = experiment.best()
    return {k: v for k, v in best.params.items() if k not in HANDOFF_EXCLUDE}


def plan_stage(
    stage: str,
    func: str,
    workdir: Path,
    *,
    space_file: Path | None = None,
    set_values: dict[str, Any] | None = None,
    from_experiment: str | None = None,
    epochs: int | None = None,
    domain: Any = DEFAULT_DOMAIN,
    machines_file: Path | None = None,
    next_stage: dict[str, Any] | None = None,
    max_error: float | None = None,
    depths: tuple[int, ...] | None = None,
    **limits: Any,
) -> StagePlan:
    """Build and check a stage: its fixed settings, its space, its limits, its machines. Starts nothing."""
    set_values = dict(set_values or {})
    function = TrainConfig(func=func, domain=domain, holdout=set_values.pop("holdout", DEFAULT_HOLDOUT))
    if function.is_data:
        function = function.replace(func=str(copy_data_file(function, workdir)))
    fixed: dict[str, Any] = {key: value for key, value in function.to_dict().items()
                             if key in ("func", "domain", "holdout", "data")}
    handoff: dict[str, Any] = {}
    source_id = None
    if stage == "nonarch":
        fixed["hidden"] = NONARCH_HIDDEN
    elif stage in ("arch", "smallest"):
        if from_experiment is not None:
            source = load_experiment(workdir, from_experiment)
            if source.stage != "nonarch":
                raise ConfigError(f"--from {source.id} is a {source.stage} experiment; give a nonarch one")
            handoff = handoff_from(source)
            source_id = source.id
        elif not any(k in set_values for k in ("act", "lr", "optimizer", "loss")):
            source = latest_finished(workdir, "nonarch", function.func, function.domain, function.holdout)
            if source is None:
                what, option = function.func, shlex.quote(function.func)
                if function.is_data:
                    what, option = f"{function_text(function.func)} (this data)", shlex.quote(func)
                    option += "" if function.holdout == DEFAULT_HOLDOUT else f" --holdout {function.holdout:g}"
                elif function.domain != DEFAULT_DOMAIN:
                    low, high = function.domain
                    what, option = f"{what} on [{low:g}, {high:g}]", f"{option} --domain {low:g},{high:g}"
                raise ConfigError(
                    f"stage {stage} needs stage 1's best settings, and {workdir} has no finished nonarch "
                    f"experiment for {what}: run `funcapprox search --stage nonarch --func {option}` first, "
                    "or give them with --set act_func=… "
                    "--set learning_rate=… --set optimizer=… --set loss=…"
                )
            handoff = handoff_from(source)
            source_id = source.id
    else:
        raise ConfigError(f"--stage must be nonarch, arch, all or smallest, not {stage!r}")
    if stage == "smallest":
        return _plan_smallest(function, workdir, fixed, handoff, source_id, set_values, epochs, max_error, depths,
                              machines_file, limits)
    if max_error is not None or depths is not None:
        raise ConfigError("--max-error and --depth go with --stage smallest")
    fixed.update(handoff)
    if epochs is not None:
        fixed["epochs"] = epochs
    fixed.update(set_values)
    fixed = TrainConfig.from_dict(fixed, source="the stage's fixed settings").to_dict()

    path = space_file or default_space_path(stage)
    space = normalize_space(load_space(path))
    searched = set(params_to_settings(_flat_names(space)))
    both = sorted(parameter_name(k) for k in searched & set(set_values))
    if both:
        raise ConfigError(f"{both[0]!r} is both fixed with --set and searched in {path}; drop one")
    if stage == "nonarch" and "arch" in space:
        raise ConfigError(f"stage nonarch fixes the network at {{16,16,16}}, but {path} searches hidden sizes")
    fixed = {k: v for k, v in fixed.items() if k not in searched}  # the tuner decides those
    tuner_config(limits.get("tuner", "GridSearch"))  # an unknown tuner is refused before anything is written
    if limits.get("max_trials") is None and limits.get("max_duration") is None:
        if grid_size(space) is None:
            raise ConfigError(f"{path} has continuous parameters: give --max-trials or --max-duration")
        limits["max_trials"] = grid_size(space)  # ends the experiment in DONE when the grid is covered
    if limits.get("tuner", "GridSearch") == "GridSearch":
        space = in_group_order(space)
    plan = StagePlan(stage=stage, fixed=fixed, space=space, workdir=Path(workdir), handoff=handoff,
                     from_experiment=source_id, space_source=str(path), next_stage=next_stage,
                     machines_file=Path(machines_file) if machines_file else None, **limits)
    plan.machines  # noqa: B018 (every bad machine is reported now, before anything starts)
    return plan


def _plan_smallest(function: TrainConfig, workdir: Path, fixed: dict[str, Any], handoff: dict[str, Any],
                   source_id: str | None, set_values: dict[str, Any], epochs: int | None, max_error: Any,
                   depths: tuple[int, ...] | None, machines_file: Path | None, limits: dict[str, Any]) -> StagePlan:
    """Stage smallest: stage 1's settings (as stage arch takes them), the width search as the tuner."""
    if isinstance(max_error, bool) or not isinstance(max_error, (int, float)) or not 0 < max_error < float("inf"):
        raise ConfigError(f"--stage smallest needs --max-error E, a number greater than 0 (got {max_error!r})")
    depths = tuple(depths or range(1, MAX_DEPTH + 1))
    if not depths or any(d not in range(1, MAX_DEPTH + 1) for d in depths):
        raise ConfigError(f"--depth takes 1, 2 or 3, not {depths!r}")
    if "hidden" in set_values or any(k.startswith("hidden_size") for k in set_values):
        raise ConfigError("--stage smallest searches the hidden sizes; drop them from --set")
    if limits.get("tuner", "GridSearch") != "GridSearch":
        raise ConfigError("--stage smallest runs its own width search; drop --tuner")
    fixed = {**fixed, **handoff, "seeds": SMALLEST_SEEDS, **({"epochs": epochs} if epochs is not None else {}),
             **set_values}
    fixed = TrainConfig.from_dict({**fixed, "hidden": (1,)}, source="the stage's fixed settings").to_dict()
    del fixed["hidden"]  # the width search decides it
    max_width = DEFAULT_MAX_WIDTH
    space = {key: {"_type": "randint", "_value": [1, max_width + 1]} for key in HIDDEN_KEYS[: max(depths)]}
    limits = {**limits, "tuner": WIDTH_SEARCH}
    if limits.get("max_trials") is None:
        limits["max_trials"] = SMALLEST_MAX_TRIALS
    plan = StagePlan(stage="smallest", fixed=fixed, space=space, workdir=Path(workdir), handoff=handoff,
                     from_experiment=source_id, space_source="the width search (funcapprox/widths.py)",
                     tuner_args={"max_error": float(max_error), "depths": list(depths), "max_width": max_width},
                     machines_file=Path(machines_file) if machines_file else None, **limits)
    plan.machines  # noqa: B018 (every bad machine is reported now, before anything starts)
    return plan


def _flat_names(space: dict[str, Any]) -> dict[str, Any]:
    """Parameter names a space searches, with placeholder values, nested choice unpacked."""
    names = {k: 1 for k in space if k != "arch"}
    for branch in space.get("arch", {}).get("_value", []):
        names.update({k: 1 for k in branch if k != "_name"})
    return {k: v for k, v in names.items() if k in searchable_names()}


def write_stage_files(plan: StagePlan, folder: Path) -> Path:
    """The stage's YAML config and search space, runnable by hand with `nnictl create`."""
    code_dir = plan.workdir / ".trial-code"  # NNI's trialCodeDirectory: stable, shared, nothing in it we need
    code_dir.mkdir(parents=True, exist_ok=True)
    space_file = folder / "search_space.json"
    write_json(space_file, plan.space)
    machines = plan.machines
    if machines:
        from ..nni.remote import manager_ip_for, prepare_code_dir, remote_training_service, trial_python

        # The remote interpreter by full path, and no warm worker: its socket is on this computer. A data file
        # by its path inside the code folder, which NNI copies to the machine and starts the trial in.
        fixed = dict(plan.fixed)
        if is_data_file(fixed["func"]):
            fixed["func"] = Path(fixed["func"]).relative_to(code_dir.resolve()).as_posix()
        command = trial_command(fixed, python=trial_python(machines))
        prepare_code_dir(code_dir)  # NNI 3.0 cannot upload an empty folder
    else:
        command = trial_command(plan.fixed, warm=plan.warm_socket, batched=plan.group_sizes is not None)
    config = experiment_config(
        name=plan.name, search_space=plan.space, code_dir=code_dir, command=command,
        workdir=plan.workdir, tuner=plan.tuner, tuner_args=plan.tuner_args, concurrency=plan.slots,
        max_trials=plan.max_trials,
        max_duration=plan.max_duration, max_trial_duration=plan.max_trial_duration,
        assessor=assessor_config(plan.assessor, plan.fixed.get("epochs", TrainConfig(func=plan.func).epochs))
        if plan.assessor else None,
    )
    if machines:
        config["trainingService"] = remote_training_service(machines, manager_ip_for(machines))
    config_file = folder / "config.yml"
    from ..artifacts import atomic_write

    atomic_write(config_file, to_yaml(config))
    return config_file


def dry_run(plan: StagePlan, folder: Path) -> Path:
    """Write and validate the stage's files without starting anything."""
    from ..nni.config import validate_with_nni

    folder.mkdir(parents=True, exist_ok=True)
    config_file = write_stage_files(plan, folder)
    import yaml

    validate_with_nni(yaml.safe_load(config_file.read_text()))
    write_meta(folder, run_meta(plan), inside=False)
    return config_file


def run_meta(plan: StagePlan, exp_id: str | None = None, **started: Any) -> RunMeta:
    """What run.json records of a stage as it starts (`started`: its port and URL prefix)."""
    return RunMeta(
        id=exp_id, stage=plan.stage, fixed=plan.fixed, handoff=plan.handoff, from_experiment=plan.from_experiment,
        space_source=plan.space_source, tuner=plan.tuner, tuner_args=plan.tuner_args, concurrency=plan.concurrency,
        max_trials=plan.max_trials,
        max_duration=plan.max_duration, max_trial_duration=plan.max_trial_duration,
        machines_file=str(plan.machines_file) if plan.machines_file else None, grid_size=plan.grid_size,
        batched=plan.group_sizes is not None, assessor=plan.assessor, created=time.time(), status="RUNNING",
        next_stage=plan.next_stage, **started)


def check_workdir(workdir: Path) -> None:
    """Fail before launch, not mid-search, when the work folder cannot take an experiment."""
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=workdir, prefix=".write-test-"):
            pass
        free = shutil.disk_usage(workdir).free
    except OSError as exc:
        raise ExperimentError(f"cannot write to the work folder {workdir}: {exc.strerror}; "
                              "pick another with --workdir") from None
    if free < MIN_FREE_BYTES:
        raise ExperimentError(f"only {free / 2**20:.1f} MiB free in the work folder {workdir}; a search needs "
                              f"at least {MIN_FREE_BYTES // 2**20} MiB (NNI's logs and store, every trial's "
                              "files): free some space or pick another folder with --workdir")
