"""Plan a search stage, launch it with the real `nnictl`, follow it, stop it.

A stage is one NNI experiment. Its files (YAML config, search space, run.json with
the stage, the fixed settings and where they came from) end up in
`<workdir>/<id>/funcapprox/`, beside NNI's own store for that experiment.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

from .artifacts import write_json
from .config import TrainConfig
from .errors import ConfigError, ExperimentError
from .nniconfig import TUNERS, experiment_config, to_yaml, trial_command
from .results import META_DIR, META_FILE, Experiment, experiment_ids, load_experiment, read_meta
from .resume import ResumePlan, plan_resume, prepare_store, record_orphans_cancelled
from .space import (
    ALIASES,
    default_space_path,
    grid_size,
    load_space,
    normalize_space,
    params_to_settings,
    searchable_names,
)

NONARCH_HIDDEN = (16, 16, 16)  # the study's fixed network for stage 1
FINISHED = ("DONE", "STOPPED", "ERROR")
EXHAUSTED = "TUNER_NO_MORE_TRIAL"  # GridSearch ends here, never in DONE (NO_MORE_TRIAL turns DONE by itself)
EXHAUSTED_IDLE = 12.0  # seconds: NNI polls every 5 s, and creating a trial took up to 3 s here
ACTIVE_TRIALS = ("WAITING", "RUNNING", "UNKNOWN")
# A trial leaves about 80 KiB (its files, NNI's store and logs): the study's 306 trials about 25 MiB.
MIN_FREE_BYTES = 64 * 2**20
# While a search runs: below this it stops, with room left to record the stop and keep what finished.
LOW_FREE_BYTES = 16 * 2**20
# Settings stage 2 takes over from stage 1's best trial: everything but the network.
HANDOFF_EXCLUDE = ("hidden", "func", "seed")


@dataclass
class StagePlan:
    """Everything decided before an experiment starts."""

    stage: str
    fixed: dict[str, Any]
    space: dict[str, Any]
    workdir: Path
    tuner: str = "GridSearch"
    concurrency: int = 2
    max_trials: int | None = None
    max_duration: str | None = None
    max_trial_duration: str | None = None
    port: int | None = None
    handoff: dict[str, Any] = field(default_factory=dict)  # settings taken from stage 1
    from_experiment: str | None = None
    space_source: str = ""
    warm_socket: str | None = None  # a running funcapprox.warm worker for the trials
    next_stage: dict[str, Any] | None = None  # stage 2's arguments when this is stage 1 of `--stage all`
    machines_file: Path | None = None  # --platform remote: NNI's SSH training service on these machines

    @cached_property
    def machines(self) -> list | None:
        from .machines import load_machines

        return load_machines(self.machines_file) if self.machines_file else None

    @property
    def func(self) -> str:
        return self.fixed["func"]

    @property
    def name(self) -> str:
        return f"funcapprox {self.func} {self.stage}"

    @property
    def grid_size(self) -> int | None:
        return grid_size(self.space)


def parse_set_values(pairs: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """`--set act_func=Tanh` pairs as configuration settings (study or field names)."""
    raw: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set takes NAME=VALUE, like act_func=Tanh; got {pair!r}")
        try:
            raw[key.strip()] = json.loads(text)
        except (ValueError, RecursionError):  # not JSON (or JSON Python will not read): the text itself
            raw[key.strip()] = text.strip()
    hidden = raw.pop("hidden", None)
    settings = params_to_settings(raw, "--set")
    if hidden is not None:
        if "hidden" in settings:
            raise ConfigError("--set gives the hidden sizes twice (hidden and hidden_size_N); give one")
        settings["hidden"] = hidden
    TrainConfig.from_dict({"func": "square", **settings}, source="--set")  # check values now, not per trial
    return settings


def latest_finished(workdir: Path, stage: str, func: str) -> Experiment | None:
    """The newest experiment of `stage` for `func` with at least one succeeded trial."""
    for exp_id in reversed(experiment_ids(workdir)):
        meta = read_meta(workdir / exp_id)
        if meta.get("stage") != stage or meta.get("fixed", {}).get("func") != func:
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
    **limits: Any,
) -> StagePlan:
    """Build and check a stage: its fixed settings, its space, its limits. Starts nothing."""
    set_values = dict(set_values or {})
    fixed: dict[str, Any] = {"func": TrainConfig(func=func).func}
    handoff: dict[str, Any] = {}
    source_id = None
    if stage == "nonarch":
        fixed["hidden"] = NONARCH_HIDDEN
    elif stage == "arch":
        if from_experiment is not None:
            source = load_experiment(workdir, from_experiment)
            if source.stage != "nonarch":
                raise ConfigError(f"--from {source.id} is a {source.stage} experiment; give a nonarch one")
            handoff = handoff_from(source)
            source_id = source.id
        elif not any(k in set_values for k in ("act", "lr", "optimizer", "loss")):
            source = latest_finished(workdir, "nonarch", fixed["func"])
            if source is None:
                raise ConfigError(
                    f"stage arch needs stage 1's best settings, and {workdir} has no finished nonarch "
                    f"experiment for {fixed['func']}: run `funcapprox search --stage nonarch --func {fixed['func']}` "
                    "first, or give them with --set act_func=… --set learning_rate=… --set optimizer=… --set loss=…"
                )
            handoff = handoff_from(source)
            source_id = source.id
    else:
        raise ConfigError(f"--stage must be nonarch, arch or all, not {stage!r}")
    fixed.update(handoff)
    if epochs is not None:
        fixed["epochs"] = epochs
    fixed.update(set_values)
    fixed = TrainConfig.from_dict(fixed, source="the stage's fixed settings").to_dict()

    path = space_file or default_space_path(stage)
    space = normalize_space(load_space(path))
    searched = set(params_to_settings(_flat_names(space)))
    study_names = {setting: name for name, setting in ALIASES.items()}
    both = sorted(study_names.get(k, k) for k in searched & set(set_values))
    if both:
        raise ConfigError(f"{both[0]!r} is both fixed with --set and searched in {path}; drop one")
    if stage == "nonarch" and "arch" in space:
        raise ConfigError(f"stage nonarch fixes the network at {{16,16,16}}, but {path} searches hidden sizes")
    fixed = {k: v for k, v in fixed.items() if k not in searched}  # the tuner decides those
    plan = StagePlan(stage=stage, fixed=fixed, space=space, workdir=Path(workdir), handoff=handoff,
                     from_experiment=source_id, space_source=str(path), **limits)
    if plan.tuner not in TUNERS:
        raise ConfigError(f"--tuner must be one of {', '.join(TUNERS)}, not {plan.tuner!r}")
    if plan.max_trials is None and plan.max_duration is None:
        if plan.grid_size is None:
            raise ConfigError(f"{path} has continuous parameters: give --max-trials or --max-duration")
        plan.max_trials = plan.grid_size  # ends the experiment in DONE when the grid is covered
    return plan


def _flat_names(space: dict[str, Any]) -> dict[str, Any]:
    """Parameter names a space searches, with placeholder values, nested choice unpacked."""
    names = {k: 1 for k in space if k != "arch"}
    for branch in space.get("arch", {}).get("_value", []):
        names.update({k: 1 for k in branch if k != "_name"})
    return {k: v for k, v in names.items() if k in searchable_names()}


# --- launching -------------------------------------------------------------------------------


def nnictl_path() -> str:
    beside = Path(sys.executable).with_name("nnictl")  # the venv's own, matching its nni
    found = str(beside) if beside.exists() else shutil.which("nnictl")
    if not found:
        raise ExperimentError("nnictl is not installed; run scripts/setup (it installs nni 3.0 into .venv)")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("", port))
        except OSError:
            return True
    return False


@dataclass
class Launched:
    id: str
    port: int
    folder: Path
    prefix: str | None = None  # the secret URL prefix of its web UI and REST API

    @property
    def url(self) -> str:
        return base_url(self.port, self.prefix)


def base_url(port: int, prefix: str | None = None) -> str:
    return f"http://127.0.0.1:{port}" + (f"/{prefix}" if prefix else "")


def new_url_prefix() -> str:
    """NNI's web UI and REST API listen on every interface with no login, and NNI 3.0
    cannot bind them to one. What it does allow is a URL prefix: a secret one turns every
    request without it into a 404, like a Jupyter token."""
    return secrets.token_hex(16)


def write_stage_files(plan: StagePlan, folder: Path) -> Path:
    """The stage's YAML config and search space, runnable by hand with `nnictl create`."""
    code_dir = plan.workdir / ".trial-code"  # NNI's trialCodeDirectory: stable, shared, nothing in it we need
    code_dir.mkdir(parents=True, exist_ok=True)
    space_file = folder / "search_space.json"
    write_json(space_file, plan.space)
    machines = plan.machines
    if machines:
        from .machines import manager_ip_for, prepare_code_dir, remote_training_service, trial_python

        # The remote interpreter by full path, and no warm worker: its socket is on this computer.
        command = trial_command(plan.fixed, python=trial_python(machines))
        prepare_code_dir(code_dir)  # NNI 3.0 cannot upload an empty folder
    else:
        command = trial_command(plan.fixed, warm=plan.warm_socket)
    config = experiment_config(
        name=plan.name, search_space=plan.space, code_dir=code_dir, command=command,
        workdir=plan.workdir, tuner=plan.tuner, concurrency=plan.concurrency, max_trials=plan.max_trials,
        max_duration=plan.max_duration, max_trial_duration=plan.max_trial_duration,
    )
    if machines:
        config["trainingService"] = remote_training_service(machines, manager_ip_for(machines))
    config_file = folder / "config.yml"
    from .artifacts import atomic_write

    atomic_write(config_file, to_yaml(config))
    return config_file


