"""`--func FILE`: a data file of points as the function, through the configuration, training, the CLI and plots."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from helpers.files import snapshot, write_measurements

from funcapprox.artifacts import load_config, load_model
from funcapprox.cli import cli
from funcapprox.config import DATA_ONLY, TrainConfig, field_names, function_text
from funcapprox.errors import ConfigError
from funcapprox.samples import load_samples, split
from funcapprox.targets import SPLIT_SEED
from funcapprox.train import train

SMALL = {"hidden": (16, 0, 0), "act": "Tanh", "epochs": 60}


@pytest.fixture
def csv(tmp_path):
    return write_measurements(tmp_path / "measurements.csv")


def test_a_data_file_is_the_function_and_its_range_the_domain(csv):
    config = TrainConfig(func=str(csv))
    samples = load_samples(csv)
    assert config.is_data and config.func == str(csv.resolve())
    assert config.domain == samples.domain and config.data == samples.digest and config.holdout == 0.2
    assert config.epochs == 1000 and config.label == "measurements.csv"
    assert function_text(config.func, config.domain) == "measurements.csv"
    data = config.to_dict()
    assert set(data) == set(field_names()) and data["data"] == samples.digest
    assert TrainConfig.from_dict(json.loads(json.dumps(data))) == config


def test_a_relative_path_is_kept_absolute(csv, monkeypatch):
    monkeypatch.chdir(csv.parent)
    assert TrainConfig(func="measurements.csv").func == str(csv)


@pytest.mark.parametrize(("settings", "message"), [
    ({"domain": (0, 5)}, r"--domain does not apply to a data file: its domain is its range of x, \[-1\.9\d*, 2\.9"),
    ({"holdout": 0.95}, r"--holdout takes a fraction from 0 to 0\.9, not 0\.95"),
    ({"holdout": "0.2"}, r"--holdout takes a fraction from 0 to 0\.9, not 0\.2"),
    ({"data": "0" * 64}, r"no longer holds the data this run used \(its sha256 was 000000000000…"),
])
def test_bad_data_settings_are_one_line(csv, settings, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(func=str(csv), **settings)


@pytest.mark.parametrize("func", ["square", "sin(6*x)"])
def test_holdout_and_data_belong_to_a_data_file(func):
    for settings in ({"holdout": 0.3}, {"data": "ab"}):
        with pytest.raises(ConfigError, match="apply to a data file only"):
            TrainConfig(func=func, **settings)


def test_a_changed_file_is_not_the_data_of_the_saved_run(csv, tmp_path):
    data = TrainConfig(func=str(csv)).to_dict()
    write_measurements(csv, seed=1)
    with pytest.raises(ConfigError, match="no longer holds the data this run used"):
        TrainConfig.from_dict(data)


def test_training_is_deterministic_and_measured_on_the_held_out_points(csv, tmp_path):
    config = TrainConfig(func=str(csv), **SMALL)
    first, again = train(config), train(config)
    assert first.summary() | {"seconds": 0} == again.summary() | {"seconds": 0}
    s = first.summary()
    # The figures recomputed from the network and the file, in the data's own units.
    samples = load_samples(csv)
    trained, held = split(samples, 0.2, SPLIT_SEED)
    assert len(held) == 40 and len(trained) == 160
    low, high = samples.domain
    y_train = samples.y[trained]
    offset, scale = y_train.min(), y_train.max() - y_train.min()

    def error(index):
        u = torch.tensor((samples.x[index] - low) / (high - low), dtype=torch.float32).unsqueeze(1)
        with torch.no_grad():
            prediction = first.model(u).double().squeeze(1).numpy() * scale + offset
        return prediction - samples.y[index]

    held_error, train_error = error(held), error(trained)
    assert s["rms"] == pytest.approx(math.sqrt(np.mean(held_error**2)), rel=1e-4)
    assert s["max_error"] == pytest.approx(np.abs(held_error).max(), rel=1e-4)
    assert s["max_error_x"] == pytest.approx(samples.x[held][np.abs(held_error).argmax()], rel=1e-6)
    assert s["train_rms"] == pytest.approx(math.sqrt(np.mean(train_error**2)), rel=1e-4)
    assert s["train_max_error"] == pytest.approx(np.abs(train_error).max(), rel=1e-4)
    assert s["metric"] == pytest.approx(-math.log10(max(e.rms for e in first.history[-5:])), rel=1e-9)  # the worst
    # An epoch is one shuffled pass over the 160 training points in batches of 100: 2 steps.
    assert first.steps == 2 * SMALL["epochs"]


def test_the_held_out_points_do_not_touch_training(csv, tmp_path):
    """Changing the held-out values leaves every trained weight as it was; changing a training value does not."""
    samples = load_samples(csv)
    trained, held = split(samples, 0.2, SPLIT_SEED)

    def weights(y):
        path = tmp_path / "changed.csv"
        path.write_text("".join(f"{float(a)!r},{float(b)!r}\n" for a, b in zip(samples.x, y)))
        return torch.cat([p.flatten() for p in train(TrainConfig(func=str(path), **SMALL)).model.parameters()])

    base = weights(samples.y)
    held_changed = samples.y.copy()
    held_changed[held] += 0.5
    assert torch.equal(weights(held_changed), base)
    train_changed = samples.y.copy()
    train_changed[trained[3]] += 0.01
    assert not torch.equal(weights(train_changed), base)


def test_holdout_zero_measures_on_the_training_points(csv):
    s = train(TrainConfig(func=str(csv), holdout=0, **SMALL)).summary()
    assert s["rms"] == pytest.approx(s["train_rms"], rel=1e-5)
    assert s["max_error"] == pytest.approx(s["train_max_error"], rel=1e-5)


def test_several_seeds_share_the_split(csv):
    result = train(TrainConfig(func=str(csv), seeds=3, **SMALL))
    s = result.summary()
    assert s["seeds"] == 3 and s["train_rms"] > 0
    alone = train(TrainConfig(func=str(csv), seed=13, **SMALL)).summary()
    assert result.histories[1][-1].rms == pytest.approx(alone["rms"], rel=1e-4)


def test_train_cli_reports_both_errors_and_plots_the_points(csv, tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", "--func", str(csv), "--hidden", "16,0,0", "--act", "Tanh",
                                      "--epochs", "60", "--holdout", "0.25", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "on the held-out points" in result.output and "on the points it trained on" in result.output
    config = load_config(out)
    assert config.holdout == 0.25 and config.data == load_samples(csv).digest
    assert (out / "fit.png").stat().st_size > 10_000
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_rms"] > 0 and metrics["max_error"] > 0
    load_model(out, config)


def test_fit_data_draws_the_samples_with_the_held_out_marked(csv, tmp_path):
    from funcapprox.views.plot import draw_fit, fit_data, png_bytes

    config = TrainConfig(func=str(csv), **SMALL)
    result = train(config)
    data = fit_data(result.model, config)
    assert data.truth is None and len(data.points.held_x) == 40 and len(data.points.train_x) == 160
    assert data.max_error == pytest.approx(result.summary()["max_error"], rel=1e-4)
    assert data.x.min() == pytest.approx(config.domain[0]) and data.x.max() == pytest.approx(config.domain[1])
    assert "held-out" in data.title and data.title.startswith("measurements.csv:")
    assert png_bytes(draw_fit(data)).startswith(b"\x89PNG")


@pytest.mark.parametrize(("content", "message"), [
    ("x,y\n" + "".join(f"{i},{i}\n" for i in range(5)), "5 points; at least 10 are needed"),
    ("x,y\n1,2\n3,nan\n", "line 3, column 2: 'nan' is not finite"),
    ("1\n2\n", "line 1 has one column"),
    ("x,y\n1,2\n3,abc\n", "line 3, column 2: 'abc' is not a number"),
])
def test_bad_files_are_one_line_and_exit_2(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    before = snapshot(tmp_path)
    for command in (["train", "--out", str(tmp_path / "run")], ["search", "--workdir", str(tmp_path / "w")]):
        result = CliRunner().invoke(cli, [*command, "--func", str(path)])
        assert result.exit_code == 2, result.output
        (line,) = result.output.strip().splitlines()
        assert line.startswith("Error: ") and message in line and str(path) in line
    assert snapshot(tmp_path) == before  # nothing written


def test_a_missing_file_and_holdout_on_a_formula_are_one_line(tmp_path):
    for args, message in ((["--func", str(tmp_path / "none.csv")], "cannot read it"),
                          (["--func", "sin(x)", "--holdout", "0.3"], "apply to a data file only")):
        result = CliRunner().invoke(cli, ["train", "--out", str(tmp_path / "run"), *args])
        assert result.exit_code == 2 and message in result.output and len(result.output.strip().splitlines()) == 1


def test_the_data_only_settings_are_never_searched():
    from funcapprox.config import searchable_names

    assert not set(DATA_ONLY) & set(searchable_names())


def test_a_data_file_is_refined_only_when_asked_and_then_on_its_training_points(csv, tmp_path):
    assert not TrainConfig(func=str(csv), hidden=(8, 0, 0)).refines  # not measured on noisy data: off by auto
    samples = load_samples(csv)
    _, held = split(samples, 0.2, SPLIT_SEED)

    def weights(y):
        path = tmp_path / "changed.csv"
        path.write_text("".join(f"{float(a)!r},{float(b)!r}\n" for a, b in zip(samples.x, y)))
        result = train(TrainConfig(func=str(path), refine="lm", **SMALL))
        assert result.refined
        return torch.cat([p.flatten() for p in result.model.parameters()])

    held_changed = samples.y.copy()
    held_changed[held] += 0.5
    assert torch.equal(weights(held_changed), weights(samples.y))
