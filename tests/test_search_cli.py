"""`funcapprox search` (dry runs only), `results`, `plot` and `experiments` through click's CliRunner, on a
copy of the experiment a real NNI 3.0 run recorded. Nothing here starts an NNI manager."""

from __future__ import annotations

import csv
import io
import json
import shlex
import sqlite3
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from helpers.recorded import FAILED, PNG_SIGNATURE, RECORDED_ID, copy_recorded, trial_folder

from funcapprox.cli import cli
from funcapprox.config import DATA_ONLY, TrainConfig, field_names, parse_set_values, read_set_pairs
from funcapprox.errors import ConfigError
from funcapprox.nni.trial import resolve
from funcapprox.search.plan import plan_stage
from funcapprox.search.space import default_space_path, in_group_order, load_space

JSON_KEYS = ["trial_id", "status", "params", "metric", "rms", "max_error", "n_params", "seconds"]
DIVERGED = "training diverged at epoch 5: the network output became NaN or infinite"

FUNCTION_FIELDS = tuple(f for f in field_names() if f not in DATA_ONLY)  # a data file adds DATA_ONLY


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """No real NNI: launching fails the test; NNI's manifest is looked up in an empty home."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("FUNCAPPROX_WORKDIR", raising=False)

    def no_launch(*args, **kwargs):
        raise AssertionError("a unit test tried to start an NNI experiment")

    monkeypatch.setattr("funcapprox.search.run.launch", no_launch)
    monkeypatch.setattr("funcapprox.nni.manager.create", no_launch)


@pytest.fixture
def workdir(tmp_path):
    return copy_recorded(tmp_path)


def invoke(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    # A user mistake or a failed operation ends in SystemExit; anything else is a crash with a traceback.
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result


def _error_lines(result) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith("Error:")]


def _dry_run_config(result) -> dict:
    """The config.yml a dry run wrote, from the path on its first line."""
    first = result.stdout.splitlines()[0]
    assert first.startswith("# ") and first.endswith(" (validated by NNI's ExperimentConfig)")
    path = first[2:].split(" (validated")[0]
    return yaml.safe_load(Path(path).read_text())


def _trial_settings(config: dict) -> dict:
    """The --set pairs of the trialCommand, parsed the way the trial parses them."""
    argv = shlex.split(config["trialCommand"])
    assert argv[:3] == [sys.executable, "-m", "funcapprox.nni.trial"]
    argv = argv[3:]
    if config["tuner"] == {"name": "GridSearch"}:  # a grid's trials train in batched steps (nni/gather.py)
        assert argv[0] == "--batched"
        argv = argv[1:]
    return read_set_pairs(argv[1::2])


# --- results ----------------------------------------------------------------------------------


def test_results_table_shows_the_trials_and_the_failure_reasons(workdir):
    result = invoke("results", "--workdir", workdir)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"experiment {RECORDED_ID}: stage nonarch, square, 2 failed, 2 succeeded"
    assert lines[1].split() == ["trial", "status", "act", "lr", "metric", "rms", "max_error", "params", "seconds"]
    rows = [line.split() for line in lines[2:6]]
    assert [row[:4] for row in rows] == [["ud7Qq", "SUCCEEDED", "Sigmoid", "0.01"],
                                         ["wcNBM", "SUCCEEDED", "Tanh", "0.01"],
                                         ["njzKx", "FAILED", "Tanh", "1e+06"],  # their config.json:
                                         ["E3Yy2", "FAILED", "Sigmoid", "1e+06"]]  # NNI's store swapped them
    assert rows[0][4:8] == ["0.5200", "0.30200", "0.67924", "593"]
    assert rows[2][4:7] == ["n/a", "n/a", "n/a"]
    for trial_id in FAILED:
        assert any(line.startswith(f"{trial_id} FAILED: {DIVERGED}") for line in lines[6:])
    assert len(lines) == 8


@pytest.mark.parametrize("top, shown, failures", [(1, ["ud7Qq"], []), (2, ["ud7Qq", "wcNBM"], []),
                                                 (3, ["ud7Qq", "wcNBM", "njzKx"], ["njzKx"])])
def test_results_top_prints_failure_lines_only_for_the_trials_shown(workdir, top, shown, failures):
    result = invoke("results", "--workdir", workdir, "--top", top)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines[2:2 + top]] == shown
    assert lines[2 + top:] == [f"{t} FAILED: {DIVERGED} (try a smaller learning rate than 1e+06)" for t in failures]


def test_results_json(workdir):
    result = invoke("results", "--workdir", workdir, "--format", "json", "--experiment", RECORDED_ID)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert isinstance(data, list) and len(data) == 4
    for item in data:
        assert list(item) == JSON_KEYS
        assert list(item["params"]) == list(FUNCTION_FIELDS)
    assert [d["trial_id"] for d in data] == ["ud7Qq", "wcNBM", "njzKx", "E3Yy2"]
    best = data[0]
    assert best["status"] == "SUCCEEDED" and best["n_params"] == 593 and best["seconds"] > 0
    recorded = json.loads((trial_folder(workdir, "ud7Qq") / "config.json").read_text())
    assert best["params"] == TrainConfig.from_dict(recorded).to_dict()
    assert best["metric"] == json.loads((trial_folder(workdir, "ud7Qq") / "metrics.json").read_text())["metric"]
    assert data[2]["metric"] is None and data[2]["status"] == "FAILED"


def test_results_csv(workdir):
    result = invoke("results", "--workdir", workdir, "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == ["trial_id", "status", *field_names(), "metric", "rms", "max_error", "n_params", "seconds"]
    assert len(rows) == 5
    header = rows[0]
    first = dict(zip(header, rows[1]))
    assert (first["trial_id"], first["status"], first["hidden"], first["act"], first["lr"]) == (
        "ud7Qq", "SUCCEEDED", "16,16,16", "Sigmoid", "0.01")
    assert float(first["metric"]) == pytest.approx(0.5199665489059936)
    failed = dict(zip(header, rows[3]))
    assert failed["status"] == "FAILED" and failed["metric"] == ""


@pytest.mark.parametrize("fmt", ["json", "csv", "table"])
def test_results_top_1(workdir, fmt):
    result = invoke("results", "--workdir", workdir, "--top", "1", "--format", fmt)
    assert result.exit_code == 0, result.output
    if fmt == "json":
        assert [d["trial_id"] for d in json.loads(result.stdout)] == ["ud7Qq"]
    elif fmt == "csv":
        rows = list(csv.reader(io.StringIO(result.stdout)))
        assert len(rows) == 2 and rows[1][0] == "ud7Qq"
    else:
        table = [line.split()[0] for line in result.stdout.splitlines()[2:] if "SUCCEEDED" in line]
        assert table == ["ud7Qq"]


def test_results_top_0_is_a_usage_error(workdir):
    result = invoke("results", "--workdir", workdir, "--top", "0")
    assert result.exit_code == 2


def test_results_of_an_unknown_experiment(workdir):
    result = invoke("results", "--workdir", workdir, "--experiment", "nosuch")
    assert result.exit_code == 1
    assert _error_lines(result) == [
        f"Error: no experiment 'nosuch' in {workdir.resolve()} (known: {RECORDED_ID}); see `funcapprox experiments`"]


@pytest.mark.parametrize("bad", ["../x", "a/b"])
def test_results_of_an_id_with_path_characters(workdir, bad):
    result = invoke("results", "--workdir", workdir, "--experiment", bad)
    assert result.exit_code == 2  # the user's mistake, like a bad option value
    assert _error_lines(result) == [f"Error: {bad!r} is not a valid experiment id (letters, digits, - and _ only)"]


def test_results_in_an_empty_workdir(tmp_path):
    result = invoke("results", "--workdir", tmp_path / "empty")
    assert result.exit_code == 1
    assert _error_lines(result) == [
        f"Error: no experiments in {(tmp_path / 'empty').resolve()}; start one with `funcapprox search`"]


def test_results_reads_the_workdir_from_the_environment(workdir, monkeypatch):
    monkeypatch.setenv("FUNCAPPROX_WORKDIR", str(workdir))
    result = invoke("results", "--format", "json")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)) == 4


# --- plot -------------------------------------------------------------------------------------


def _assert_png(path):
    import matplotlib.image

    assert path.read_bytes().startswith(PNG_SIGNATURE), path
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def test_plot_best_writes_the_fit_and_the_history(workdir):
    result = invoke("plot", "--trial", "best", "--workdir", workdir)
    assert result.exit_code == 0, result.output
    folder = workdir / RECORDED_ID / "funcapprox"
    fit, history = folder / "trial-ud7Qq.png", folder / "trial-ud7Qq-history.png"
    assert result.stdout.splitlines() == [f"wrote {fit}", f"wrote {history}"]
    _assert_png(fit)
    _assert_png(history)


def test_plot_a_trial_to_a_chosen_file(workdir, tmp_path):
    (tmp_path / "tmp").mkdir()
    out = tmp_path / "tmp" / "x.png"
    result = invoke("plot", "--trial", "ud7Qq", "--out", out, "--workdir", workdir, "--experiment", RECORDED_ID)
    assert result.exit_code == 0, result.output
    _assert_png(out)
    _assert_png(tmp_path / "tmp" / "x-history.png")
    assert sorted(p.name for p in (tmp_path / "tmp").iterdir()) == ["x-history.png", "x.png"]


def test_plot_an_unknown_trial(workdir):
    result = invoke("plot", "--trial", "nosuch", "--workdir", workdir)
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: no trial 'nosuch' in experiment {RECORDED_ID}; "
        f"`funcapprox results --experiment {RECORDED_ID}` lists them"]


@pytest.mark.parametrize("trial_id", FAILED)
def test_plot_a_failed_trial(workdir, trial_id):
    result = invoke("plot", "--trial", trial_id, "--workdir", workdir)
    assert result.exit_code == 1
    assert _error_lines(result) == [f"Error: trial {trial_id} did not succeed (FAILED: {DIVERGED} "
                                    "(try a smaller learning rate than 1e+06))"]


def test_plot_without_weights_points_to_retrain_and_retrain_reproduces_them(workdir, tmp_path):
    original = tmp_path / "original.png"
    assert invoke("plot", "--trial", "ud7Qq", "--out", original, "--workdir", workdir).exit_code == 0
    (trial_folder(workdir, "ud7Qq") / "model.pt").unlink()

    result = invoke("plot", "--trial", "ud7Qq", "--out", tmp_path / "gone.png", "--workdir", workdir)
    assert result.exit_code == 1
    (line,) = _error_lines(result)
    assert "no saved weights at" in line and "model.pt" in line and line.endswith(
        "; add --retrain to train its configuration again")
    assert not (tmp_path / "gone.png").exists()

    retrained = tmp_path / "retrained.png"
    result = invoke("plot", "--trial", "ud7Qq", "--out", retrained, "--retrain", "--workdir", workdir)
    assert result.exit_code == 0, result.output
    _assert_png(retrained)
    # Same configuration and seed: the same network, so the same picture.
    assert retrained.read_bytes() == original.read_bytes()


def test_plot_retrain_of_a_failed_trial_says_why_it_failed_again(workdir):
    result = invoke("plot", "--trial", "njzKx", "--retrain", "--workdir", workdir)
    assert result.exit_code == 1
    assert _error_lines(result) == [f"Error: retraining trial njzKx failed: {DIVERGED} "
                                    "(try a smaller learning rate than 1e+06)"]


def _spy_on_history(monkeypatch) -> list:
    """The (epoch, metric) points plot_trial hands to the history plot, one list per call."""
    import funcapprox.views.plot

    seen = []
    original = funcapprox.views.plot.history_data

    def spy(history, label=""):
        seen.append([(record["epoch"], record["metric"]) for record in history])
        return original(history, label)

    monkeypatch.setattr(funcapprox.views.plot, "history_data", spy)
    return seen


def test_plot_history_puts_each_evaluation_at_its_epoch(workdir, tmp_path, monkeypatch):
    # A 12-epoch run evaluates at epochs 5, 10 and 12: its history.json and NNI's store both hold three points,
    # and only the trial's own history.json knows the last one is at 12, not 15.
    folder = trial_folder(workdir, "ud7Qq")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "epochs": 12}))
    history = json.loads((folder / "history.json").read_text())
    (folder / "history.json").write_text(json.dumps([*history, {**history[-1], "epoch": 12, "metric": 0.53}]))
    with sqlite3.connect(workdir / RECORDED_ID / "db" / "nni.sqlite") as db:  # the evaluation at epoch 12
        db.execute("INSERT INTO MetricData VALUES (1795920959000, 'ud7Qq', '0', 'PERIODICAL', 2, '\"0.53\"')")
    seen = _spy_on_history(monkeypatch)
    result = invoke("plot", "--trial", "ud7Qq", "--out", tmp_path / "x.png", "--workdir", workdir)
    assert result.exit_code == 0, result.output
    assert seen == [[(5, history[0]["metric"]), (10, history[1]["metric"]), (12, 0.53)]]


def test_plot_history_without_history_json_uses_nni_s_intermediate_results(workdir, tmp_path, monkeypatch):
    folder = trial_folder(workdir, "ud7Qq")
    history = json.loads((folder / "history.json").read_text())
    (folder / "history.json").unlink()
    seen = _spy_on_history(monkeypatch)
    result = invoke("plot", "--trial", "ud7Qq", "--out", tmp_path / "x.png", "--workdir", workdir)
    assert result.exit_code == 0, result.output
    assert seen == [[(5, history[0]["metric"]), (10, history[1]["metric"])]]  # every 5 epochs, as NNI received them
    _assert_png(tmp_path / "x-history.png")


def test_plot_into_a_missing_folder(workdir, tmp_path):
    result = invoke("plot", "--out", tmp_path / "no" / "x.png", "--workdir", workdir)
    assert result.exit_code == 1
    assert _error_lines(result) == [f"Error: the folder of --out {tmp_path / 'no' / 'x.png'} does not exist"]


def test_plot_in_an_empty_workdir(tmp_path):
    result = invoke("plot", "--workdir", tmp_path)
    assert result.exit_code == 1
    assert _error_lines(result)[0].startswith("Error: no experiments in")


# --- experiments ------------------------------------------------------------------------------


def test_experiments_lists_the_recorded_one(workdir):
    result = invoke("experiments", "--workdir", workdir)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["id", "stage", "func", "status", "trials", "best", "started"]
    assert len(lines) == 2
    assert lines[1].split()[:6] == [RECORDED_ID, "nonarch", "square", "DONE", "2/4", "0.52"]


def test_experiments_in_an_empty_workdir(tmp_path):
    result = invoke("experiments", "--workdir", tmp_path)
    assert result.exit_code == 0
    assert result.stdout.startswith(f"no experiments in {tmp_path.resolve()}")


def test_experiments_stop_and_view_together_is_a_usage_error(workdir):
    result = invoke("experiments", "--stop", RECORDED_ID, "--view", RECORDED_ID, "--workdir", workdir)
    assert result.exit_code == 2
    assert "give --stop or --view, not both" in result.output


# --- search --dry-run -------------------------------------------------------------------------


def test_dry_run_nonarch(tmp_path):
    result = invoke("search", "--dry-run", "--stage", "nonarch", "--func", "oscillator", "--workdir", tmp_path)
    assert result.exit_code == 0, result.output
    assert "trialCommand:" in result.stdout and "maxTrialNumber: 180" in result.stdout
    assert "180 grid points" in result.stdout
    config = _dry_run_config(result)
    assert config["maxTrialNumber"] == 180
    assert config["tuner"] == {"name": "GridSearch"}
    assert config["experimentWorkingDirectory"] == str(tmp_path.resolve())
    settings = _trial_settings(config)
    assert settings["func"] == "oscillator" and settings["hidden"] == "16,16,16"
    assert not {"act", "lr", "optimizer", "loss"} & set(settings)  # the tuner decides those
    folder = tmp_path / ".dry-run" / "oscillator-nonarch"
    # the shipped space, written so that each batched step's points come one after another
    assert json.loads((folder / "search_space.json").read_text()) == in_group_order(
        load_space(default_space_path("nonarch")))
    assert config["trialConcurrency"] == 48  # thin clients: 2 batched steps of 12 training, 2 more gathering
    meta = json.loads((folder / "run.json").read_text())
    assert (meta["stage"], meta["grid_size"], meta["max_trials"]) == ("nonarch", 180, 180)
    assert resolve(settings, {"act_func": "Tanh", "learning_rate": 0.02, "optimizer": "Adam", "loss": "MSELoss"})


def test_dry_run_arch_takes_the_handoff_from_the_recorded_experiment(workdir):
    result = invoke("search", "--dry-run", "--stage", "arch", "--func", "square", "--workdir", workdir)
    assert result.exit_code == 0, result.output
    config = _dry_run_config(result)
    assert config["maxTrialNumber"] == 126
    command = config["trialCommand"]
    for pair in ("--set act=Sigmoid", "--set lr=0.01", "--set optimizer=SGD", "--set loss=MSELoss",
                 "--set epochs=10"):
        assert pair in command
    settings = _trial_settings(config)
    assert "hidden" not in settings
    assert resolve(settings, {"arch": {"_name": "1 hidden layer", "hidden_size_1": 64}}) == TrainConfig(
        func="square", hidden=(64,), act="Sigmoid", lr=0.01, optimizer="SGD", loss="MSELoss", epochs=10,
        init="default", lr_schedule="constant")  # stage 1 trained with the study's trainer: stage 2 keeps it
    meta = json.loads((workdir / ".dry-run" / "square-arch" / "run.json").read_text())
    assert meta["from_experiment"] == RECORDED_ID
    assert meta["handoff"]["act"] == "Sigmoid" and meta["grid_size"] == 126
    assert not (workdir / ".dry-run" / "square-arch" / "funcapprox").exists()
    assert invoke("experiments", "--workdir", workdir).stdout.count("\n") == 2  # a dry run is no experiment


def test_dry_run_arch_without_stage_1_tells_what_to_do(tmp_path):
    result = invoke("search", "--stage", "arch", "--dry-run", "--workdir", tmp_path)
    assert result.exit_code == 2
    (line,) = _error_lines(result)
    assert "no finished nonarch experiment for oscillator" in line
    assert "run `funcapprox search --stage nonarch --func oscillator` first" in line
    assert "--set act_func=… --set learning_rate=…" in line


def test_dry_run_arch_with_set_needs_no_stage_1(tmp_path):
    result = invoke("search", "--stage", "arch", "--dry-run", "--func", "square", "--workdir", tmp_path,
                    "--set", "act_func=LeakyReLU", "--set", "learning_rate=0.005", "--set", "optimizer=Adam",
                    "--set", "loss=SmoothL1Loss")
    assert result.exit_code == 0, result.output
    settings = _trial_settings(_dry_run_config(result))
    assert (settings["act"], settings["lr"], settings["optimizer"], settings["loss"]) == (
        "LeakyReLU", 0.005, "Adam", "SmoothL1Loss")


def test_dry_run_arch_of_another_function_ignores_the_square_experiment(workdir):
    result = invoke("search", "--stage", "arch", "--dry-run", "--func", "oscillator", "--workdir", workdir)
    assert result.exit_code == 2
    assert "no finished nonarch experiment for oscillator" in result.output


def test_dry_run_arch_from_an_experiment(workdir):
    result = invoke("search", "--stage", "arch", "--dry-run", "--func", "square", "--from", RECORDED_ID,
                    "--workdir", workdir)
    assert result.exit_code == 0, result.output
    assert "--set act=Sigmoid" in _dry_run_config(result)["trialCommand"]
    result = invoke("search", "--stage", "arch", "--dry-run", "--from", "nosuch", "--workdir", workdir)
    assert result.exit_code == 1
    assert _error_lines(result)[0].startswith("Error: no experiment 'nosuch'")


def test_dry_run_with_the_study_flat_arch_space(workdir, tmp_path):
    flat = default_space_path("arch").with_name("arch_study_flat.json")
    result = invoke("search", "--stage", "arch", "--dry-run", "--func", "square", "--space", flat,
                    "--workdir", workdir)
    assert result.exit_code == 0, result.output
    assert _dry_run_config(result)["maxTrialNumber"] == 126  # the nested form: no invalid network scheduled


def test_dry_run_all_shows_stage_1_and_the_handoff_note(tmp_path):
    result = invoke("search", "--dry-run", "--func", "square", "--workdir", tmp_path)
    assert result.exit_code == 0, result.output
    assert "stage arch would take its fixed settings from this stage's best trial" in result.stdout
    assert _dry_run_config(result)["experimentName"] == "funcapprox square nonarch"


def test_dry_run_tuner_and_limits(tmp_path):
    result = invoke("search", "--dry-run", "--stage", "nonarch", "--func", "square", "--tuner", "TPE",
                    "--max-trials", "7", "--max-duration", "10m", "--concurrency", "3", "--epochs", "4",
                    "--workdir", tmp_path)
    assert result.exit_code == 0, result.output
    config = _dry_run_config(result)
    assert config["tuner"]["classArgs"]["optimize_mode"] == "maximize"
    assert (config["maxTrialNumber"], config["maxExperimentDuration"], config["trialConcurrency"]) == (7, "10m", 3)
    assert _trial_settings(config)["epochs"] == 4


@pytest.mark.parametrize("name", ["missing.json", "bad.json"])
def test_search_space_file_errors_name_the_file(tmp_path, name):
    (tmp_path / "bad.json").write_text('{"act_func": ')
    space = tmp_path / name
    result = invoke("search", "--stage", "nonarch", "--dry-run", "--space", space, "--workdir", tmp_path)
    assert result.exit_code == 2
    (line,) = _error_lines(result)
    assert str(space) in line
    assert ("does not exist" if name == "missing.json" else "is not valid JSON") in line


def test_search_space_with_an_unknown_parameter(tmp_path):
    space = tmp_path / "s.json"
    space.write_text(json.dumps({"dropout": {"_type": "choice", "_value": [0.1]}}))
    result = invoke("search", "--stage", "nonarch", "--dry-run", "--space", space, "--workdir", tmp_path)
    assert result.exit_code == 2
    assert f"search space {space}: unknown parameter 'dropout'" in result.output


def test_search_space_with_a_short_quniform_is_a_user_error(tmp_path):
    space = tmp_path / "q.json"
    space.write_text(json.dumps({"learning_rate": {"_type": "quniform", "_value": [0.005, 0.05]}}))
    result = invoke("search", "--stage", "nonarch", "--dry-run", "--space", space, "--workdir", tmp_path)
    assert result.exit_code == 2
    assert _error_lines(result) == [
        f"Error: search space {space}: 'learning_rate' (quniform) _value must be [low, high, q], got [0.005, 0.05]"]


def test_search_space_with_an_empty_arch_choice_is_a_user_error(workdir, tmp_path):
    space = tmp_path / "a.json"
    space.write_text(json.dumps({"arch": {"_type": "choice", "_value": []}}))
    result = invoke("search", "--stage", "arch", "--dry-run", "--func", "square", "--space", space,
                    "--workdir", workdir)
    assert result.exit_code == 2
    assert _error_lines(result) == [f"Error: search space {space}: 'arch' needs at least one option"]


def test_continuous_space_needs_a_limit(tmp_path):
    space = tmp_path / "c.json"
    space.write_text(json.dumps({"learning_rate": {"_type": "loguniform", "_value": [0.001, 0.1]}}))
    args = ["search", "--stage", "nonarch", "--dry-run", "--space", space, "--workdir", tmp_path]
    result = invoke(*args, "--tuner", "TPE")
    assert result.exit_code == 2
    assert _error_lines(result) == [f"Error: {space} has continuous parameters: give --max-trials or --max-duration"]
    result = invoke(*args, "--tuner", "TPE", "--max-trials", "5")
    assert result.exit_code == 0, result.output


def test_set_of_an_unknown_name(tmp_path):
    result = invoke("search", "--stage", "nonarch", "--dry-run", "--set", "foo=1", "--workdir", tmp_path)
    assert result.exit_code == 2
    (line,) = _error_lines(result)
    assert line.startswith("Error: unknown parameter 'foo' in --set")


def test_set_of_a_searched_parameter(tmp_path):
    result = invoke("search", "--stage", "nonarch", "--dry-run", "--set", "act_func=Tanh", "--workdir", tmp_path)
    assert result.exit_code == 2
    (line,) = _error_lines(result)
    space = default_space_path("nonarch")
    assert line == f"Error: 'act_func' is both fixed with --set and searched in {space}; drop one"  # the study's name


def test_set_of_hidden_when_the_space_searches_the_hidden_sizes(workdir):
    # The arch space searches the network: a --set hidden would be silently dropped from every trial.
    result = invoke("search", "--stage", "arch", "--dry-run", "--func", "square", "--set", "hidden=64,0,0",
                    "--workdir", workdir)
    assert result.exit_code == 2, result.output
    (line,) = _error_lines(result)
    assert "hidden" in line and "is both fixed with --set and searched in" in line and "arch.json" in line


@pytest.mark.parametrize(
    "args, words",
    [
        (["--set", "learning_rate=-1"], "lr must be a number greater than 0"),
        (["--set", "act_func"], "--set takes NAME=VALUE"),
        (["--max-duration", "10"], "--max-duration takes a positive number and a unit s, m, h or d, like 10m; "
                                   "got '10'"),
        (["--max-duration", "infm"], "--max-duration takes a positive number and a unit s, m, h or d, like 10m; "
                                     "got 'infm'"),
        (["--space", default_space_path("arch")], "stage nonarch fixes the network at {16,16,16}"),
    ],
)
def test_other_search_user_errors_exit_2(tmp_path, args, words):
    result = invoke("search", "--stage", "nonarch", "--dry-run", "--workdir", tmp_path, *args)
    assert result.exit_code == 2
    assert words in result.output


def test_stage_all_with_a_space_is_a_usage_error(tmp_path):
    result = invoke("search", "--stage", "all", "--space", "x.json", "--workdir", tmp_path)
    assert result.exit_code == 2
    assert "Error: --space, --from and --no-wait go with a single --stage (nonarch or arch)" in result.output


def test_dry_run_with_a_fixed_single_layer_gives_trials_a_valid_config(tmp_path):
    result = invoke("search", "--stage", "nonarch", "--dry-run", "--func", "square", "--set", "hidden=64,0,0",
                    "--workdir", tmp_path)
    assert result.exit_code == 0, result.output
    config = _dry_run_config(result)
    assert "--set hidden=64,0,0" in config["trialCommand"]
    settings = _trial_settings(config)
    assert resolve(settings, {"act_func": "Tanh", "learning_rate": 0.01, "optimizer": "Adam",
                              "loss": "MSELoss"}).hidden == (64,)


# --- the library calls behind search ----------------------------------------------------------


def test_parse_set_values_takes_study_and_field_names():
    assert parse_set_values(["act_func=Tanh", "learning_rate=0.02", "optimizer=Adam", "hidden=64,0,0",
                             "epochs=3"]) == {"act": "Tanh", "lr": 0.02, "optimizer": "Adam", "hidden": "64,0,0",
                                              "epochs": 3}
    assert parse_set_values([]) == {}


@pytest.mark.parametrize(
    "pairs, words",
    [(["=3"], "--set takes NAME=VALUE"), (["foo=1"], "unknown parameter 'foo' in --set"),
     (["epochs=0"], "--set: epochs must be a whole number"), (["hidden=16,0,8"], "a 0 ends the stack")],
)
def test_parse_set_values_rejects(pairs, words):
    with pytest.raises(ConfigError, match=words):
        parse_set_values(pairs)


def test_plan_stage_arch_from_the_recorded_experiment(workdir):
    plan = plan_stage("arch", "square", workdir)
    assert plan.from_experiment == RECORDED_ID
    best = TrainConfig(func="square", act="Sigmoid", optimizer="SGD", lr=0.01, loss="MSELoss", epochs=10,
                       init="default", lr_schedule="constant")
    assert plan.handoff == {k: v for k, v in best.to_dict().items() if k not in ("hidden", "func", "domain", "seed")}
    assert "hidden" not in plan.fixed and plan.fixed["func"] == "square"
    assert plan.grid_size == 126 and plan.max_trials == 126


def test_plan_stage_set_values_override_the_handoff(workdir):
    plan = plan_stage("arch", "square", workdir, set_values={"epochs": 3}, epochs=99)
    assert plan.fixed["epochs"] == 3 and plan.fixed["act"] == "Sigmoid"


def test_plan_stage_refuses_an_arch_experiment_as_the_source(workdir):
    meta_path = workdir / RECORDED_ID / "funcapprox" / "run.json"
    meta_path.write_text(json.dumps({**json.loads(meta_path.read_text()), "stage": "arch"}))
    with pytest.raises(ConfigError, match=f"--from {RECORDED_ID} is a arch experiment; give a nonarch one"):
        plan_stage("arch", "square", workdir, from_experiment=RECORDED_ID)
    with pytest.raises(ConfigError, match="no finished nonarch experiment for square"):
        plan_stage("arch", "square", workdir)


def test_plan_stage_rejects_an_unknown_stage(tmp_path):
    with pytest.raises(ConfigError, match="--stage must be nonarch, arch, all or smallest, not 'both'"):
        plan_stage("both", "square", tmp_path)


# --- accuracy against size ------------------------------------------------------------------


def test_results_pareto_lists_the_front(workdir):
    result = invoke("results", "--pareto", "--workdir", workdir)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"experiment {RECORDED_ID}: 1 networks on the front of max_error against parameters"
    assert lines[1].split() == ["arch", "params", "max_error", "metric", "trial"]
    assert lines[2].split()[:2] == ["{16,16,16}", "593"] and lines[2].split()[-1] == "wcNBM"


def test_results_smallest_within_reach_and_out_of_reach(workdir):
    reached = invoke("results", "--smallest", "--max-error", "0.7", "--workdir", workdir)
    assert reached.exit_code == 0
    assert reached.output.startswith("smallest network with max error <= 0.7: {16,16,16}, 593 parameters")
    missed = invoke("results", "--smallest", "--max-error", "0.001", "--workdir", workdir)
    assert missed.exit_code == 0
    assert missed.output.startswith("no network reached max error <= 0.001; closest: {16,16,16}")


def test_results_smallest_needs_a_target(workdir):
    result = invoke("results", "--smallest", "--workdir", workdir)
    assert result.exit_code == 2 and "--smallest needs --max-error (only a --stage smallest experiment" in result.output
    alone = invoke("results", "--max-error", "0.01", "--workdir", workdir)
    assert alone.exit_code == 2 and "--max-error goes with --smallest" in alone.output


def test_resume_refuses_options_that_would_change_the_experiment(workdir):
    result = invoke("search", "--resume", RECORDED_ID, "--set", "act_func=Tanh", "--space", "x.json",
                    "--workdir", workdir)
    assert result.exit_code == 2 and "drop --set, --space" in result.output


def test_resume_with_nothing_left_says_so_and_starts_nothing(workdir):
    result = invoke("search", "--resume", "latest", "--workdir", workdir)  # 2 succeeded, 2 diverged: all done
    assert result.exit_code == 0, result.output
    assert f"experiment {RECORDED_ID} has nothing left to run (4 done)" in result.output


def test_resume_of_an_unknown_experiment_is_one_clear_line(workdir):
    result = invoke("search", "--resume", "nosuch", "--workdir", workdir)
    assert result.exit_code != 0 and len(_error_lines(result)) == 1 and "nosuch" in _error_lines(result)[0]


def test_remote_machines_with_reuse_true_are_refused_before_anything_starts(workdir, tmp_path):
    key = tmp_path / "key"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n")
    machines = tmp_path / "machines.yml"
    machines.write_text(yaml.safe_dump([{"host": "10.0.0.5", "user": "u", "sshKeyFile": str(key),
                                         "python": "/opt/venv/bin/python", "reuse": True}]))
    result = invoke("search", "--stage", "nonarch", "--platform", "remote", "--machines", machines,
                    "--workdir", workdir)
    assert result.exit_code == 2 and "reuse: true is not supported" in result.output
    result = invoke("search", "--stage", "nonarch", "--machines", machines, "--workdir", workdir)
    assert result.exit_code == 2 and "--platform remote and --machines FILE go together" in result.output


def test_results_importance_is_a_table_and_json(workdir):
    from funcapprox.importance import importance
    from funcapprox.nni.store import load_experiment

    expected = importance(load_experiment(workdir, RECORDED_ID))
    table = invoke("results", "--importance", "--experiment", RECORDED_ID, "--workdir", workdir)
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    assert lines[0].startswith(f"experiment {RECORDED_ID}: what matters ({expected.method}")
    assert [line.split()[0] for line in lines[2:]] == [e.name for e in expected.effects] + ["interactions"]
    assert f"{expected.effects[0].share:.1%}" in lines[2]
    data = json.loads(invoke("results", "--importance", "--format", "json", "--experiment", RECORDED_ID,
                             "--workdir", workdir).stdout)
    assert [e["name"] for e in data["effects"]] == [e.name for e in expected.effects]
    assert sum(e["share"] for e in data["effects"]) + data["interactions_share"] == pytest.approx(1.0, abs=1e-9) \
        or data["method"] != "exact main effects on a full grid"


def test_progress_lines_go_on_into_the_next_stage(workdir, capsys):
    """Not on a terminal a line is printed every 30 s; stage 2's clock starts again at 0."""
    from funcapprox.cli import _progress_line
    from funcapprox.nni.manager import Progress
    from funcapprox.nni.store import load_experiment

    experiment = load_experiment(workdir, RECORDED_ID)
    show = _progress_line()
    for elapsed in (0, 10, 31, 700, 0.5, 20, 35):  # stage 1, then stage 2 from 0.5 s
        show(Progress(experiment, "RUNNING", elapsed, 99))
    lines = capsys.readouterr().err.splitlines()
    assert [line.split("| ")[-1].split(",")[0] for line in lines] == ["31s elapsed", "11m40s elapsed",
                                                                      "0s elapsed", "35s elapsed"]
