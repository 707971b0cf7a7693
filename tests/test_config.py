"""TrainConfig: every validation rule, aliases, hidden-size parsing, dict round trip, notation."""

from __future__ import annotations

import dataclasses
import json
import math
import re

import pytest

from funcapprox.config import DATA_ONLY, DEFAULT_EPOCHS, MAX_WIDTH, TrainConfig, field_names, parse_hidden
from funcapprox.errors import ConfigError, FuncApproxError


def test_defaults_are_valid_and_resolved():
    config = TrainConfig()
    assert config.func == "oscillator"
    assert config.hidden == (16, 16, 16)
    assert config.epochs == DEFAULT_EPOCHS["oscillator"] == 1000
    assert (config.samples, config.batch, config.seed) == (1000, 100, 12)
    assert config.output_act is False


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        TrainConfig().lr = 0.1


def test_config_error_is_a_funcapprox_error_and_a_value_error():
    assert issubclass(ConfigError, FuncApproxError)
    assert issubclass(ConfigError, ValueError)


# --- names: unknown values, aliases, case ----------------------------------------------------------


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("func", "cubic", "func must be one of square, oscillator, not 'cubic'"),
        ("func", None, "func must be one of"),
        ("act", "GELU", "act must be one of ReLU, LeakyReLU, Sigmoid, Tanh, Softplus, not 'GELU'"),
        ("optimizer", "AdamW", "optimizer must be one of SGD, Adam, RMSprop, not 'AdamW'"),
        ("loss", "L1Loss", "loss must be one of SmoothL1Loss, MSELoss, not 'L1Loss'"),
    ],
)
def test_unknown_names_are_rejected(field, value, message):
    with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(")):
        TrainConfig(**{field: value})


@pytest.mark.parametrize("name", ["quadratic", "Quadratic", "QUADRATIC", " quadratic "])
def test_quadratic_is_an_alias_of_square(name):
    assert TrainConfig(func=name).func == "square"


@pytest.mark.parametrize(
    "field, given, canonical",
    [
        ("func", "SQUARE", "square"),
        ("func", "Oscillator", "oscillator"),
        ("act", "relu", "ReLU"),
        ("act", "LEAKYRELU", "LeakyReLU"),
        ("act", " sigmoid ", "Sigmoid"),
        ("act", "tanh", "Tanh"),
        ("act", "softplus", "Softplus"),
        ("optimizer", "sgd", "SGD"),
        ("optimizer", "adam", "Adam"),
        ("optimizer", "rmsPROP", "RMSprop"),
        ("loss", "smoothl1loss", "SmoothL1Loss"),
        ("loss", "mseloss", "MSELoss"),
    ],
)
def test_names_are_case_insensitive_and_canonicalised(field, given, canonical):
    assert getattr(TrainConfig(**{field: given}), field) == canonical


# --- hidden sizes ----------------------------------------------------------------------------------


@pytest.mark.parametrize("hidden", ["64,0,0", "64", "64,0", "{64,0,0}", " 64 , 0 , 0 ", (64,), [64, 0, 0], (64, 0)])
def test_one_hidden_layer_spellings_agree(hidden):
    assert TrainConfig(hidden=hidden).hidden == (64,)
    assert parse_hidden(hidden) == (64,)


@pytest.mark.parametrize(
    "hidden, expected",
    [("16,16,16", (16, 16, 16)), ([8, 4, 0], (8, 4)), ("8,4", (8, 4)), ((4, 8, 16), (4, 8, 16)), ("1", (1,))],
)
def test_hidden_parsing(hidden, expected):
    assert TrainConfig(hidden=hidden).hidden == expected


@pytest.mark.parametrize("hidden", ["16,0,8", [16, 0, 8], (4, 0, 4)])
def test_layer_after_a_zero_is_rejected(hidden):
    with pytest.raises(ConfigError, match="a 0 ends the stack"):
        TrainConfig(hidden=hidden)


@pytest.mark.parametrize("hidden", ["0", "0,0,0", [0, 16, 16]])
def test_first_layer_needs_units(hidden):
    with pytest.raises(ConfigError, match="first layer needs at least 1 unit"):
        TrainConfig(hidden=hidden)


@pytest.mark.parametrize("hidden", ["-4", [-4], "16,-1", [MAX_WIDTH + 1]])
def test_negative_or_huge_sizes_are_rejected(hidden):
    with pytest.raises(ConfigError, match=f"hidden sizes must be whole numbers from 0 to {MAX_WIDTH}"):
        TrainConfig(hidden=hidden)


@pytest.mark.parametrize("hidden", ["1.5", "16,a", "", "16,,16", "1e3"])
def test_non_integer_strings_are_rejected(hidden):
    with pytest.raises(ConfigError, match="comma-separated whole numbers"):
        TrainConfig(hidden=hidden)


@pytest.mark.parametrize("hidden", [[1.5], [16.0, 16], [True], ["16"]])
def test_non_integer_list_items_are_rejected(hidden):
    with pytest.raises(ConfigError, match="hidden sizes must be whole numbers"):
        TrainConfig(hidden=hidden)


@pytest.mark.parametrize("hidden", ["8,8,8,8", [8, 8, 8, 8], [], (16, 0, 0, 0)])
def test_one_to_three_layers(hidden):
    with pytest.raises(ConfigError, match="hidden takes 1 to 3 layer sizes"):
        TrainConfig(hidden=hidden)


def test_a_single_number_is_one_hidden_layer():
    assert TrainConfig(hidden=16).hidden == (16,)


@pytest.mark.parametrize("hidden", [1.5, None, {"a": 1}])
def test_hidden_of_the_wrong_type_is_rejected(hidden):
    with pytest.raises(ConfigError, match="hidden must be a list of layer sizes"):
        TrainConfig(hidden=hidden)


def test_max_width_is_allowed():
    assert TrainConfig(hidden=[MAX_WIDTH]).hidden == (MAX_WIDTH,)


# --- numbers -------------------------------------------------------------------------------------


@pytest.mark.parametrize("lr", [0, 0.0, -1, -0.01, math.nan, math.inf, -math.inf, "0.01", None, True])
def test_bad_learning_rates_are_rejected(lr):
    with pytest.raises(ConfigError, match="lr must be a number greater than 0"):
        TrainConfig(lr=lr)


def test_integer_learning_rate_becomes_float():
    config = TrainConfig(lr=1)
    assert config.lr == 1.0 and isinstance(config.lr, float)


@pytest.mark.parametrize("epochs", [0, -5, 2.5, "10", True, 1_000_001])
def test_bad_epochs_are_rejected(epochs):
    with pytest.raises(ConfigError, match="epochs must be a whole number from 1 to"):
        TrainConfig(epochs=epochs)


@pytest.mark.parametrize("field", ["samples", "batch"])
@pytest.mark.parametrize("value", [0, -1, 10.0])
def test_bad_samples_and_batch_are_rejected(field, value):
    with pytest.raises(ConfigError, match=f"{field} must be a whole number"):
        TrainConfig(**{field: value})


def test_batch_larger_than_samples_is_rejected():
    with pytest.raises(ConfigError, match=r"^batch \(2000\) cannot be larger than samples per epoch \(1000\)$"):
        TrainConfig(batch=2000)
    assert TrainConfig(batch=1000).batch == 1000
    assert TrainConfig(samples=50, batch=50).batch == 50


@pytest.mark.parametrize("seed", [-1, 1.0, "12"])
def test_bad_seeds_are_rejected(seed):
    with pytest.raises(ConfigError, match="seed must be a whole number"):
        TrainConfig(seed=seed)


@pytest.mark.parametrize("output_act", [1, "yes", None])
def test_output_act_must_be_a_bool(output_act):
    with pytest.raises(ConfigError, match="output_act must be true or false"):
        TrainConfig(output_act=output_act)


@pytest.mark.parametrize("func, epochs", [("square", 250), ("quadratic", 250), ("oscillator", 1000)])
def test_default_epochs_depend_on_the_function(func, epochs):
    assert TrainConfig(func=func).epochs == epochs


def test_explicit_epochs_win_over_the_default():
    assert TrainConfig(func="square", epochs=7).epochs == 7
    assert TrainConfig(func="oscillator", epochs=7).epochs == 7


# --- from_dict / to_dict ---------------------------------------------------------------------------


def test_from_dict_rejects_unknown_keys_naming_the_source():
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict({"func": "square", "learning_rate": 0.01}, source="trial parameters")
    message = str(info.value)
    assert "unknown setting 'learning_rate' in trial parameters" in message
    for name in field_names():
        assert name in message  # lists what is known


def test_from_dict_has_a_default_source():
    with pytest.raises(ConfigError, match="unknown setting 'nope' in the configuration"):
        TrainConfig.from_dict({"nope": 1})


def test_from_dict_prefixes_invalid_values_with_the_source():
    with pytest.raises(ConfigError, match=r"^runs/x/config\.json: lr must be a number greater than 0"):
        TrainConfig.from_dict({"lr": -1}, source="runs/x/config.json")


@pytest.mark.parametrize("data", [[1, 2], "func=square", None])
def test_from_dict_needs_a_mapping(data):
    with pytest.raises(ConfigError, match="params.json must be a JSON object of settings"):
        TrainConfig.from_dict(data, source="params.json")


def test_from_dict_accepts_the_study_spellings():
    config = TrainConfig.from_dict({"func": "quadratic", "hidden": "64,0,0", "act": "leakyrelu"})
    assert (config.func, config.hidden, config.act) == ("square", (64,), "LeakyReLU")


@pytest.mark.parametrize(
    "config",
    [
        TrainConfig(),
        TrainConfig(func="square", hidden="64,0,0", act="LeakyReLU", optimizer="RMSprop", lr=0.005,
                    loss="SmoothL1Loss", epochs=3, samples=200, batch=50, seed=0, output_act=True),
        TrainConfig(hidden=(8, 4)),
    ],
)
def test_to_dict_from_dict_round_trip(config):
    data = config.to_dict()
    assert set(data) == set(field_names()) - set(DATA_ONLY)  # a data file's own (tests/test_data_func.py)
    assert data["hidden"] == list(config.hidden)
    assert json.loads(json.dumps(data, allow_nan=False)) == data  # plain JSON data
    again = TrainConfig.from_dict(json.loads(json.dumps(data)))
    assert again == config
    assert again.to_dict() == data


def test_replace_validates():
    config = TrainConfig(func="square")
    assert config.replace(hidden="32,0,0").hidden == (32,)
    with pytest.raises(ConfigError):
        config.replace(lr=0)


# --- notation and size -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "hidden, arch", [((64,), "{64,0,0}"), ("64,0,0", "{64,0,0}"), ((16, 16, 16), "{16,16,16}"), ((8, 4), "{8,4,0}")]
)
def test_arch_uses_the_study_notation(hidden, arch):
    assert TrainConfig(hidden=hidden).arch == arch


