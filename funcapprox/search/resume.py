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
resume code starts the manager (nni/launch.py) we store a new revision of the
experiment's profile, the way NNI stores its own updates, whose search space is
exactly the missing points (one nested-choice branch each, under POINT_KEY) and
whose maxTrialNumber makes room for them; trials the store still shows as waiting
or running are recorded as cancelled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..config import POINT_KEY, TrainConfig, params_to_settings, settings_to_params
from ..errors import ConfigError
from ..results import Experiment, TrialRecord, TrialState
from ..widths import WidthSearch
from .space import grid_points, grid_size

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
    tuner_args: dict[str, Any] | None = None  # the width search's, with what was measured (`known`)

    @property
    def id(self) -> str:
        return self.experiment.id

    @property
    def search_space(self) -> dict[str, Any] | None:
        """What the resumed tuner searches: exactly the points left, or the recorded space."""
        return points_space(self.remaining) if self.remaining else self.space


def point_key(fixed: dict[str, Any], params: dict[str, Any]) -> str | None:
    """A grid point as the configuration it trains (None if it is not a valid one)."""
    try:
        return _config_key(TrainConfig.from_dict({**fixed, **params_to_settings(params)}).to_dict())
    except ConfigError:
        return None


def _config_key(config: dict[str, Any]) -> str:
    return json.dumps(config, sort_keys=True)


def has_result(trial: TrialRecord) -> bool:
    """Succeeded, stopped by its assessor (a verdict too), or failed with the trial's own verdict (it would
    fail the same way again)."""
    if trial.status in (TrialState.SUCCEEDED, TrialState.EARLY_STOPPED):
        return True
    own_verdict = trial.output_dir is not None and (trial.output_dir / "failure.json").exists()
    return trial.status is TrialState.FAILED and own_verdict


def plan_resume(experiment: Experiment, space: dict[str, Any]) -> ResumePlan:
    """What is left of an experiment: the grid points without a result, or the trials still to run."""
    fixed = experiment.meta.fixed
    finished = [t for t in experiment.trials if has_result(t)]
    if grid_size(space) is not None and experiment.meta.tuner == "GridSearch":
        done_keys = {_config_key(t.params) for t in finished}
        # A point that is no valid configuration (batch > samples, say) failed before training: done.
        remaining = [p for p in grid_points(space) if point_key(fixed, p) not in (*done_keys, None)]
        return ResumePlan(experiment, len(grid_points(space)) - len(remaining), remaining, len(remaining), space)
    budget = experiment.meta.max_trials
    to_run = max(0, budget - len(finished)) if isinstance(budget, int) else 0
    tuner_args = None
    if experiment.meta.tuner_args is not None:  # the width search goes on from what it measured
        known = [[list(t.params.get("hidden", ())), t.max_error if t.status is TrialState.SUCCEEDED else None]
                 for t in finished]
        tuner_args = {**experiment.meta.tuner_args, "known": known}
        if WidthSearch.from_args(**tuner_args).next() is None:  # nothing left to measure
            to_run = 0
    return ResumePlan(experiment, len(finished), [], to_run, space, tuner_args)


def points_space(points: list[dict[str, Any]]) -> dict[str, Any]:
    """A search space whose grid is exactly these points: one nested-choice branch each."""
    branches = []
    for i, point in enumerate(points):
        flat = settings_to_params(params_to_settings(point))
        branches.append({"_name": f"point {i + 1}", **{k: {"_type": "choice", "_value": [v]} for k, v in flat.items()}})
    return {POINT_KEY: {"_type": "choice", "_value": branches}}








