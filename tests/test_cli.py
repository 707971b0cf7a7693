"""The `funcapprox` command through click's CliRunner: exit codes, files written, exact error text."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from funcapprox.cli import cli
from funcapprox.config import TrainConfig

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RUN_FILES = ("config.json", "history.json", "metrics.json", "model.pt", "fit.png")
FAST = ["--func", "square", "--hidden", "8", "--epochs", "10"]
DIVERGE = ["--func", "square", "--hidden", "16,16,16", "--act", "Sigmoid", "--optimizer", "SGD", "--lr", "1e6",
           "--epochs", "50"]


def invoke(*args: str):
    result = CliRunner().invoke(cli, list(args))
    # A user mistake or a failed run ends in SystemExit; any other exception is a crash with a traceback.
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result


def _strict_json(path):
    def no_constants(name):
        raise ValueError(f"{path} holds {name}, which is not JSON")

    return json.loads(path.read_text(), parse_constant=no_constants)


@pytest.mark.parametrize("args", [["--help"], ["-h"], ["train", "--help"]])
def test_help(args):
    result = invoke(*args)
    assert result.exit_code == 0
    assert "Usage:" in result.output


def test_train_help_lists_the_options():
    output = invoke("train", "--help").output
    for option in ("--func", "--hidden", "--act", "--optimizer", "--lr", "--loss", "--epochs", "--samples", "--batch",
                   "--seed", "--output-act", "--out", "--json"):
        assert option in output


def test_train_writes_a_run_folder(tmp_path):
    out = tmp_path / "run"
    result = invoke("train", *FAST, "--out", str(out))
    assert result.exit_code == 0, result.output
    for name in RUN_FILES:
        assert (out / name).is_file(), name
    assert (out / "fit.png").read_bytes().startswith(PNG_SIGNATURE)
    config = TrainConfig.from_dict(_strict_json(out / "config.json"), source="config.json")
    assert config == TrainConfig(func="square", hidden=(8,), epochs=10)
    history = _strict_json(out / "history.json")
    assert [e["epoch"] for e in history] == [5, 10]
    metrics = _strict_json(out / "metrics.json")
    assert metrics["status"] == "ok" and metrics["n_params"] == 25
    assert "metric" in result.stdout and "max error" in result.stdout
    assert not list(out.glob(".*.tmp"))  # no temporary files left behind


def test_fit_png_is_a_real_image(tmp_path):
    import matplotlib.image

    out = tmp_path / "run"
    assert invoke("train", *FAST, "--out", str(out)).exit_code == 0
    image = matplotlib.image.imread(out / "fit.png")
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def test_train_json_prints_one_object(tmp_path):
    out = tmp_path / "run"
    result = invoke("train", *FAST, "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)  # the whole of stdout is one JSON object
    assert isinstance(data, dict)
    assert set(data) >= {"metric", "rms", "max_error", "max_error_x", "n_params", "seconds", "run_dir"}
    assert data["run_dir"] == str(out)
    assert data["n_params"] == 25
    assert data["metric"] == _strict_json(out / "metrics.json")["metric"]


def test_aliases_and_case_reach_the_config(tmp_path):
    out = tmp_path / "run"
    result = invoke("train", "--func", "quadratic", "--act", "leakyrelu", "--optimizer", "rmsprop", "--loss",
                    "smoothl1loss", "--hidden", "8,0,0", "--epochs", "5", "--out", str(out))
    assert result.exit_code == 0, result.output
    config = _strict_json(out / "config.json")
    assert (config["func"], config["act"], config["optimizer"], config["loss"], config["hidden"]) == (
        "square", "LeakyReLU", "RMSprop", "SmoothL1Loss", [8])


def test_default_out_is_under_runs_in_the_working_directory(tmp_path):
    # conftest chdirs into tmp_path, so the default runs/ folder lands there.
    result = invoke("train", *FAST)
    assert result.exit_code == 0, result.output
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name.startswith("square-")
    assert (run / "metrics.json").is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--func", "cubic"], "func must be one of square, oscillator, not 'cubic' (or an expression in x"),
        (["--act", "Gelu"], "Invalid value for '--act': 'Gelu' is not one of"),
        (["--optimizer", "AdamW"], "Invalid value for '--optimizer': 'AdamW' is not one of"),
        (["--loss", "L1Loss"], "Invalid value for '--loss': 'L1Loss' is not one of"),
        (["--hidden", "16,0,8"], "Error: Invalid value for '--hidden': hidden: a 0 ends the stack, so no layer may "
                                 "follow it: '16,0,8'"),
        (["--hidden", "-4"], "Error: Invalid value for '--hidden': hidden sizes must be whole numbers from 0 to 4096, "
                             "got -4"),
        (["--hidden", "1.5"], "Error: Invalid value for '--hidden': hidden must be 1 to 3 comma-separated whole "
                              "numbers, like 16,16,16; got '1.5'"),
        (["--hidden", "8,8,8,8"], "Error: Invalid value for '--hidden': hidden takes 1 to 3 layer sizes, got 4: "
                                  "'8,8,8,8'"),
        (["--hidden", "0"], "hidden: the first layer needs at least 1 unit"),
        (["--lr", "0"], "Error: lr must be a number greater than 0, not 0.0\n"),
        (["--lr", "-1"], "Error: lr must be a number greater than 0, not -1.0\n"),
        (["--lr", "nan"], "Error: lr must be a number greater than 0, not nan\n"),
        (["--epochs", "0"], "Error: epochs must be a whole number from 1 to 1000000, not 0\n"),
        (["--batch", "2000"], "Error: batch (2000) cannot be larger than samples per epoch (1000)\n"),
        (["--samples", "0"], "Error: samples must be a whole number from 1 to 10000000, not 0\n"),
    ],
)
def test_bad_input_exits_2_with_its_message(tmp_path, args, message):
    out = tmp_path / "run"
    result = invoke("train", *args, "--out", str(out))
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert not out.exists()  # rejected before anything is written


def test_out_pointing_to_a_file_exits_2(tmp_path):
    existing = tmp_path / "taken"
    existing.write_text("keep me")
    result = invoke("train", *FAST, "--out", str(existing))
    assert result.exit_code == 2, result.output
    assert f"Error: --out {existing} is a file; give a folder to write the run into\n" in result.stderr
    assert existing.read_text() == "keep me"
    assert "metric" not in result.output  # checked before any training: no progress lines


def test_out_under_a_file_exits_2(tmp_path):
    existing = tmp_path / "taken"
    existing.write_text("")
    result = invoke("train", *FAST, "--out", str(existing / "run"))
    assert result.exit_code == 2, result.output
    assert f"Error: cannot create the run folder {existing / 'run'}" in result.stderr


def test_diverging_run_exits_1_and_still_writes_its_record(tmp_path):
    out = tmp_path / "run"
    result = invoke("train", *DIVERGE, "--out", str(out))
    assert result.exit_code == 1, result.output
    assert "diverged" in result.output
    assert "Error: training diverged at epoch 5" in result.stderr
    for name in ("config.json", "history.json", "metrics.json"):
        assert (out / name).is_file(), name
    assert not (out / "model.pt").exists() and not (out / "fit.png").exists()
    metrics = _strict_json(out / "metrics.json")
    assert metrics["status"] == "diverged" and "diverged" in metrics["reason"]
    assert [e["epoch"] for e in _strict_json(out / "history.json")] == [5]  # NaN written as strict JSON (null)
    assert TrainConfig.from_dict(_strict_json(out / "config.json")).lr == 1e6


def test_diverging_run_with_json(tmp_path):
    out = tmp_path / "run"
    result = invoke("train", *DIVERGE, "--out", str(out), "--json")
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert data["status"] == "diverged" and "diverged" in data["reason"]
    assert data["metric"] is None and data["run_dir"] == str(out)


def test_run_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        out = tmp_path / "run"
        assert invoke("train", *FAST, "--out", str(out)).exit_code == 0
    finally:
        os.umask(old)
    modes = {name: stat.S_IMODE((out / name).stat().st_mode) for name in RUN_FILES}
    assert modes == dict.fromkeys(RUN_FILES, 0o644)


def test_python_dash_m_funcapprox_help(tmp_path):
    result = subprocess.run([sys.executable, "-m", "funcapprox", "--help"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Usage: funcapprox" in result.stdout
    assert "train" in result.stdout


# --- nothing of an earlier run is lost or mixed ----------------------------------------------------


def _hashes(folder):
    """Every file under `folder` (hidden ones too) by its path relative to it, with its content's hash."""
    import hashlib

    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_error_line(result, *words):
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error:")]
    assert len(errors) == 1 and errors[0] == lines[-1], result.output
    for word in words:
        assert word in errors[0], (word, errors[0])
    return errors[0]


