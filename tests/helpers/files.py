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
