"""Search spaces: the study's two stages, loading and checking NNI search-space JSON,
and turning the parameters a trial receives into configuration settings.

Parameter names are the study's (act_func, learning_rate, hidden_size_1 …); any
other TrainConfig field (batch, epochs, seed, …) may be searched under its own name.
"""

from __future__ import annotations

import json
import math
from itertools import product
from pathlib import Path
from typing import Any, Mapping

from .config import MAX_LAYERS, field_names, parse_hidden
from .errors import ConfigError

STAGES = ("nonarch", "arch")
SPACES_DIR = Path(__file__).resolve().parent.parent / "search_spaces"
# The study's names for configuration fields.
ALIASES = {"act_func": "act", "learning_rate": "lr"}
HIDDEN_KEYS = tuple(f"hidden_size_{i}" for i in range(1, MAX_LAYERS + 1))
ARCH_KEY = "arch"  # the nested choice that holds the hidden sizes
POINT_KEY = "point"  # the nested choice of a resumed grid: one branch per point still to run (resume.py)
NNI_TYPES = {
    "choice", "randint", "uniform", "quniform", "loguniform", "qloguniform",
    "normal", "qnormal", "lognormal", "qlognormal",
}
GRID_TYPES = {"choice", "randint", "quniform", "qloguniform"}  # finite under GridSearch


def searchable_names() -> tuple[str, ...]:
    """Names a search space may use: the study's, and configuration fields except func."""
    fields = [f for f in field_names() if f not in ("func", "hidden")]
    return (*ALIASES, *HIDDEN_KEYS, *fields)


def default_space_path(stage: str) -> Path:
    return SPACES_DIR / f"{stage}.json"


def load_space(path: Path | str) -> dict[str, Any]:
    """Read and check a search-space JSON file; every error names the file and the key."""
    path = Path(path)
    try:
        space = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"search space {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read search space {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"search space {path} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    check_space(space, str(path))
    return space


def check_space(space: Any, source: str) -> None:
    if not isinstance(space, dict) or not space:
        raise ConfigError(f"search space {source} must be a non-empty JSON object of parameters")
    _check_entries(space, source, top=True)


def _check_entries(entries: Mapping[str, Any], source: str, top: bool) -> None:
    known = searchable_names()
    for key, spec in entries.items():
        if key == "_name" and not top:
            continue
        if key == ARCH_KEY and top:
            _check_arch(spec, source)
            continue
        if key not in known:
            raise ConfigError(
                f"search space {source}: unknown parameter {key!r}; known parameters: {', '.join(known)}"
            )
        if not isinstance(spec, dict) or set(spec) != {"_type", "_value"}:
            raise ConfigError(f'search space {source}: {key!r} must be {{"_type": …, "_value": […]}}')
        if spec["_type"] not in NNI_TYPES:
            raise ConfigError(
                f"search space {source}: {key!r} has unknown _type {spec['_type']!r}; "
                f"NNI knows {', '.join(sorted(NNI_TYPES))}"
            )
        values = spec["_value"]
        if not isinstance(values, list) or not values:
            raise ConfigError(f"search space {source}: {key!r} needs a non-empty _value list")
        if spec["_type"] == "choice":
            if any(isinstance(v, (dict, list)) for v in values):
                raise ConfigError(
                    f"search space {source}: {key!r} holds a nested choice, which only {ARCH_KEY!r} may"
                )
        else:
            _check_numeric(key, spec["_type"], values, source)


def _check_numeric(key: str, kind: str, values: list, source: str) -> None:
    """The _value shapes NNI accepts: [low, high] or [low, high, q], or [mu, sigma] or [mu, sigma, q]."""
    where = f"search space {source}: {key!r} ({kind})"
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
        raise ConfigError(f"{where} _value must be finite numbers")
    quantized = kind.startswith("q")
    if len(values) != (3 if quantized else 2):
        form = "[mu, sigma" if "normal" in kind else "[low, high"
        raise ConfigError(f"{where} _value must be {form}{', q' if quantized else ''}], got {values}")
    if "normal" in kind:
        if values[1] <= 0:
            raise ConfigError(f"{where} needs sigma > 0, got {values}")
    elif not values[0] < values[1]:
        raise ConfigError(f"{where} needs low < high, got {values}")
    if quantized and values[2] <= 0:
        raise ConfigError(f"{where} needs q > 0, got {values}")
    if kind in ("loguniform", "qloguniform") and values[0] <= 0:
        raise ConfigError(f"{where} needs low > 0 for a log scale, got {values}")