def dry_run(plan: StagePlan, folder: Path) -> Path:
    """Write and validate the stage's files without starting anything."""
    from .nniconfig import validate_with_nni

    folder.mkdir(parents=True, exist_ok=True)
    config_file = write_stage_files(plan, folder)
    import yaml

    validate_with_nni(yaml.safe_load(config_file.read_text()))
    write_json(folder / META_FILE, _meta(plan, None))
    return config_file


def _meta(plan: StagePlan, exp_id: str | None) -> dict[str, Any]:
    return {
        "id": exp_id, "stage": plan.stage, "fixed": plan.fixed, "handoff": plan.handoff,
        "from_experiment": plan.from_experiment, "space_source": plan.space_source, "tuner": plan.tuner,
        "concurrency": plan.concurrency, "max_trials": plan.max_trials, "max_duration": plan.max_duration,
        "max_trial_duration": plan.max_trial_duration,
        "machines_file": str(plan.machines_file) if plan.machines_file else None,
        "grid_size": plan.grid_size, "created": time.time(), "status": "RUNNING", "next_stage": plan.next_stage,
    }


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


def launch(plan: StagePlan) -> Launched:
    """Write the stage's files and start the experiment (NNI's create, locked down: nnilaunch.py)."""
    workdir = plan.workdir
    check_workdir(workdir)
    try:
        staging = Path(tempfile.mkdtemp(prefix=".new-", dir=workdir))
    except OSError as exc:
        raise ExperimentError(f"cannot write to the work folder {workdir}: {exc.strerror}") from None
    try:
        exp_id, port, prefix = _create(plan, staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    folder = workdir / exp_id
    try:
        staging.rename(folder / META_DIR)
        write_json(folder / META_DIR / META_FILE, _meta(plan, exp_id) | {"port": port, "url_prefix": prefix},
                   private=True)  # it holds the secret URL prefix
    except BaseException as exc:  # a manager nobody recorded would run on unseen: stop it
        stop(exp_id, workdir)
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, OSError):
            raise ExperimentError(f"experiment {exp_id} started but its files could not be written "
                                  f"({exc.strerror}); it was stopped") from None
        raise
    return Launched(exp_id, port, folder, prefix)


