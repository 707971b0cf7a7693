"""`search --stage smallest` for real: the width search as NNI's tuner, Ctrl-C and --resume, results --smallest."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from helpers.nni import funcapprox, manager_answers, nni_workdir

from funcapprox.artifacts import RECEIVED_FILE
from funcapprox.errors import ConfigError
from funcapprox.nni.store import load_experiment
from funcapprox.results import experiment_ids
from funcapprox.search.plan import plan_stage
from funcapprox.widths import WidthSearch

# Without refine.py's phase: it reaches the target at 2 units, too soon to interrupt the search in between.
SETTINGS = ("--set", "act_func=Tanh", "--set", "learning_rate=0.05", "--set", "optimizer=Adam",
            "--set", "loss=MSELoss", "--set", "refine=none")
SEARCH = ("search", "--stage", "smallest", "--func", "square", *SETTINGS, "--epochs", "150", "--seeds", "3",
          "--depth", "1", "--max-error", "0.006")


@pytest.fixture
def workdir(tmp_path):
    yield from nni_workdir(tmp_path)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({}, "--stage smallest needs --max-error E"),
    ({"max_error": -1}, "--stage smallest needs --max-error E"),
    ({"max_error": 0.01, "depths": (4,)}, "--depth takes 1, 2 or 3"),
    ({"max_error": 0.01, "set_values": {"hidden": [4]}}, "searches the hidden sizes"),
    ({"max_error": 0.01, "tuner": "TPE"}, "runs its own width search"),
])
def test_bad_smallest_stages_are_one_line(tmp_path, kwargs, message):
    settings = {"act": "Tanh", "lr": 0.05, "optimizer": "Adam", "loss": "MSELoss"}
    kwargs = {**kwargs, "set_values": {**settings, **kwargs.get("set_values", {})}}
    with pytest.raises(ConfigError, match=message):
        plan_stage("smallest", "square", tmp_path, **kwargs)


def test_max_error_goes_with_stage_smallest(tmp_path):
    with pytest.raises(ConfigError, match="--max-error and --depth go with --stage smallest"):
        plan_stage("nonarch", "square", tmp_path, max_error=0.01)


def test_the_plan_judges_by_five_seeds_with_stage_1s_settings(tmp_path):
    plan = plan_stage("smallest", "square", tmp_path, max_error=0.01,
                      set_values={"act": "Tanh", "lr": 0.05, "optimizer": "Adam", "loss": "MSELoss"})
    assert plan.fixed["seeds"] == 5 and "hidden" not in plan.fixed and plan.tuner == "WidthSearch"
    assert plan.tuner_args == {"max_error": 0.01, "depths": [1, 2, 3], "max_width": 256}
    assert plan.grid_size is None and plan.max_trials == 64


def start(workdir):
    env = {**os.environ, "FUNCAPPROX_WORKDIR": str(workdir)}
    return subprocess.Popen([sys.executable, "-m", "funcapprox", *SEARCH], env=env, cwd=workdir.parent,
                            start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


@pytest.mark.nni
def test_ctrl_c_then_resume_finishes_the_width_search_as_one_run_would(workdir):
    search = start(workdir)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        ids = experiment_ids(workdir)
        if ids and len(load_experiment(workdir, ids[0]).succeeded()) >= 2:
            break
        time.sleep(0.5)
    os.killpg(search.pid, signal.SIGINT)
    _, err = search.communicate(timeout=120)
    (exp_id,) = experiment_ids(workdir)
    assert search.returncode == 1 and f"funcapprox search --resume {exp_id}" in err and "Traceback" not in err
    before = {t.trial_id: t.max_error for t in load_experiment(workdir, exp_id).succeeded()}

    resumed = funcapprox("search", "--resume", exp_id, workdir=workdir, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert manager_answers(workdir, exp_id) is None
    experiment = load_experiment(workdir, exp_id)
    done = [t for t in experiment.trials if t.status == "SUCCEEDED"]
    assert {t.trial_id: t.max_error for t in done if t.trial_id in before} == before  # kept, not run again
    # The widths it measured, in order, are the ones the search chooses from those very results.
    def asked_at(trial):  # NNI numbers a resumed run's trials from 0 again: order them by their own record
        return json.loads((trial.output_dir / RECEIVED_FILE).read_text())["received_at"]

    widths = [t.params["hidden"] for t in sorted(done, key=asked_at)]
    assert len({tuple(w) for w in widths}) == len(widths)
    replay = WidthSearch(0.006, depths=(1,))
    errors = {tuple(t.params["hidden"]): t.max_error for t in done}
    chosen = []
    while (hidden := replay.next()) is not None:
        chosen.append(list(hidden))
        replay.record(hidden, errors[hidden])
    assert widths == chosen and replay.best() is not None
    assert "smallest network with max error <= 0.006: " in resumed.stdout

    again = funcapprox("search", "--resume", exp_id, workdir=workdir)
    assert again.returncode == 0 and f"nothing left to run ({len(done)} done)" in again.stdout
    line = funcapprox("results", "--smallest", "--experiment", exp_id, workdir=workdir)
    best = replay.best()
    assert line.returncode == 0, line.stderr
    assert line.stdout.startswith(f"smallest network with max error <= 0.006: {{{best[0]},0,0}}, {3 * best[0] + 1} "
                                  "parameters")
    assert "seeds reached it (95% Wilson interval" in line.stdout
    assert (workdir / exp_id / "funcapprox" / "report.html").exists()
