"""The target functions, vectorised, plus PyTorch datasets of them.

The network always sees x in [0, 1] and y of order one: a function on another domain, or
with another range of values (a formula of the user's), is mapped in (Target), so the
defaults (spread init, the learning rates) work on any of them; every figure a user sees
is mapped back into the function's own units. The built-ins on [0, 1] are not mapped at all.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.utils.data import Dataset

from .config import DEFAULT_DOMAIN, DEFAULT_HOLDOUT, canonical_function, is_builtin, is_data_file

FINE_POINTS = 1001  # train.FINE_POINTS: where the range of y is measured for the scaling
SPLIT_SEED = 12  # a data file's held-out points: fixed by the file alone, whatever seed the network trains with


def _oscillator_knots() -> list[float]:
    """Knot values at x = 0.0, 0.1, …, 1.0: start from 0, apply y ← -(y² - 0.5) once per knot."""
    values, y = [], 0.0
    for _ in range(11):
        y = -(y * y - 0.5)
        values.append(y)
    return values


OSCILLATOR_KNOTS = tuple(_oscillator_knots())
_KNOTS = torch.tensor(OSCILLATOR_KNOTS, dtype=torch.float64)
_SLOPES = _KNOTS[1:] - _KNOTS[:-1]  # rise per segment of width 0.1


def square(x: torch.Tensor) -> torch.Tensor:
    return x * x


def oscillator(x: torch.Tensor) -> torch.Tensor:
    """Linear interpolation between the knots, for any shape of x in [0, 1]."""
    scaled = x.double() * 10
    segment = scaled.floor().clamp_(0, 9).long()
    y = _KNOTS[segment] + (scaled - segment) * _SLOPES[segment]
    return y.to(x.dtype)


TARGETS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"square": square, "oscillator": oscillator}


class Target:
    """A function on its domain as the network learns it: u in [0, 1] stands for
    x = lo + (hi - lo) u, and y for (y - offset) / scale (its range mapped onto [0, 1]).

    A data file's function is known only at its points (`samples`); its domain is their range of x.
    """

    def __init__(self, func: str, domain: tuple[float, float] = DEFAULT_DOMAIN,
                 holdout: float = DEFAULT_HOLDOUT) -> None:
        self.func, self.domain = canonical_function(func), tuple(domain)
        self.identity = is_builtin(self.func) and self.domain == DEFAULT_DOMAIN
        self.expression = self.samples = None
        if is_data_file(self.func):
            from .samples import load_cached, split

            self.samples = load_cached(self.func)
            self.domain = self.samples.domain
            self.parts = tuple(torch.from_numpy(part) for part in split(self.samples, holdout, SPLIT_SEED))
            values = torch.tensor(self.samples.y)[self.parts[0]]  # y is scaled by the training points alone
        elif not is_builtin(self.func):
            from .expression import parse_expression

            self.expression = parse_expression(self.func)
        self.offset, self.scale = 0.0, 1.0
        if not self.identity:
            if self.samples is None:
                values = self.values(self.x(torch.linspace(0, 1, FINE_POINTS, dtype=torch.float64)))
            low, high = float(values.min()), float(values.max())
            self.offset, self.scale = low, (high - low if high > low else 1.0)

    def points(self) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
        """A data file's (u, y mapped) as float32 (n, 1) tensors: the training points, then the held-out ones
        (none with holdout 0). The held-out points are fixed by the file and the share alone (SPLIT_SEED)."""
        low, high = self.domain
        u = (torch.tensor(self.samples.x) - low) / (high - low)
        y = (torch.tensor(self.samples.y) - self.offset) / self.scale
        return tuple((u[part].float().unsqueeze(1), y[part].float().unsqueeze(1)) for part in self.parts)

    def x(self, u: torch.Tensor) -> torch.Tensor:
        """The function's own x for the network's u."""
        if self.identity:
            return u
        low, high = self.domain
        return low + (high - low) * u

    def values(self, x: torch.Tensor) -> torch.Tensor:
        """y at the function's own x, in its own units, as x's dtype (not for a data file: it has no formula)."""
        if self.samples is not None:
            raise TypeError("a data file's function is known only at its points (Target.points)")
        if self.expression is None:
            return TARGETS[self.func](x)
        return torch.from_numpy(self.expression.evaluate(x.detach().double().numpy())).to(x.dtype)

    def unit(self, u: torch.Tensor) -> torch.Tensor:
        """What the network learns at u: y mapped onto [0, 1]."""
        if self.identity:
            return TARGETS[self.func](u)
        return ((self.values(self.x(u.double())) - self.offset) / self.scale).to(u.dtype)

    def own(self, y_unit: torch.Tensor) -> torch.Tensor:
        """The network's output back in the function's units."""
        return y_unit if self.identity else y_unit * self.scale + self.offset


def target(func: str, domain: tuple[float, float] = DEFAULT_DOMAIN) -> Callable[[torch.Tensor], torch.Tensor]:
    """What a network learns of `func` on `domain`, as a function of u in [0, 1] (Target.unit)."""
    f = Target(func, domain)
    return TARGETS[f.func] if f.identity else f.unit


def reference(func: str, x: float) -> float:
    """Scalar, loop-free-of-torch version: the tests' reference for the vectorised one."""
    if canonical_function(func) == "square":
        return x * x
    k = min(int(x * 10), 9)
    left, right = OSCILLATOR_KNOTS[k], OSCILLATOR_KNOTS[k + 1]
    return left + (x * 10 - k) * (right - left)


def grid(points: int) -> torch.Tensor:
    """`points` evenly spaced x from 0 to 1, both ends included, shape (points, 1)."""
    return (torch.arange(points, dtype=torch.float64) / (points - 1)).float().unsqueeze(1)


class FunctionSamples(Dataset):
    """`n` uniform random x on the domain and their values; items are (x, y) of shape (1, 1)."""

    def __init__(self, func: str, n: int = 1000, seed: int = 12, domain: tuple[float, float] = DEFAULT_DOMAIN) -> None:
        generator = torch.Generator().manual_seed(seed)
        f = Target(func, domain)
        u = torch.rand(n, 1, 1, generator=generator)
        self.x, self.y = f.x(u), f.values(f.x(u))

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]


class FunctionGrid(Dataset):
    """The fixed evaluation grid, both ends included; items are (x, y) of shape (1, 1)."""

    def __init__(self, func: str, points: int = 101, domain: tuple[float, float] = DEFAULT_DOMAIN) -> None:
        f = Target(func, domain)
        self.x = f.x(grid(points).unsqueeze(1))
        self.y = f.values(self.x)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]
