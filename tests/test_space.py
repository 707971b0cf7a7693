"""Search spaces: the shipped files, what NNI's own GridSearch schedules from them, loading errors,
and the mapping between NNI parameters and configuration settings."""

from __future__ import annotations

import json
from itertools import product

import pytest
from helpers.nni import grid_schedule

from funcapprox.config import TrainConfig, group_key, params_to_settings, parse_hidden, settings_to_params
from funcapprox.errors import ConfigError
from funcapprox.search.space import (
    SPACES_DIR,
    all_architectures,
    arch_space,
    default_space_path,
    grid_points,
    grid_size,
    in_group_order,
    load_space,
    normalize_space,
)

STUDY_LR = {0.005, 0.01, 0.02, 0.03, 0.04, 0.05}  # the quniform [0.005, 0.05, 0.01] grid under NNI 3.0


@pytest.fixture(scope="module")
def nonarch():
    return load_space(default_space_path("nonarch"))


@pytest.fixture(scope="module")
def arch():
    return load_space(default_space_path("arch"))


@pytest.fixture(scope="module")
def study_flat():
    return load_space(SPACES_DIR / "arch_study_flat.json")


@pytest.fixture(scope="module")
def nonarch_schedule(nonarch):
    return grid_schedule(nonarch)


@pytest.fixture(scope="module")
def arch_schedule(arch):
    return grid_schedule(arch)


# --- the shipped spaces ----------------------------------------------------------------------


def test_shipped_grid_sizes(nonarch, arch, study_flat):
    assert grid_size(nonarch) == 180
    assert grid_size(arch) == 126
    assert grid_size(study_flat) == 150  # the study's count: 24 of them invalid networks


def test_arch_space_holds_126_distinct_valid_networks(arch):
    nets = all_architectures(arch)
    assert len(nets) == 126
    assert len(set(nets)) == 126
    for net in nets:
        assert 1 <= len(net) <= 3 and all(size > 0 for size in net), net  # never {n1,0,n3>0}, never a 0 inside
        assert parse_hidden(list(net)) == net


def test_arch_space_is_exactly_the_valid_networks_of_the_study(arch):
    # Brute force over the study's 6 x 5 x 5 grid: drop {n1,0,n3>0}, strip zeros, keep each network once.
    valid = set()
    for n1, n2, n3 in product([4, 8, 16, 32, 64, 128], [0, 4, 8, 16, 32], [0, 4, 8, 16, 32]):
        if n2 == 0 and n3 > 0:
            continue
        valid.add(tuple(s for s in (n1, n2, n3) if s))
    assert set(all_architectures(arch)) == valid


def test_normalize_space_of_the_study_flat_space_gives_the_same_networks_in_order(arch, study_flat):
    normalized = normalize_space(study_flat)
    assert all_architectures(normalized) == all_architectures(arch)
    assert normalized == arch
    assert grid_size(normalized) == 126


def test_normalize_space_keeps_other_parameters_and_leaves_non_arch_spaces_alone(nonarch):
    assert normalize_space(nonarch) is nonarch
    mixed = {"hidden_size_1": {"_type": "choice", "_value": [8, 16]},
             "hidden_size_2": {"_type": "choice", "_value": [0, 4]},
             "act_func": {"_type": "choice", "_value": ["Tanh"]}}
    normalized = normalize_space(mixed)
    assert normalized["act_func"] == mixed["act_func"]
    assert all_architectures(normalized) == [(8,), (16,), (8, 4), (16, 4)]


def test_normalize_space_rejects_a_gap_in_the_hidden_sizes():
    with pytest.raises(ConfigError, match="hidden_size_1, then _2"):
        normalize_space({"hidden_size_2": {"_type": "choice", "_value": [4]}})


def test_arch_space_ignores_zeros_and_drops_a_depth_with_no_sizes():
    assert all_architectures(arch_space([[8, 16], [0], [0, 4]])) == [(8,), (16,)]


# --- what NNI 3.0's GridSearch schedules from them --------------------------------------------


def test_grid_search_schedules_180_nonarch_parameter_sets(nonarch_schedule):
    assert len(nonarch_schedule) == 180
    keys = {tuple(sorted(p.items())) for p in nonarch_schedule}
    assert len(keys) == 180
    assert {round(p["learning_rate"], 10) for p in nonarch_schedule} == STUDY_LR
    for params in nonarch_schedule:
        config = TrainConfig.from_dict({"func": "square", **params_to_settings(params)})
        assert config.hidden == (16, 16, 16)