def _check_arch(spec: Any, source: str) -> None:
    if not isinstance(spec, dict) or spec.get("_type") != "choice" or not isinstance(spec.get("_value"), list):
        raise ConfigError(f"search space {source}: {ARCH_KEY!r} must be a nested choice")
    if not spec["_value"]:
        raise ConfigError(f"search space {source}: {ARCH_KEY!r} needs at least one option")
    for branch in spec["_value"]:
        if not isinstance(branch, dict) or "_name" not in branch:
            raise ConfigError(f"search space {source}: each {ARCH_KEY!r} option needs a _name and its sizes")
        extra = sorted(k for k in branch if k != "_name" and k not in HIDDEN_KEYS)
        if extra:
            raise ConfigError(f"search space {source}: {ARCH_KEY!r} options hold only hidden sizes, not {extra[0]!r}")
        _check_entries(branch, source, top=False)


def arch_space(sizes: list[list[int]]) -> dict[str, Any]:
    """A nested-choice space holding every valid network once: one branch per depth.

    `sizes[i]` are the choices for layer i+1 (zeros are ignored: depth is the branch).
    """
    branches = []
    for depth in range(1, len(sizes) + 1):
        branch: dict[str, Any] = {"_name": f"{depth} hidden layer{'s' if depth > 1 else ''}"}
        for i in range(depth):
            options = [s for s in sizes[i] if s]
            if not options:
                break
            branch[HIDDEN_KEYS[i]] = {"_type": "choice", "_value": options}
        else:
            branches.append(branch)
    return {ARCH_KEY: {"_type": "choice", "_value": branches}}


def normalize_space(space: dict[str, Any]) -> dict[str, Any]:
    """Rewrite flat hidden_size_N choices (the study's arch.json, with 0 = no layer) as
    the nested choice, so no invalid network ({n1,0,n3}) or duplicate is ever scheduled."""
    flat = [k for k in HIDDEN_KEYS if k in space]
    if not flat:
        return space
    if flat != list(HIDDEN_KEYS[: len(flat)]) or any(space[k]["_type"] != "choice" for k in flat):
        raise ConfigError(
            "hidden sizes must be searched as choices of hidden_size_1, then _2, then _3 "
            f"(or as a nested {ARCH_KEY!r} choice); got {', '.join(flat)}"
        )
    rest = {k: v for k, v in space.items() if k not in HIDDEN_KEYS}
    return {**arch_space([space[k]["_value"] for k in flat]), **rest}


def _grid_values(spec: dict[str, Any]) -> int | None:
    kind, values = spec["_type"], spec["_value"]
    if kind == "choice":
        counts = [grid_size(v) if isinstance(v, dict) else 1 for v in values]
        return None if None in counts else sum(counts)
    if kind == "randint":
        return max(0, int(values[1]) - int(values[0]))
    if kind in ("quniform", "qloguniform"):
        low, high, q = values[:3]
        multiples = {min(max(k * q, low), high) for k in range(math.floor(low / q), math.ceil(high / q) + 1)}
        return len({round(v, 12) for v in multiples})
    return None


def grid_size(space: dict[str, Any]) -> int | None:
    """Points GridSearch will run, or None if a parameter is continuous (no finite grid)."""
    total = 1
    for key, spec in space.items():
        if key == "_name":
            continue
        n = _grid_values(spec)
        if n is None:
            return None
        total *= n
    return total


def params_to_settings(params: Any, source: str = "the trial's parameters") -> dict[str, Any]:
    """NNI parameters (possibly nested) as TrainConfig settings; unknown names are an error."""
    if not isinstance(params, dict):
        raise ConfigError(f"{source} must be a JSON object, not {type(params).__name__}")
    flat: dict[str, Any] = {}
    for key, value in params.items():
        if key in (ARCH_KEY, POINT_KEY) and isinstance(value, dict):
            flat.update({k: v for k, v in value.items() if k != "_name"})
        else:
            flat[key] = value
    known = searchable_names()
    settings: dict[str, Any] = {}
    sizes: dict[int, Any] = {}
    for key, value in flat.items():
        if key not in known:
            raise ConfigError(f"unknown parameter {key!r} in {source}; known parameters: {', '.join(known)}")
        if key in HIDDEN_KEYS:
            sizes[HIDDEN_KEYS.index(key)] = value
        else:
            settings[ALIASES.get(key, key)] = value
    if sizes:
        if sorted(sizes) != list(range(len(sizes))):
            raise ConfigError(f"{source}: hidden sizes must start at hidden_size_1 with no gaps")
        settings["hidden"] = parse_hidden([sizes[i] for i in range(len(sizes))])
    return settings


def settings_to_params(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The reverse, flat: configuration settings under the study's parameter names."""
    names = {v: k for k, v in ALIASES.items()}
    params = {names.get(k, k): v for k, v in settings.items() if k != "hidden"}
    for i, size in enumerate(settings.get("hidden", ())):
        params[HIDDEN_KEYS[i]] = size
    return params


def all_architectures(space: dict[str, Any]) -> list[tuple[int, ...]]:
    """Every network a (normalized) arch space schedules, in order; used to check it."""
    branches = space[ARCH_KEY]["_value"]
    nets = []
    for branch in branches:
        choices = [branch[k]["_value"] for k in HIDDEN_KEYS if k in branch]
        nets.extend(tuple(p) for p in product(*choices))
    return nets
