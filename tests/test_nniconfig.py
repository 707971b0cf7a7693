"""The NNI experiment configuration: checked by NNI 3.0's own ExperimentConfig and tuner classes, and the
trial command checked by parsing it back the way the shell and the trial do."""

from __future__ import annotations

import shlex
import sys

import pytest
import yaml

from funcapprox.config import TrainConfig, params_to_settings, read_set_pairs
from funcapprox.errors import ConfigError
from funcapprox.nni.config import (
    ASSESSORS,
    TUNERS,
    assessor_config,
    experiment_config,
    parse_duration,
    to_yaml,
    trial_command,
    validate_with_nni,
)
from funcapprox.nni.trial import resolve
from funcapprox.search.space import default_space_path, grid_size, load_space


def _config(tmp_path, **kwargs):
    code_dir = tmp_path / "code"
    code_dir.mkdir(exist_ok=True)
    args = dict(name="funcapprox square nonarch", search_space=load_space(default_space_path("nonarch")),
                command=trial_command({"func": "square"}), code_dir=code_dir, workdir=tmp_path / "exp")
    return experiment_config(**{**args, **kwargs})


def _set_pairs(command: str) -> list[str]:
    """The values of the --set options, split the way a POSIX shell splits NNI's trialCommand."""
    argv = shlex.split(command)
    assert argv[1:3] == ["-m", "funcapprox.nni.trial"]
    pairs = argv[3:]
    assert pairs[::2] == ["--set"] * (len(pairs) // 2)
    return pairs[1::2]


@pytest.mark.parametrize("tuner", list(TUNERS))
@pytest.mark.parametrize("stage", ["nonarch", "arch"])
def test_every_tuner_config_validates_with_nni(tmp_path, tuner, stage):
    config = _config(tmp_path, tuner=tuner, search_space=load_space(default_space_path(stage)), max_trials=5,
                     max_duration="10m", max_trial_duration="90s")
    validate_with_nni(config)
    validate_with_nni(yaml.safe_load(to_yaml(config)))  # what dry_run and nnictl read back


@pytest.mark.parametrize("tuner", [t for t in TUNERS if t != "GridSearch"])
def test_non_grid_tuners_maximize(tmp_path, tuner):
    config = _config(tmp_path, tuner=tuner)
    assert config["tuner"]["name"] == tuner
    assert config["tuner"]["classArgs"]["optimize_mode"] == "maximize"


def test_grid_search_takes_no_class_args(tmp_path):
    assert _config(tmp_path)["tuner"] == {"name": "GridSearch"}


@pytest.mark.parametrize("tuner", list(TUNERS))
def test_nni_builds_each_tuner_from_its_class_args(tuner):
    """ExperimentConfig does not check classArgs; the dispatcher builds the tuner with them. Do that here."""
    from nni.tools.package_utils.tuner_factory import create_builtin_class_instance

    instance = create_builtin_class_instance(tuner, dict(TUNERS[tuner]), "tuners")
    mode = getattr(instance, "optimize_mode", None)
    if mode is not None:
        assert mode.value == "maximize"
    instance.update_search_space(load_space(default_space_path("arch")))
    params = instance.generate_parameters(0)
    TrainConfig.from_dict({"func": "square", **params_to_settings(params)})


@pytest.mark.parametrize("name", ASSESSORS)
def test_each_assessor_validates_with_nni_and_nni_builds_it(tmp_path, name):
    from nni.tools.package_utils.tuner_factory import create_builtin_class_instance

    entry = assessor_config(name, epochs=1000)
    validate_with_nni(_config(tmp_path, assessor=entry))
    assessor = create_builtin_class_instance(name, dict(entry["classArgs"]), "assessors")
    if name == "Curvefitting":
        assert entry["classArgs"]["epoch_num"] == 20  # 1000 epochs, an intermediate result every 50
        assert assessor.target_pos == 20
    else:
        assert assessor._high_better  # the metric: higher is better


def test_no_assessor_unless_asked(tmp_path):
    assert "assessor" not in _config(tmp_path)
    with pytest.raises(ConfigError, match="--assessor must be one of Medianstop, Curvefitting"):
        assessor_config("Hyperband", epochs=10)


def test_config_keys_and_limits(tmp_path):
    config = _config(tmp_path, concurrency=3, max_trials=180, max_duration="2h", max_trial_duration="5m")
    assert config["trialConcurrency"] == 3
    assert config["maxTrialNumber"] == 180
    assert config["maxExperimentDuration"] == "2h"
    assert config["maxTrialDuration"] == "5m"
    assert config["trainingService"] == {"platform": "local", "useActiveGpu": False}
    assert config["experimentWorkingDirectory"] == str(tmp_path / "exp")
    assert config["searchSpace"] == load_space(default_space_path("nonarch"))
    assert "maxTrialNumber" not in _config(tmp_path)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"tuner": "SMAC"}, "--tuner must be one of GridSearch, TPE, Random, Evolution, not 'SMAC'"),
        ({"tuner": "Anneal"}, "--tuner must be one of GridSearch, TPE, Random, Evolution, not 'Anneal'"),
        ({"concurrency": 0}, "--concurrency must be at least 1, not 0"),
        ({"max_trials": 0}, "--max-trials must be at least 1, not 0"),
        ({"max_duration": "10"}, "--max-duration takes a positive number and a unit s, m, h or d, like 10m; "
                                 "got '10'"),
        ({"max_trial_duration": "-1m"}, "--max-trial-duration takes a positive number"),
    ],
)
def test_config_errors(tmp_path, kwargs, words):
    with pytest.raises(ConfigError, match=words.replace("(", r"\(")):
        _config(tmp_path, **kwargs)


