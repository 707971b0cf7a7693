"""Reading an experiment back from NNI's store: a real NNI 3.0 run recorded in tests/data/recorded,
always used through a copy in tmp_path (which also proves that moved work folders still read)."""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest
from helpers.recorded import FAILED, RECORDED, RECORDED_ID, SUCCEEDED, copy_recorded, trial_folder

from funcapprox.config import DATA_ONLY, TrainConfig, field_names
from funcapprox.errors import ConfigError, ExperimentError
from funcapprox.nni.store import load_experiment
from funcapprox.results import check_id, experiment_ids, resolve_id

ORDER = ("ud7Qq", "wcNBM", "njzKx", "E3Yy2")  # NNI's trial sequence
DIVERGED = "training diverged at epoch 5: the network output became NaN or infinite"
# The recorded stage's fixed settings; settings added to TrainConfig since then take their defaults.
STAGE_FIXED = {k: v for k, v in TrainConfig(func="square", optimizer="SGD", loss="MSELoss", epochs=10, init="default",
                                           lr_schedule="constant").to_dict().items()
               if k not in ("act", "lr")}

FUNCTION_FIELDS = tuple(f for f in field_names() if f not in DATA_ONLY)  # a data file adds DATA_ONLY


@pytest.fixture
def workdir(tmp_path):
    return copy_recorded(tmp_path)


@pytest.fixture
def experiment(workdir):
    return load_experiment(workdir, RECORDED_ID)


def _trial_json(workdir, trial_id, name):
    return json.loads((trial_folder(workdir, trial_id) / name).read_text())


def test_the_recorded_data_is_only_read_through_a_copy(workdir):
    assert workdir != RECORDED and (workdir / RECORDED_ID / "db" / "nni.sqlite").is_file()


def test_experiment_ids_and_latest(workdir):
    assert experiment_ids(workdir) == [RECORDED_ID]
    assert resolve_id(workdir, "latest") == RECORDED_ID
    assert load_experiment(workdir).id == RECORDED_ID
    assert load_experiment(workdir, "latest").id == RECORDED_ID


def test_experiment_record(experiment, workdir):
    assert experiment.folder == workdir / RECORDED_ID
    assert experiment.stage == "nonarch"
    assert experiment.func == "square"
    assert experiment.meta["fixed"].items() <= STAGE_FIXED.items()
    assert experiment.start is not None and experiment.end is not None and experiment.end > experiment.start


def test_four_trials_with_their_statuses(experiment):
    assert [t.trial_id for t in experiment.trials] == list(ORDER)
    assert {t.trial_id: t.status for t in experiment.trials} == {
        "ud7Qq": "SUCCEEDED", "wcNBM": "SUCCEEDED", "njzKx": "FAILED", "E3Yy2": "FAILED"}
    assert experiment.counts() == {"SUCCEEDED": 2, "FAILED": 2}
    assert [t.trial_id for t in experiment.succeeded()] == list(SUCCEEDED)


def test_params_are_full_resolved_configurations(experiment):
    for t in experiment.trials:
        assert tuple(t.params) == FUNCTION_FIELDS
        assert TrainConfig.from_dict(t.params).to_dict() == t.params
        assert {k: t.params[k] for k in STAGE_FIXED} == STAGE_FIXED
        assert t.arch == "{16,16,16}"
        assert t.config == TrainConfig.from_dict(t.params)
    by_id = {t.trial_id: t for t in experiment.trials}
    assert (by_id["ud7Qq"].params["act"], by_id["ud7Qq"].params["lr"]) == ("Sigmoid", 0.01)
    assert (by_id["wcNBM"].params["act"], by_id["wcNBM"].params["lr"]) == ("Tanh", 0.01)
    assert {by_id[i].params["lr"] for i in FAILED} == {1e6}
    assert by_id["ud7Qq"].nni_params == {"learning_rate": 0.01, "act_func": "Sigmoid"}


def _trained(workdir, trial_id):
    """A trial's recorded config.json, with the settings added since then at their defaults."""
    return TrainConfig.from_dict(_trial_json(workdir, trial_id, "config.json")).to_dict()


