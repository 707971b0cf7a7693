"""One frozen configuration for a training run: every default lives here."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from dataclasses import dataclass
from typing import Any, Mapping

from .errors import ConfigError

FUNCTIONS = ("square", "oscillator")
FUNCTION_ALIASES = {"quadratic": "square"}  # the study's code calls square "quadratic"
ACTIVATIONS = ("ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Softplus")
OPTIMIZERS = ("SGD", "Adam", "RMSprop")
LOSSES = ("SmoothL1Loss", "MSELoss")
INITS = ("spread", "default")  # spread: first-layer kinks tiled over [0, 1] (model.spread_init); default: PyTorch's
LR_SCHEDULES = ("cosine", "constant")  # cosine: from lr down to 0 over the run
# After training, refine.py's Levenberg–Marquardt (variable projection, unit flips and swaps): "auto" where it was
# measured better (REFINE_AUTO_WIDTH), "lm" always, "none" never.
REFINES = ("auto", "lm", "none")
REFINE_AUTO_WIDTH = 32  # auto: one hidden layer of at most this many units, a linear output, not a data file
DEFAULT_EPOCHS = {"square": 250, "oscillator": 1000}  # the study's budgets
EXPRESSION_EPOCHS = 1000  # a formula of the user's: the oscillator's budget
DEFAULT_DOMAIN = (0.0, 1.0)
DATA_SUFFIXES = (".csv", ".txt", ".npy", ".npz")  # samples.SUFFIXES: a --func ending so names a data file
DEFAULT_HOLDOUT = 0.2  # the share of a data file's points held out for the metric
DATA_ONLY = ("holdout", "data")  # settings of a data file alone: not in a function's config.json, never searched
MAX_LAYERS = 3
MAX_WIDTH = 4096  # far above the study's 256; stops a typo from eating the machine's memory
MAX_EPOCHS = 1_000_000
MAX_SAMPLES = 10_000_000
MAX_SEEDS = 64
MAX_MEMORY = 2 * 1024**3  # bytes the engine may need for one run (memory_estimate); far above the study's ~40 MB
FLOAT_BYTES = 4  # float32
EVAL_POINTS = 1001 + 101  # train.FINE_POINTS (max error) and train.METRIC_POINTS (metric): the evaluation grids


def _canonical(value: Any, names: tuple[str, ...], what: str) -> str:
    """Match `value` to one of `names`, ignoring case."""
    if isinstance(value, str):
        for name in names:
            if name.lower() == value.strip().lower():
                return name
    raise ConfigError(f"{what} must be one of {', '.join(names)}, not {value!r}")


def is_data_file(func: Any) -> bool:
    return isinstance(func, str) and func.strip().lower().endswith(DATA_SUFFIXES)


def canonical_function(value: Any) -> str:
    """A built-in's name, a data file's absolute path, or the normalised text of an expression in x
    (funcapprox.expression)."""
    if is_data_file(value):
        return os.path.abspath(value.strip())
    if isinstance(value, str) and value.strip().lower() in FUNCTION_ALIASES:
        return FUNCTION_ALIASES[value.strip().lower()]
    if not isinstance(value, str) or (value.strip().isidentifier() and value.strip() not in ("x", "pi", "e")):
        try:
            return _canonical(value, FUNCTIONS, "func")
        except ConfigError as exc:  # a lone name that is not a built-in ("cubic")
            raise ConfigError(f"{exc} (or an expression in x, like sin(6*x))") from None
    from .expression import parse_expression  # numpy, only for a formula

    try:
        return parse_expression(value).text
    except ConfigError as exc:
        raise ConfigError(f"func {value.strip()[:60]!r}: {exc}") from None


def is_builtin(func: str) -> bool:
    return func in FUNCTIONS


def data_name(func: str) -> str:
    """A data file as people know it: its file name, without the content address of the experiment's copy."""
    name = os.path.basename(func)
    return re.sub(r"^[0-9a-f]{12}-", "", name) if "/.trial-code/data/" in func.replace(os.sep, "/") else name


def function_text(func: str, domain: Any = DEFAULT_DOMAIN, limit: int | None = None) -> str:
    """The function as people read it: its name, formula or data file, with its domain when that is not [0, 1]
    (a data file's is its range of x), cut to `limit` characters (a table column) with an ellipsis."""
    low, high = domain
    if is_data_file(func):
        text = data_name(func)
    else:
        text = func if (low, high) == DEFAULT_DOMAIN else f"{func} on [{low:g}, {high:g}]"
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


