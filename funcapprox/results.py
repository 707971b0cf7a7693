"""What funcapprox knows of an experiment, as plain records: its trials (TrialRecord, with a
TrialState), funcapprox's own run.json (RunMeta), and the experiments in a work folder.

The records are built from NNI's store by funcapprox.nni.store; everything else in
funcapprox reads these records, never NNI's raw JSON or SQL.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, fields, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from .artifacts import read_json, relocate_data, write_json
from .config import TrainConfig, field_names, params_to_settings
from .errors import ConfigError, ExperimentError, FuncApproxError

META_DIR = "funcapprox"  # our files inside NNI's experiment folder
META_FILE = "run.json"
ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")


class TrialState(StrEnum):
    """A trial's status, in NNI's words (a str: it prints and serialises as NNI's word)."""

    WAITING = "WAITING"
    RUNNING = "RUNNING"
    UNKNOWN = "UNKNOWN"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    USER_CANCELED = "USER_CANCELED"
    SYS_CANCELED = "SYS_CANCELED"
    EARLY_STOPPED = "EARLY_STOPPED"

    @classmethod
    def of(cls, word: Any) -> TrialState:
        """NNI's word for a trial (an event of its store, a status of its REST API); others are UNKNOWN."""
        try:
            return cls(word)
        except ValueError:
            return cls.UNKNOWN

    @property
    def finished(self) -> bool:
        """It has ended, one way or another: nothing of it runs any more."""
        return self not in (TrialState.WAITING, TrialState.RUNNING, TrialState.UNKNOWN)

    @property
    def active(self) -> bool:
        return not self.finished

    @property
    def started(self) -> bool:
        """An event that marks the trial's start (NNI records WAITING, then RUNNING)."""
        return self in (TrialState.WAITING, TrialState.RUNNING)


@dataclass(frozen=True)
class TrialRecord:
    trial_id: str
    status: TrialState
    params: dict[str, Any]  # the full resolved configuration (TrainConfig.to_dict())
    nni_params: dict[str, Any]  # what the tuner sent
    metric: float | None = None  # the study's metric: NNI's "default"
    rms: float | None = None
    max_error: float | None = None
    n_params: int | None = None
    seconds: float | None = None  # from RUNNING to its end, as NNI recorded it
    history: tuple[float, ...] = ()  # intermediate metrics, every 5 epochs
    reason: str | None = None  # why it failed, when it did
    output_dir: Path | None = None
    sequence: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", TrialState.of(self.status))  # NNI's word, or a TrialState

    @property
    def arch(self) -> str:
        try:
            return TrainConfig.from_dict(self.params).arch
        except ConfigError:
            return "?"

    @property
    def config(self) -> TrainConfig:
        return TrainConfig.from_dict(self.params, source=f"trial {self.trial_id}")

    def as_dict(self) -> dict[str, Any]:
        """The stable shape of `funcapprox results --format json`."""
        return {
            "trial_id": self.trial_id, "status": self.status, "params": self.params, "metric": self.metric,
            "rms": self.rms, "max_error": self.max_error, "n_params": self.n_params, "seconds": self.seconds,
        }


@dataclass(frozen=True)
class RunMeta:
    """funcapprox's record of an experiment, `<workdir>/<id>/funcapprox/run.json`.

    Read like the JSON it is stored as too (`meta["port"]`, `meta.get("port")`).
    """

    id: str | None = None
    stage: str = "?"
    fixed: dict[str, Any] = field(default_factory=dict)  # the settings every trial shares
    handoff: dict[str, Any] = field(default_factory=dict)  # those taken from stage 1's best trial
    from_experiment: str | None = None
    space_source: str = ""
    tuner: str = "GridSearch"
    tuner_args: dict[str, Any] | None = None  # the width search's (--stage smallest): max_error, depths, max_width
    concurrency: int | None = None
    max_trials: int | None = None
    max_duration: str | None = None
    max_trial_duration: str | None = None
    machines_file: str | None = None  # --platform remote
    grid_size: int | None = None
    batched: bool = False  # its trials train in batched steps (nni/gather.py, trial.py --batched)
    assessor: str | None = None  # NNI's early stopping (nni/config.py ASSESSORS), None: every trial runs out
    created: float | None = None  # seconds since the epoch
    status: str = "?"  # funcapprox's last word on it: RUNNING, DONE, INTERRUPTED, ERROR, …
    finished: bool = False
    next_stage: dict[str, Any] | None = None  # stage 2's arguments when this is stage 1 of `--stage all`
    port: int | None = None
    url_prefix: str | None = None  # the secret URL prefix of its web UI and REST API
    resumes: tuple[dict[str, Any], ...] = ()

    @classmethod
    def from_dict(cls, data: Any, source: str = "run.json") -> RunMeta:
        if not isinstance(data, dict):
            raise ExperimentError(f"{source} is not a JSON object")
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known and v is not None}
        if "resumes" in values:
            values["resumes"] = tuple(values["resumes"]) if isinstance(values["resumes"], list) else ()
        for name in ("fixed", "handoff"):
            if not isinstance(values.get(name, {}), dict):
                values.pop(name)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["resumes"] = list(self.resumes)
        return data

    @property
    def func(self) -> str:
        return self.fixed.get("func", "?")

    def __getitem__(self, key: str) -> Any:
        if key not in {f.name for f in fields(self)}:
            raise KeyError(key)
        return self.to_dict()[key]

    def get(self, key: str, default: Any = None) -> Any:
        try:
            value = self[key]
        except KeyError:
            return default
        return default if value is None else value