def _leftovers(parent):
    """Staging or set-aside folders a run left beside its destination."""
    return sorted(p.name for p in parent.iterdir() if ".staging-" in p.name or ".old-" in p.name)


@pytest.fixture
def earlier_run(tmp_path):
    out = tmp_path / "run"
    assert invoke("train", *FAST, "--out", str(out)).exit_code == 0
    (out / "notes.txt").write_text("mine, not the run's")
    return out


def test_train_into_an_earlier_run_exits_2_and_leaves_every_file_as_it_was(earlier_run):
    before = _hashes(earlier_run)
    result = invoke("train", *FAST, "--hidden", "4", "--out", str(earlier_run))
    assert result.exit_code == 2, result.output
    assert _one_error_line(result, str(earlier_run), "--force", "--out") == (
        f"Error: --out {earlier_run} already holds files (an earlier run?); add --force to replace it, "
        "or give another --out")
    assert result.stderr.count("\n") == 1 and result.stdout == ""  # refused before any training
    assert _hashes(earlier_run) == before
    assert _leftovers(earlier_run.parent) == []


def test_train_into_an_existing_empty_folder_is_fine(tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    assert invoke("train", *FAST, "--out", str(out)).exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(RUN_FILES)


def test_force_replaces_the_earlier_run_whole(earlier_run):
    result = invoke("train", *FAST, "--hidden", "4", "--out", str(earlier_run), "--force")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in earlier_run.iterdir()) == sorted(RUN_FILES)  # notes.txt went with the old run
    assert _strict_json(earlier_run / "config.json")["hidden"] == [4]
    assert _strict_json(earlier_run / "metrics.json")["n_params"] == 13
    assert _leftovers(earlier_run.parent) == []


