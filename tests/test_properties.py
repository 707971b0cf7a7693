"""Property-based tests (hypothesis) of every parser of outside input: configuration dicts and
`funcapprox train` options, search-space files, the parameters a trial receives from NNI,
experiment and trial ids on the command line, and `--set NAME=VALUE` pairs.

The property throughout: any input gives a valid object or the project's own error
(a FuncApproxError with a one-line message), never another exception, and no file is
touched outside the work folder. Valid inputs survive their round trips. Values a random
generator seldom reaches by itself (a 5,000-digit number, JSON nested 100,000 deep, an id
ending in a newline) are mixed in on purpose.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import site
import sys
import time
from contextlib import contextmanager
from itertools import islice, product
from pathlib import Path
from unittest import mock

import click
import pytest
from click.testing import CliRunner
from helpers.audit import audit_events
from helpers.properties import CLI_PROPERTY, PROPERTY
from helpers.recorded import RECORDED_ID, copy_recorded
from hypothesis import assume, example, given
from hypothesis import strategies as st

import funcapprox
from funcapprox import runs
from funcapprox.cli import HiddenSizes, cli
from funcapprox.config import (
    ACTIVATIONS,
    ALIASES,
    ARCH_KEY,
    DATA_ONLY,
    DEFAULT_HOLDOUT,
    FUNCTION_ALIASES,
    FUNCTIONS,
    HIDDEN_KEYS,
    INITS,
    LOSSES,
    LR_SCHEDULES,
    MAX_EPOCHS,
    MAX_LAYERS,
    MAX_SAMPLES,
    MAX_SEEDS,
    MAX_WIDTH,
    OPTIMIZERS,
    POINT_KEY,
    REFINES,
    TrainConfig,
    field_names,
    params_to_settings,
    parse_hidden,
    parse_set_values,
    read_set_pairs,
    searchable_names,
    settings_to_params,
)
from funcapprox.errors import ConfigError, FuncApproxError
from funcapprox.expression import parse_expression
from funcapprox.nni.config import trial_command
from funcapprox.nni.trial import resolve
from funcapprox.results import check_id, experiment_ids, resolve_id
from funcapprox.search.space import NNI_TYPES, all_architectures, check_space, grid_size, load_space, normalize_space

MAX_SEED = 2**63 - 1 - MAX_SEEDS
NAMES = {"func": FUNCTIONS, "act": ACTIVATIONS, "optimizer": OPTIMIZERS, "loss": LOSSES, "init": INITS,
         "lr_schedule": LR_SCHEDULES, "refine": REFINES}
INTS = {"epochs": (1, MAX_EPOCHS), "samples": (1, MAX_SAMPLES), "batch": (1, MAX_SAMPLES), "seed": (0, MAX_SEED),
        "seeds": (1, MAX_SEEDS)}
# Each value valid for its setting on its own: as config.check_value does, the others at their smallest (samples as
# many as the batch when batch is given) keep any value within the memory bound.
NEUTRAL = {"batch": 1, "samples": 1, "hidden": (1,), "seeds": 1}

# --- strategies ----------------------------------------------------------------------------------

DEEP_JSON = "[" * 100_000  # json.loads raises RecursionError, not JSONDecodeError
LONG_NUMBER = "9" * 5_000  # over Python's 4,300-digit limit: int() and json.loads raise a plain ValueError
HOSTILE = [
    10**400, -(10**400), 2**63, 2**64 + 1, -1, 0, float("nan"), float("inf"), -float("inf"), -0.0, 5e-324,
    1.7976931348623157e308, True, False, None, "", " ", "\x00", "\n", "NaN", "1e400", LONG_NUMBER, DEEP_JSON,
    "١٢", "1_6", "16,16,16", "{64,0,0}", "0,16", "-16", " tanh ", "QUADRATIC", [16, 0, 8], [16.0], [True],
    {"_name": "x"}, [[16]], MAX_WIDTH + 1, MAX_EPOCHS + 1, MAX_SAMPLES + 1, MAX_SEED + 1, MAX_SEEDS + 1,
]
HOSTILE_VALUES = st.sampled_from(HOSTILE)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)
ANY_VALUE = st.one_of(JSON_VALUES, HOSTILE_VALUES)


def spelled(names: tuple[str, ...]) -> st.SearchStrategy[str]:
    """Names as a person might type them: any case, spaces around."""
    forms = [f for name in names for f in (name, name.lower(), name.upper(), name.swapcase())]
    return st.tuples(st.sampled_from(["", " ", "\t"]), st.sampled_from(forms), st.sampled_from(["", " ", "\n"])).map(
        "".join)


def valid_value(setting: str, canonical: bool = False) -> st.SearchStrategy:
    """Values a configuration accepts for `setting` on its own (see NEUTRAL); `canonical`: names as it keeps them."""
    if setting in NAMES:
        if canonical:
            return st.sampled_from(NAMES[setting])
        return spelled((*NAMES[setting], *(FUNCTION_ALIASES if setting == "func" else ())))
    if setting in INTS:
        return st.integers(*INTS[setting])
    if setting == "hidden":
        return st.lists(st.integers(1, MAX_WIDTH), min_size=1, max_size=MAX_LAYERS)
    if setting == "lr":
        return st.floats(min_value=0, exclude_min=True, allow_infinity=False)
    if setting == "domain":
        ends = st.floats(-1e12, 1e12, allow_nan=False).filter(lambda v: v == v)
        return st.tuples(ends, ends).filter(lambda d: d[0] < d[1]).map(lambda d: (float(d[0]), float(d[1])))
    if setting == "holdout":  # a data file's alone (tests/test_data_func.py): a function takes only the default
        return st.just(DEFAULT_HOLDOUT)
    if setting == "data":
        return st.none()
    assert setting == "output_act", setting
    return st.booleans()


def setting_value(setting: str) -> st.SearchStrategy:
    return st.one_of(valid_value(setting), ANY_VALUE)


def parameter_value(name: str) -> st.SearchStrategy:
    """Values for a parameter or setting name: valid ones, near misses and anything at all."""
    if name in HIDDEN_KEYS:
        return st.integers(-1, MAX_WIDTH + 1) | ANY_VALUE
    setting = ALIASES.get(name, name)
    return setting_value(setting) if setting in field_names() else ANY_VALUE


def keyed(keys: st.SearchStrategy[str], values, max_size: int = 5) -> st.SearchStrategy[dict]:
    """Dicts whose values suit their keys: values(key) is a strategy."""
    return st.lists(keys.flatmap(lambda k: st.tuples(st.just(k), values(k))), max_size=max_size).map(dict)


@st.composite
def configs(draw) -> TrainConfig:
    settings_ = {name: draw(valid_value(name, canonical=True)) for name in field_names()
                 if name not in ("batch", "epochs")}
    settings_["batch"] = draw(st.integers(1, settings_["samples"]))
    settings_["epochs"] = draw(st.none() | valid_value("epochs"))
    while too_big(settings_):  # within the memory bound (config.MAX_MEMORY): halve the settings that drive it
        settings_ |= {"seeds": max(1, settings_["seeds"] // 2), "samples": max(1, settings_["samples"] // 2),
                      "batch": max(1, settings_["batch"] // 2), "hidden": [max(1, s // 2) for s in settings_["hidden"]]}
    return TrainConfig(**settings_)


SEARCHABLE_FIELDS = [f for f in field_names() if f not in ("func", "domain", *DATA_ONLY)]  # nor is a function


def too_big(settings_: dict) -> bool:
    try:
        TrainConfig(**settings_)
    except ConfigError as exc:
        assert "memory" in str(exc), exc
        return True
    return False


def config_dicts() -> st.SearchStrategy[dict]:
    """Dicts near the configuration's shape: its field names (and others) with any values."""
    return keyed(st.sampled_from(field_names()) | st.text(max_size=8), parameter_value, max_size=6)