def _create(plan: StagePlan, staging: Path) -> tuple[str, int, str]:
    """Start the experiment with the stage's files in `staging`; the new experiment's id, port and URL prefix."""
    if plan.port is not None and port_in_use(plan.port):
        raise ExperimentError(f"port {plan.port} is in use; pick another with --port, or leave --port out")
    port = plan.port or free_port()
    prefix = new_url_prefix()
    config_file = write_stage_files(plan, staging)
    output = start_manager({"action": "create", "config": str(config_file), "port": port, "prefix": prefix})
    match = re.search(r"Experiment ID: ([A-Za-z0-9_-]+)", output)
    if not match or manager_status(port, prefix) is None:
        exp_id = match.group(1) if match else None
        if exp_id:
            stop(exp_id, plan.workdir)
        raise ExperimentError(start_failure(output, plan.workdir, exp_id))
    return match.group(1), port, prefix


def resume(workdir: Path, exp_id: str, *, port: int | None = None, warm_socket: str | None = None,
           ) -> tuple[Launched | None, ResumePlan]:
    """Restart a stopped experiment's manager (NNI's resume) to run what it has not run yet (see resume.py).

    Returns no Launched when nothing is left to run.
    """
    experiment = load_experiment(workdir, exp_id)
    folder = workdir / experiment.id
    meta = experiment.meta
    if not meta.get("fixed"):
        raise ConfigError(f"experiment {experiment.id} was not started by funcapprox search; it cannot be resumed here")
    if live_status(experiment.id, meta) is not None:
        raise ExperimentError(f"experiment {experiment.id} is still running; "
                              f"stop it first with `funcapprox experiments --stop {experiment.id}`")
    try:
        space = json.loads((folder / META_DIR / "search_space.json").read_text())
    except (OSError, ValueError):
        raise ExperimentError(f"experiment {experiment.id} has no readable search space in {folder / META_DIR}; "
                              "it cannot be resumed") from None
    plan = plan_resume(experiment, space)
    if plan.to_run == 0:
        return None, plan
    check_workdir(workdir)
    if port is not None and port_in_use(port):
        raise ExperimentError(f"port {port} is in use; pick another with --port, or leave --port out")
    port = port or free_port()
    machines = remote_machines(meta)
    service = None
    if machines:
        from .machines import manager_ip_for, remote_training_service, trial_python

        command = trial_command(meta["fixed"], python=trial_python(machines))
        service = remote_training_service(machines, manager_ip_for(machines))  # machines.yml as it is now
    else:
        command = trial_command(meta["fixed"], warm=warm_socket)
    _kill_leftover(experiment.id)  # trials of a manager that died may still be running
    prepare_store(folder, plan, command, workdir=workdir, training_service=service)
    prefix = new_url_prefix()
    output = start_manager({"action": "resume", "id": experiment.id, "port": port, "workdir": str(workdir),
                            "prefix": prefix})
    if manager_status(port, prefix) is None:
        stop(experiment.id, workdir)
        raise ExperimentError(start_failure(output, workdir, experiment.id, "resume"))
    resumes = [*meta.get("resumes", []), {"at": time.time(), "to_run": plan.to_run}]
    mark(workdir, experiment.id, status="RUNNING", port=port, url_prefix=prefix, resumes=resumes)
    return Launched(experiment.id, port, folder, prefix), plan