def test_grid_search_schedules_126_arch_parameter_sets_all_valid(arch, arch_schedule):
    assert len(arch_schedule) == 126
    hidden = []
    for params in arch_schedule:
        settings = params_to_settings(params)
        assert set(settings) == {"hidden"}
        hidden.append(TrainConfig.from_dict({"func": "square", **settings}).hidden)
    assert len(set(hidden)) == 126
    assert set(hidden) == set(all_architectures(arch))


def _configs(schedule: list[dict], fixed: dict) -> list[TrainConfig]:
    return [TrainConfig.from_dict({**fixed, **params_to_settings(p)}) for p in schedule]


@pytest.mark.parametrize("stage, fixed", [("nonarch", {"hidden": (16, 16, 16)}), ("arch", {"act": "LeakyReLU"})])
def test_in_group_order_is_the_same_grid_with_each_batched_step_s_points_in_a_row(stage, fixed):
    space = normalize_space(load_space(default_space_path(stage)))
    ordered = in_group_order(space)
    schedule = grid_schedule(ordered)  # NNI 3.0's own GridSearch
    before = _configs(grid_schedule(space), {"func": "oscillator", **fixed})
    after = _configs(schedule, {"func": "oscillator", **fixed})
    assert sorted(map(repr, before)) == sorted(map(repr, after)) and len(after) == grid_size(space)
    assert _configs(grid_points(ordered), {"func": "oscillator", **fixed}) == after  # funcapprox's own order
    keys = [group_key(c) for c in after]
    runs = [k for i, k in enumerate(keys) if i == 0 or keys[i - 1] != k]
    assert len(runs) == len(set(keys)), "a group's points are not proposed one after another"
    assert len(set(keys)) == {"nonarch": 15, "arch": 28}[stage]
    if stage == "nonarch":  # the quniform learning rate is now its grid, the per-copy parameters last
        assert ordered["learning_rate"] == {"_type": "choice", "_value": sorted(STUDY_LR)}
        assert list(ordered) == ["act_func", "optimizer", "learning_rate", "loss"]


def test_in_group_order_leaves_a_space_without_a_grid_alone():
    space = {"learning_rate": {"_type": "uniform", "_value": [0.001, 0.1]}}
    assert in_group_order(space) is space


def test_grid_size_matches_grid_search_on_the_flat_study_space(study_flat):
    assert len(grid_schedule(study_flat)) == grid_size(study_flat) == 150


# --- load_space errors name the file and the key ----------------------------------------------


def _write(tmp_path, content, name="space.json"):
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"search space .*nope\.json does not exist"):
        load_space(tmp_path / "nope.json")


def test_malformed_json_names_the_file_and_line(tmp_path):
    path = _write(tmp_path, '{\n  "act_func": {"_type": "choice",\n}')
    with pytest.raises(ConfigError) as info:
        load_space(path)
    assert str(path) in str(info.value)
    assert "not valid JSON" in str(info.value) and "line 3" in str(info.value)


@pytest.mark.parametrize("content", [[1, 2], '"just text"', {}])
def test_not_an_object(tmp_path, content):
    path = _write(tmp_path, content)
    with pytest.raises(ConfigError, match="must be a non-empty JSON object") as info:
        load_space(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "space, key, words",
    [
        ({"dropout": {"_type": "choice", "_value": [0.1]}}, "dropout", "unknown parameter"),
        ({"act_func": {"_type": "pick", "_value": ["Tanh"]}}, "act_func", "unknown _type 'pick'"),
        ({"act_func": {"_type": "choice", "_value": []}}, "act_func", "non-empty _value"),
        ({"learning_rate": {"_type": "uniform", "_value": 0.1}}, "learning_rate", "non-empty _value"),
        ({"learning_rate": {"_type": "uniform", "_value": ["a", "b"]}}, "learning_rate",
         "(uniform) _value must be finite numbers"),
        ({"loss": {"_type": "choice"}}, "loss", '"_type"'),
        ({"loss": ["MSELoss"]}, "loss", '"_type"'),
        ({"arch": {"_type": "choice", "_value": [{"hidden_size_1": {"_type": "choice", "_value": [4]}}]}},
         "arch", "_name"),
        ({"arch": {"_type": "choice", "_value": [{"_name": "a", "act_func": {"_type": "choice", "_value": ["Tanh"]}}]}},
         "act_func", "only hidden sizes"),
        ({"arch": {"_type": "uniform", "_value": [1, 2]}}, "arch", "nested choice"),
        ({"arch": {"_type": "choice", "_value": [{"_name": "a", "hidden_size_1": {"_type": "choice", "_value": []}}]}},
         "hidden_size_1", "non-empty _value"),
    ],
)
def test_load_space_errors_name_the_file_and_the_key(tmp_path, space, key, words):
    path = _write(tmp_path, space)
    with pytest.raises(ConfigError) as info:
        load_space(path)
    message = str(info.value)
    assert str(path) in message and repr(key) in message and words in message, message


