"""What a run leaves on disk (configuration, history, metrics, weights) and reading it back.

Every file is written atomically (temporary file, then rename), so a crash never
leaves a half-written file for a later command to choke on; a whole run folder is
written beside its destination and renamed into place when complete (staged_folder).
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import tempfile
from contextlib import contextmanager, suppress
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator

from .config import TrainConfig, is_data_file
from .errors import ConfigError, FuncApproxError

CONFIG_FILE = "config.json"
HISTORY_FILE = "history.json"
METRICS_FILE = "metrics.json"
WEIGHTS_FILE = "model.pt"
FIT_PLOT_FILE = "fit.png"
RECEIVED_FILE = "parameters.json"  # what an NNI trial received (funcapprox.nni.trial writes it)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temp_beside(path: Path, private: bool = False) -> tuple[int, str]:
    """A temporary file next to `path` with the permissions a plain open() would give it (0600 if private)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    if not private:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600 files
    return fd, tmp


def atomic_write(path: Path, data: bytes | str, replace: bool = True, private: bool = False) -> None:
    """Write `path` whole or not at all; with replace=False, FileExistsError if it exists (checked atomically);
    private: readable by its owner only (0600) from the first byte."""
    path = Path(path)
    fd, tmp = _temp_beside(path, private)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data.encode() if isinstance(data, str) else data)
            out.flush()
            os.fsync(out.fileno())  # the data on disk before the name: a power cut leaves old or new, not empty
        if replace:
            os.replace(tmp, path)
        else:
            _rename_new(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _rename_new(tmp: str, path: Path) -> None:
    """Give `tmp` the name `path` only if no file has it: a hard link fails atomically on an existing name."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links: check, then rename (a race is left, not a crash)
        if os.path.lexists(path):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path)) from None
        os.replace(tmp, path)
    else:
        os.unlink(tmp)


def finite(data: Any) -> Any:
    """`data` with NaN and infinities as None: strict JSON has no words for them."""
    if isinstance(data, float) and not math.isfinite(data):
        return None
    if isinstance(data, dict):
        return {k: finite(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite(v) for v in data]
    return data


def write_json(path: Path, data: Any, private: bool = False) -> None:
    atomic_write(path, json.dumps(finite(data), indent=2, allow_nan=False) + "\n", private=private)


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FuncApproxError(f"{path} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FuncApproxError(f"{path} is not readable JSON ({exc})") from None
    except RecursionError:
        raise FuncApproxError(f"{path} is not readable JSON (nested too deep)") from None


MAX_CLAIMS = 10_000  # name, name-2, … name-10000: far more runs than anyone starts in one second


def claim_folder(parent: Path, name: str) -> Path:
    """Create and return a new, empty folder `parent/name`, or name-2, name-3, … if taken.

    os.mkdir either creates the folder or fails, so two runs (two processes too) never share one.
    """
    parent = Path(parent)
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the run folder {parent / name}: {exc.strerror}") from None
    for n in range(1, MAX_CLAIMS + 1):
        folder = parent / (name if n == 1 else f"{name}-{n}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            raise ConfigError(f"cannot create the run folder {folder}: {exc.strerror}") from None
        return folder
    raise ConfigError(f"{parent} already holds {MAX_CLAIMS} runs named {name}; give --out")


def _holds_files(folder: Path) -> bool:
    with os.scandir(folder) as entries:
        return next(entries, None) is not None


def check_run_dest(folder: Path, force: bool = False) -> Path:
    """Where a run into `folder` goes (symbolic links followed), or ConfigError saying why it cannot.

    A folder that holds files is refused unless `force`; its parents are created.
    """
    folder = Path(folder)
    dest = Path(os.path.realpath(folder))
    if dest.exists() and not dest.is_dir():
        raise ConfigError(f"--out {folder} is a file; give a folder to write the run into")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        full = dest.is_dir() and _holds_files(dest)
    except OSError as exc:
        raise ConfigError(f"cannot create the run folder {folder}: {exc.strerror}") from None
    if full and not force:
        raise ConfigError(f"--out {folder} already holds files (an earlier run?); add --force to replace it, "
                          "or give another --out")
    here = Path(os.path.realpath(Path.cwd()))
    if full and (dest == here or dest in here.parents):
        raise ConfigError(f"--out {folder} holds the current folder, which --force would delete; give another --out")
    if not os.access(dest.parent, os.W_OK):
        raise ConfigError(f"cannot write the run folder {folder}: {dest.parent} is not writable")
    return dest


@contextmanager
def staged_folder(folder: Path, force: bool = False) -> Iterator[Path]:
    """A new folder beside `folder` to write a run into, renamed to `folder` when the block ends.

    So `folder` only ever holds one run, whole: an empty or missing `folder` is replaced in one
    rename; with `force` an earlier run is renamed aside, the new one renamed in, then the old one
    deleted. If the block raises (a crash, Ctrl-C) the staging folder is deleted and an earlier run
    is left as it was.
    """
    dest = check_run_dest(folder, force)
    try:
        staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.staging-"))
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes 0700 folders; a run folder is a plain one
    except OSError as exc:
        raise ConfigError(f"cannot write the run folder {folder}: {exc.strerror}") from None
    try:
        yield staging
        _move_into_place(staging, dest, Path(folder), force)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already unless the run failed


def _move_into_place(staging: Path, dest: Path, folder: Path, force: bool) -> None:
    try:
        os.rename(staging, dest)  # dest missing or an empty folder: replaced in one step
        return
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise FuncApproxError(f"cannot move the run into {folder}: {exc.strerror}") from None
    if not force:  # files appeared in dest while the run trained: keep both
        other = claim_folder(dest.parent, dest.name)
        os.rename(staging, other)
        raise FuncApproxError(f"{folder} was written to while this run trained, so the run was saved in {other}")
    old = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.old-"))
    try:
        os.rename(dest, old)  # onto the empty folder mkdtemp made
        os.rename(staging, dest)
    except BaseException:
        if not os.path.lexists(dest):  # the earlier run was moved aside, the new one not in: put it back
            os.rename(old, dest)
        elif staging.exists():  # nothing moved: `old` is still the empty folder
            with suppress(OSError):
                old.rmdir()
        else:  # both moved: the new run is in place
            shutil.rmtree(old, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)


def save_run(folder: Path, result) -> None:
    """Write a TrainResult's configuration, history, metrics and (if it trained) its weights."""
    import torch

    folder = Path(folder)
    write_json(folder / CONFIG_FILE, result.config.to_dict())
    write_json(folder / HISTORY_FILE, [{k: v for k, v in asdict(e).items() if v is not None} for e in result.history])
    write_json(folder / METRICS_FILE, result.summary())
    if result.ok:
        fd, tmp = _temp_beside(folder / WEIGHTS_FILE)
        os.close(fd)
        torch.save(result.model.state_dict(), tmp)
        os.replace(tmp, folder / WEIGHTS_FILE)


def load_config(folder: Path) -> TrainConfig:
    path = Path(folder) / CONFIG_FILE
    data = read_json(path)
    return TrainConfig.from_dict(relocate_data(data, folder) if isinstance(data, dict) else data, source=str(path))


DATA_COPIES = Path(".trial-code") / "data"  # in a work folder: every experiment's copy of its data file


def copy_data_file(config: TrainConfig, workdir: Path) -> Path:
    """The work folder's copy of `config`'s data file, written once and named by its content, so every trial
    (local, or on a remote machine, which is sent the trial code folder) and every later command read the very
    data the search started with, whatever becomes of the user's file."""
    copy = Path(workdir).resolve() / DATA_COPIES / f"{config.data[:12]}-{os.path.basename(config.func)}"
    if not copy.is_file():
        try:
            data = Path(config.func).read_bytes()
        except OSError as exc:
            raise ConfigError(f"data file {config.func}: cannot read it: {exc.strerror}") from None
        copy.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(copy, data)
    changed = config.replace(func=str(copy))  # reads the copy: a file changed since it was checked is refused
    return Path(changed.func)


def relocate_data(settings: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Settings whose data file is not where they name it (a trial trained on a remote machine, a moved work
    folder) pointed at the copy of a work folder above `folder`; the content is checked when it is read."""
    func = settings.get("func")
    if not is_data_file(func) or os.path.exists(func):
        return settings
    for parent in Path(folder).resolve().parents:
        copy = parent / DATA_COPIES / os.path.basename(func)
        if copy.is_file():
            return {**settings, "func": str(copy)}
    return settings


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
