"""Resume planning without NNI running: which grid points are left, and what goes into NNI's store.

The real resume (nnictl resume, trials run, each point once) is in test_faults.py.
"""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest
from helpers.nni import grid_schedule
from helpers.recorded import RECORDED_ID, SUCCEEDED, copy_recorded, trial_folder

from funcapprox.errors import ExperimentError
from funcapprox.nni.config import assessor_config
from funcapprox.nni.store import load_experiment, prepare_store
from funcapprox.search.resume import grid_points, has_result, plan_resume, point_key, points_space
from funcapprox.search.space import default_space_path, load_space, normalize_space


@pytest.mark.parametrize("space", [
    normalize_space(load_space(default_space_path("nonarch"))),
    normalize_space(load_space(default_space_path("arch"))),
    {"learning_rate": {"_type": "quniform", "_value": [0.005, 0.02, 0.005]}, "act_func": {"_type": "choice",
                                                                                        "_value": ["Tanh", "ReLU"]}},
    {"hidden_size_1": {"_type": "randint", "_value": [2, 6]}},
], ids=["nonarch", "arch", "quniform", "randint"])
def test_grid_points_are_the_points_nni_gridsearch_schedules(space):
    fixed = {"func": "oscillator", "hidden": (16, 16, 16)}
    ours = sorted(point_key(fixed, p) for p in grid_points(space))
    nni = sorted(point_key(fixed, p) for p in grid_schedule(space))
    assert ours == nni and len(set(ours)) == len(ours)


def test_a_points_space_schedules_exactly_those_points():
    space = normalize_space(load_space(default_space_path("arch")))
    fixed = {"func": "oscillator", "act": "LeakyReLU"}
    some = grid_points(space)[::17]
    resumed = points_space(some)
    assert sorted(point_key(fixed, p) for p in grid_schedule(resumed)) == sorted(point_key(fixed, p) for p in some)


@pytest.fixture
def recorded(tmp_path):
    workdir = copy_recorded(tmp_path)
    return workdir, load_experiment(workdir, RECORDED_ID)


def test_diverged_trials_count_as_done_killed_ones_do_not(recorded):
    workdir, experiment = recorded
    space = json.loads((workdir / RECORDED_ID / "funcapprox" / "search_space.json").read_text())
    plan = plan_resume(experiment, space)
    assert all(has_result(t) for t in experiment.trials)  # 2 succeeded, 2 diverged: the grid is covered
    assert plan.to_run == 0 and plan.remaining == [] and plan.done == len(grid_points(space))

    failed = next(t for t in experiment.trials if t.status == "FAILED")
    (trial_folder(workdir, failed.trial_id) / "failure.json").unlink()  # now it looks killed: no verdict
    shutil.rmtree(trial_folder(workdir, failed.trial_id) / "trial.stderr", ignore_errors=True)
    plan = plan_resume(load_experiment(workdir, RECORDED_ID), space)
    assert plan.to_run == 1
    (point,) = plan.remaining
    assert point_key(experiment.meta["fixed"], point) == json.dumps(failed.params, sort_keys=True)


