"""Search spaces: the study's two stages, loading and checking NNI search-space JSON,
and turning the parameters a trial receives into configuration settings.

Parameter names are the study's (act_func, learning_rate, hidden_size_1 …); any
other TrainConfig field (batch, epochs, seed, …) may be searched under its own name.
"""

from __future__ import annotations

import json
import math
import os
import stat
from itertools import product
from pathlib import Path
from typing import Any, Mapping

from ..config import (
    ALIASES,
    ARCH_KEY,
    HIDDEN_KEYS,
    MAX_WIDTH,
    PER_COPY,
    check_value,
    padded_hidden,
    searchable_names,
)
from ..errors import ConfigError

# The shipped spaces live at the top of the repository, where users read and copy them; a
# wheel carries the same folder as funcapprox/search_spaces (pyproject maps it in).
PACKAGED_SPACES = Path(__file__).resolve().parent.parent / "search_spaces"
SPACES_DIR = PACKAGED_SPACES if PACKAGED_SPACES.is_dir() else Path(__file__).resolve().parents[2] / "search_spaces"
NNI_TYPES = {
    "choice", "randint", "uniform", "quniform", "loguniform", "qloguniform",
    "normal", "qnormal", "lognormal", "qlognormal",
}
WHOLE_NUMBERS = ("epochs", "samples", "batch", "seed", "seeds")  # settings that take ints, not fractions
MAX_SPACE_BYTES = 1024 * 1024  # a search-space file is a few KB; this refuses a wrong file before reading it all
MAX_GRID_VALUES = 100_000  # a randint or q-grid with more values counts as continuous: no one runs it all


def default_space_path(stage: str) -> Path:
    return SPACES_DIR / f"{stage}.json"


