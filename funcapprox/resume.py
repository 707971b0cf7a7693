"""Continue an interrupted search so that every grid point ends with exactly one result.

What NNI 3.0's own resume does (nni_node/core/nnimanager.js, and measured): `nnictl
resume` restarts the manager from the experiment's store, gives the tuner the
parameters the store pairs with a final result, and lets GridSearch hand out the
rest in order, up to maxTrialNumber counted over every trial ever submitted. That
alone breaks "each point once": the store pairs trials with parameters in the order
trials were created, but NNI hands parameters out in the order trials ask, so one
trial killed before it asked shifts every later pairing (finished points run again,
others never); cancelled and killed trials count against maxTrialNumber, so a
grid-sized limit ends the resumed run short; and trials that were running when a
manager died are re-run with the store's pairing.

So we use NNI's resume but decide what it runs. From the trials' own records (what
each one really trained) we find the grid points that have a result; before NNI's
resume code starts the manager (nnilaunch.py) we store a new revision of the
experiment's profile, the way NNI stores its own updates, whose search space is
exactly the missing points (one nested-choice branch each, under POINT_KEY) and
whose maxTrialNumber makes room for them; trials the store still shows as waiting
or running are recorded as cancelled.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Any

from .config import TrainConfig
from .errors import ConfigError, ExperimentError
from .results import Experiment, TrialRecord
from .space import POINT_KEY, grid_size, params_to_settings, q_grid, settings_to_params

DB_FILE = Path("db") / "nni.sqlite"
# A trial that failed with its own verdict (failure.json: diverged, or parameters
# rejected) would fail again the same way: it counts as a result, like a success.
# One that was killed, timed out or interrupted has none and runs again.


@dataclass
class ResumePlan:
    experiment: Experiment
    done: int  # grid points (or trials, without a grid) that have a result
    remaining: list[dict[str, Any]]  # NNI parameters still to run; [] for a non-grid tuner
    to_run: int  # trials the resumed experiment may still start
    space: dict[str, Any] | None = None  # the search space funcapprox recorded for the experiment

    @property
    def id(self) -> str:
        return self.experiment.id


def grid_points(space: dict[str, Any]) -> list[dict[str, Any]]:
    """Every parameter set GridSearch schedules for a finite space, as NNI sends them."""
    keys = [k for k in space if k != "_name"]
    options = [_values(space[k]) for k in keys]
    return [dict(zip(keys, combo)) for combo in product(*options)]


def _values(spec: dict[str, Any]) -> list[Any]:
    kind, values = spec["_type"], spec["_value"]
    if kind == "choice":
        out: list[Any] = []
        for value in values:
            if isinstance(value, dict):  # a nested choice: its branch name plus its own grid
                out += [{"_name": value["_name"], **point} for point in grid_points(value)]
            else:
                out.append(value)
        return out
    if kind == "randint":
        return list(range(int(values[0]), int(values[1])))
    if kind in ("quniform", "qloguniform"):
        return q_grid(*values[:3])
    raise ConfigError(f"a {kind} parameter has no finite grid")


def point_key(fixed: dict[str, Any], params: dict[str, Any]) -> str | None:
    """A grid point as the configuration it trains (None if it is not a valid one)."""
    try:
        return _config_key(TrainConfig.from_dict({**fixed, **params_to_settings(params)}).to_dict())
    except ConfigError:
        return None


def _config_key(config: dict[str, Any]) -> str:
    return json.dumps(config, sort_keys=True)


def has_result(trial: TrialRecord) -> bool:
    """Succeeded, or failed with the trial's own verdict (it would fail the same way again)."""
    if trial.status == "SUCCEEDED":
        return True
    return trial.status == "FAILED" and trial.output_dir is not None and (trial.output_dir / "failure.json").exists()


def plan_resume(experiment: Experiment, space: dict[str, Any]) -> ResumePlan:
    """What is left of an experiment: the grid points without a result, or the trials still to run."""
    fixed = experiment.meta.get("fixed", {})
    finished = [t for t in experiment.trials if has_result(t)]
    if grid_size(space) is not None and experiment.meta.get("tuner", "GridSearch") == "GridSearch":
        done_keys = {_config_key(t.params) for t in finished}
        # A point that is no valid configuration (batch > samples, say) failed before training: done.
        remaining = [p for p in grid_points(space) if point_key(fixed, p) not in (*done_keys, None)]
        return ResumePlan(experiment, len(grid_points(space)) - len(remaining), remaining, len(remaining), space)
    budget = experiment.meta.get("max_trials")
    to_run = max(0, budget - len(finished)) if isinstance(budget, int) else 0
    return ResumePlan(experiment, len(finished), [], to_run, space)