def remote_machines(meta: dict[str, Any]) -> list | None:
    """The machines a remote experiment ran on (its machines.yml, read again), None for a local one."""
    if not meta.get("machines_file"):
        return None
    from .machines import load_machines

    return load_machines(meta["machines_file"])


def start_manager(request: dict[str, Any]) -> str:
    """Start an NNI manager locked down (see nnilaunch.py) to create, `resume` or `view` an experiment;
    the launcher's output. The request (with the secret prefix) goes on standard input, not the command line."""
    return _run([sys.executable, "-m", "funcapprox.nnilaunch"], json.dumps(request))


def live_status(exp_id: str, meta: dict[str, Any]) -> str | None:
    """The experiment's status from its running manager, None when no manager answers."""
    entry = manifest_entry(exp_id)
    port = entry.get("port") or meta.get("port")
    prefix = entry.get("prefixUrl") or meta.get("url_prefix")
    return manager_status(port, prefix) if isinstance(port, int) else None


def _run(command: list[str], request: str) -> str:
    """Run an NNI launcher in a session of its own: a Ctrl-C at the terminal must not cut it off halfway."""
    try:
        done = subprocess.run(command, input=request, capture_output=True, text=True, timeout=180,
                              start_new_session=True)
        return done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:
        return str(exc.stdout or "") + str(exc.stderr or "") + " (timed out after 180 s)"


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def start_failure(output: str, workdir: Path, exp_id: str | None, verb: str = "start") -> str:
    lines = [line for line in _strip_ansi(output).splitlines() if line.strip() and "pkg_resources" not in line]
    message = f"NNI could not {verb} the experiment"
    if lines:
        message += ": " + " | ".join(lines[-3:])
    if exp_id:
        log = workdir / exp_id / "log" / "nnimanager.log"
        message += f" (manager log: {log}; last line: {log_tail(log, 1) or 'empty'})"
    return message