# --- checks --------------------------------------------------------------------------------------


def assert_clear(exc: BaseException, *words: str) -> None:
    """The project's own error, on one line, holding `words`."""
    assert isinstance(exc, FuncApproxError), f"{type(exc).__name__}: {exc}"
    message = str(exc)
    assert message.strip() and len(message.splitlines()) == 1, repr(message)
    for word in words:
        assert word in message, (word, message)


def alone(setting: str, value) -> TrainConfig:
    """The configuration with `value` for `setting` and neutral others: raises if the value is invalid."""
    fits = setting == "batch" and type(value) is int and 1 <= value <= MAX_SAMPLES
    neutral = {**NEUTRAL, "samples": value if fits else MAX_SAMPLES} if setting == "batch" else NEUTRAL
    return TrainConfig(**{**{k: v for k, v in neutral.items() if k != setting}, setting: value})


def assert_valid_config(config: TrainConfig) -> None:
    for name, names in NAMES.items():
        if name == "func" and config.func not in names:  # a formula: kept as its own normalised text
            assert parse_expression(config.func).text == config.func
            continue
        assert getattr(config, name) in names
    low, high = config.domain
    assert type(low) is float and type(high) is float and low < high
    assert isinstance(config.hidden, tuple) and 1 <= len(config.hidden) <= MAX_LAYERS
    assert all(type(s) is int and 1 <= s <= MAX_WIDTH for s in config.hidden)
    assert type(config.lr) is float and math.isfinite(config.lr) and config.lr > 0
    for name, (low, high) in INTS.items():
        value = getattr(config, name)
        assert type(value) is int and low <= value <= high, (name, value)
    assert config.batch <= config.samples
    assert type(config.output_act) is bool
    assert config.n_params > 0 and re.fullmatch(r"\{\d+,\d+,\d+\}", config.arch)
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def attempt(fn, *args, **kwargs):
    """fn(...)'s value, or its exception if it is the project's own clear error; any other fails the test."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - the property is about which exceptions get out
        assert_clear(exc)
        return exc


# --- file access: Python's audit events, recorded around a command --------------------------------

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_PATH_EVENTS = {"open", "os.mkdir", "os.rename", "os.remove", "os.rmdir", "os.scandir", "os.symlink", "os.chmod",
                "sqlite3.connect", "shutil.rmtree", "shutil.copyfile"}


def _touch(event: str, args: tuple) -> tuple[str, str, bool] | None:
    """A file an audit event reaches, and whether it writes there; None for any other event."""
    if event not in _PATH_EVENTS or not args:
        return None
    path = args[0]
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, (str, os.PathLike)):
        return None  # a file descriptor
    path = str(path)
    if event == "sqlite3.connect":
        path = path.removeprefix("file:").split("?")[0]
    if event == "open":
        mode, flags = args[1], args[2]
        writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or bool(
            isinstance(flags, int) and flags & _WRITE_FLAGS)
    else:
        writes = event not in ("os.scandir", "sqlite3.connect")
    try:
        path = os.path.realpath(path)
    except ValueError:  # a NUL in the path: the call itself will refuse it
        pass
    return event, path, writes


@contextmanager
def files_touched():
    """The files reached inside the block, as (event, path, writes); filled in when the block ends."""
    touched: list[tuple[str, str, bool]] = []
    with audit_events() as events:
        yield touched
    touched.extend(t for t in (_touch(event, args) for event, args in events) if t)


def assert_only_inside(touched, workdir: Path) -> None:
    """Every file written is in the work folder; every file read is there or part of Python's installation."""
    import matplotlib

    package = Path(funcapprox.__file__).parent
    matplotlib_dirs = [matplotlib.get_cachedir(), matplotlib.get_configdir()]  # its font cache
    write_roots = [os.path.realpath(r) for r in (workdir, *matplotlib_dirs)]
    read_roots = write_roots + [os.path.realpath(r) for r in (
        sys.prefix, sys.base_prefix, sys.exec_prefix, *site.getsitepackages(), site.getusersitepackages(),
        package, package.parent / "funcapprox.egg-info", "/proc", "/dev", "/sys", "/usr/share/fonts", "/etc/fonts")]

    def under(path: str, roots: list[str]) -> bool:
        return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)

    for event, path, writes in touched:
        assert under(path, write_roots if writes else read_roots), f"{event} {path} (writes: {writes})"


