"""NNI's manager: start it (locked down, see launch.py), follow it, stop it, and what it leaves.

Everything funcapprox asks of a running manager goes through here: its REST API, NNI's
manifest of running experiments (~/nni-experiments/.experiment), stopping it, and the
processes a manager leaves behind.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import ExperimentError
from ..results import Experiment, RunMeta, TrialState
from .store import load_experiment, record_orphans_cancelled

FINISHED = ("DONE", "STOPPED", "ERROR")
EXHAUSTED = "TUNER_NO_MORE_TRIAL"  # GridSearch ends here, never in DONE (NO_MORE_TRIAL turns DONE by itself)
EXHAUSTED_IDLE = 12.0  # seconds: NNI polls every 5 s, and creating a trial took up to 3 s here
# While a search runs: below this it stops, with room left to record the stop and keep what finished.
LOW_FREE_BYTES = 16 * 2**20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def port_in_use(port: int) -> bool:
    """Taken on any address the manager will listen on (127.0.0.1, and ::1 where there is IPv6)."""
    for family, address in ((socket.AF_INET, ""), (socket.AF_INET6, "::1")):
        try:
            with socket.socket(family) as s:
                s.bind((address, port))
        except OSError as exc:
            if family == socket.AF_INET6 and exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                continue  # no IPv6 loopback here: the manager listens on 127.0.0.1 alone
            return True
    return False


@dataclass
class Launched:
    id: str
    port: int
    folder: Path
    prefix: str | None = None  # the secret URL prefix of its web UI and REST API

    @property
    def url(self) -> str:
        return base_url(self.port, self.prefix)


def base_url(port: int, prefix: str | None = None) -> str:
    return f"http://127.0.0.1:{port}" + (f"/{prefix}" if prefix else "")


def new_url_prefix() -> str:
    """NNI's web UI and REST API have no login; a secret URL prefix, new for every manager,
    turns every request without it into a bare 404 (manager_preload.js), like a Jupyter token."""
    return secrets.token_hex(16)


def claim_port(port: int | None) -> int:
    """The port a new manager may take: the one asked for if it is free, else any free one."""
    if port is not None and port_in_use(port):
        raise ExperimentError(f"port {port} is in use; pick another with --port, or leave --port out")
    return port or free_port()


def create(config_file: Path, workdir: Path, port: int | None = None) -> Launched:
    """Start a new experiment from NNI's config file; stopped again if its manager did not come up."""
    port = claim_port(port)
    prefix = new_url_prefix()
    output = start_manager({"action": "create", "config": str(config_file), "port": port, "prefix": prefix})
    match = re.search(r"Experiment ID: ([A-Za-z0-9_-]+)", output)
    if not match or manager_status(port, prefix) is None:
        exp_id = match.group(1) if match else None
        if exp_id:
            stop(exp_id, workdir)
        raise ExperimentError(start_failure(output, workdir, exp_id))
    return Launched(match.group(1), port, Path(workdir) / match.group(1), prefix)


def restart(action: str, exp_id: str, workdir: Path, port: int | None = None) -> Launched:
    """Start a stopped experiment's manager again, to `resume` it or to `view` it, with a new prefix."""
    port = claim_port(port)
    prefix = new_url_prefix()
    output = start_manager({"action": action, "id": exp_id, "port": port, "workdir": str(workdir), "prefix": prefix})
    if manager_status(port, prefix) is None:
        stop(exp_id, workdir)
        raise ExperimentError(start_failure(output, workdir, exp_id, "resume" if action == "resume" else "open"))
    return Launched(exp_id, port, Path(workdir) / exp_id, prefix)


def start_manager(request: dict[str, Any]) -> str:
    """Start an NNI manager locked down (see launch.py) to create, `resume` or `view` an experiment;
    the launcher's output. The request (with the secret prefix) goes on standard input, not the command line."""
    return _run([sys.executable, "-m", "funcapprox.nni.launch"], json.dumps(request))


def live_status(exp_id: str, meta: RunMeta) -> str | None:
    """The experiment's status from its running manager, None when no manager answers."""
    entry = manifest_entry(exp_id)
    port = entry.get("port") or meta.port
    prefix = entry.get("prefixUrl") or meta.url_prefix
    return manager_status(port, prefix) if isinstance(port, int) else None


