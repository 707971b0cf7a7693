"""What a run leaves on disk (configuration, history, metrics, weights) and reading it back.

Every file is written atomically (temporary file, then rename), so a crash never
leaves a half-written file for a later command to choke on.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .config import TrainConfig
from .errors import ConfigError, FuncApproxError

CONFIG_FILE = "config.json"
HISTORY_FILE = "history.json"
METRICS_FILE = "metrics.json"
WEIGHTS_FILE = "model.pt"
FIT_PLOT_FILE = "fit.png"
RECEIVED_FILE = "parameters.json"  # what an NNI trial received (funcapprox.trial writes it)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temp_beside(path: Path) -> tuple[int, str]:
    """A temporary file next to `path` with the permissions a plain open() would give it."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600 files
    return fd, tmp


def atomic_write(path: Path, data: bytes | str) -> None:
    path = Path(path)
    fd, tmp = _temp_beside(path)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data.encode() if isinstance(data, str) else data)
            out.flush()
            os.fsync(out.fileno())  # the data on disk before the name: a power cut leaves old or new, not empty
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def finite(data: Any) -> Any:
    """`data` with NaN and infinities as None: strict JSON has no words for them."""
    if isinstance(data, float) and not math.isfinite(data):
        return None
    if isinstance(data, dict):
        return {k: finite(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite(v) for v in data]
    return data


def write_json(path: Path, data: Any) -> None:
    atomic_write(path, json.dumps(finite(data), indent=2, allow_nan=False) + "\n")


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FuncApproxError(f"{path} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FuncApproxError(f"{path} is not readable JSON ({exc})") from None


def prepare_dir(folder: Path) -> Path:
    """Create the run folder, or say clearly why it cannot be one."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"--out {folder} is a file; give a folder to write the run into")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the run folder {folder}: {exc.strerror}") from None
    if not os.access(folder, os.W_OK):
        raise ConfigError(f"the run folder {folder} is not writable")
    return folder


def save_run(folder: Path, result) -> None:
    """Write a TrainResult's configuration, history, metrics and (if it trained) its weights."""
    import torch

    folder = Path(folder)
    write_json(folder / CONFIG_FILE, result.config.to_dict())
    write_json(folder / HISTORY_FILE, [asdict(e) for e in result.history])
    write_json(folder / METRICS_FILE, result.summary())
    if result.ok:
        fd, tmp = _temp_beside(folder / WEIGHTS_FILE)
        os.close(fd)
        torch.save(result.model.state_dict(), tmp)
        os.replace(tmp, folder / WEIGHTS_FILE)


def load_config(folder: Path) -> TrainConfig:
    path = Path(folder) / CONFIG_FILE
    return TrainConfig.from_dict(read_json(path), source=str(path))


def load_model(folder: Path, config: TrainConfig):
    """The trained MLP saved in `folder`; FuncApproxError if the weights are missing or do not fit."""
    import torch

    from .model import build_model

    path = Path(folder) / WEIGHTS_FILE
    if not path.exists():
        raise FuncApproxError(f"no saved weights at {path}")
    model = build_model(config)
    try:
        model.load_state_dict(torch.load(path, weights_only=True))
    except Exception as exc:  # a truncated or foreign file: say which, do not trace back
        raise FuncApproxError(f"cannot load the weights in {path}: {exc}") from None
    return model.eval()