def test_nested_choice_outside_arch_is_rejected(tmp_path):
    space = {"act_func": {"_type": "choice", "_value": [{"_name": "x", "learning_rate": 0.1}]}}
    path = _write(tmp_path, space)
    with pytest.raises(ConfigError) as info:
        load_space(path)
    assert str(info.value) == f"search space {path}: 'act_func' holds a nested choice, which only 'arch' may"


def test_nested_choice_outside_arch_names_the_key(tmp_path):
    space = {"act_func": {"_type": "choice", "_value": [{"_name": "x", "learning_rate": 0.1}]}}
    with pytest.raises(ConfigError, match="'act_func'"):
        load_space(_write(tmp_path, space))


@pytest.mark.parametrize(
    "spec, words",
    [
        ({"_type": "quniform", "_value": [0.005, 0.05]}, "(quniform) _value must be [low, high, q], got [0.005, 0.05]"),
        ({"_type": "quniform", "_value": [0.005, 0.05, 0]}, "(quniform) needs q > 0, got [0.005, 0.05, 0]"),
        ({"_type": "quniform", "_value": [0.005, 0.05, -0.01]}, "(quniform) needs q > 0"),
        ({"_type": "quniform", "_value": [0.05, 0.005, 0.01]}, "(quniform) needs low < high, got [0.05, 0.005, 0.01]"),
        ({"_type": "qloguniform", "_value": [0.001, 0.1]}, "(qloguniform) _value must be [low, high, q]"),
        ({"_type": "qloguniform", "_value": [0.001, 0.1, 0]}, "(qloguniform) needs q > 0"),
        ({"_type": "qloguniform", "_value": [0, 0.1, 0.01]}, "(qloguniform) needs low > 0 for a log scale"),
        ({"_type": "randint", "_value": [1]}, "(randint) _value must be [low, high], got [1]"),
        ({"_type": "randint", "_value": [1, 5, 2]}, "(randint) _value must be [low, high], got [1, 5, 2]"),
        ({"_type": "randint", "_value": [5, 5]}, "(randint) needs low < high, got [5, 5]"),
        ({"_type": "uniform", "_value": [0.1]}, "(uniform) _value must be [low, high], got [0.1]"),
        ({"_type": "uniform", "_value": [0.1, 0.01]}, "(uniform) needs low < high, got [0.1, 0.01]"),
        ({"_type": "loguniform", "_value": [0.001, 0.01, 0.1]}, "(loguniform) _value must be [low, high]"),
        ({"_type": "loguniform", "_value": [-1, 0.1]}, "(loguniform) needs low > 0 for a log scale, got [-1, 0.1]"),
        ({"_type": "normal", "_value": [0.01]}, "(normal) _value must be [mu, sigma], got [0.01]"),
        ({"_type": "normal", "_value": [0.01, 0]}, "(normal) needs sigma > 0, got [0.01, 0]"),
        ({"_type": "lognormal", "_value": [-4, -1]}, "(lognormal) needs sigma > 0"),
        ({"_type": "qnormal", "_value": [0.01, 0.005]}, "(qnormal) _value must be [mu, sigma, q], got [0.01, 0.005]"),
        ({"_type": "qnormal", "_value": [0.01, 0.005, 0]}, "(qnormal) needs q > 0"),
        ({"_type": "qlognormal", "_value": [-4, 1, 0]}, "(qlognormal) needs q > 0"),
        ({"_type": "uniform", "_value": [0.001, 1e999]}, "(uniform) _value must be finite numbers"),
        ({"_type": "uniform", "_value": [True, 2]}, "(uniform) _value must be finite numbers"),
    ],
    ids=["quniform-two-values", "quniform-q-zero", "quniform-q-negative", "quniform-low-above-high",
         "qloguniform-two-values", "qloguniform-q-zero", "qloguniform-low-zero", "randint-one-value",
         "randint-three-values", "randint-empty-range", "uniform-one-value", "uniform-low-above-high",
         "loguniform-three-values", "loguniform-negative-low", "normal-one-value", "normal-sigma-zero",
         "lognormal-negative-sigma", "qnormal-two-values", "qnormal-q-zero", "qlognormal-q-zero",
         "uniform-infinite", "uniform-bool"],
)
def test_load_space_rejects_numeric_specs_nni_cannot_use(tmp_path, spec, words):
    path = _write(tmp_path, {"learning_rate": spec})
    with pytest.raises(ConfigError) as info:
        load_space(path)  # before grid_size or NNI ever sees it
    assert str(info.value).startswith(f"search space {path}: 'learning_rate' {words}"), str(info.value)


