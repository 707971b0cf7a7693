"""NNI's store on disk, `<workdir>/<id>/db/nni.sqlite`: every read and write of it.

NNI keeps each experiment in `<workdir>/<id>/`: `db/nni.sqlite` (trial events, metrics,
the experiment profile) and one folder per trial, where funcapprox's trial leaves its
configuration, history, metrics and weights. Reading works whether or not the manager
still runs; the records it builds (funcapprox.results) are all the rest of funcapprox sees.
A resume writes what the restarted manager must do into the store before NNI reads it.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import sqlite3
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..artifacts import CONFIG_FILE, RECEIVED_FILE, load_config
from ..config import TrainConfig, params_to_settings
from ..errors import ConfigError, ExperimentError, FuncApproxError
from ..results import Experiment, RunMeta, TrialRecord, TrialState, read_meta, resolve_id

if TYPE_CHECKING:
    from ..search.resume import ResumePlan

DB_FILE = Path("db") / "nni.sqlite"


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
    trials = _trials(events, metrics, meta.fixed, folder)
    stopped_by_assessor = _assessor_stops(folder) if meta.assessor else frozenset()
    record.trials = _explain_endings(trials, events, meta, stopped_by_assessor)
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


def _explain_endings(trials: list[TrialRecord], events: list, meta: RunMeta,
                     stopped_by_assessor: frozenset[str] = frozenset()) -> list[TrialRecord]:
    """Say why a trial ended early where NNI's word hides it.

    NNI 3.0 records a trial killed by a signal as USER_CANCELED, and one stopped for
    running past maxTrialDuration as EARLY_STOPPED or (a race in NNI) USER_CANCELED: both
    are failures of the trial, shown as FAILED with the reason. One its assessor stopped
    (`stopped_by_assessor`, within the time limit) NNI records EARLY_STOPPED or, by the same
    race, USER_CANCELED: it is EARLY_STOPPED. A trial the user cancelled (USER_TO_CANCEL in the store) or one
    that ended with its experiment stays as NNI said.
    """
    by_user = {row[1] for row in events if row[2] == "USER_TO_CANCEL"}
    started = {row[1]: row[0] for row in reversed(events) if TrialState.of(row[2]).started}
    ended = {row[1]: row[0] for row in events if TrialState.of(row[2]).finished}
    # Trials that ended of themselves (not cancelled): one that ends after a trial was killed shows the search
    # went on, as does one that starts after it (the trials of a batched step all start together).
    ended_of_themselves = [ended[t.trial_id] for t in trials
                           if t.status in (TrialState.SUCCEEDED, TrialState.FAILED) and t.trial_id in ended]
    explained = []
    for t in trials:
        end = ended.get(t.trial_id)
        went_on = end is not None and (any(begun > end for begun in started.values())
                                       or any(other > end for other in ended_of_themselves))
        limit = _duration_seconds(meta.max_trial_duration)
        over_time = limit is not None and t.seconds is not None and t.seconds >= limit
        cut_short = t.status in (TrialState.EARLY_STOPPED, TrialState.USER_CANCELED) and t.trial_id not in by_user
        by_assessor = t.trial_id in stopped_by_assessor
        # NNI says EARLY_STOPPED only for its assessor and its time limit: one the assessor did not stop
        # ran out of time, even where its duration is not known.
        if cut_short and (over_time or (t.status is TrialState.EARLY_STOPPED and not by_assessor)):
            reason = (f"ran longer than --max-trial-duration {meta.max_trial_duration}; NNI stopped it"
                      if meta.max_trial_duration else "NNI stopped it early, not by an assessor run.json names")
            t = replace(t, status=TrialState.FAILED, reason=reason)
        elif cut_short and by_assessor:
            t = replace(t, status=TrialState.EARLY_STOPPED, reason=None)  # the assessor's verdict, no failure
        elif t.status is TrialState.USER_CANCELED and t.trial_id not in by_user and went_on:
            t = replace(t, status=TrialState.FAILED, reason="killed by a signal while the search went on "
                                                   "(NNI records this as USER_CANCELED)")
        explained.append(t)
    return explained


ASSESSOR_STOP = re.compile(r'\(NNIManager\) cancelTrialJob: "([^"\s]+)"')
_read_logs: dict[Path, tuple[tuple[int, int], frozenset[str]]] = {}  # a log's (size, mtime): its stops


def _assessor_stops(folder: Path) -> frozenset[str]:
    """The trials NNI's assessor stopped, from its manager's log: the store does not tell them from a
    kill, but the manager logs each (`cancelTrialJob: "<id>"`, the id as the assessor's JSON; a
    user's cancel and the stop at the end log other lines). Read again only once the log changed:
    a search's progress asks every 2 s."""
    log = folder / "log" / "nnimanager.log"
    try:
        stat = log.stat()
        seen = _read_logs.get(log)
        if seen is not None and seen[0] == (stat.st_size, stat.st_mtime_ns):
            return seen[1]
        stops = frozenset(ASSESSOR_STOP.findall(log.read_text(errors="replace")))
    except OSError:
        return frozenset()
    _read_logs[log] = ((stat.st_size, stat.st_mtime_ns), stops)
    return stops


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
        state = TrialState.of(event)
        t = info.setdefault(trial_id, {"status": state, "params": {}, "sequence": sequence or 0})
        if event != "USER_TO_CANCEL":  # a request, not a status: the trial runs until NNI records its end
            t["status"] = state
        if log_path:
            t["log_path"] = log_path
        if data:
            try:
                record = json.loads(data)
                t["params"] = record.get("parameters", {}) or {}
                by_parameter_id[str(record.get("parameter_id"))] = t["params"]
            except (ValueError, AttributeError, TypeError, RecursionError):
                pass
        if state.started and "started" not in t:
            t["started"] = timestamp
        if state.finished:
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
            reason=_failure_reason(output_dir) if t["status"].finished and t["status"] is not TrialState.SUCCEEDED
            else None,
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


# --- what a resume writes -------------------------------------------------------------------


def prepare_store(folder: Path, plan: ResumePlan, trial_command: str | None = None, *, workdir: Path | None = None,
                  training_service: dict[str, Any] | None = None) -> None:
    """Write what the resumed manager must do into NNI's store, before NNI's resume reads it:
    the points left, room for them, the trial command (a new warm worker's socket), the work
    folder where it is now (it may have moved) and, for remote runs, machines.yml as it is now."""
    db = folder / DB_FILE
    if not db.exists():
        raise ExperimentError(f"experiment {plan.id} has no NNI store at {db}; it cannot be resumed")
    with contextlib.closing(sqlite3.connect(db)) as connection, connection:
        _cancel_orphans(connection)
        row = connection.execute(
            "select params, id, execDuration, startTime, endTime, logDir, nextSequenceId, revision "
            "from ExperimentProfile order by revision desc limit 1").fetchone()
        if row is None:
            raise ExperimentError(f"experiment {plan.id}: NNI's store holds no experiment profile")
        params = json.loads(row[0])
        submitted = connection.execute("select count(distinct trialJobId) from TrialJobEvent "
                                       "where trialJobId != ''").fetchone()[0]
        params["maxTrialNumber"] = submitted + plan.to_run
        # The tuner and its space come from funcapprox's own record of the experiment, never from
        # the store: whoever could write the store (a remote machine's files, say) must not choose
        # the code NNI's tuner runs or what it searches.
        params["tuner"] = _tuner(plan.experiment.meta.tuner, plan.id, plan.tuner_args)
        params.pop("assessor", None)
        if plan.experiment.meta.assessor:
            params["assessor"] = _assessor(plan.experiment.meta, plan.id)
        params.pop("advisor", None)
        if plan.search_space is not None:
            params["searchSpace"] = plan.search_space
        params.pop("searchSpaceFile", None)  # NNI would read the old space back from it
        if workdir is not None:
            params["experimentWorkingDirectory"] = str(workdir)
            params["trialCodeDirectory"] = str(workdir / ".trial-code")
            params.get("trainingService", {})["trialCodeDirectory"] = str(workdir / ".trial-code")
            (workdir / ".trial-code").mkdir(exist_ok=True)
        if training_service is not None:
            params["trainingService"] = training_service
        if trial_command is not None:
            params["trialCommand"] = trial_command
            params.get("trainingService", {})["trialCommand"] = trial_command
        connection.execute("insert into ExperimentProfile values (?,?,?,?,?,?,?,?)",
                           (json.dumps(params), *row[1:7], row[7] + 1))


def _tuner(name: Any, exp_id: str, class_args: dict[str, Any] | None = None) -> dict[str, Any]:
    from .config import tuner_config

    try:
        return tuner_config(name, class_args)
    except ConfigError:
        raise ExperimentError(f"experiment {exp_id} names no tuner funcapprox offers ({name!r}); "
                              "it cannot be resumed") from None


def _assessor(meta: RunMeta, exp_id: str) -> dict[str, Any]:
    """NNI's assessor entry as funcapprox's record names it (never the store's: it names the code that runs)."""
    from .config import assessor_config

    try:
        return assessor_config(meta.assessor, TrainConfig.from_dict(meta.fixed).epochs)
    except ConfigError as exc:
        raise ExperimentError(f"experiment {exp_id} cannot be resumed: {exc}") from None


def record_orphans_cancelled(folder: Path) -> None:
    """After its manager is gone: trials the store still shows waiting or running were cancelled."""
    db = folder / DB_FILE
    if db.exists():
        with contextlib.suppress(sqlite3.Error), contextlib.closing(sqlite3.connect(db, timeout=10)) as connection:
            with connection:
                _cancel_orphans(connection)  # a read-only store stays as it is: resume records it later


def _cancel_orphans(connection: sqlite3.Connection) -> None:
    """Trials the store shows as waiting or running died with their manager: record that."""
    latest = connection.execute(
        "select e.trialJobId, e.event, e.logPath, e.sequenceId, e.environmentId from TrialJobEvent e join "
        "(select trialJobId, max(rowid) as last from TrialJobEvent where trialJobId != '' group by trialJobId) m "
        "on e.rowid = m.last").fetchall()
    now = int(time.time() * 1000)
    for trial_id, event, log_path, sequence, env in latest:
        if TrialState.of(event).active:  # USER_TO_CANCEL too: a cancel asked for, never done
            # data '' not NULL: NNI's replay of the store calls .trim() on it
            connection.execute("insert into TrialJobEvent values (?,?,?,?,?,?,?,?)",
                               (now, trial_id, TrialState.SYS_CANCELED.value, "", log_path, sequence,
                                "its manager stopped before it finished", env))
