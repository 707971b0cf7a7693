"""Measurements a user brings as a data file: points (x, y) read from .csv/.txt, .npy or .npz, with numpy only.

`--func FILE` names one (config.is_data_file); the network trains on a seeded part of its points and is
measured on the rest (split).

Formats, by the file's suffix:
- .csv / .txt: two comma-separated columns, x then y, one point a line; an optional first line `x,y` (any case,
  spaces allowed); blank lines and lines starting with `#` are skipped. Numbers are plain decimals (1, -0.5, 2e-3):
  float() runs only after a strict ASCII pattern, so "nan", "inf", "1_0" and non-ASCII digits are refused.
- .npy: one n×2 numeric array (column 0 is x, column 1 is y); .npz: 1-D numeric arrays `x` and `y` of one length.
  Both are read with allow_pickle=False.
At most MAX_BYTES are read (the size is checked with os.stat before reading; only a regular file is read), every value
must be finite, at least MIN_POINTS points are needed, and not all x may be equal (the domain is the data's range).
Duplicate points are allowed. Every refusal is one ConfigError on one line naming the file and, for a text file, the
line and column (1-based).
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import re
import stat
from dataclasses import dataclass
from numbers import Real

import numpy as np

from .errors import ConfigError

MAX_BYTES = 64 * 2**20  # of the file, and of each array inside an .npz once uncompressed
MIN_POINTS = 10
MAX_HOLDOUT = 0.9
SUFFIXES = (".csv", ".txt", ".npy", ".npz")

_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)  # as expression._DECIMAL
_NOT_FINITE = re.compile(r"[+-]?(?:nan|inf|infinity)", re.ASCII | re.IGNORECASE)
_HEADER = ["x", "y"]


@dataclass(frozen=True, eq=False)
class Samples:
    """The points of one data file: x and y are read-only 1-D float64 arrays of one length."""

    x: np.ndarray
    y: np.ndarray
    source: str  # the path as given
    digest: str  # sha256 hex of the file's bytes: a copy of the file is the same data

    @property
    def domain(self) -> tuple[float, float]:
        return float(self.x.min()), float(self.x.max())

    def __len__(self) -> int:
        return len(self.x)


_CACHE: dict[tuple, Samples] = {}  # a configuration is built many times (replace, from_dict): read a file once


def load_cached(path: str) -> Samples:
    """load_samples, read again only when the file changed (its inode, size or modification time)."""
    try:
        info = os.stat(path)
    except OSError:
        return load_samples(path)  # which says why in its own words
    key = (path, info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
    if key not in _CACHE:
        _CACHE.clear()  # one file at a time is what a process uses
        _CACHE[key] = load_samples(path)
    return _CACHE[key]


def _shown(value: object, limit: int = 40) -> str:
    """A value for a one-line message: printable, and cut short."""
    text = str(value)
    if not text.isprintable():
        text = repr(text)[1:-1]
    return text if len(text) <= limit else text[:limit] + "..."


def load_samples(path: str | os.PathLike) -> Samples:
    """Read a data file of points (x, y); raises ConfigError saying what is wrong and where."""
    source = os.fspath(path)
    name = _shown(source, 200)
    suffix = os.path.splitext(source)[1].lower()
    if suffix not in SUFFIXES:
        raise ConfigError(f"data file {name}: unknown suffix {_shown(suffix) or '(none)'!r}; "
                          f"use one of {', '.join(SUFFIXES)}")
    try:
        info = os.stat(source)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"data file {name}: not a regular file")
        if info.st_size > MAX_BYTES:
            raise ConfigError(f"data file {name}: {info.st_size} bytes; at most {MAX_BYTES} (64 MiB) are read")
        with open(source, "rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"data file {name}: cannot read it: {_shown(exc.strerror or exc, 200)}") from None
    if len(data) > MAX_BYTES:  # it grew after the stat
        raise ConfigError(f"data file {name}: more than {MAX_BYTES} bytes (64 MiB); at most that is read")
    if suffix == ".npy":
        x, y = _from_npy(name, data)
    elif suffix == ".npz":
        x, y = _from_npz(name, data)
    else:
        x, y = _from_text(name, data)
    if len(x) < MIN_POINTS:
        raise ConfigError(f"data file {name}: {len(x)} points; at least {MIN_POINTS} are needed")
    if x.min() == x.max():
        raise ConfigError(f"data file {name}: every x is {x[0]:g}; the domain needs at least two different x")
    x.setflags(write=False)
    y.setflags(write=False)
    return Samples(x=x, y=y, source=source, digest=hashlib.sha256(data).hexdigest())


def _from_text(name: str, data: bytes) -> tuple[np.ndarray, np.ndarray]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"data file {name}: not UTF-8 text (byte {exc.start + 1})") from None
    xs: list[float] = []
    ys: list[float] = []
    first = True
    for number, line in enumerate(text.split("\n"), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        cells = [cell.strip() for cell in line.split(",")]
        if first and [cell.lower() for cell in cells] == _HEADER:
            first = False
            continue
        first = False
        if len(cells) != 2:
            count = "one column" if len(cells) == 1 else f"{len(cells)} columns"
            raise ConfigError(f"data file {name}: line {number} has {count}; give two, x,y")
        values = []
        for column, cell in enumerate(cells, start=1):
            where = f"data file {name}: line {number}, column {column}: {_shown(cell)!r}"
            if _NOT_FINITE.fullmatch(cell):
                raise ConfigError(f"{where} is not finite")
            if not _DECIMAL.fullmatch(cell):
                raise ConfigError(f"{where} is not a number")
            value = float(cell)
            if not math.isfinite(value):
                raise ConfigError(f"{where} is not finite")
            values.append(value)
        xs.append(values[0])
        ys.append(values[1])
    return np.array(xs, dtype=np.float64), np.array(ys, dtype=np.float64)


def _numeric(name: str, what: str, array: object) -> np.ndarray:
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "iuf":
        kind = array.dtype if isinstance(array, np.ndarray) else type(array).__name__
        raise ConfigError(f"data file {name}: {what} holds {kind}, not numbers")
    values = array.astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(values.reshape(len(values), -1)).all(axis=1)) if values.size else []
    if len(bad):
        raise ConfigError(f"data file {name}: {what} row {bad[0] + 1} is not finite")
    return values


def _from_npy(name: str, data: bytes) -> tuple[np.ndarray, np.ndarray]:
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as exc:  # numpy's reader raises many kinds on a damaged file
        raise ConfigError(f"data file {name}: not a .npy array numpy can read ({_shown(exc, 80)})") from None
    if not isinstance(array, np.ndarray):
        raise ConfigError(f"data file {name}: not a single .npy array")
    if array.ndim != 2 or array.shape[1] != 2:
        raise ConfigError(f"data file {name}: an array of shape {array.shape}; give n×2 (x, y)")
    values = _numeric(name, "the array", array)
    return values[:, 0].copy(), values[:, 1].copy()


def _from_npz(name: str, data: bytes) -> tuple[np.ndarray, np.ndarray]:
    try:
        archive = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as exc:
        raise ConfigError(f"data file {name}: not a .npz archive numpy can read ({_shown(exc, 80)})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ConfigError(f"data file {name}: not a .npz archive (it holds a single array)")
    with archive:
        arrays = {}
        for key in ("x", "y"):
            if key not in archive.files:
                raise ConfigError(f"data file {name}: no array {key!r}; a .npz needs arrays 'x' and 'y'")
            try:
                size = archive.zip.getinfo(f"{key}.npy").file_size
                array = None if size > MAX_BYTES else archive[key]
            except Exception as exc:  # a damaged member: zlib, zipfile and numpy errors of many kinds
                raise ConfigError(f"data file {name}: array {key!r} cannot be read ({_shown(exc, 80)})") from None
            if array is None:
                raise ConfigError(f"data file {name}: array {key!r} is larger than {MAX_BYTES} bytes uncompressed")
            if array.ndim != 1:
                raise ConfigError(f"data file {name}: array {key!r} has shape {array.shape}; give a 1-D array")
            arrays[key] = _numeric(name, f"array {key!r}", array)
    if len(arrays["x"]) != len(arrays["y"]):
        raise ConfigError(f"data file {name}: x has {len(arrays['x'])} values and y {len(arrays['y'])}; "
                          "give one y for each x")
    return arrays["x"], arrays["y"]


def check_holdout(holdout: object) -> float:
    if isinstance(holdout, bool) or not isinstance(holdout, Real) or not 0 <= holdout <= MAX_HOLDOUT:
        raise ConfigError(f"--holdout takes a fraction from 0 to {MAX_HOLDOUT}, not {_shown(holdout)}")
    return float(holdout)


def split(samples: Samples, holdout: float = 0.2, seed: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Indices (sorted, int64) of the training and the held-out points: a permutation seeded by seed alone.

    The held-out count is round(holdout * n), at least 1 and at most n - 2 (training keeps two points). With holdout 0
    nothing is held out: the held-out part is empty, and the metric is then computed on the training points.
    The same number of points and the same seed give the same split, whatever the values.
    """
    check_holdout(holdout)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"the split's seed must be a whole number >= 0, not {_shown(seed)}")
    n = len(samples.x)
    if n < 3:
        raise ConfigError(f"{n} points cannot be split; at least 3 are needed")
    held = 0 if holdout == 0 else min(max(1, round(holdout * n)), n - 2)
    order = np.random.default_rng(int(seed)).permutation(n)
    return np.sort(order[held:]).astype(np.int64), np.sort(order[:held]).astype(np.int64)