def _run(command: list[str], request: str) -> str:
    """Run an NNI launcher in a session of its own: a Ctrl-C at the terminal must not cut it off halfway."""
    try:
        done = subprocess.run(command, input=request, capture_output=True, text=True, timeout=180,
                              start_new_session=True)
        return done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:
        return str(exc.stdout or "") + str(exc.stderr or "") + " (timed out after 180 s)"


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def start_failure(output: str, workdir: Path, exp_id: str | None, verb: str = "start") -> str:
    lines = [line for line in _strip_ansi(output).splitlines() if line.strip() and "pkg_resources" not in line]
    message = f"NNI could not {verb} the experiment"
    if lines:
        message += ": " + " | ".join(lines[-3:])
    if exp_id:
        log = workdir / exp_id / "log" / "nnimanager.log"
        message += f" (manager log: {log}; last line: {log_tail(log, 1) or 'empty'})"
    return message


def log_tail(path: Path, lines: int = 5) -> str:
    try:
        text = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return " | ".join(_strip_ansi(line).strip() for line in text[-lines:])


# --- following and stopping ------------------------------------------------------------------


def rest(port: int, path: str, prefix: str | None = None, timeout: float = 5) -> Any:
    with urllib.request.urlopen(f"{base_url(port, prefix)}/api/v1/nni/{path}", timeout=timeout) as response:
        return json.loads(response.read())


def manager_status(port: int, prefix: str | None = None) -> str | None:
    """The experiment's status from its manager, or None when the manager does not answer."""
    try:
        return rest(port, "check-status", prefix).get("status")
    except (urllib.error.URLError, OSError, ValueError):
        return None


@dataclass
class Progress:
    experiment: Experiment
    status: str
    elapsed: float
    total: int | None
    already: int = 0  # trials that had finished before this run (a resume) started

    @property
    def finished_trials(self) -> int:
        return sum(1 for t in self.experiment.trials if t.status.finished)

    @property
    def eta(self) -> float | None:
        done = self.finished_trials
        if not self.total or done <= self.already:
            return None
        return self.elapsed / (done - self.already) * max(0, self.total - done)


def wait(launched: Launched, workdir: Path, on_progress: Callable[[Progress], None] | None = None,
         poll: float = 0.5, total: int | None = None, manager_grace: float = 15.0, already: int = 0,
         progress_every: float = 2.0) -> str:
    """Follow the experiment until its space is exhausted or a limit is hit; return NNI's final status.

    GridSearch leaves NNI in TUNER_NO_MORE_TRIAL, never DONE (unless maxTrialNumber, set to
    the grid size, is reached): that with no trial waiting or running for EXHAUSTED_IDLE
    seconds counts as finished. A manager that stops answering for
    `manager_grace` seconds is reported with its log tail instead of waited on forever. The status is
    asked every `poll` seconds (the end is noticed soon), the progress, which reads the whole store,
    every `progress_every`.
    """
    start = time.time()
    silent_since: float | None = None
    idle_since: float | None = None
    shown_at = -math.inf
    while True:
        status = manager_status(launched.port, launched.prefix)
        if status is None:
            silent_since = silent_since or time.time()
            if time.time() - silent_since > manager_grace or not _manager_alive(launched.id):
                log = launched.folder / "log" / "nnimanager.log"
                raise ExperimentError(
                    f"the NNI manager of experiment {launched.id} stopped answering on port {launched.port}; "
                    f"last log lines ({log}): {log_tail(log, 3) or 'none'}"
                )
        else:
            silent_since = None
        _check_free_space(workdir, launched.id)
        if on_progress is not None and status is not None and (
                time.time() - shown_at >= progress_every or status in FINISHED):
            shown_at = time.time()
            on_progress(Progress(load_experiment(workdir, launched.id), status, shown_at - start, total, already))
        if status in FINISHED:
            return status
        if status == EXHAUSTED and _live_trials(launched.port, launched.prefix) is False:
            # The manager submits the tuner's last parameters some seconds after saying "no more":
            # finished only once nothing has run for a while.
            idle_since = idle_since or time.time()
            if time.time() - idle_since >= EXHAUSTED_IDLE:
                return status
        else:
            idle_since = None
        time.sleep(poll)