def _swap_nni_records(workdir, a, b):
    """Do to NNI's store what NNI 3.0 does when trials start together: pair each trial with the other's parameters."""
    with sqlite3.connect(workdir / RECORDED_ID / "db" / "nni.sqlite") as db:
        data = dict(db.execute("SELECT trialJobId, data FROM TrialJobEvent WHERE data IS NOT NULL"))
        for trial_id, other in ((a, b), (b, a)):
            db.execute("UPDATE TrialJobEvent SET data = ? WHERE trialJobId = ? AND data IS NOT NULL",
                       (data[other], trial_id))


def test_params_are_what_each_trial_actually_trained(experiment, workdir):
    for t in experiment.trials:
        recorded = _trained(workdir, t.trial_id)
        assert t.params == recorded, t.trial_id  # settings added since the recording take their defaults
    # NNI's store swapped the two failed trials' parameters (see test_nni_s_record_is_the_last_resort);
    # their config.json says what they really trained.
    assert {i: experiment.trial(i).params["act"] for i in ORDER} == {
        "ud7Qq": "Sigmoid", "wcNBM": "Tanh", "njzKx": "Tanh", "E3Yy2": "Sigmoid"}


def test_the_trial_s_config_json_wins_over_everything_else(workdir):
    # NNI's row, the parameter_id on the metrics and parameters.json all disagree with config.json: it wins.
    _swap_nni_records(workdir, "ud7Qq", "wcNBM")
    received = {"parameter_id": 1, "parameters": {"learning_rate": 0.02, "act_func": "ReLU"}}
    (trial_folder(workdir, "ud7Qq") / "parameters.json").write_text(json.dumps(received))
    t = load_experiment(workdir, RECORDED_ID).trial("ud7Qq")
    assert t.params == _trained(workdir, "ud7Qq")
    assert (t.params["act"], t.params["lr"]) == ("Sigmoid", 0.01)
    assert t.nni_params == received["parameters"]


def test_the_trial_s_own_parameters_json_wins_over_nni_s_record(workdir):
    trained = _trained(workdir, "njzKx")
    (trial_folder(workdir, "njzKx") / "config.json").unlink()  # so parameters.json is what decides
    received = {"parameter_id": 2, "parameters": {"learning_rate": 1000000, "act_func": "Tanh"}}
    (trial_folder(workdir, "njzKx") / "parameters.json").write_text(json.dumps(received))
    t = load_experiment(workdir, RECORDED_ID).trial("njzKx")
    assert t.params == trained  # NNI's row says Sigmoid
    assert t.nni_params == received["parameters"]


def test_the_trial_s_own_parameters_json_wins_over_the_parameter_id_on_its_metrics(workdir):
    (trial_folder(workdir, "ud7Qq") / "config.json").unlink()
    received = {"parameter_id": 0, "parameters": {"learning_rate": 0.02, "act_func": "ReLU"}}
    (trial_folder(workdir, "ud7Qq") / "parameters.json").write_text(json.dumps(received))
    t = load_experiment(workdir, RECORDED_ID).trial("ud7Qq")
    assert t.params == TrainConfig.from_dict({**STAGE_FIXED, "act": "ReLU", "lr": 0.02}).to_dict()
    assert t.nni_params == received["parameters"]


def test_swapped_nni_records_are_undone_by_the_reported_parameter_id(workdir):
    trained = {i: _trained(workdir, i) for i in SUCCEEDED}
    for trial_id in SUCCEEDED:  # no config.json, no parameters.json: the metrics' parameter_id decides
        (trial_folder(workdir, trial_id) / "config.json").unlink()
    _swap_nni_records(workdir, "ud7Qq", "wcNBM")
    experiment = load_experiment(workdir, RECORDED_ID)
    assert experiment.trial("ud7Qq").params == trained["ud7Qq"]  # its metrics carry parameter_id 0: Sigmoid
    assert experiment.trial("wcNBM").params == trained["wcNBM"]
    assert experiment.trial("ud7Qq").nni_params == {"learning_rate": 0.01, "act_func": "Sigmoid"}
    assert experiment.trial("wcNBM").nni_params == {"learning_rate": 0.01, "act_func": "Tanh"}
    assert experiment.best().params == trained["ud7Qq"]


