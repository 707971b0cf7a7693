"""Comparing what is on disk before and after."""

from __future__ import annotations

import os
import stat
from pathlib import Path


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every path under `folder`: its kind, mode and bytes (or link target); links are not followed."""
    seen = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root) / name
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                seen[str(path.relative_to(folder))] = ("link", os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                seen[str(path.relative_to(folder))] = ("dir", info.st_mode)
            else:
                seen[str(path.relative_to(folder))] = ("file", info.st_mode, path.read_bytes(), info.st_ino)
    return seen


def write_measurements(path: Path, n: int = 200, low: float = -2.0, high: float = 3.0, seed: int = 0) -> Path:
    """A CSV of n noisy-free points of sin(2x) + x²/10 at uniform random x on [low, high], with a header."""
    import numpy as np

    x = np.sort(np.random.default_rng(seed).uniform(low, high, n))
    y = np.sin(2 * x) + 0.1 * x**2
    Path(path).write_text("x,y\n" + "".join(f"{float(a)!r},{float(b)!r}\n" for a, b in zip(x, y)))
    return Path(path)