def test_force_with_a_diverging_run_keeps_no_weights_or_plot_of_the_old_one(earlier_run):
    result = invoke("train", *DIVERGE, "--out", str(earlier_run), "--force")
    assert result.exit_code == 1, result.output
    # The diverged run keeps what it computed, and nothing of the old run is mixed in.
    assert sorted(p.name for p in earlier_run.iterdir()) == ["config.json", "history.json", "metrics.json"]
    assert _strict_json(earlier_run / "metrics.json")["status"] == "diverged"
    assert _leftovers(earlier_run.parent) == []


def test_force_may_not_replace_the_current_folder(tmp_path):
    (tmp_path / "keep.txt").write_text("x")  # conftest runs the test in tmp_path
    result = invoke("train", *FAST, "--out", ".", "--force")
    assert result.exit_code == 2, result.output
    _one_error_line(result, "current folder")
    assert (tmp_path / "keep.txt").read_text() == "x"


@pytest.mark.parametrize("failure", [KeyboardInterrupt, RuntimeError])
def test_a_run_interrupted_or_crashing_leaves_the_earlier_run_and_no_staging_folder(earlier_run, monkeypatch,
                                                                                   failure):
    import funcapprox.runs

    before = _hashes(earlier_run)
    seen = []

    def fail_after_writing(model, config, path):  # the run's files are written; the plot breaks
        seen.extend(p.name for p in path.parent.iterdir())
        raise failure("stop")

    monkeypatch.setattr(funcapprox.runs, "save_fit_plot", fail_after_writing)
    result = CliRunner().invoke(cli, ["train", *FAST, "--out", str(earlier_run), "--force"])
    assert result.exit_code == 1
    assert {"config.json", "metrics.json", "model.pt"} <= set(seen)  # they were written, in the staging folder
    assert _hashes(earlier_run) == before
    assert _leftovers(earlier_run.parent) == []