def test_nni_s_record_is_the_last_resort(workdir):
    # A failed trial before parameters.json existed: no metrics either, so without its config.json only
    # NNI's row is left, which for this recorded run names the other failed trial's parameters.
    (trial_folder(workdir, "njzKx") / "config.json").unlink()
    t = load_experiment(workdir, RECORDED_ID).trial("njzKx")
    assert t.nni_params == {"learning_rate": 1000000, "act_func": "Sigmoid"}
    assert t.params == TrainConfig.from_dict({**STAGE_FIXED, "act": "Sigmoid", "lr": 1e6}).to_dict()


def test_final_metrics_of_succeeded_trials(experiment, workdir):
    for trial_id in SUCCEEDED:
        t = experiment.trial(trial_id)
        recorded = _trial_json(workdir, trial_id, "metrics.json")
        assert t.metric == recorded["metric"]
        assert t.rms == recorded["rms"]
        assert t.max_error == recorded["max_error"]
        assert t.n_params == 593 == TrainConfig.from_dict(t.params).n_params
        assert t.reason is None


def test_failed_trials_carry_the_divergence_reason(experiment, workdir):
    for trial_id in FAILED:
        t = experiment.trial(trial_id)
        assert t.metric is None and t.rms is None and t.max_error is None
        assert t.reason.startswith(DIVERGED)
        assert t.reason == _trial_json(workdir, trial_id, "failure.json")["reason"]
        assert t.n_params == 593  # from the configuration: a failed trial reports none
        assert t.history == ()


def test_histories_and_durations(experiment):
    ud7qq = experiment.trial("ud7Qq")
    assert ud7qq.history == pytest.approx((0.5199665489059936, 0.5199930769287593))
    assert len(experiment.trial("wcNBM").history) == 2
    assert ud7qq.seconds == pytest.approx(9.372)  # RUNNING to SUCCEEDED, as NNI's database recorded it
    for t in experiment.trials:
        assert t.seconds is not None and t.seconds > 0


def test_ranked_puts_succeeded_trials_best_first(experiment):
    assert [t.trial_id for t in experiment.ranked()] == ["ud7Qq", "wcNBM", "njzKx", "E3Yy2"]
    assert experiment.best().trial_id == "ud7Qq"
    assert experiment.trial("best") == experiment.best()
    assert experiment.best().metric > experiment.trial("wcNBM").metric


def test_as_dict_is_the_json_shape(experiment):
    for t in experiment.trials:
        data = t.as_dict()
        assert list(data) == ["trial_id", "status", "params", "metric", "rms", "max_error", "n_params", "seconds"]
        json.dumps(data, allow_nan=False)


def test_unknown_trial(experiment):
    with pytest.raises(ExperimentError, match=f"no trial 'nosuch' in experiment {RECORDED_ID}"):
        experiment.trial("nosuch")


def test_no_succeeded_trial_means_no_best(workdir):
    with sqlite3.connect(workdir / RECORDED_ID / "db" / "nni.sqlite") as db:
        db.execute("DELETE FROM MetricData WHERE type = 'FINAL'")
    experiment = load_experiment(workdir, RECORDED_ID)
    assert experiment.succeeded() == []
    with pytest.raises(ExperimentError, match=f"experiment {RECORDED_ID} has no succeeded trial yet"):
        experiment.best()
    assert len(experiment.ranked()) == 4


# --- ids --------------------------------------------------------------------------------------


def test_resolve_id_of_an_unknown_id_lists_the_known_ones(workdir):
    with pytest.raises(ExperimentError, match=rf"no experiment 'nosuch' in .* \(known: {RECORDED_ID}\)"):
        resolve_id(workdir, "nosuch")


@pytest.mark.parametrize("bad", ["../x", "a/b", "..", "/etc", "a b", "", "x" * 65])
def test_ids_with_path_characters_are_rejected(workdir, bad):
    # A malformed id is the user's mistake (ConfigError: exit 2), not a missing experiment.
    message = f"{bad!r} is not a valid experiment id (letters, digits, - and _ only)"
    for call in (resolve_id, load_experiment):
        with pytest.raises(ConfigError) as info:
            call(workdir, bad)
        assert str(info.value) == message
        assert not isinstance(info.value, ExperimentError)
    with pytest.raises(ConfigError, match="is not a valid trial id"):
        check_id(bad, "trial id")