def log_tail(path: Path, lines: int = 5) -> str:
    try:
        text = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return " | ".join(_strip_ansi(line).strip() for line in text[-lines:])


# --- following and stopping ------------------------------------------------------------------


def rest(port: int, path: str, prefix: str | None = None, timeout: float = 5) -> Any:
    with urllib.request.urlopen(f"{base_url(port, prefix)}/api/v1/nni/{path}", timeout=timeout) as response:
        return json.loads(response.read())


def manager_status(port: int, prefix: str | None = None) -> str | None:
    """The experiment's status from its manager, or None when the manager does not answer."""
    try:
        return rest(port, "check-status", prefix).get("status")
    except (urllib.error.URLError, OSError, ValueError):
        return None


@dataclass
class Progress:
    experiment: Experiment
    status: str
    elapsed: float
    total: int | None
    already: int = 0  # trials that had finished before this run (a resume) started

    @property
    def finished_trials(self) -> int:
        return sum(1 for t in self.experiment.trials if t.status not in ACTIVE_TRIALS)

    @property
    def eta(self) -> float | None:
        done = self.finished_trials
        if not self.total or done <= self.already:
            return None
        return self.elapsed / (done - self.already) * max(0, self.total - done)


def wait(launched: Launched, workdir: Path, on_progress: Callable[[Progress], None] | None = None,
         poll: float = 2.0, total: int | None = None, manager_grace: float = 15.0, already: int = 0) -> str:
    """Follow the experiment until its space is exhausted or a limit is hit; return NNI's final status.

    GridSearch leaves NNI in TUNER_NO_MORE_TRIAL, never DONE (unless maxTrialNumber, set to
    the grid size, is reached): that with no trial waiting or running for EXHAUSTED_IDLE
    seconds counts as finished. A manager that stops answering for
    `manager_grace` seconds is reported with its log tail instead of waited on forever.
    """
    start = time.time()
    silent_since: float | None = None
    idle_since: float | None = None
    while True:
        status = manager_status(launched.port, launched.prefix)
        if status is None:
            silent_since = silent_since or time.time()
            if time.time() - silent_since > manager_grace or not _manager_alive(launched.id):
                log = launched.folder / "log" / "nnimanager.log"
                raise ExperimentError(
                    f"the NNI manager of experiment {launched.id} stopped answering on port {launched.port}; "
                    f"last log lines ({log}): {log_tail(log, 3) or 'none'}"
                )
        else:
            silent_since = None
        _check_free_space(workdir, launched.id)
        if on_progress is not None and status is not None:
            on_progress(Progress(load_experiment(workdir, launched.id), status, time.time() - start, total, already))
        if status in FINISHED:
            return status
        if status == EXHAUSTED and _live_trials(launched.port, launched.prefix) is False:
            # The manager submits the tuner's last parameters some seconds after saying "no more":
            # finished only once nothing has run for a while.
            idle_since = idle_since or time.time()
            if time.time() - idle_since >= EXHAUSTED_IDLE:
                return status
        else:
            idle_since = None
        time.sleep(poll)