def test_validate_with_nni_turns_nni_errors_into_config_errors(tmp_path):
    config = {**_config(tmp_path), "trainingService": {"platform": "nonsense"}}
    with pytest.raises(ConfigError, match="NNI rejects the generated config"):
        validate_with_nni(config)


# --- the trial command ------------------------------------------------------------------------


def test_trial_command_defaults_to_this_python():
    assert shlex.split(trial_command({"func": "square"}))[0] == sys.executable


def test_trial_command_is_shell_quoted():
    command = trial_command({"func": "square", "act": "Tanh"}, python="/opt/my venv/bin/python3")
    assert command.startswith("'/opt/my venv/bin/python3' -m funcapprox.nni.trial ")
    assert shlex.split(command)[0] == "/opt/my venv/bin/python3"
    assert "--set func=square --set act=Tanh" in command  # readable: nothing quoted that needs no quotes


@pytest.mark.parametrize(
    "config",
    [
        TrainConfig(func="square"),
        TrainConfig(func="oscillator", hidden=(64, 8), act="LeakyReLU", optimizer="RMSprop", lr=0.005,
                    loss="SmoothL1Loss", epochs=7, samples=500, batch=50, seed=3, output_act=True),
        TrainConfig(func="square", lr=1e6, optimizer="SGD"),
        TrainConfig(func="square", lr=1e-05),
    ],
    ids=["defaults", "everything-set", "huge-lr", "tiny-lr"],
)
def test_trial_command_round_trips_to_the_same_settings(config):
    fixed = config.to_dict()
    command = trial_command(fixed, python="/usr/bin/python3")
    assert resolve(read_set_pairs(_set_pairs(command)), {}) == config


def test_trial_command_round_trips_a_stage_s_fixed_settings_without_the_searched_ones():
    fixed = {k: v for k, v in TrainConfig(func="square").to_dict().items() if k not in ("act", "lr")}
    parsed = read_set_pairs(_set_pairs(trial_command(fixed)))
    assert set(parsed) == set(fixed)
    assert resolve(parsed, {"act_func": "Tanh", "learning_rate": 0.03}) == TrainConfig(
        func="square", act="Tanh", lr=0.03)


@pytest.mark.parametrize("hidden, text", [((64,), "64,0,0"), ((64, 8), "64,8,0"), ((16, 16, 16), "16,16,16")])
def test_trial_command_writes_hidden_as_three_sizes(hidden, text):
    command = trial_command({"func": "square", "hidden": hidden}, python="/usr/bin/python3")
    assert _set_pairs(command) == ["func=square", f"hidden={text}"]  # never a bare number like hidden=64


def test_trial_command_round_trips_a_single_hidden_layer():
    config = TrainConfig(func="square", hidden=(64,))
    command = trial_command(config.to_dict(), python="/usr/bin/python3")
    assert resolve(read_set_pairs(_set_pairs(command)), {}) == config


# --- durations --------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["10m", "90s", "2h", "1d", "1.5h", " 30m "])
def test_parse_duration_accepts(text):
    assert parse_duration(text, "--max-duration") == text.strip()


def test_parse_duration_of_none_is_none():
    assert parse_duration(None, "--max-duration") is None


DURATION_ERROR = "--max-duration takes a positive number and a unit s, m, h or d, like 10m; got "


@pytest.mark.parametrize("text", ["10", "m", "-5m", "abc", "0m", "0.0s", "", "10 min", "5x", "1e3s", "+5m", "5M"])
def test_parse_duration_rejects(text):
    with pytest.raises(ConfigError) as info:
        parse_duration(text, "--max-duration")
    assert str(info.value) == DURATION_ERROR + repr(text)


@pytest.mark.parametrize("text", ["infm", "nanm", "-infm", "Infinitys"])
def test_parse_duration_rejects_inf_and_nan(text):
    with pytest.raises(ConfigError) as info:
        parse_duration(text, "--max-duration")
    assert str(info.value) == DURATION_ERROR + repr(text)


@pytest.mark.parametrize("name", ["nonarch", "arch"])
def test_shipped_nnictl_templates_validate_and_their_trials_resolve(name):
    from pathlib import Path

    from nni.experiment.config import ExperimentConfig

    from funcapprox.config import TrainConfig, read_set_pairs

    path = Path(__file__).resolve().parent.parent / "configs" / f"{name}.yml"
    config = ExperimentConfig.load(str(path))
    config.validate()  # what `nnictl create --config configs/<name>.yml` checks first
    raw = yaml.safe_load(path.read_text())
    assert raw["maxTrialNumber"] == grid_size(load_space(path.parent / raw["searchSpaceFile"]))
    fixed = read_set_pairs(_set_pairs(raw["trialCommand"]))
    TrainConfig.from_dict(fixed)