def test_an_interrupted_run_into_the_default_folder_leaves_no_empty_folder(tmp_path, monkeypatch):
    import funcapprox.runs

    def interrupt(config, on_eval=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(funcapprox.runs, "train", interrupt)
    result = CliRunner().invoke(cli, ["train", *FAST])
    assert result.exit_code == 1  # click's "Aborted!"
    assert list((tmp_path / "runs").iterdir()) == []


INTERRUPTIBLE = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "  # a job may inherit
                 "from funcapprox.cli import main; sys.argv[0] = 'funcapprox'; main()")  # SIGINT ignored


def test_ctrl_c_during_a_real_run_leaves_the_earlier_run(earlier_run):
    import signal
    import time

    before = _hashes(earlier_run)
    process = subprocess.Popen(
        [sys.executable, "-c", INTERRUPTIBLE, "train", "--func", "square", "--hidden", "8", "--epochs", "1000000",
         "--out", str(earlier_run), "--force"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not _leftovers(earlier_run.parent):  # training has started in its staging folder
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.05)
        time.sleep(0.3)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 1, stderr
    assert "Traceback" not in stderr
    assert _hashes(earlier_run) == before
    assert _leftovers(earlier_run.parent) == []


def test_runs_started_in_the_same_second_get_two_folders(tmp_path):
    from funcapprox.runs import default_run_dir

    config = TrainConfig(func="square")
    now = 1_800_000_000.0
    first, second, third = (default_run_dir(config, tmp_path / "runs", now=now) for _ in range(3))
    stamp = time_stamp(now)
    assert [first.name, second.name, third.name] == [f"square-{stamp}", f"square-{stamp}-2", f"square-{stamp}-3"]
    assert all(folder.is_dir() and not any(folder.iterdir()) for folder in (first, second, third))


def time_stamp(now: float) -> str:
    import time

    return time.strftime("%Y%m%d-%H%M%S", time.localtime(now))


def test_two_train_processes_at_once_write_two_whole_runs(tmp_path):
    command = [sys.executable, "-m", "funcapprox", "train", "--func", "square", "--hidden", "4", "--epochs", "5",
               "--json"]
    processes = [subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    run_dirs = [json.loads(stdout)["run_dir"] for stdout, _ in outputs]
    assert len(set(run_dirs)) == 2
    assert sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "runs").iterdir()) == sorted(run_dirs)
    for run_dir in run_dirs:
        assert sorted(p.name for p in (tmp_path / run_dir).iterdir()) == sorted(RUN_FILES)


# --- plot and report do not overwrite a file of the user's without --force ---------------------------


@pytest.fixture
def workdir(tmp_path):
    from helpers.recorded import copy_recorded

    return copy_recorded(tmp_path)


def _plot(workdir, out, *more):
    return invoke("plot", "--trial", "ud7Qq", "--out", str(out), "--workdir", str(workdir), *more)


@pytest.mark.parametrize("existing", ["fit.png", "fit-history.png"])
def test_plot_onto_an_existing_file_needs_force(workdir, tmp_path, existing):
    out = tmp_path / "fit.png"
    (tmp_path / existing).write_bytes(b"mine")
    result = _plot(workdir, out)
    assert result.exit_code == 2, result.output
    assert _one_error_line(result, "--force") == (
        f"Error: {tmp_path / existing} already exists; add --force to replace it, or give another --out")
    assert (tmp_path / existing).read_bytes() == b"mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["workdir", existing])  # nothing else written

    result = _plot(workdir, out, "--force")
    assert result.exit_code == 0, result.output
    for path in (out, tmp_path / "fit-history.png"):
        assert path.read_bytes().startswith(PNG_SIGNATURE)


def test_plot_to_its_default_file_in_the_experiment_is_regenerated_without_force(workdir):
    for _ in range(2):
        result = invoke("plot", "--trial", "ud7Qq", "--workdir", str(workdir))
        assert result.exit_code == 0, result.output


def test_report_onto_an_existing_file_needs_force(workdir, tmp_path):
    out = tmp_path / "report.html"
    out.write_text("mine")
    result = invoke("report", "--out", str(out), "--workdir", str(workdir))
    assert result.exit_code == 2, result.output
    assert _one_error_line(result, "--force") == (
        f"Error: {out} already exists; add --force to replace it, or give another --out")
    assert out.read_text() == "mine"
    result = invoke("report", "--out", str(out), "--workdir", str(workdir), "--force")
    assert result.exit_code == 0, result.output
    assert out.read_text().startswith("<!DOCTYPE html>")