# --- the CLI -------------------------------------------------------------------------------------


def invoke(args: list[str]):
    result = CliRunner().invoke(cli, args)
    # A user mistake or a failed operation ends in SystemExit; anything else is a crash with a traceback.
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        args, repr(result.exception), result.output)
    assert "Traceback" not in result.output
    assert result.exit_code in (0, 1, 2), (args, result.exit_code, result.output)
    if result.exit_code:
        lines = result.output.rstrip("\n").splitlines()
        errors = [line for line in lines if line.startswith("Error:")]
        # click prints the error last: one line, and the only one
        assert len(errors) == 1 and lines[-1] == errors[0] and errors[0] != "Error:", result.output
    return result


class _Stub(FuncApproxError):
    """Raised in place of training: the CLI shows it as `Error: …` with exit code 1."""


@contextmanager
def no_training():
    """`funcapprox train` builds its configuration, then stops where it would train; yields the configurations."""
    built: list[TrainConfig] = []

    def stub(config, folder, on_eval=None, force=False):
        built.append(config)
        raise _Stub("stopped before training")

    with mock.patch.object(runs, "run_training", stub):
        yield built


# =================================================================================================
# 1. The training configuration
# =================================================================================================


@PROPERTY
@given(config_dicts())
@example({"lr": 10**400})  # found: OverflowError from math.isfinite
def test_from_dict_gives_a_valid_config_or_a_clear_error(data):
    outcome = attempt(TrainConfig.from_dict, data, source="the test's data")
    if isinstance(outcome, Exception):
        assert_clear(outcome, "the test's data")
        assert isinstance(outcome, ConfigError)
    else:
        assert_valid_config(outcome)
        for key, value in data.items():  # nothing given is dropped or changed beyond its spelling
            if key not in ("batch", "samples"):
                assert getattr(outcome, key) == getattr(alone(key, value), key), key


@PROPERTY
@given(ANY_VALUE.filter(lambda v: not isinstance(v, dict)))
def test_from_dict_of_anything_but_an_object_is_a_clear_error(data):
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict(data, source="config.json")
    assert_clear(info.value, "config.json must be a JSON object")


@PROPERTY
@given(st.dictionaries(st.sampled_from(field_names()), ANY_VALUE, min_size=1))
def test_each_setting_accepts_only_values_of_its_kind(data):
    outcome = attempt(TrainConfig.from_dict, data)
    if not isinstance(outcome, Exception):
        assert_valid_config(outcome)
        for key, value in data.items():
            if key in NAMES:
                assert isinstance(value, str)
            elif key in INTS:
                assert value is None if key == "epochs" and value is None else type(value) is int
            elif key == "lr":
                assert type(value) in (int, float)
            elif key == "output_act":
                assert type(value) is bool


