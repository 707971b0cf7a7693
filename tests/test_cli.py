"""The `funcapprox` command through click's CliRunner: exit codes, files written, exact error text."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

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
        (["--func", "cubic"], "Invalid value for '--func': 'cubic' is not one of"),
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