def test_report_to_its_default_file_in_the_experiment_is_regenerated_without_force(workdir):
    for _ in range(2):
        result = invoke("report", "--workdir", str(workdir))
        assert result.exit_code == 0, result.output


# --- resource limits --------------------------------------------------------------------------------


@pytest.mark.parametrize("args, words", [
    (["--hidden", "4096,4096,4096", "--seeds", "64"], ["GiB", "memory", "hidden", "seeds (64)"]),
    (["--hidden", "4096", "--batch", "1000000", "--samples", "1000000"], ["GiB", "memory", "batch (1000000)"]),
    (["--samples", "10000000", "--batch", "1"], ["GiB", "memory", "batch (1)", "samples (10000000)"]),
])
def test_a_configuration_too_big_for_memory_exits_2_before_training(tmp_path, args, words):
    out = tmp_path / "run"
    result = invoke("train", *args, "--out", str(out))
    assert result.exit_code == 2, result.output
    line = _one_error_line(result, *words)
    assert "more than the 2 GiB limit" in line
    assert not out.exists() and "epoch" not in result.output


def test_the_study_s_largest_configuration_trains(tmp_path):
    out = tmp_path / "run"
    result = invoke("train", "--hidden", "128,32,32", "--seeds", "20", "--epochs", "5", "--out", str(out))
    assert result.exit_code == 0, result.output


def test_a_fifo_as_search_space_is_refused_without_hanging(tmp_path):
    fifo = tmp_path / "space.json"
    os.mkfifo(fifo)
    result = subprocess.run([sys.executable, "-m", "funcapprox", "search", "--stage", "nonarch", "--space", str(fifo),
                             "--dry-run", "--workdir", str(tmp_path / "experiments")],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"Error: search space {fifo} is a FIFO; it must be a regular JSON file"]


def test_a_search_space_over_1_mib_is_refused(tmp_path):
    big = tmp_path / "space.json"
    big.write_text(json.dumps({"act_func": {"_type": "choice", "_value": ["ReLU"] * 200_000}}))
    result = invoke("search", "--stage", "nonarch", "--space", str(big), "--dry-run", "--workdir",
                    str(tmp_path / "experiments"))
    assert result.exit_code == 2, result.output
    assert _one_error_line(result) == (
        f"Error: search space {big} is {big.stat().st_size} bytes, over the limit of 1 MiB for a search-space file")


# --- --func as a formula in x, --domain -----------------------------------------------------------


def test_train_takes_a_formula_and_a_domain(tmp_path):
    result = invoke("train", "--func", "sin(6*x) * exp(-x)", "--domain", "0,2", "--hidden", "8", "--epochs", "10",
                    "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    run_dir = Path(summary["run_dir"])
    assert run_dir.parent.name == "runs" and run_dir.name.startswith("sin-6-x-exp-x-on-0-2-")
    config = json.loads((run_dir / "config.json").read_text())
    assert config["func"] == "sin(6 * x) * exp(-x)" and config["domain"] == [0.0, 2.0]
    assert 0 <= summary["max_error_x"] <= 2 and (run_dir / "fit.png").stat().st_size > 0


@pytest.mark.parametrize("args, words", [
    (["--func", "__import__('os').system('touch pwned')"], "cannot be called at column 1"),
    (["--func", "().__class__"], "func '().__class__'"),
    (["--func", "y + 1"], "unknown name 'y'"),
    (["--func", "sin("], "at column"),
    (["--func", "log(x)"], "log(x) is not finite at x = 0 on the domain [0, 1]"),
    (["--func", "1/(x-0.5)"], "is not finite at x = 0.5"),
    (["--func", "cubic"], "func must be one of square, oscillator, not 'cubic' (or an expression in x"),
    (["--domain", "2,1"], "--domain takes LO,HI with LO < HI"),
    (["--domain", "nan,1"], "--domain takes LO,HI"),
])
def test_a_bad_formula_or_domain_is_one_line_and_exit_2(tmp_path, args, words):
    result = invoke("train", "--hidden", "8", "--epochs", "5", *args)
    assert result.exit_code == 2 and words in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "pwned").exists()
    assert not (tmp_path / "runs").exists()  # nothing was started