def test_every_setting_meets_every_hostile_value():
    """Not random: each setting with each value of HOSTILE_VALUES (a few hundred configurations)."""
    for name in field_names():
        for value in HOSTILE:
            outcome = attempt(alone, name, value)
            if not isinstance(outcome, Exception):
                assert_valid_config(outcome)


@PROPERTY
@given(configs())
def test_config_round_trips_through_dict_json_and_replace(config):
    assert_valid_config(config)
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert config.replace() == config
    assert TrainConfig(**{**config.to_dict(), "hidden": config.arch}) == config  # the study's {64,0,0} notation


@PROPERTY
@given(st.one_of(st.text(max_size=20), st.text(alphabet="0123456789,{} -+", max_size=20), HOSTILE_VALUES))
@example("١٢")  # found: int() reads other scripts' digits
@example("1_6")
def test_parse_hidden_gives_a_network_or_a_clear_error(value):
    outcome = attempt(parse_hidden, value)
    if not isinstance(outcome, Exception):
        assert isinstance(outcome, tuple) and 1 <= len(outcome) <= MAX_LAYERS
        assert all(type(s) is int and 1 <= s <= MAX_WIDTH for s in outcome)
        if isinstance(value, str):  # ASCII whole numbers only: not "١٢" or "1_6" (spaces around are fine)
            assert all(c in "0123456789,{}+-" or c.isspace() for c in value), value


@PROPERTY
@given(st.lists(st.integers(1, MAX_WIDTH), min_size=1, max_size=MAX_LAYERS), st.data())
def test_parse_hidden_round_trips_with_trailing_zeros(sizes, data):
    padded = sizes + [0] * data.draw(st.integers(0, MAX_LAYERS - len(sizes)))
    assert parse_hidden(padded) == parse_hidden(",".join(map(str, padded))) == tuple(sizes)
    assert parse_hidden("{" + ",".join(map(str, padded)) + "}") == tuple(sizes)


@PROPERTY
@given(st.text(max_size=20) | st.text(alphabet="0123456789,{} -", max_size=16))
def test_hidden_sizes_option_type_gives_sizes_or_a_one_line_usage_error(text):
    try:
        sizes = HiddenSizes().convert(text, None, None)
    except click.BadParameter as exc:
        assert len(exc.format_message().splitlines()) == 1, exc.format_message()
    else:
        assert sizes == parse_hidden(text) and all(1 <= s <= MAX_WIDTH for s in sizes)


TRAIN_OPTIONS = {"--func": "func", "--hidden": "hidden", "--act": "act", "--optimizer": "optimizer", "--lr": "lr",
                 "--loss": "loss", "--epochs": "epochs", "--samples": "samples", "--batch": "batch", "--seed": "seed",
                 "--seeds": "seeds", "--init": "init", "--lr-schedule": "lr_schedule", "--domain": "domain"}
OPTION_TEXT = st.one_of(
    st.text(max_size=12),
    st.integers().map(str),
    st.floats().map(repr),
    st.sampled_from(["nan", "inf", "-inf", "1e400", "-0", "1_000", LONG_NUMBER, "0x10", " 5 ", "", "quadratic",
                     "16,0,0", "{8,8}", "0,8", "8,8,8,8", str(MAX_SEED + 1), str(2**64)]),
)


def option_value(option: str) -> st.SearchStrategy[str]:
    setting = TRAIN_OPTIONS[option]
    valid = valid_value(setting).map(
        lambda v: ",".join(map(repr if isinstance(v, tuple) else str, v)) if isinstance(v, (list, tuple))
        else repr(v) if isinstance(v, float) else str(v))
    return valid | OPTION_TEXT


@CLI_PROPERTY
@given(st.lists(st.sampled_from(sorted(TRAIN_OPTIONS)).flatmap(lambda o: option_value(o).map(lambda v: f"{o}={v}")),
                max_size=6),
       st.booleans())
def test_train_options_give_a_valid_config_or_a_one_line_error(options, output_act):
    with no_training() as built:
        result = invoke(["train", *options, *(["--output-act"] if output_act else [])])
    if built:  # the options made a configuration: training would start here
        assert result.exit_code == 1 and result.output.endswith("Error: stopped before training\n"), result.output
        (config,) = built
        assert_valid_config(config)
        assert config.output_act is output_act
    else:
        assert result.exit_code == 2, result.output


@CLI_PROPERTY
@given(configs())
def test_train_options_reach_the_config_exactly(config):
    options = [f"--func={config.func}", f"--hidden={','.join(map(str, config.hidden))}", f"--act={config.act}",
               f"--optimizer={config.optimizer}", f"--lr={config.lr!r}", f"--loss={config.loss}",
               f"--epochs={config.epochs}", f"--samples={config.samples}", f"--batch={config.batch}",
               f"--seed={config.seed}", f"--seeds={config.seeds}", f"--init={config.init}",
               f"--lr-schedule={config.lr_schedule}", f"--refine={config.refine}",
               f"--domain={config.domain[0]!r},{config.domain[1]!r}",
               *(["--output-act"] if config.output_act else [])]
    with no_training() as built:
        invoke(["train", *options])
    assert built == [config]