def _check_free_space(workdir: Path, exp_id: str) -> None:
    """A disk that fills up mid-search would fail every later trial and could cut NNI's store
    short: stop first, while finished trials and the record of the stop still fit."""
    try:
        free = shutil.disk_usage(workdir).free
    except OSError:
        return
    if free < LOW_FREE_BYTES:
        raise ExperimentError(f"the work folder {workdir} is nearly full ({free / 2**20:.1f} MiB free, a search "
                              f"stops below {LOW_FREE_BYTES // 2**20} MiB); experiment {exp_id} was stopped "
                              "and its finished trials are kept; free some space")


def _live_trials(port: int, prefix: str | None) -> bool | None:
    """Whether the manager has trials waiting or running. Asked of the manager, not its store,
    which records a trial just submitted a moment later."""
    try:
        return any(t.get("status") in ACTIVE_TRIALS for t in rest(port, "trial-jobs", prefix))
    except (urllib.error.URLError, OSError, ValueError, AttributeError):
        return None  # not known: keep waiting


def _manager_alive(exp_id: str) -> bool:
    """False once the manager's process is gone (no need to wait out the grace period then)."""
    pid = manifest_entry(exp_id).get("pid")
    if not isinstance(pid, int):
        return True  # nothing to go by: rely on the grace period
    cmdline = _cmdline(pid)
    return cmdline is not None and exp_id.encode() in cmdline


def stop(exp_id: str, workdir: Path) -> None:
    """Stop the experiment's manager with `nnictl stop`; a no-op if it is not running."""
    try:
        subprocess.run([nnictl_path(), "stop", exp_id], capture_output=True, text=True, timeout=120,
                       start_new_session=True)
    except subprocess.TimeoutExpired:
        pass
    _kill_leftover(exp_id)
    record_orphans_cancelled(workdir / exp_id)  # NNI stops recording trials once it is stopping


def _kill_leftover(exp_id: str) -> None:
    """End what `nnictl stop` left behind: a manager that did not stop, and trial processes
    of this experiment that outlived a manager which died (they would run on, unheard)."""
    pid = manifest_entry(exp_id).get("pid")
    if isinstance(pid, int) and exp_id.encode() in (_cmdline(pid) or b""):
        with contextlib.suppress(OSError):  # it may exit at this very moment
            os.kill(pid, signal.SIGKILL)  # it outlived nnictl stop's own wait
    for trial_pid in trial_processes(exp_id):
        with contextlib.suppress(OSError):
            os.kill(trial_pid, signal.SIGKILL)


def trial_processes(exp_id: str) -> list[int]:
    """Processes NNI started as trials of this experiment (found by the NNI_EXP_ID they carry)."""
    marker = f"NNI_EXP_ID={exp_id}".encode()
    found = []
    try:
        entries = list(Path("/proc").iterdir())
    except OSError:  # no /proc (not Linux): nothing found
        return []
    for entry in entries:
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker in environ:
            found.append(int(entry.name))
    return found


def _cmdline(pid: int) -> bytes | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None


def mark(workdir: Path, exp_id: str, **fields: Any) -> None:
    """Record something about an experiment in its run.json (its final status, say)."""
    path = workdir / exp_id / META_DIR / META_FILE
    write_json(path, read_meta(workdir / exp_id) | fields, private=True)  # it holds the secret URL prefix


def manifest_entry(exp_id: str) -> dict[str, Any]:
    """NNI's own record of an experiment (port, pid, status) in ~/nni-experiments/.experiment."""
    manifest = Path.home() / "nni-experiments" / ".experiment"
    try:
        return json.loads(manifest.read_text()).get(exp_id, {}) or {}
    except (OSError, ValueError, AttributeError):
        return {}