def test_check_id_accepts_nni_ids():
    assert check_id(RECORDED_ID) == RECORDED_ID
    assert check_id("ab_c-9") == "ab_c-9"


@pytest.mark.parametrize("make", [lambda p: p.mkdir(), lambda p: None], ids=["empty", "missing"])
def test_a_workdir_without_experiments_says_so(tmp_path, make):
    folder = tmp_path / "nothing"
    make(folder)
    assert experiment_ids(folder) == []
    with pytest.raises(ExperimentError, match=r"no experiments in .*nothing; start one with `funcapprox search`"):
        load_experiment(folder)
    with pytest.raises(ExperimentError, match="no experiment 'wrxauyqz'"):
        load_experiment(folder, RECORDED_ID)


# --- moved work folders -----------------------------------------------------------------------


def test_trial_folders_are_found_although_nni_recorded_other_absolute_paths(tmp_path):
    workdir = copy_recorded(tmp_path, "where-it-ran").rename(tmp_path / "moved-here")
    with sqlite3.connect(f"file:{workdir / RECORDED_ID / 'db' / 'nni.sqlite'}?mode=ro", uri=True) as db:
        recorded = {row[0] for row in db.execute("SELECT logPath FROM TrialJobEvent")}
    assert all(not path.startswith(str(workdir)) for path in recorded)  # NNI wrote where it ran, not here
    experiment = load_experiment(workdir, RECORDED_ID)
    assert len(experiment.trials) == 4
    for t in experiment.trials:
        assert t.output_dir == trial_folder(workdir, t.trial_id)
        assert (t.output_dir / "config.json").is_file()


def test_a_renamed_copy_reads_from_its_own_folder(tmp_path):
    workdir = copy_recorded(tmp_path, "a")
    moved = tmp_path / "elsewhere" / "b"
    moved.parent.mkdir()
    shutil.move(workdir, moved)
    experiment = load_experiment(moved, RECORDED_ID)
    assert all(str(t.output_dir).startswith(str(moved)) for t in experiment.trials)
    assert experiment.trial("njzKx").reason.startswith(DIVERGED)


def test_latest_is_the_newest_created_experiment(workdir):
    newer = workdir / "newer01"
    shutil.copytree(workdir / RECORDED_ID, newer)
    meta_path = newer / "funcapprox" / "run.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "id": "newer01", "created": meta["created"] + 60}))
    assert experiment_ids(workdir) == [RECORDED_ID, "newer01"]
    latest = load_experiment(workdir)
    assert latest.id == "newer01"
    assert latest.trial("ud7Qq").output_dir == newer / "environments" / "local-env" / "trials" / "ud7Qq"


def test_nni_s_latest_symlink_is_not_an_experiment(workdir):
    (workdir / "_latest").symlink_to(workdir / RECORDED_ID)
    assert experiment_ids(workdir) == [RECORDED_ID]


def test_an_experiment_whose_manager_never_started_has_no_trials(workdir):
    shutil.rmtree(workdir / RECORDED_ID / "db")
    experiment = load_experiment(workdir, RECORDED_ID)
    assert experiment.trials == [] and experiment.stage == "nonarch"


def test_failure_reason_falls_back_to_the_last_stderr_line(workdir):
    folder = trial_folder(workdir, "njzKx")
    (folder / "failure.json").unlink()
    assert load_experiment(workdir, RECORDED_ID).trial("njzKx").reason == "funcapprox trial: " + _trial_json(
        workdir, "E3Yy2", "failure.json")["reason"]
    (folder / "trial.stderr").unlink()
    assert load_experiment(workdir, RECORDED_ID).trial("njzKx").reason == "no reason recorded (killed or stopped?)"