# =================================================================================================
# 2. Search-space files
# =================================================================================================

SPEC_TYPES = st.sampled_from(sorted(NNI_TYPES)) | JSON_VALUES
NUMBERS = st.integers() | st.floats() | st.sampled_from([10**400, -(10**400), 2**63, 1e300, 1e-300, 0, -1, 1, 2])
SPACE_KEYS = st.sampled_from([*searchable_names(), ARCH_KEY, "_name"]) | st.text(max_size=8)


def spec(name: str) -> st.SearchStrategy[dict]:
    """An entry of a space for `name`: NNI's types or others, values for the name, numbers, anything."""
    values = st.lists(parameter_value(name) | NUMBERS, max_size=4) | JSON_VALUES
    return st.fixed_dictionaries({"_type": SPEC_TYPES, "_value": values})


def space_entry(name: str) -> st.SearchStrategy:
    if name == ARCH_KEY:
        branch = keyed(st.sampled_from([*HIDDEN_KEYS, "_name"]) | SPACE_KEYS,
                       lambda k: st.text(max_size=6) if k == "_name" else spec(k) | JSON_VALUES, max_size=4)
        return st.fixed_dictionaries({"_type": st.just("choice") | SPEC_TYPES, "_value": st.lists(branch, max_size=3)})
    return spec(name) | JSON_VALUES


SPACES = keyed(SPACE_KEYS, space_entry)


def arch_of(*branches: dict) -> dict:
    """A nested arch choice: one option per {hidden_size_N: [sizes]}."""
    return {"_type": "choice", "_value": [
        {"_name": f"option {i}", **{k: {"_type": "choice", "_value": v} for k, v in b.items()}}
        for i, b in enumerate(branches)]}


def assert_usable_space(space: dict) -> None:
    """An accepted space: NNI can use it, its grid size comes quickly, and what it offers is valid."""
    normalized = attempt(normalize_space, space)
    if isinstance(normalized, Exception):
        return
    check_space(normalized, "the normalized space")
    started = time.perf_counter()
    size = grid_size(normalized)
    assert time.perf_counter() - started < 1
    assert size is None or (type(size) is int and size >= 0)
    settings_ = [ALIASES.get(k, k) for k in normalized if k != ARCH_KEY]
    assert len(settings_) == len(set(settings_)), f"a setting searched under two names: {list(normalized)}"
    for key, entry in normalized.items():
        setting, kind, values = ALIASES.get(key, key), entry["_type"], entry["_value"]
        if key == ARCH_KEY:
            assert values
            for option in values:  # each network NNI can send, as the trial reads it
                names = [k for k in option if k != "_name"]
                for sizes in islice(product(*(option[k]["_value"] for k in names)), 1000):
                    params_to_settings({ARCH_KEY: {"_name": option["_name"], **dict(zip(names, sizes))}})
        elif kind == "choice":
            for value in values:
                alone(setting, value)  # every value offered is valid for its setting
        else:
            assert setting in ("lr", *INTS), f"{key} searched with {kind}"
            whole = kind == "randint" or (kind.startswith("q") and all(type(v) is int for v in values))
            assert setting == "lr" or whole, f"{key} searched with {kind} {values}: fractions"
    offered = {v for k in HIDDEN_KEYS if k in space for v in space[k]["_value"]}
    offered |= {v for option in space.get(ARCH_KEY, {}).get("_value", []) for k in HIDDEN_KEYS if k in option
                for v in option[k]["_value"]}
    kept = {s for network in (all_architectures(normalized) if ARCH_KEY in normalized else []) for s in network}
    assert offered - {0} <= kept, f"hidden sizes dropped: {offered - {0} - kept}"


def write(tmp_path: Path, content: bytes) -> Path:
    path = tmp_path / "space.json"
    path.write_bytes(content)
    return path


@PROPERTY
@given(st.one_of(st.binary(max_size=64), st.sampled_from([
    DEEP_JSON.encode(), LONG_NUMBER.encode(), b'{"learning_rate": ' + LONG_NUMBER.encode() + b"}", b"\xff\xfe{}",
    b'\xef\xbb\xbf{"act_func": {"_type": "choice", "_value": ["Tanh"]}}', b"\x00", b"", b"NaN", b'{"": {}}'])))
def test_load_space_of_any_bytes_gives_a_space_or_an_error_naming_the_file(tmp_path, content):
    path = write(tmp_path, content)
    outcome = attempt(load_space, path)
    if isinstance(outcome, Exception):
        assert_clear(outcome, str(path))
    else:
        assert_usable_space(outcome)


