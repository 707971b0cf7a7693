"""Experiments read back from NNI's own store on disk, as plain records.

NNI keeps each experiment in `<workdir>/<id>/`: `db/nni.sqlite` (trial events,
metrics, the experiment profile) and one folder per trial, where funcapprox's trial
leaves its configuration, history, metrics and weights. Reading the files works
whether or not the NNI manager still runs. Nothing else in funcapprox reads NNI's
raw JSON or SQL.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .artifacts import CONFIG_FILE, RECEIVED_FILE, load_config, read_json
from .config import TrainConfig
from .errors import ConfigError, ExperimentError, FuncApproxError
from .space import params_to_settings

META_DIR = "funcapprox"  # our files inside NNI's experiment folder
META_FILE = "run.json"
ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
TERMINAL = ("SUCCEEDED", "FAILED", "USER_CANCELED", "SYS_CANCELED", "EARLY_STOPPED")


@dataclass(frozen=True)
class TrialRecord:
    trial_id: str
    status: str  # NNI's word: WAITING, RUNNING, SUCCEEDED, FAILED, …
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


@dataclass
class Experiment:
    id: str
    folder: Path
    meta: dict[str, Any]
    trials: list[TrialRecord] = field(default_factory=list)
    start: float | None = None  # seconds since the epoch
    end: float | None = None

    @property
    def stage(self) -> str:
        return self.meta.get("stage", "?")

    @property
    def func(self) -> str:
        return self.meta.get("fixed", {}).get("func", "?")

    def succeeded(self) -> list[TrialRecord]:
        return [t for t in self.trials if t.status == "SUCCEEDED" and t.metric is not None]

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


def read_meta(folder: Path) -> dict[str, Any]:
    try:
        return read_json(folder / META_DIR / META_FILE)
    except FuncApproxError as exc:
        raise ExperimentError(str(exc)) from None


def load_experiment(workdir: Path, experiment: str = "latest") -> Experiment:
    """Read an experiment's trials from NNI's sqlite store and the trial folders."""
    exp_id = resolve_id(Path(workdir), experiment)
    folder = Path(workdir) / exp_id
    meta = read_meta(folder)
    record = Experiment(exp_id, folder, meta)
    db = folder / "db" / "nni.sqlite"
    if not db.exists():
        return record  # created, but the manager never started
    try:
        connection = _open_store(db)
        try:
            events = connection.execute(
                "SELECT timestamp, trialJobId, event, data, logPath, sequenceId FROM TrialJobEvent ORDER BY timestamp"
            ).fetchall()
            metrics = connection.execute(
                "SELECT trialJobId, type, sequence, data, parameterId FROM MetricData ORDER BY timestamp"
            ).fetchall()
            profile = connection.execute(
                "SELECT startTime, endTime FROM ExperimentProfile ORDER BY revision DESC LIMIT 1"
            ).fetchone()
        finally:
            connection.close()
    except sqlite3.Error as exc:
        raise ExperimentError(f"cannot read NNI's database {db}: {exc}") from None
    if profile:
        record.start = profile[0] / 1000 if profile[0] else None
        record.end = profile[1] / 1000 if profile[1] else None
    record.trials = _explain_endings(_trials(events, metrics, meta.get("fixed", {}), folder), events, meta)
    return record


def _open_store(db: Path) -> sqlite3.Connection:
    """NNI's store, read-only; read-write only when a manager that died mid-write left a
    journal that must be rolled back first (sqlite refuses that read-only)."""
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        connection.execute("SELECT count(*) FROM ExperimentProfile").fetchone()
        return connection
    except sqlite3.OperationalError as exc:
        connection.close()
        if "readonly" not in str(exc):
            raise
    return sqlite3.connect(db, timeout=10)


def _explain_endings(trials: list[TrialRecord], events: list, meta: dict[str, Any]) -> list[TrialRecord]:
    """Say why a trial ended early where NNI's word hides it.

    NNI 3.0 records a trial killed by a signal as USER_CANCELED, and one stopped for
    running past maxTrialDuration as EARLY_STOPPED or (a race in NNI) USER_CANCELED; no
    assessor is configured here, so both are failures of the trial, shown as FAILED with
    the reason. A trial the user cancelled (USER_TO_CANCEL in the store) or that ended
    with its experiment stays as NNI said.
    """
    by_user = {row[1] for row in events if row[2] == "USER_TO_CANCEL"}
    started = {row[1]: row[0] for row in reversed(events) if row[2] in ("WAITING", "RUNNING")}
    ended = {row[1]: row[0] for row in events if row[2] in TERMINAL}
    explained = []
    for t in trials:
        end = ended.get(t.trial_id)
        went_on = end is not None and any(begun > end for begun in started.values())
        limit = _duration_seconds(meta.get("max_trial_duration"))
        over_time = limit is not None and t.seconds is not None and t.seconds >= limit
        if t.status in ("EARLY_STOPPED", "USER_CANCELED") and t.trial_id not in by_user and over_time:
            t = replace(t, status="FAILED", reason=f"ran longer than --max-trial-duration "
                                                   f"{meta['max_trial_duration']}; NNI stopped it")
        elif t.status == "USER_CANCELED" and t.trial_id not in by_user and went_on:
            t = replace(t, status="FAILED", reason="killed by a signal while the search went on "
                                                   "(NNI records this as USER_CANCELED)")
        explained.append(t)
    return explained


def _duration_seconds(text: Any) -> float | None:
    """NNI's duration ("90s", "10m") in seconds; None when absent or unreadable."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        return float(text[:-1]) * units[text[-1]]
    except (TypeError, ValueError, KeyError, IndexError):
        return None