def _check_free_space(workdir: Path, exp_id: str) -> None:
    """A disk that fills up mid-search would fail every later trial and could cut NNI's store
    short: stop first, while finished trials and the record of the stop still fit."""
    try:
        free = shutil.disk_usage(workdir).free
    except OSError:
        return
    if free < LOW_FREE_BYTES:
        raise ExperimentError(f"the work folder {workdir} is nearly full ({free / 2**20:.1f} MiB free, a search "
                              f"stops below {LOW_FREE_BYTES // 2**20} MiB); experiment {exp_id} was stopped "
                              "and its finished trials are kept; free some space")


def _live_trials(port: int, prefix: str | None) -> bool | None:
    """Whether the manager has trials waiting or running. Asked of the manager, not its store,
    which records a trial just submitted a moment later."""
    try:
        return any(TrialState.of(t.get("status")).active for t in rest(port, "trial-jobs", prefix))
    except (urllib.error.URLError, OSError, ValueError, AttributeError):
        return None  # not known: keep waiting


def _manager_alive(exp_id: str) -> bool:
    """False once the manager's process is gone (no need to wait out the grace period then)."""
    pid = manifest_entry(exp_id).get("pid")
    return not isinstance(pid, int) or _is_manager(pid, exp_id)  # no pid: rely on the grace period


def _manager_pid(exp_id: str) -> int | None:
    """The experiment's manager process while it runs: the pid NNI's manifest records, if that process
    is still the manager (its command line names the experiment; a pid may be reused)."""
    pid = manifest_entry(exp_id).get("pid")
    return pid if isinstance(pid, int) and _is_manager(pid, exp_id) else None


def _is_manager(pid: int, exp_id: str) -> bool:
    return exp_id.encode() in (_cmdline(pid) or b"")


def stop(exp_id: str, workdir: Path, timeout: float = 60.0) -> None:
    """Stop the experiment's manager as `nnictl stop` does, SIGTERM and a wait for its shutdown (up to
    60 s), without nnictl's own second and a half to start; a no-op if it is not running."""
    # The manifest is read once: the manager rewrites it as it shuts down, and a read mid-write is empty.
    pid = _manager_pid(exp_id)
    if pid is not None:
        with contextlib.suppress(OSError):  # it may exit at this very moment
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _is_manager(pid, exp_id) and time.monotonic() < deadline:
            time.sleep(0.05)
    kill_leftover(exp_id, pid)
    record_orphans_cancelled(workdir / exp_id)  # NNI stops recording trials once it is stopping


def kill_leftover(exp_id: str, pid: int | None = None) -> None:
    """End what a stop left behind: a manager that did not stop (`pid`, else the manifest's), and trial
    processes of this experiment that outlived a manager which died (they would run on, unheard)."""
    pid = pid if pid is not None and _is_manager(pid, exp_id) else _manager_pid(exp_id)
    if pid is not None:
        with contextlib.suppress(OSError):  # it may exit at this very moment
            os.kill(pid, signal.SIGKILL)  # it outlived stop's wait
    for trial_pid in trial_processes(exp_id):
        with contextlib.suppress(OSError):
            os.kill(trial_pid, signal.SIGKILL)


def trial_processes(exp_id: str) -> list[int]:
    """Processes NNI started as trials of this experiment (found by the NNI_EXP_ID they carry)."""
    marker = f"NNI_EXP_ID={exp_id}".encode()
    found = []
    try:
        entries = list(Path("/proc").iterdir())
    except OSError:  # no /proc (not Linux): nothing found
        return []
    for entry in entries:
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker in environ:
            found.append(int(entry.name))
    return found


def _cmdline(pid: int) -> bytes | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None


def manifest_entry(exp_id: str) -> dict[str, Any]:
    """NNI's own record of an experiment (port, pid, status) in ~/nni-experiments/.experiment."""
    manifest = Path.home() / "nni-experiments" / ".experiment"
    try:
        return json.loads(manifest.read_text()).get(exp_id, {}) or {}
    except (OSError, ValueError, AttributeError):
        return {}