@pytest.mark.parametrize("hidden, n", [((64,), 193), ("64,0,0", 193), ((16, 16, 16), 593), ((8, 4), 57), ((9,), 28)])
def test_n_params(hidden, n):
    assert TrainConfig(hidden=hidden).n_params == n


# --- the memory bound ---------------------------------------------------------------------------


def test_the_evaluation_grids_of_the_memory_estimate_are_the_trainer_s():
    from funcapprox.config import EVAL_POINTS
    from funcapprox.train import FINE_POINTS, METRIC_POINTS

    assert EVAL_POINTS == FINE_POINTS + METRIC_POINTS


@pytest.mark.parametrize("hidden, batch, samples, seeds", [
    ((128, 32, 32), 100, 1000, 20),  # the study's widest network, with 20 seeds
    ((128, 0, 0), 100, 1000, 20),
    ((16, 16, 16), 1000, 1000, 64),
])
def test_the_study_s_largest_configurations_are_far_under_the_memory_bound(hidden, batch, samples, seeds):
    from funcapprox.config import MAX_MEMORY, memory_estimate

    config = TrainConfig(hidden=hidden, batch=batch, samples=samples, seeds=seeds)
    assert sum(memory_estimate(config).values()) < MAX_MEMORY / 10


@pytest.mark.parametrize("settings, words", [
    ({"hidden": [4096, 4096, 4096], "seeds": 64}, ["narrower hidden layers (the widest has 4096)", "seeds (64)"]),
    ({"hidden": [4096], "batch": 1_000_000, "samples": 1_000_000}, ["a smaller batch (1000000)"]),
    ({"samples": 10_000_000, "seeds": 64}, ["fewer samples (10000000)", "fewer seeds (64)"]),
    ({"samples": 10_000_000, "batch": 1}, ["a larger batch (1) or fewer samples (10000000)"]),
])
def test_a_configuration_over_the_memory_bound_is_refused_with_the_estimate_and_what_to_lower(settings, words):
    from funcapprox.config import memory_estimate

    with pytest.raises(ConfigError) as info:
        TrainConfig(**settings)
    message = str(info.value)
    assert len(message.splitlines()) == 1
    assert re.match(r"^this configuration would need about \d+\.\d GiB of memory to train, more than the 2 GiB "
                    r"limit; use ", message), message
    for word in words:
        assert word in message, (word, message)
    big = TrainConfig()  # the refused configuration, built around the check
    for name, value in settings.items():
        object.__setattr__(big, name, tuple(value) if name == "hidden" else value)
    estimate = float(re.search(r"about (\S+) GiB", message).group(1))
    assert estimate == round(sum(memory_estimate(big).values()) / 2**30, 1) and estimate > 2