@PROPERTY
@given(SPACES | JSON_VALUES)
# found: TypeError (unhashable _type); OverflowError (a 401-digit bound); OverflowError and a grid of 10**7
# values built one by one in grid_size; a choice NNI would send to every trial only to fail it
@example({"act_func": {"_type": [], "_value": ["Tanh"]}})
@example({"learning_rate": {"_type": "uniform", "_value": [0, 10**400]}})
@example({"learning_rate": {"_type": "quniform", "_value": [0, 1e300, 1e-300]}})
@example({"batch": {"_type": "quniform", "_value": [1, 10_000_000, 1]}})
@example({"act_func": {"_type": "choice", "_value": ["Gelu"]}})
@example({"epochs": {"_type": "uniform", "_value": [1, 100]}})
@example({"optimizer": {"_type": "randint", "_value": [1, 3]}})
@example({"act": {"_type": "choice", "_value": ["Tanh"]}, "act_func": {"_type": "choice", "_value": ["ReLU"]}})
@example({"hidden_size_1": {"_type": "choice", "_value": [0]}})  # normalized: an empty arch choice
@example({f"hidden_size_{i}": {"_type": "choice", "_value": [v]} for i, v in ((1, 1), (2, 0), (3, 2))})  # 2: unused
@example({"hidden_size_1": {"_type": "choice", "_value": [8]}, ARCH_KEY: arch_of({"hidden_size_1": [4]})})
@example({ARCH_KEY: arch_of({"hidden_size_2": [4]})})
@example({ARCH_KEY: arch_of({"hidden_size_1": [-4]})})
def test_load_space_of_any_json_gives_a_usable_space_or_an_error_naming_the_file(tmp_path, space):
    path = write(tmp_path, json.dumps(space).encode())
    outcome = attempt(load_space, path)
    if isinstance(outcome, Exception):
        assert_clear(outcome, str(path))
        assert isinstance(outcome, ConfigError)
    else:
        assert outcome == json.loads(path.read_text())
        assert_usable_space(outcome)


@st.composite
def valid_spaces(draw) -> dict:
    """Search spaces within what funcapprox documents: choices of valid values, numeric ranges for lr."""
    space: dict = {}
    for setting in draw(st.lists(st.sampled_from(["act", "optimizer", "loss", "init", "lr_schedule", "lr", "epochs",
                                                  "batch", "seed", "output_act"]), unique=True, max_size=4)):
        name = {v: k for k, v in ALIASES.items()}.get(setting, setting) if draw(st.booleans()) else setting
        if setting == "batch":
            values = st.integers(1, 1000)  # the default samples per epoch
        elif setting in NAMES:
            values = st.sampled_from(NAMES[setting])
        else:
            values = valid_value(setting)
        space[name] = {"_type": "choice", "_value": draw(st.lists(values, min_size=1, max_size=4))}
    if "lr" not in space and "learning_rate" not in space and draw(st.booleans()):
        low = draw(st.floats(1e-6, 0.1))
        high = low * draw(st.floats(1.5, 100))
        space["learning_rate"] = draw(st.sampled_from([
            {"_type": "uniform", "_value": [low, high]}, {"_type": "loguniform", "_value": [low, high]},
            {"_type": "quniform", "_value": [low, high, (high - low) / draw(st.integers(1, 20))]}]))
    layers = draw(st.integers(0, MAX_LAYERS))
    if layers and draw(st.booleans()):  # the study's flat form: 0 = no layer, from the second layer on
        for i in range(layers):
            sizes = st.integers(1 if i == 0 else 0, MAX_WIDTH)
            offered = st.lists(sizes, min_size=1, max_size=3).filter(any)  # only 0s would end the stack here
            space[HIDDEN_KEYS[i]] = {"_type": "choice", "_value": draw(offered)}
    elif layers:
        branches = [{"_name": f"{depth} layers", **{HIDDEN_KEYS[i]: {"_type": "choice", "_value": draw(
            st.lists(st.integers(1, MAX_WIDTH), min_size=1, max_size=3))} for i in range(depth)}}
            for depth in range(1, layers + 1)]
        space[ARCH_KEY] = {"_type": "choice", "_value": branches}
    assume(space)
    return space


def a_point(draw, space: dict) -> dict:
    """One parameter set NNI could send for a normalized space (a range gives its low end)."""
    point = {}
    for key, entry in space.items():
        if key == ARCH_KEY:
            chosen = draw(st.sampled_from(entry["_value"]))
            point[key] = {k: (v if k == "_name" else draw(st.sampled_from(v["_value"]))) for k, v in chosen.items()}
        elif entry["_type"] == "choice":
            point[key] = draw(st.sampled_from(entry["_value"]))
        else:
            point[key] = entry["_value"][0]
    return point


@PROPERTY
@given(valid_spaces(), st.data())
def test_valid_spaces_load_unchanged_and_every_point_trains(tmp_path, space, data):
    path = write(tmp_path, json.dumps(space).encode())
    assert load_space(path) == space
    assert_usable_space(space)
    normalized = normalize_space(space)
    config = resolve({"func": "square"}, a_point(data.draw, normalized))
    assert_valid_config(config)
    choices = [e for k, e in normalized.items() if k != ARCH_KEY]
    if all(e["_type"] == "choice" for e in choices):
        networks = len(all_architectures(normalized)) if ARCH_KEY in normalized else 1
        assert grid_size(normalized) == networks * math.prod(len(e["_value"]) for e in choices)