def _file_kind(mode: int) -> str | None:
    """What a non-regular file is, or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device"),
             (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def _check_file(path: Path, info: os.stat_result) -> None:
    kind = _file_kind(info.st_mode)
    if kind is not None:
        raise ConfigError(f"search space {path} is {kind}; it must be a regular JSON file")
    if info.st_size > MAX_SPACE_BYTES:
        raise ConfigError(f"search space {path} is {info.st_size} bytes, over the limit of "
                          f"{MAX_SPACE_BYTES // 1024 // 1024} MiB for a search-space file")


def _read_space_file(path: Path) -> str:
    """The file's text: a regular file of at most MAX_SPACE_BYTES, checked before it is read (a FIFO never blocks)."""
    try:
        _check_file(path, os.stat(path))
        # O_NONBLOCK: if a FIFO took the file's place since the stat, opening it does not wait for a writer.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as file:
            _check_file(path, os.fstat(file.fileno()))
            data = file.read(MAX_SPACE_BYTES + 1)
    except ConfigError:
        raise
    except FileNotFoundError:
        raise ConfigError(f"search space {path} does not exist") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        raise ConfigError(f"cannot read search space {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if len(data) > MAX_SPACE_BYTES:  # the file grew since the stat
        raise ConfigError(f"search space {path} is over the limit of {MAX_SPACE_BYTES // 1024 // 1024} MiB "
                          "for a search-space file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cannot read search space {path}: it is not UTF-8 text ({exc.reason} at byte "
                          f"{exc.start})") from None


def load_space(path: Path | str) -> dict[str, Any]:
    """Read and check a search-space JSON file; every error names the file and the key."""
    path = Path(path)
    text = _read_space_file(path)
    try:
        space = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"search space {path} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    except ValueError:  # Python reads at most 4,300 digits of an int
        raise ConfigError(f"search space {path} holds a number too long to read") from None
    except RecursionError:
        raise ConfigError(f"search space {path} is nested too deeply to read") from None
    check_space(space, str(path))
    return space


def check_space(space: Any, source: str) -> None:
    """A space NNI can use whose every choice is a valid setting: raises ConfigError naming `source` and the key."""
    if not isinstance(space, dict) or not space:
        raise ConfigError(f"search space {source} must be a non-empty JSON object of parameters")
    _check_entries(space, source, top=True)
    if ARCH_KEY in space and any(k in space for k in HIDDEN_KEYS):
        raise ConfigError(f"search space {source}: give the hidden sizes as hidden_size_N or as the nested "
                          f"{ARCH_KEY!r} choice, not both")
    flat = [k for k in HIDDEN_KEYS if k in space]
    for earlier, later in zip(flat, flat[1:]):  # the study's flat form: 0 = no layer, which ends the stack
        if not any(space[earlier]["_value"]) and any(space[later]["_value"]):
            raise ConfigError(f"search space {source}: {later!r} offers sizes, but {earlier!r} offers only 0 "
                              "(no layer), so no network would use them")


def _check_entries(entries: Mapping[str, Any], source: str, top: bool) -> None:
    known = searchable_names()
    searched: dict[str, str] = {}  # setting → the name it is searched under
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
        setting = ALIASES.get(key, key)
        if setting in searched:
            raise ConfigError(f"search space {source}: {searched[setting]!r} and {key!r} both search {setting}")
        searched[setting] = key
        if not isinstance(spec, dict) or set(spec) != {"_type", "_value"}:
            raise ConfigError(f'search space {source}: {key!r} must be {{"_type": …, "_value": […]}}')
        kind = spec["_type"]
        if not isinstance(kind, str) or kind not in NNI_TYPES:
            raise ConfigError(
                f"search space {source}: {key!r} has unknown _type {kind!r}; NNI knows {', '.join(sorted(NNI_TYPES))}"
            )
        values = spec["_value"]
        if not isinstance(values, list) or not values:
            raise ConfigError(f"search space {source}: {key!r} needs a non-empty _value list")
        if kind == "choice":
            if any(isinstance(v, (dict, list)) for v in values):
                raise ConfigError(
                    f"search space {source}: {key!r} holds a nested choice, which only {ARCH_KEY!r} may"
                )
            for value in values:
                _check_choice(key, value, source, top)
        else:
            _check_numeric(key, kind, values, source)
            _check_range_fits(key, kind, values, source)
    hidden = [k for k in HIDDEN_KEYS if k in entries]
    if hidden != list(HIDDEN_KEYS[: len(hidden)]):
        raise ConfigError(f"search space {source}: hidden sizes must start at hidden_size_1 with no gaps; "
                          f"got {', '.join(hidden)}")


def _check_choice(key: str, value: Any, source: str, top: bool) -> None:
    """One value a choice offers must be valid for its setting (on its own: batch is not compared with samples)."""
    if key in HIDDEN_KEYS:
        # In the study's flat form 0 means "no layer" from the second layer on; an arch option names its depth.
        low = 0 if top and key != HIDDEN_KEYS[0] else 1
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= MAX_WIDTH:
            raise ConfigError(f"search space {source}: {key!r} offers {value!r}; hidden sizes are whole numbers "
                              f"from {low} to {MAX_WIDTH}")
        return
    try:
        check_value(ALIASES.get(key, key), value)
    except ConfigError as exc:
        raise ConfigError(f"search space {source}: {key!r} offers {value!r}: {exc}") from None


def _check_range_fits(key: str, kind: str, values: list, source: str) -> None:
    """A numeric _type only for a number setting; one for whole numbers must give whole numbers within range."""
    setting = ALIASES.get(key, key)
    where = f"search space {source}: {key!r} ({kind})"
    if setting == "lr":
        return  # any positive distribution; a draw of 0 or below fails that trial with its reason
    if setting not in WHOLE_NUMBERS:
        raise ConfigError(f"{where}: {setting} is searched as a choice of values")
    whole = all(isinstance(v, int) for v in values)
    if kind in ("uniform", "loguniform", "normal", "lognormal") or (kind.startswith("q") and not whole):
        raise ConfigError(f"{where} gives fractions, but {setting} takes whole numbers: use choice, randint "
                          "or whole-number q-values")
    if kind in ("randint", "quniform", "qloguniform"):
        low, high = math.ceil(values[0]), math.ceil(values[1]) - 1 if kind == "randint" else values[1]
        for end in (low, high):  # randint leaves out high
            try:
                check_value(setting, end)
            except ConfigError as exc:
                raise ConfigError(f"{where} reaches {end}: {exc}") from None


def _finite(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float: NNI cannot use it either
        return False


def _check_numeric(key: str, kind: str, values: list, source: str) -> None:
    """The _value shapes NNI accepts: [low, high] or [low, high, q], or [mu, sigma] or [mu, sigma, q]."""
    where = f"search space {source}: {key!r} ({kind})"
    if not all(_finite(v) for v in values):
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
        if not isinstance(branch, dict) or not isinstance(branch.get("_name"), str):
            raise ConfigError(f"search space {source}: each {ARCH_KEY!r} option needs a _name and its sizes")
        extra = sorted(k for k in branch if k != "_name" and k not in HIDDEN_KEYS)
        if extra:
            raise ConfigError(f"search space {source}: {ARCH_KEY!r} options hold only hidden sizes, not {extra[0]!r}")
        if HIDDEN_KEYS[0] not in branch:
            raise ConfigError(f"search space {source}: each {ARCH_KEY!r} option needs a _name and its sizes")
        for key in HIDDEN_KEYS:
            if key in branch and (not isinstance(branch[key], dict) or branch[key].get("_type") != "choice"):
                raise ConfigError(f"search space {source}: {key!r} must be a choice of sizes")
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
        count = max(0, int(values[1]) - int(values[0]))
        return count if count <= MAX_GRID_VALUES else None
    if kind in ("quniform", "qloguniform"):
        low, high, q = values[:3]
        if not high / q - low / q <= MAX_GRID_VALUES:  # also when the ratio overflows to infinity
            return None
        return len(q_grid(low, high, q))
    return None


def q_grid(low: float, high: float, q: float) -> list[float]:
    """The values GridSearch takes for quniform [low, high, q]: multiples of q, clipped, without duplicates."""
    return sorted({round(min(max(k * q, low), high), 12) for k in range(math.floor(low / q), math.ceil(high / q) + 1)})


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


def all_architectures(space: dict[str, Any]) -> list[tuple[int, ...]]:
    """Every network a (normalized) arch space schedules, in order; used to check it."""
    branches = space[ARCH_KEY]["_value"]
    nets = []
    for branch in branches:
        choices = [branch[k]["_value"] for k in HIDDEN_KEYS if k in branch]
        nets.extend(tuple(p) for p in product(*choices))
    return nets


def grid_points(space: dict[str, Any]) -> list[dict[str, Any]]:
    """Every parameter set GridSearch schedules for a finite space, as NNI sends them."""
    keys = [k for k in space if k != "_name"]
    options = [_point_values(space[k]) for k in keys]
    return [dict(zip(keys, combo)) for combo in product(*options)]


def _point_values(spec: dict[str, Any]) -> list[Any]:
    kind, values = spec["_type"], spec["_value"]
    if kind == "choice":
        out: list[Any] = []
        for value in values:
            if isinstance(value, dict):  # a nested choice: its branch name plus its own grid
                out += [{"_name": value["_name"], **point} for point in grid_points(value)]
            else:
                out.append(value)
        return out
    if kind == "randint":
        return list(range(int(values[0]), int(values[1])))
    if kind in ("quniform", "qloguniform"):
        return q_grid(*values[:3])
    raise ConfigError(f"a {kind} parameter has no finite grid")


def in_group_order(space: dict[str, Any]) -> dict[str, Any]:
    """The same grid, written so GridSearch proposes the points that can share a batched step (those
    differing only in PER_COPY settings, funcapprox/group.py) one after another: a finite quniform or
    qloguniform becomes the choice of its grid values (NNI subdivides those over passes, which would
    spread a group over the whole search), and the per-copy parameters go last (they vary fastest)."""
    if grid_size(space) is None:
        return space
    written = {}
    for key, spec in space.items():
        if isinstance(spec, dict) and spec.get("_type") in ("quniform", "qloguniform"):
            spec = {"_type": "choice", "_value": q_grid(*spec["_value"][:3])}
        written[key] = spec
    if ARCH_KEY in written:
        written[ARCH_KEY] = {"_type": "choice", "_value": [part for branch in written[ARCH_KEY]["_value"]
                                                           for part in _by_padded_shape(branch)]}
    per_copy = [k for k in written if ALIASES.get(k, k) in PER_COPY]
    return {**{k: v for k, v in written.items() if k not in per_copy}, **{k: written[k] for k in per_copy}}


def _by_padded_shape(branch: dict[str, Any]) -> list[dict[str, Any]]:
    """A nested-choice branch of networks cut into branches whose networks pad to one shape
    (config.padded_hidden), so that the networks of a batched step are proposed together."""
    layers = [k for k in HIDDEN_KEYS if k in branch]
    if any(set(branch[k]) != {"_type", "_value"} or branch[k]["_type"] != "choice" for k in layers):
        return [branch]
    parts_per_layer = []
    for key in layers:
        parts: dict[int, list[int]] = {}
        for width in branch[key]["_value"]:
            parts.setdefault(padded_hidden((width,))[0], []).append(width)
        parts_per_layer.append(list(parts.items()))
    if all(len(parts) == 1 for parts in parts_per_layer):
        return [branch]
    out = []
    for combo in product(*parts_per_layer):
        shape = ",".join(str(rung) for rung, _ in combo)
        part = {**branch, "_name": f"{branch['_name']}, padded to {{{shape}}}"}
        part.update({key: {"_type": "choice", "_value": widths} for key, (_, widths) in zip(layers, combo)})
        out.append(part)
    return out