def _decode_metric(data: str) -> Any:
    """MetricData.data is JSON encoded twice (NNI's dump of the trial's dump)."""
    value = json.loads(data)
    return json.loads(value) if isinstance(value, str) else value


def _trial_folder(folder: Path, log_path: str | None) -> Path | None:
    """The trial's folder inside this experiment's folder: NNI records absolute paths,
    which break when a work folder is moved or copied."""
    if not log_path or not isinstance(log_path, str):
        return None
    parts = Path(log_path).parts
    if "environments" not in parts:
        return None  # NNI keeps every trial under environments/: anything else is not a trial folder
    inside = parts[parts.index("environments"):]
    if any(part in ("..", ".") for part in inside):
        return None
    return folder.joinpath(*inside)


def _trials(events: list, metrics: list, fixed: dict[str, Any], folder: Path) -> list[TrialRecord]:
    info: dict[str, dict[str, Any]] = {}
    by_parameter_id: dict[str, Any] = {}
    for timestamp, trial_id, event, data, log_path, sequence in events:
        t = info.setdefault(trial_id, {"status": event, "params": {}, "sequence": sequence or 0})
        t["status"] = event
        if log_path:
            t["log_path"] = log_path
        if data:
            try:
                record = json.loads(data)
                t["params"] = record.get("parameters", {}) or {}
                by_parameter_id[str(record.get("parameter_id"))] = t["params"]
            except (ValueError, AttributeError, TypeError, RecursionError):
                pass
        if event in ("WAITING", "RUNNING") and "started" not in t:
            t["started"] = timestamp
        if event in TERMINAL:
            t["ended"] = timestamp
    finals: dict[str, Any] = {}
    history: dict[str, list[tuple[int, float]]] = {}
    reported_parameter: dict[str, str] = {}
    for trial_id, kind, sequence, data, parameter_id in metrics:
        reported_parameter[trial_id] = str(parameter_id)
        try:
            value = _decode_metric(data)
        except (ValueError, TypeError, RecursionError):  # the store is outside input too
            continue
        if kind == "FINAL":
            finals[trial_id] = value
        elif isinstance(value, (int, float)):
            history.setdefault(trial_id, []).append((sequence, float(value)))
    records = []
    for trial_id, t in info.items():
        final = finals.get(trial_id)
        final = final if isinstance(final, dict) else {"default": final}
        output_dir = _trial_folder(folder, t.get("log_path"))
        nni_params = _received(output_dir) or by_parameter_id.get(reported_parameter.get(trial_id), t["params"])
        seconds = (t["ended"] - t["started"]) / 1000 if "ended" in t and "started" in t else None
        params = _trained_config(output_dir) or _resolve(fixed, nni_params)
        records.append(TrialRecord(
            trial_id=trial_id,
            status=t["status"],
            params=params,
            nni_params=nni_params,
            metric=_number(final.get("default")),
            rms=_number(final.get("rms")),
            max_error=_number(final.get("max_error")),
            n_params=final.get("n_params") if isinstance(final.get("n_params"), int) else _n_params(params),
            seconds=seconds,
            history=tuple(v for _, v in sorted(history.get(trial_id, []))),
            reason=_failure_reason(output_dir) if t["status"] not in ("SUCCEEDED", "WAITING", "RUNNING") else None,
            output_dir=output_dir,
            sequence=t["sequence"],
        ))
    return sorted(records, key=lambda r: r.sequence)


def _resolve(fixed: dict[str, Any], nni_params: dict[str, Any]) -> dict[str, Any]:
    try:
        return TrainConfig.from_dict({**fixed, **params_to_settings(nni_params)}).to_dict()
    except ConfigError:
        return {**fixed, **nni_params}


def _trained_config(output_dir: Path | None) -> dict[str, Any] | None:
    """The configuration the trial wrote before training: what it really trained."""
    if output_dir is None or not (output_dir / CONFIG_FILE).exists():
        return None
    try:
        return load_config(output_dir).to_dict()
    except FuncApproxError:
        return None


def _received(output_dir: Path | None) -> dict[str, Any] | None:
    """The parameters the trial really received, as it recorded them.

    NNI 3.0's store can pair a trial with another's parameters when trials start
    together (the first to ask gets the next parameter set); the trial's own record
    and the parameter_id on its metrics are right.
    """
    if output_dir is None:
        return None
    try:
        params = json.loads((output_dir / RECEIVED_FILE).read_text()).get("parameters")
    except (OSError, ValueError, AttributeError, RecursionError):  # a remote machine's file: outside input
        return None
    return params if isinstance(params, dict) else None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _n_params(params: dict[str, Any]) -> int | None:
    try:
        return TrainConfig.from_dict(params).n_params
    except ConfigError:
        return None


def _failure_reason(output_dir: Path | None) -> str:
    """The trial's own account (failure.json), else the last line of its stderr."""
    if output_dir is None:
        return "no trial folder recorded"
    failure = output_dir / "failure.json"
    if failure.exists():
        try:
            return str(json.loads(failure.read_text()).get("reason"))
        except (OSError, ValueError, AttributeError, RecursionError):
            pass
    stderr = output_dir / "trial.stderr"
    try:
        lines = [line for line in stderr.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        lines = []
    return lines[-1].strip() if lines else "no reason recorded (killed or stopped?)"