# =================================================================================================
# 3. The parameters a trial receives from NNI
# =================================================================================================

NESTED_KEYS = st.sampled_from([ARCH_KEY, POINT_KEY])  # NNI's nested choices: the network, a resumed grid's point
PARAMS = keyed(SPACE_KEYS | NESTED_KEYS | st.sampled_from(["hidden", "func"]), lambda k: st.one_of(
    parameter_value(k), keyed(st.sampled_from([*HIDDEN_KEYS, "_name"]) | SPACE_KEYS, parameter_value, max_size=4)))


@PROPERTY
@given(PARAMS | JSON_VALUES)
@example([])  # found: [], 0 and "" passed as "no parameters"
@example({ARCH_KEY: {"_name": "x", "learning_rate": 5}})  # found: settings smuggled inside arch
@example({"act": "Tanh", "act_func": "ReLU"})  # found: one setting twice, the last silently kept
@example({ARCH_KEY: {"_name": "x", "hidden_size_1": 8}, "hidden_size_1": 16})
@example({"learning_rate": 10**400})
def test_trial_parameters_give_a_valid_config_or_a_clear_rejection(params):
    fixed = {"func": "square", "epochs": 5}
    outcome = attempt(resolve, fixed, params)
    if isinstance(outcome, Exception):
        assert isinstance(outcome, ConfigError)
        return
    assert_valid_config(outcome)
    assert params is None or isinstance(params, dict)  # [] or 0 are not "no parameters"
    entries = []
    for key, value in (params or {}).items():
        if key in (ARCH_KEY, POINT_KEY):
            assert isinstance(value, dict)
            assert key != ARCH_KEY or set(value) <= {"_name", *HIDDEN_KEYS}, value  # arch holds sizes only
            entries += [(k, v) for k, v in value.items() if k != "_name"]
        else:
            entries.append((key, value))
    assert {k for k, _ in entries} <= set(searchable_names())  # no extra keys
    settings_ = [ALIASES.get(k, k) for k, _ in entries]
    assert len(settings_) == len(set(settings_)), f"one setting sent twice: {params}"
    flat = dict(entries)
    sizes = [flat.pop(k) for k in HIDDEN_KEYS if k in flat]
    if sizes:
        assert outcome.hidden == parse_hidden(sizes)
    for key, value in flat.items():  # every value taken as sent, none dropped
        setting = ALIASES.get(key, key)
        if setting not in ("batch", "samples"):
            assert getattr(outcome, setting) == getattr(alone(setting, value), setting)


def searched_settings(config: TrainConfig, names: list[str]) -> dict:
    return {n: (config.hidden if n == "hidden" else getattr(config, n)) for n in names}


@PROPERTY
@given(configs(), st.lists(st.sampled_from(SEARCHABLE_FIELDS), unique=True), st.booleans())
def test_settings_and_nni_parameters_round_trip(config, names, nested):
    settings_ = searched_settings(config, names)
    params = settings_to_params(settings_)
    assert params_to_settings(params) == settings_
    if nested and "hidden" in settings_:
        sizes = {k: params.pop(k) for k in HIDDEN_KEYS if k in params}
        params[ARCH_KEY] = {"_name": f"{len(sizes)} layers", **sizes}
    fixed = {k: v for k, v in config.to_dict().items() if k not in names}
    assert resolve(fixed, params) == config


@PROPERTY
@given(configs())
def test_the_trial_command_round_trips_the_fixed_settings(config):
    argv = shlex.split(trial_command(config.to_dict(), python="python"))
    pairs = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
    assert resolve(read_set_pairs(pairs), None) == config


@PROPERTY
@given(st.lists(st.text(max_size=16) | st.sampled_from(["epochs=" + LONG_NUMBER, "lr=" + DEEP_JSON, "=", "a=b=c"]),
                max_size=4))
def test_trial_set_pairs_give_settings_or_a_clear_error(pairs):
    fixed = attempt(read_set_pairs, pairs)
    if isinstance(fixed, Exception):
        return
    assert isinstance(fixed, dict)
    attempt(resolve, fixed, None)


# =================================================================================================
# 4. Experiment and trial ids on the command line
# =================================================================================================

HOSTILE_IDS = ["..", ".", "../outside", f"../outside/{RECORDED_ID}", "/etc/passwd", "/", "~", "latest/..",
               f"{RECORDED_ID}/..", f"{RECORDED_ID}\n", f"{RECORDED_ID}/db", "escape", "_latest", "%2e%2e", "",
               " ", "\x00", "a" * 65, "-", "--help", "latest", "best", "LATEST", f"./{RECORDED_ID}", "C:\\x"]
IDS = st.one_of(st.text(max_size=70), st.sampled_from(HOSTILE_IDS), st.from_regex(r"[A-Za-z0-9_-]{1,64}",
                                                                                    fullmatch=True))