@pytest.mark.parametrize(
    "spec",
    [
        {"_type": "quniform", "_value": [0.005, 0.05, 0.01]},
        {"_type": "qloguniform", "_value": [0.001, 0.1, 0.001]},
        {"_type": "randint", "_value": [1, 5]},
        {"_type": "uniform", "_value": [0.001, 0.1]},
        {"_type": "loguniform", "_value": [0.001, 0.1]},
        {"_type": "normal", "_value": [0.01, 0.005]},
        {"_type": "qnormal", "_value": [0.01, 0.005, 0.001]},
        {"_type": "lognormal", "_value": [-4, 1]},
        {"_type": "qlognormal", "_value": [-4, 1, 0.001]},
    ],
    ids=lambda spec: spec["_type"],
)
def test_load_space_accepts_the_numeric_specs_nni_uses(tmp_path, spec):
    space = load_space(_write(tmp_path, {"learning_rate": spec}))
    assert space == {"learning_rate": spec}
    grid_size(space)  # finite or None, never a Python error


def test_load_space_rejects_an_empty_arch_choice(tmp_path):
    path = _write(tmp_path, {"arch": {"_type": "choice", "_value": []}})
    with pytest.raises(ConfigError) as info:
        load_space(path)
    assert str(info.value) == f"search space {path}: 'arch' needs at least one option"


def test_shipped_spaces_load_and_the_default_paths_exist():
    for stage in ("nonarch", "arch"):
        assert default_space_path(stage).is_file()
        assert load_space(default_space_path(stage))


# --- params_to_settings and settings_to_params ------------------------------------------------


def test_params_to_settings_maps_the_study_names():
    params = {"act_func": "Tanh", "learning_rate": 0.02, "optimizer": "Adam", "loss": "SmoothL1Loss"}
    assert params_to_settings(params) == {"act": "Tanh", "lr": 0.02, "optimizer": "Adam", "loss": "SmoothL1Loss"}


def test_params_to_settings_maps_flat_hidden_sizes():
    assert params_to_settings({"hidden_size_1": 64, "hidden_size_2": 0, "hidden_size_3": 0}) == {"hidden": (64,)}
    assert params_to_settings({"hidden_size_1": 16, "hidden_size_2": 8}) == {"hidden": (16, 8)}


def test_params_to_settings_unpacks_the_nested_arch_choice():
    params = {"arch": {"_name": "2 hidden layers", "hidden_size_1": 32, "hidden_size_2": 8}, "act_func": "ReLU"}
    assert params_to_settings(params) == {"hidden": (32, 8), "act": "ReLU"}


def test_params_to_settings_passes_other_config_fields_through():
    assert params_to_settings({"batch": 50, "epochs": 7, "seed": 3}) == {"batch": 50, "epochs": 7, "seed": 3}


@pytest.mark.parametrize(
    "params, words",
    [
        ({"dropout": 0.5}, "unknown parameter 'dropout' in the trial's parameters"),
        ({"func": "square"}, "unknown parameter 'func'"),  # the function is fixed, never searched
        ({"hidden": [16]}, "unknown parameter 'hidden'"),
        ({"arch": {"_name": "x", "width": 3}}, "unknown parameter 'width'"),
        ({"hidden_size_2": 8}, "must start at hidden_size_1"),
        ({"hidden_size_1": 16, "hidden_size_2": 0, "hidden_size_3": 8}, "a 0 ends the stack"),
        ([1, 2], "must be a JSON object, not list"),
    ],
)
def test_params_to_settings_rejects(params, words):
    with pytest.raises(ConfigError, match=words.replace("(", r"\(")):
        params_to_settings(params)