def test_the_memory_bound_holds_for_settings_from_files_and_trials():
    from funcapprox.config import parse_set_values
    from funcapprox.nni.trial import resolve

    with pytest.raises(ConfigError, match=r"^--set: this configuration would need about .* GiB"):
        parse_set_values(["hidden=4096,4096,4096", "seeds=64"])
    with pytest.raises(ConfigError, match=r"^the trial's settings: this configuration would need about .* GiB"):
        resolve({"func": "square", "seeds": 64}, {"hidden_size_1": 4096, "hidden_size_2": 4096})
    with pytest.raises(ConfigError, match="memory"):
        TrainConfig.from_dict({"batch": 1_000_000, "samples": 1_000_000, "hidden": [4096]}, source="config.json")


def test_a_function_reads_as_its_name_or_formula_with_its_domain_and_fits_a_column():
    from funcapprox.config import function_text

    assert function_text("square") == "square" and function_text("square", (0.0, 1.0)) == "square"
    assert function_text("sin(6 * x)", (0.0, 2.0)) == "sin(6 * x) on [0, 2]"
    long = function_text("sin(6 * x) * exp(-x) + cos(3 * x) * x ** 2", (-1.5, 2.0), limit=32)
    assert len(long) == 32 and long.endswith("…") and long.startswith("sin(6 * x) * exp(-x)")