def parse_hidden(value: Any) -> tuple[int, ...]:
    """Hidden sizes as the active layers: "64,0,0", [64, 0, 0] and (64,) all give (64,).

    A 0 ends the stack, so a size after a 0 ({16, 0, 8}) is no network at all.
    """
    if isinstance(value, str):
        parts = [p.strip() for p in value.replace("{", "").replace("}", "").split(",")]
        try:
            # ASCII digits only: int() alone would also take "1_6" and other scripts' digits ("١٢")
            if not all(re.fullmatch(r"[+-]?[0-9]+", p) for p in parts):
                raise ValueError(value)
            sizes = [int(p) for p in parts]  # ValueError past 4,300 digits
        except ValueError:
            raise ConfigError(
                f"hidden must be 1 to {MAX_LAYERS} comma-separated whole numbers, like 16,16,16; "
                f"got {value!r}"
            ) from None
    elif isinstance(value, (list, tuple)):
        sizes = list(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        sizes = [value]  # one layer, as `--set hidden=64` reads
    else:
        raise ConfigError(f"hidden must be a list of layer sizes like [16, 16, 16], not {value!r}")
    if not 1 <= len(sizes) <= MAX_LAYERS:
        raise ConfigError(f"hidden takes 1 to {MAX_LAYERS} layer sizes, got {len(sizes)}: {value!r}")
    for size in sizes:
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_WIDTH:
            raise ConfigError(f"hidden sizes must be whole numbers from 0 to {MAX_WIDTH}, got {size!r}")
    if sizes[0] == 0:
        raise ConfigError("hidden: the first layer needs at least 1 unit")
    active = tuple(s for s in sizes if s)
    if list(active) != sizes[: len(active)]:
        raise ConfigError(f"hidden: a 0 ends the stack, so no layer may follow it: {value!r}")
    return active


def _domain(value: Any) -> tuple[float, float]:
    if value == DEFAULT_DOMAIN or value == list(DEFAULT_DOMAIN):
        return DEFAULT_DOMAIN  # the built-ins' number-for-number path needs no numpy
    from .expression import parse_domain

    return parse_domain(value)


def _int(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{name} must be a whole number from {low} to {high}, not {value!r}")
    return value


def _positive_float(name: str, value: Any) -> float:
    try:
        number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
    except OverflowError:  # an int too large for a float (JSON allows 1 followed by 400 zeros)
        number = math.inf
    if not (math.isfinite(number) and number > 0):
        raise ConfigError(f"{name} must be a number greater than 0, not {value!r}")
    return number


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run's numbers; same config → same numbers."""

    func: str = "oscillator"
    hidden: tuple[int, ...] = (16, 16, 16)
    act: str = "Sigmoid"
    optimizer: str = "Adam"
    lr: float = 0.01
    loss: str = "MSELoss"
    epochs: int | None = None  # None → the function's default (DEFAULT_EPOCHS)
    samples: int = 1000  # fresh uniform x drawn per epoch
    batch: int = 100
    seed: int = 12
    seeds: int = 1  # train with seeds seed, seed+1, …; the metric is then the median (see train.py)
    output_act: bool = False  # True reproduces the study: activation after the output layer too
    # Measured to let single layers of 12-16 units fit the oscillator (README, "Small networks");
    # init="default" with lr_schedule="constant" is the study's trainer.
    init: str = "spread"
    lr_schedule: str = "cosine"
    refine: str = "auto"
    domain: tuple[float, float] = DEFAULT_DOMAIN  # the x the function is learned on (mapped to [0, 1] inside)
    # A data file only: the share of its points held out for the metric, and the sha256 of its bytes (filled in
    # when the file is read; given, as a run's saved config gives it, the file must still hold that data).
    holdout: float = DEFAULT_HOLDOUT
    data: str | None = None

    def __post_init__(self) -> None:
        func = canonical_function(self.func)
        set_ = object.__setattr__
        set_(self, "func", func)
        set_(self, "hidden", parse_hidden(self.hidden))
        set_(self, "act", _canonical(self.act, ACTIVATIONS, "act"))
        set_(self, "optimizer", _canonical(self.optimizer, OPTIMIZERS, "optimizer"))
        set_(self, "loss", _canonical(self.loss, LOSSES, "loss"))
        set_(self, "init", _canonical(self.init, INITS, "init"))
        set_(self, "lr_schedule", _canonical(self.lr_schedule, LR_SCHEDULES, "lr_schedule"))
        set_(self, "refine", _canonical(self.refine, REFINES, "refine"))
        set_(self, "lr", _positive_float("lr", self.lr))
        set_(self, "domain", _domain(self.domain))
        if is_data_file(func):
            self._read_data()
        elif self.data is not None or self.holdout != DEFAULT_HOLDOUT:
            raise ConfigError("holdout and data apply to a data file only (--func FILE.csv, .txt, .npy or .npz)")
        elif not is_builtin(func):
            from .expression import check_finite, parse_expression

            check_finite(parse_expression(func), self.domain)
        epochs = DEFAULT_EPOCHS.get(func, EXPRESSION_EPOCHS) if self.epochs is None else self.epochs
        set_(self, "epochs", _int("epochs", epochs, 1, MAX_EPOCHS))
        _int("samples", self.samples, 1, MAX_SAMPLES)
        _int("batch", self.batch, 1, MAX_SAMPLES)
        if self.batch > self.samples:
            raise ConfigError(f"batch ({self.batch}) cannot be larger than samples per epoch ({self.samples})")
        _int("seed", self.seed, 0, 2**63 - 1 - MAX_SEEDS)
        _int("seeds", self.seeds, 1, MAX_SEEDS)
        if not isinstance(self.output_act, bool):
            raise ConfigError(f"output_act must be true or false, not {self.output_act!r}")
        check_memory(self)

    def _read_data(self) -> None:
        from .samples import check_holdout, load_cached

        samples = load_cached(self.func)
        if self.data is not None and self.data != samples.digest:
            raise ConfigError(f"data file {self.func} no longer holds the data this run used (its sha256 was "
                              f"{self.data[:12]}…, is {samples.digest[:12]}…)")
        if self.domain != DEFAULT_DOMAIN and self.domain != samples.domain:
            low, high = samples.domain
            raise ConfigError(f"--domain does not apply to a data file: its domain is its range of x, "
                              f"[{low:g}, {high:g}]")
        object.__setattr__(self, "data", samples.digest)
        object.__setattr__(self, "domain", samples.domain)
        object.__setattr__(self, "holdout", check_holdout(self.holdout))

    @property
    def refines(self) -> bool:
        """Whether training ends with refine.py's refinement."""
        if self.refine == "auto":
            return (len(self.hidden) == 1 and self.hidden[0] <= REFINE_AUTO_WIDTH and not self.output_act
                    and not self.is_data)
        return self.refine == "lm"

    @property
    def is_data(self) -> bool:
        return is_data_file(self.func)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "the configuration") -> TrainConfig:
        """Build from plain data (JSON, NNI parameters); unknown keys are an error naming `source`."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source} must be a JSON object of settings, not {type(data).__name__}")
        names = field_names()
        unknown = sorted(str(k) for k in data if k not in names)
        if unknown:
            raise ConfigError(
                f"unknown setting {unknown[0]!r} in {source}; known settings: {', '.join(names)}"
            )
        try:
            return cls(**data)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in field_names()}
        data["hidden"] = list(self.hidden)
        data["domain"] = list(self.domain)
        if not self.is_data:  # the built-ins' and formulas' config.json as before
            for name in DATA_ONLY:
                del data[name]
        return data

    @property
    def label(self) -> str:
        """The function in a few safe characters, for file names and titles: square, or sin-6-x-…"""
        if is_builtin(self.func) and self.domain == DEFAULT_DOMAIN:
            return self.func
        if self.is_data:
            return "-".join(re.findall(r"[A-Za-z0-9.]+", data_name(self.func)))[:40].strip("-.") or "data"
        slug = "-".join(re.findall(r"[A-Za-z0-9.]+", self.func))[:40].strip("-.") or "f"
        return slug if self.domain == DEFAULT_DOMAIN else f"{slug}-on-{self.domain[0]:g}-{self.domain[1]:g}"

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with `changes`; epochs stay as resolved, even when func changes."""
        return dataclasses.replace(self, **changes)

    @property
    def arch(self) -> str:
        """The study's notation, always three sizes: {64,0,0}."""
        sizes = list(self.hidden) + [0] * (MAX_LAYERS - len(self.hidden))
        return "{" + ",".join(str(s) for s in sizes) + "}"

    @property
    def n_params(self) -> int:
        widths = (1, *self.hidden, 1)
        return sum(i * o + o for i, o in zip(widths[:-1], widths[1:]))


def field_names() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(TrainConfig))