def test_the_store_gets_the_missing_points_and_room_for_them(recorded):
    workdir, experiment = recorded
    space = json.loads((workdir / RECORDED_ID / "funcapprox" / "search_space.json").read_text())
    failed = next(t for t in experiment.trials if t.status == "FAILED")
    (trial_folder(workdir, failed.trial_id) / "failure.json").unlink()
    db = workdir / RECORDED_ID / "db" / "nni.sqlite"
    with sqlite3.connect(db) as connection:  # a trial the store still shows running: its manager died
        connection.execute("insert into TrialJobEvent values (1, 'ghost', 'RUNNING', '', '/x', 9, null, 'local-env')")
        # and a store someone else wrote: a tuner of their own code, an assessor, another space
        row = connection.execute("select * from ExperimentProfile order by revision desc limit 1").fetchone()
        forged = json.loads(row[0]) | {"tuner": {"codeDirectory": "/tmp/evil", "className": "evil.Tuner"},
                                       "assessor": {"name": "Medianstop"},
                                       "searchSpace": {"act_func": {"_type": "choice", "_value": ["ReLU"]}}}
        connection.execute("insert into ExperimentProfile values (?,?,?,?,?,?,?,?)",
                           (json.dumps(forged), *row[1:7], row[7] + 1))
    plan = plan_resume(load_experiment(workdir, RECORDED_ID), space)
    prepare_store(workdir / RECORDED_ID, plan, trial_command="python -m funcapprox.nni.trial --set func=square")

    with sqlite3.connect(db) as connection:
        params = json.loads(connection.execute(
            "select params from ExperimentProfile order by revision desc limit 1").fetchone()[0])
        ghost = connection.execute("select event, data, logPath from TrialJobEvent where trialJobId='ghost' "
                                   "order by rowid desc limit 1").fetchone()
    assert params["maxTrialNumber"] == 5 + 1  # 5 trials submitted so far, 1 point to run
    assert [point_key(experiment.meta["fixed"], p) for p in grid_schedule(params["searchSpace"])] == [
        json.dumps(failed.params, sort_keys=True)]
    assert params["trialCommand"] == params["trainingService"]["trialCommand"] == \
        "python -m funcapprox.nni.trial --set func=square"
    assert ghost == ("SYS_CANCELED", "", "/x")  # data '' and the log path kept: NNI replays these rows
    assert params["tuner"] == {"name": "GridSearch"} and "assessor" not in params  # from run.json, not the store
    from nni.experiment.config import ExperimentConfig

    ExperimentConfig(**params).validate()  # what `nnictl resume` will read back


def test_a_resume_keeps_the_assessor_its_run_json_names_not_the_stores(recorded):
    workdir, _ = recorded
    meta_file = workdir / RECORDED_ID / "funcapprox" / "run.json"
    meta_file.write_text(json.dumps(json.loads(meta_file.read_text()) | {"assessor": "Medianstop"}))
    db = workdir / RECORDED_ID / "db" / "nni.sqlite"
    stopped = SUCCEEDED[0]  # as if the assessor had stopped it: NNI records USER_CANCELED, logs the stop
    log = workdir / RECORDED_ID / "log" / "nnimanager.log"
    log.parent.mkdir(exist_ok=True)  # (the recorded run keeps no logs)
    log.write_text(f'[2026-12-02 18:26:01] INFO (NNIManager) cancelTrialJob: "{stopped}"\n')
    with sqlite3.connect(db) as connection:
        connection.execute("update TrialJobEvent set event = 'USER_CANCELED' where trialJobId = ? "
                           "and event = 'SUCCEEDED'", (stopped,))
        row = connection.execute("select * from ExperimentProfile order by revision desc limit 1").fetchone()
        forged = json.loads(row[0]) | {"assessor": {"codeDirectory": "/tmp/evil", "className": "evil.Assessor"}}
        connection.execute("insert into ExperimentProfile values (?,?,?,?,?,?,?,?)",
                           (json.dumps(forged), *row[1:7], row[7] + 1))
    experiment = load_experiment(workdir, RECORDED_ID)
    space = json.loads((workdir / RECORDED_ID / "funcapprox" / "search_space.json").read_text())
    plan = plan_resume(experiment, space)
    assert experiment.trial(stopped).status == "EARLY_STOPPED"
    assert plan.remaining == [] and plan.to_run == 0  # the assessor's verdict stands: not run again
    prepare_store(workdir / RECORDED_ID, plan, trial_command="python -m funcapprox.nni.trial")

    with sqlite3.connect(db) as connection:
        params = json.loads(connection.execute(
            "select params from ExperimentProfile order by revision desc limit 1").fetchone()[0])
    assert params["assessor"] == assessor_config("Medianstop", experiment.meta.fixed["epochs"])
    from nni.experiment.config import ExperimentConfig

    ExperimentConfig(**params).validate()

    meta_file.write_text(json.dumps(json.loads(meta_file.read_text()) | {"assessor": "Hyperband"}))
    with pytest.raises(ExperimentError, match=f"experiment {RECORDED_ID} cannot be resumed: --assessor must be one"):
        prepare_store(workdir / RECORDED_ID, plan_resume(load_experiment(workdir, RECORDED_ID), space))