def test_an_unreadable_database_is_a_clear_error(workdir):
    (workdir / RECORDED_ID / "db" / "nni.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(ExperimentError, match="cannot read NNI's database"):
        load_experiment(workdir, RECORDED_ID)


def test_a_broken_run_json_is_a_clear_error(workdir):
    (workdir / RECORDED_ID / "funcapprox" / "run.json").write_text("{not json")
    with pytest.raises(ExperimentError, match="run.json is not readable JSON"):
        load_experiment(workdir, RECORDED_ID)


# --- files a remote machine or anyone with the store could have written --------------------------


def test_hostile_trial_files_and_store_paths_are_read_as_missing(workdir):
    deep = "[" * 100_000 + "]" * 100_000  # json.loads: RecursionError
    ok = trial_folder(workdir, SUCCEEDED[0])
    for name in ("parameters.json", "config.json", "metrics.json"):
        (ok / name).write_text(deep)
    (trial_folder(workdir, FAILED[0]) / "failure.json").write_text(deep)
    db = workdir / RECORDED_ID / "db" / "nni.sqlite"
    with sqlite3.connect(db) as connection:  # a trial whose recorded folder points out of the experiment
        connection.execute("update TrialJobEvent set logPath = ? where trialJobId = ?",
                           (str(workdir / RECORDED_ID / "environments" / ".." / ".." / ".."), SUCCEEDED[1]))
        connection.execute("insert into MetricData values (1, ?, '0', 'FINAL', 0, ?)", (SUCCEEDED[1], deep))
    experiment = load_experiment(workdir, RECORDED_ID)
    by_id = {t.trial_id: t for t in experiment.trials}
    assert by_id[SUCCEEDED[1]].output_dir is None
    assert by_id[SUCCEEDED[0]].params["act"] == "Sigmoid"  # from the store, the trial's own files unreadable
    assert by_id[FAILED[0]].status == "FAILED"


def test_an_assessors_stop_is_told_from_a_kill_a_cancel_and_the_end_by_the_managers_log(tmp_path):
    """NNI 3.0 stores each of these USER_CANCELED (or EARLY_STOPPED); its log says which was which."""
    from funcapprox.nni.store import _assessor_stops, _explain_endings
    from funcapprox.results import RunMeta, TrialRecord

    (tmp_path / "log").mkdir()
    (tmp_path / "log" / "nnimanager.log").write_text(
        '[2026-12-02 18:26:01] INFO (NNIManager) cancelTrialJob: "judged"\n'  # the assessor's
        '[2026-12-02 18:26:01] INFO (NNIManager) cancelTrialJob: "judged2"\n'
        "[2026-12-02 18:26:02] INFO (NNIManager) User cancelTrialJob: byuser\n"  # the web UI's
        "[2026-12-02 18:26:09] INFO (NNIManager) cancelTrialJob: atend\n")  # the experiment's stop
    ends = {"judged": "USER_CANCELED", "judged2": "EARLY_STOPPED", "byuser": "USER_CANCELED",
            "killed": "USER_CANCELED", "timedout": "EARLY_STOPPED", "ok": "SUCCEEDED", "atend": "USER_CANCELED"}
    at = {"judged": 2, "judged2": 2, "byuser": 3, "killed": 4, "timedout": 5, "ok": 6, "atend": 9}
    events = [(0, t, "WAITING") for t in ends] + [(3, "byuser", "USER_TO_CANCEL")]
    events += sorted(((at[t], t, end) for t, end in ends.items()))
    trials = [TrialRecord(t, end, {}, {}, reason="KeyboardInterrupt") for t, end in ends.items()]
    stops = _assessor_stops(tmp_path)
    assert stops == {"judged", "judged2"}
    meta = RunMeta(assessor="Medianstop", max_trial_duration="10m")  # (no trial's duration is known here)
    shown = {t.trial_id: (t.status, t.reason) for t in _explain_endings(trials, events, meta, stops)}
    assert shown["judged"] == shown["judged2"] == ("EARLY_STOPPED", None)
    assert shown["byuser"] == ("USER_CANCELED", "KeyboardInterrupt")  # as NNI says
    assert shown["atend"] == ("USER_CANCELED", "KeyboardInterrupt")  # ended with its experiment
    assert shown["killed"][0] == "FAILED" and "killed by a signal" in shown["killed"][1]
    assert shown["timedout"][0] == "FAILED" and "--max-trial-duration" in shown["timedout"][1]