def test_params_to_settings_names_its_source():
    with pytest.raises(ConfigError, match="unknown parameter 'x' in --set"):
        params_to_settings({"x": 1}, "--set")


def test_settings_to_params_reverses_params_to_settings():
    settings = {"act": "Tanh", "lr": 0.02, "optimizer": "Adam", "loss": "MSELoss", "hidden": (64, 8), "batch": 50}
    params = settings_to_params(settings)
    assert params == {"act_func": "Tanh", "learning_rate": 0.02, "optimizer": "Adam", "loss": "MSELoss",
                      "batch": 50, "hidden_size_1": 64, "hidden_size_2": 8}
    assert params_to_settings(params) == settings


def test_settings_to_params_of_every_scheduled_arch_set_round_trips(arch_schedule):
    for params in arch_schedule:
        settings = params_to_settings(params)
        assert params_to_settings(settings_to_params(settings)) == settings


# --- what may be a search-space file -----------------------------------------------------------


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    import os
    import subprocess
    import sys

    fifo = tmp_path / "space.json"
    os.mkfifo(fifo)
    code = ("import sys\nfrom funcapprox.search.space import load_space\ntry:\n    load_space(sys.argv[1])\n"
            "except Exception as exc:\n    print(type(exc).__name__, exc)\n")
    # In a subprocess with a timeout: a load_space that opened the FIFO for reading would wait here for ever.
    result = subprocess.run([sys.executable, "-c", code, str(fifo)], capture_output=True, text=True, timeout=60)
    assert result.stdout == f"ConfigError search space {fifo} is a FIFO; it must be a regular JSON file\n", result


def test_a_fifo_swapped_in_after_the_check_is_opened_without_blocking(tmp_path):
    import os
    import subprocess
    import sys

    fifo = tmp_path / "space.json"
    os.mkfifo(fifo)
    code = ("import os, sys\nimport funcapprox.search.space as space\n"
            "regular = os.stat(space.default_space_path('arch'))\n"
            "space.os.stat = lambda path: regular\n"  # as if a regular file was there at the check
            "try:\n    space.load_space(sys.argv[1])\nexcept Exception as exc:\n    print(type(exc).__name__, exc)\n")
    # O_NONBLOCK: the open returns at once, and fstat sees the FIFO.
    result = subprocess.run([sys.executable, "-c", code, str(fifo)], capture_output=True, text=True, timeout=60)
    assert result.stdout == f"ConfigError search space {fifo} is a FIFO; it must be a regular JSON file\n", result


@pytest.mark.parametrize("path, kind", [(".", "a folder"), ("/dev/null", "a device")])
def test_a_folder_or_a_device_is_refused(tmp_path, path, kind):
    with pytest.raises(ConfigError, match=f"^search space {path} is {kind}; it must be a regular JSON file$"):
        load_space(path)


def test_a_file_over_1_mib_is_refused_before_it_is_read(tmp_path):
    big = tmp_path / "space.json"
    big.write_text(json.dumps({"act_func": {"_type": "choice", "_value": ["ReLU"] * 200_000}}))
    size = big.stat().st_size
    assert size > 1024 * 1024
    with pytest.raises(ConfigError, match=rf"^search space {big} is {size} bytes, over the limit of 1 MiB for a "
                                          "search-space file$"):
        load_space(big)


def test_a_file_of_exactly_1_mib_loads(tmp_path):
    path = tmp_path / "space.json"
    text = json.dumps({"act_func": {"_type": "choice", "_value": ["ReLU", "Tanh"]}})
    path.write_text(text + " " * (1024 * 1024 - len(text)))
    assert load_space(path) == {"act_func": {"_type": "choice", "_value": ["ReLU", "Tanh"]}}


def test_a_file_that_is_not_utf8_names_the_file(tmp_path):
    path = tmp_path / "space.json"
    path.write_bytes(b'{"act_func": "\xff"}')
    with pytest.raises(ConfigError, match=rf"^cannot read search space {path}: it is not UTF-8 text"):
        load_space(path)