@pytest.fixture
def workdir(tmp_path):
    """The recorded experiment in `work`; a copy outside it, and a link to that copy inside (like NNI's _latest)."""
    work = copy_recorded(tmp_path, "work")
    outside = copy_recorded(tmp_path, "outside")
    (work / "escape").symlink_to(outside / RECORDED_ID, target_is_directory=True)
    (work / "_latest").symlink_to(outside / RECORDED_ID, target_is_directory=True)
    return work


@PROPERTY
@given(IDS)
@example(f"{RECORDED_ID}\n")  # found: "^…$" matched before a final newline
def test_check_id_allows_only_a_plain_name_in_the_work_folder(tmp_path, value):
    outcome = attempt(check_id, value)
    if isinstance(outcome, Exception):
        assert_clear(outcome, "not a valid experiment id")
    else:
        assert outcome == value and re.fullmatch(r"[A-Za-z0-9_-]{1,64}", value, re.ASCII)
        assert (tmp_path / value).resolve().parent == tmp_path.resolve()


@PROPERTY
@given(IDS)
def test_resolve_id_names_an_experiment_of_the_work_folder_or_fails_clearly(workdir, value):
    with files_touched() as touched:
        outcome = attempt(resolve_id, workdir, value)
    assert_only_inside(touched, workdir)
    if not isinstance(outcome, Exception):
        assert outcome == RECORDED_ID and outcome in experiment_ids(workdir)


def test_the_file_check_sees_what_it_should(workdir):
    """The check itself: a read beside the work folder and a write anywhere outside it are caught."""
    outside = workdir.parent / "outside" / RECORDED_ID / "funcapprox" / "run.json"
    for touch in (outside.read_text, lambda: (workdir.parent / "new.txt").write_text("x")):
        with files_touched() as touched:
            touch()
        with pytest.raises(AssertionError):
            assert_only_inside(touched, workdir)
    with files_touched() as touched:
        (workdir / RECORDED_ID / "funcapprox" / "run.json").read_text()
    assert touched
    assert_only_inside(touched, workdir)


COMMANDS = st.sampled_from(["results", "plot", "report"])
TRIAL_IDS = IDS | st.sampled_from(["best", "ud7Qq", "wcNBM", "njzKx", "E3Yy2"])


@CLI_PROPERTY
@given(COMMANDS, IDS | st.just(RECORDED_ID), TRIAL_IDS)
@example("plot", RECORDED_ID, "best")  # each command once where it writes its files
@example("report", "latest", "")
@example("results", f"../outside/{RECORDED_ID}", "")
@example("plot", "escape", "best")  # a link to the copy outside the work folder
def test_commands_with_any_ids_touch_only_the_work_folder(workdir, command, experiment, trial):
    args = [command, f"--workdir={workdir}", f"--experiment={experiment}"]
    if command == "plot":
        args.append(f"--trial={trial}")
    with files_touched() as touched:
        result = invoke(args)
    assert_only_inside(touched, workdir)
    if result.exit_code == 0:
        assert experiment in (RECORDED_ID, "latest")


# =================================================================================================
# 5. `--set NAME=VALUE` pairs of `funcapprox search`
# =================================================================================================

SET_NAMES = st.sampled_from([*searchable_names(), "hidden", "func", ARCH_KEY]) | st.text(max_size=6)
SET_PAIRS = st.lists(st.one_of(
    st.text(max_size=16),
    st.tuples(SET_NAMES, st.one_of(st.text(max_size=10), JSON_VALUES.map(json.dumps))).map("=".join),
), max_size=4)


@PROPERTY
@given(SET_PAIRS)
def test_set_pairs_give_valid_settings_or_a_clear_error(pairs):
    outcome = attempt(parse_set_values, pairs)
    if not isinstance(outcome, Exception):
        assert set(outcome) <= set(field_names())
        assert_valid_config(TrainConfig.from_dict({"func": "square", **outcome}))


@PROPERTY
@given(configs(), st.lists(st.sampled_from(SEARCHABLE_FIELDS), unique=True, min_size=1))
def test_set_pairs_round_trip(config, names):
    if {"batch", "samples"} & set(names):  # --set is checked against the defaults: give both or neither
        names = [*{*names, "batch", "samples"}]
    settings_ = searched_settings(config, names)
    pairs = [f"{k}={json.dumps(v)}" for k, v in settings_to_params(settings_).items()]
    if too_big({"func": "square", **settings_}):  # --set is checked with the defaults for the rest
        with pytest.raises(ConfigError, match="memory"):
            parse_set_values(pairs)
        return
    assert parse_set_values(pairs) == settings_


@pytest.mark.parametrize("pair", ["epochs=" + LONG_NUMBER, "lr=" + DEEP_JSON], ids=["long-number", "deep-json"])
def test_set_pairs_with_json_python_cannot_read_are_a_clear_error(pair):
    with pytest.raises(ConfigError):
        parse_set_values([pair])


def test_set_pairs_giving_the_hidden_sizes_twice_are_a_clear_error():
    with pytest.raises(ConfigError, match="hidden sizes twice"):
        parse_set_values(["hidden=16,16,16", "hidden_size_1=8"])