# group.py trains networks of one depth whose widths round up to the same rung here as one padded network
# (the units it adds are masked): below a few dozen units a step costs its overhead, not its arithmetic.
PAD_WIDTHS = (16, 32)


def padded_hidden(hidden: tuple[int, ...]) -> tuple[int, ...]:
    """The network a configuration of `hidden` trains in within a batched step: each width rounded up to
    the next of PAD_WIDTHS (wider layers as they are)."""
    return tuple(next((rung for rung in PAD_WIDTHS if width <= rung), width) for width in hidden)


def group_key(config: TrainConfig) -> str:
    """Configurations with equal keys can train as one batched step (group.py): every setting but
    PER_COPY, the network as padded_hidden, as JSON (the search counts them in the grid, the warm
    worker gathers trials by them)."""
    return json.dumps([[name, padded_hidden(config.hidden) if name == "hidden" else getattr(config, name)]
                       for name in field_names() if name not in PER_COPY])


def memory_estimate(config: TrainConfig) -> dict[str, int]:
    """Bytes the engine (engine.py, train.py) needs for `config`, by what drives each part.

    A cheap, generous estimate, measured against the trainer's peak memory: every seed's copy of
    the network holds its float32 parameters, their gradients, two optimizer states (Adam's) and,
    while it is built, the model's own tensors, and an evaluation runs every layer on the two grids
    ("hidden"); a training step keeps each layer's activations for the backward pass and as many
    gradients and temporaries again ("batch"); an epoch draws `samples` inputs per seed at once and
    computes their targets in float64 with its temporaries, about 16 floats a sample ("samples"),
    and splits them into one pair of tensor views per step, some 600 bytes each ("steps").
    """
    units = sum(config.hidden) + 1  # every layer's outputs, the output layer's one included
    per_seed = {
        "hidden": 5 * config.n_params + 2 * EVAL_POINTS * units,
        "batch": 3 * config.batch * units,
        "samples": 16 * config.samples,
    }
    parts = {name: FLOAT_BYTES * config.seeds * n for name, n in per_seed.items()}
    parts["steps"] = 600 * -(-config.samples // config.batch)
    return parts


def check_memory(config: TrainConfig) -> None:
    """Refuse, before anything is trained, a configuration whose memory would exceed MAX_MEMORY."""
    parts = memory_estimate(config)
    total = sum(parts.values())
    if total <= MAX_MEMORY:
        return
    advice = {
        "hidden": f"narrower hidden layers (the widest has {max(config.hidden)})",
        "batch": f"a smaller batch ({config.batch})",
        "samples": f"fewer samples ({config.samples})",
        "steps": f"a larger batch ({config.batch}) or fewer samples ({config.samples})",
    }
    fixes = [advice[name] for name, part in sorted(parts.items(), key=lambda kv: -kv[1]) if part >= total / 4]
    if config.seeds > 1 and parts["steps"] < total / 2:
        fixes.append(f"fewer seeds ({config.seeds})")
    raise ConfigError(
        f"this configuration would need about {total / 2**30:.1f} GiB of memory to train, more than the "
        f"{MAX_MEMORY / 2**30:g} GiB limit; use {' or '.join(fixes)}"
    )


def check_value(name: str, value: Any) -> Any:
    """One setting's value checked on its own, as the configuration would store it.

    Not against the other settings, which are at their smallest (one unit, one seed, batch 1,
    samples 1; samples as many as the batch when batch is checked): whether a combination fits in
    memory is for the whole configuration to say.
    """
    batch = value if name == "batch" and type(value) is int and 1 <= value <= MAX_SAMPLES else MAX_SAMPLES
    others = {"batch": 1, "samples": batch if name == "batch" else 1, "hidden": (1,), "seeds": 1}
    others.pop(name, None)
    return getattr(TrainConfig(**others, **{name: value}), name)


# --- the settings codec: NNI's parameter names and values ⇄ TrainConfig fields ------------------
# The one place that knows the study's names (act_func, learning_rate, hidden_size_N), the
# nested choices hidden sizes arrive in (arch, a resumed grid's point), and `--set` text.

# The study's names for configuration fields.
ALIASES = {"act_func": "act", "learning_rate": "lr"}

# The settings each copy of a batched step may have for itself (group.py); every other setting (including
# any added later) must be equal for configurations to share a step.
PER_COPY = frozenset({"lr", "lr_schedule", "loss", "seed", "seeds", "init"})

HIDDEN_KEYS = tuple(f"hidden_size_{i}" for i in range(1, MAX_LAYERS + 1))

ARCH_KEY = "arch"  # the nested choice that holds the hidden sizes

POINT_KEY = "point"  # the nested choice of a resumed grid: one branch per point still to run (resume.py)


def parameter_name(setting: str) -> str:
    """A TrainConfig field under the name a search space gives it (lr → learning_rate)."""
    return {v: k for k, v in ALIASES.items()}.get(setting, setting)


def searchable_names() -> tuple[str, ...]:
    """Names a search space may use: the study's, and configuration fields except func."""
    fields = [f for f in field_names() if f not in ("func", "hidden", "domain", *DATA_ONLY)]
    return (*ALIASES, *HIDDEN_KEYS, *fields)


def params_to_settings(params: Any, source: str = "the trial's parameters") -> dict[str, Any]:
    """NNI parameters (possibly nested) as TrainConfig settings.

    Anyone who reaches NNI's port can submit a trial's parameters, so an unknown name,
    a setting given twice (act_func and act) and anything but hidden sizes inside arch
    are errors; the values themselves are TrainConfig's to check.
    """
    if not isinstance(params, dict):
        raise ConfigError(f"{source} must be a JSON object, not {type(params).__name__}")
    entries: list[tuple[str, Any, str | None]] = []  # (name, value, the nested choice it came in)
    for key, value in params.items():
        if key in (ARCH_KEY, POINT_KEY) and isinstance(value, dict):
            entries += [(k, v, key) for k, v in value.items() if k != "_name"]
        else:
            entries.append((key, value, None))
    known = searchable_names()
    settings: dict[str, Any] = {}
    sizes: dict[int, Any] = {}
    given: dict[str, str] = {}  # setting → the name that gave it
    for key, value, within in entries:
        if key not in known:
            raise ConfigError(f"unknown parameter {key!r} in {source}; known parameters: {', '.join(known)}")
        if within == ARCH_KEY and key not in HIDDEN_KEYS:
            raise ConfigError(f"{source}: {ARCH_KEY!r} holds only hidden sizes, not {key!r}")
        setting = key if key in HIDDEN_KEYS else ALIASES.get(key, key)
        name = f"{within}.{key}" if within else key
        if setting in given:
            raise ConfigError(f"{source}: {setting} is given twice, as {given[setting]!r} and {name!r}")
        given[setting] = name
        if key in HIDDEN_KEYS:
            sizes[HIDDEN_KEYS.index(key)] = value
        else:
            settings[setting] = value
    if sizes:
        if sorted(sizes) != list(range(len(sizes))):
            raise ConfigError(f"{source}: hidden sizes must start at hidden_size_1 with no gaps")
        settings["hidden"] = parse_hidden([sizes[i] for i in range(len(sizes))])
    return settings


def settings_to_params(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The reverse, flat: configuration settings under the study's parameter names."""
    params = {parameter_name(k): v for k, v in settings.items() if k != "hidden"}
    for i, size in enumerate(settings.get("hidden", ())):
        params[HIDDEN_KEYS[i]] = size
    return params


def read_set_pairs(pairs: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """`--set NAME=VALUE` pairs, each value JSON where it reads as JSON, else its text (the one --set parser)."""
    raw: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set takes NAME=VALUE, like act_func=Tanh; got {pair!r}")
        try:
            raw[key.strip()] = json.loads(text)
        except (ValueError, RecursionError):  # not JSON (or JSON Python will not read): the text itself
            raw[key.strip()] = text.strip()
    return raw


def parse_set_values(pairs: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """`--set act_func=Tanh` pairs as configuration settings (study or field names)."""
    raw = read_set_pairs(pairs)
    hidden = raw.pop("hidden", None)
    settings = params_to_settings(raw, "--set")
    if hidden is not None:
        if "hidden" in settings:
            raise ConfigError("--set gives the hidden sizes twice (hidden and hidden_size_N); give one")
        settings["hidden"] = hidden
    TrainConfig.from_dict({"func": "square", **settings}, source="--set")  # check values now, not per trial
    return settings
