"""The target functions on [0, 1], vectorised, plus PyTorch datasets of them."""

from __future__ import annotations

from typing import Callable

import torch
from torch.utils.data import Dataset

from .config import canonical_function


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


def target(func: str) -> Callable[[torch.Tensor], torch.Tensor]:
    return TARGETS[canonical_function(func)]


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
    """`n` uniform random x in [0, 1] and their targets; items are (x, y) of shape (1, 1)."""

    def __init__(self, func: str, n: int = 1000, seed: int = 12) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.x = torch.rand(n, 1, 1, generator=generator)
        self.y = target(func)(self.x)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]


class FunctionGrid(Dataset):
    """The fixed evaluation grid, both ends included; items are (x, y) of shape (1, 1)."""

    def __init__(self, func: str, points: int = 101) -> None:
        self.x = grid(points).unsqueeze(1)
        self.y = target(func)(self.x)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]