def points_space(points: list[dict[str, Any]]) -> dict[str, Any]:
    """A search space whose grid is exactly these points: one nested-choice branch each."""
    branches = []
    for i, point in enumerate(points):
        flat = settings_to_params(params_to_settings(point))
        branches.append({"_name": f"point {i + 1}", **{k: {"_type": "choice", "_value": [v]} for k, v in flat.items()}})
    return {POINT_KEY: {"_type": "choice", "_value": branches}}


def prepare_store(folder: Path, plan: ResumePlan, trial_command: str | None = None, *, workdir: Path | None = None,
                  training_service: dict[str, Any] | None = None) -> None:
    """Write what the resumed manager must do into NNI's store, before NNI's resume reads it:
    the points left, room for them, the trial command (a new warm worker's socket), the work
    folder where it is now (it may have moved) and, for remote runs, machines.yml as it is now."""
    db = folder / DB_FILE
    if not db.exists():
        raise ExperimentError(f"experiment {plan.id} has no NNI store at {db}; it cannot be resumed")
    with contextlib.closing(sqlite3.connect(db)) as connection, connection:
        _cancel_orphans(connection)
        row = connection.execute(
            "select params, id, execDuration, startTime, endTime, logDir, nextSequenceId, revision "
            "from ExperimentProfile order by revision desc limit 1").fetchone()
        if row is None:
            raise ExperimentError(f"experiment {plan.id}: NNI's store holds no experiment profile")
        params = json.loads(row[0])
        submitted = connection.execute("select count(distinct trialJobId) from TrialJobEvent "
                                       "where trialJobId != ''").fetchone()[0]
        params["maxTrialNumber"] = submitted + plan.to_run
        # The tuner and its space come from funcapprox's own record of the experiment, never from
        # the store: whoever could write the store (a remote machine's files, say) must not choose
        # the code NNI's tuner runs or what it searches.
        params["tuner"] = _tuner(plan.experiment.meta.get("tuner"), plan.id)
        params.pop("assessor", None)
        params.pop("advisor", None)
        if plan.remaining:
            params["searchSpace"] = points_space(plan.remaining)
        elif plan.space is not None:
            params["searchSpace"] = plan.space
        params.pop("searchSpaceFile", None)  # NNI would read the old space back from it
        if workdir is not None:
            params["experimentWorkingDirectory"] = str(workdir)
            params["trialCodeDirectory"] = str(workdir / ".trial-code")
            params.get("trainingService", {})["trialCodeDirectory"] = str(workdir / ".trial-code")
            (workdir / ".trial-code").mkdir(exist_ok=True)
        if training_service is not None:
            params["trainingService"] = training_service
        if trial_command is not None:
            params["trialCommand"] = trial_command
            params.get("trainingService", {})["trialCommand"] = trial_command
        connection.execute("insert into ExperimentProfile values (?,?,?,?,?,?,?,?)",
                           (json.dumps(params), *row[1:7], row[7] + 1))


def _tuner(name: Any, exp_id: str) -> dict[str, Any]:
    from .nniconfig import TUNERS

    if name not in TUNERS:
        raise ExperimentError(f"experiment {exp_id} names no tuner funcapprox offers ({name!r}); it cannot be resumed")
    return {"name": name, **({"classArgs": TUNERS[name]} if TUNERS[name] else {})}


def record_orphans_cancelled(folder: Path) -> None:
    """After its manager is gone: trials the store still shows waiting or running were cancelled."""
    db = folder / DB_FILE
    if db.exists():
        with contextlib.suppress(sqlite3.Error), contextlib.closing(sqlite3.connect(db, timeout=10)) as connection:
            with connection:
                _cancel_orphans(connection)  # a read-only store stays as it is: resume records it later


def _cancel_orphans(connection: sqlite3.Connection) -> None:
    """Trials the store shows as waiting or running died with their manager: record that."""
    latest = connection.execute(
        "select e.trialJobId, e.event, e.logPath, e.sequenceId, e.environmentId from TrialJobEvent e join "
        "(select trialJobId, max(rowid) as last from TrialJobEvent where trialJobId != '' group by trialJobId) m "
        "on e.rowid = m.last").fetchall()
    now = int(time.time() * 1000)
    for trial_id, event, log_path, sequence, env in latest:
        if event in ("WAITING", "RUNNING", "UNKNOWN"):
            # data '' not NULL: NNI's replay of the store calls .trim() on it
            connection.execute("insert into TrialJobEvent values (?,?,?,?,?,?,?,?)",
                               (now, trial_id, "SYS_CANCELED", "", log_path, sequence,
                                "its manager stopped before it finished", env))