@dataclass
class Experiment:
    id: str
    folder: Path
    meta: RunMeta
    trials: list[TrialRecord] = field(default_factory=list)
    start: float | None = None  # seconds since the epoch
    end: float | None = None

    @property
    def stage(self) -> str:
        return self.meta.stage

    @property
    def func(self) -> str:
        return self.meta.func

    def succeeded(self) -> list[TrialRecord]:
        return [t for t in self.trials if t.status is TrialState.SUCCEEDED and t.metric is not None]

    def ranked(self) -> list[TrialRecord]:
        """Succeeded trials best first (metric, then fewer parameters), then the others."""
        done = sorted(self.succeeded(), key=lambda t: (-t.metric, t.n_params or 0, t.sequence))
        return done + [t for t in self.trials if t not in done]

    def best(self) -> TrialRecord:
        done = self.succeeded()
        if not done:
            raise ExperimentError(f"experiment {self.id} has no succeeded trial yet")
        return self.ranked()[0]

    def trial(self, trial_id: str) -> TrialRecord:
        if trial_id == "best":
            return self.best()
        for t in self.trials:
            if t.trial_id == trial_id:
                return t
        raise ExperimentError(
            f"no trial {trial_id!r} in experiment {self.id}; `funcapprox results --experiment {self.id}` lists them"
        )

    def searched(self) -> list[str]:
        """The configuration fields the tuner chose: those not fixed for the stage.

        A field added to TrainConfig after the experiment ran is missing from its fixed
        settings too; it counts only if some trial received it or the trials differ in it.
        """
        received: set[str] = set()
        for t in self.trials:
            try:
                received |= set(params_to_settings(t.nni_params))
            except ConfigError:
                pass
        names = []
        for name in field_names():
            if name == "func" or name in self.meta.fixed:
                continue
            seen = {json.dumps(t.params.get(name), sort_keys=True) for t in self.trials}
            if name in received or len(seen) > 1:
                names.append(name)
        return names

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for t in self.trials:
            counts[t.status] = counts.get(t.status, 0) + 1
        return counts


def check_id(value: str, what: str = "experiment id") -> str:
    """Ids come from the command line: letters, digits, - and _ only, never a path."""
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):  # "^…$" let "id\n" through
        raise ConfigError(f"{value!r} is not a valid {what} (letters, digits, - and _ only)")
    return value


def experiment_ids(workdir: Path) -> list[str]:
    """funcapprox's experiments in `workdir`, oldest first."""
    workdir = Path(workdir)
    if not workdir.is_dir():
        return []
    found = []
    for meta in workdir.glob(f"*/{META_DIR}/{META_FILE}"):
        if meta.parent.parent.is_symlink():  # NNI's _latest link
            continue
        try:
            created = float(json.loads(meta.read_text()).get("created", 0))
        except (OSError, ValueError, TypeError, AttributeError, RecursionError):  # "created": null, [], …
            created = meta.stat().st_mtime
        found.append((created, meta.parent.parent.name))
    return [name for _, name in sorted(found)]


def resolve_id(workdir: Path, experiment: str) -> str:
    ids = experiment_ids(workdir)
    if experiment == "latest":
        if not ids:
            raise ExperimentError(f"no experiments in {workdir}; start one with `funcapprox search`")
        return ids[-1]
    check_id(experiment)
    if experiment not in ids:
        hint = f"known: {', '.join(ids[-5:])}" if ids else "it has none"
        raise ExperimentError(f"no experiment {experiment!r} in {workdir} ({hint}); see `funcapprox experiments`")
    return experiment


def write_meta(folder: Path, meta: RunMeta, inside: bool = True) -> None:
    """run.json into an experiment's `folder` (or, not `inside` one, right into `folder`)."""
    path = (folder / META_DIR if inside else folder) / META_FILE
    write_json(path, meta.to_dict(), private=True)  # it holds the secret URL prefix


def update_meta(workdir: Path, exp_id: str, **changes: Any) -> None:
    """Record something about an experiment in its run.json (its final status, say)."""
    folder = Path(workdir) / exp_id
    write_meta(folder, replace(read_meta(folder), **changes))


def read_meta(folder: Path) -> RunMeta:
    path = folder / META_DIR / META_FILE
    try:
        meta = RunMeta.from_dict(read_json(path), str(path))
    except FuncApproxError as exc:
        raise ExperimentError(str(exc)) from None
    return replace(meta, fixed=relocate_data(meta.fixed, folder)) if isinstance(meta.fixed, dict) else meta

