"""The experiments in a work folder: list them, stop one, reopen one's web UI."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..config import DEFAULT_DOMAIN, function_text
from ..errors import ExperimentError
from ..nni.manager import base_url, claim_port, live_status, restart, stop
from ..nni.store import load_experiment
from ..results import RunMeta, experiment_ids, read_meta, resolve_id


def experiment_status(exp_id: str, meta: RunMeta) -> str:
    """RUNNING (or NNI's live word) while a manager answers; else what funcapprox recorded."""
    live = live_status(exp_id, meta)
    if live:
        return live
    recorded = meta.status
    return "STOPPED" if recorded == "RUNNING" else recorded  # a manager that is gone is no longer running


def list_experiments(workdir: Path) -> list[dict[str, Any]]:
    rows = []
    for exp_id in experiment_ids(workdir):
        experiment = load_experiment(workdir, exp_id)
        done = experiment.succeeded()
        best = max((t.metric for t in done), default=None)
        created = experiment.meta.created
        rows.append({
            "id": exp_id,
            "stage": experiment.stage,
            "func": function_text(experiment.func, experiment.meta.fixed.get("domain", DEFAULT_DOMAIN), limit=32),
            "status": experiment_status(exp_id, experiment.meta),
            "trials": f"{len(done)}/{len(experiment.trials)}",
            "best": best,
            "started": time.strftime("%Y-%m-%d %H:%M", time.localtime(created)) if created else "?",
        })
    return rows


def stop_experiment(workdir: Path, exp_id: str) -> str:
    exp_id = resolve_id(workdir, exp_id)
    stop(exp_id, workdir)
    return f"experiment {exp_id} stopped; its results stay in {workdir / exp_id}"


def view_experiment(workdir: Path, exp_id: str, port: int | None = None) -> str:
    """Start NNI's web UI on a stopped experiment (`nnictl view`), without running trials."""
    exp_id = resolve_id(workdir, exp_id)
    claim_port(port)  # a busy --port is said before anything else
    meta = read_meta(workdir / exp_id)
    if live_status(exp_id, meta) is not None:  # a second manager would take over NNI's record of the first
        raise ExperimentError(f"experiment {exp_id} already has a running manager: its web UI is at "
                              f"{base_url(meta.port, meta.url_prefix)}")
    launched = restart("view", exp_id, workdir, port)
    return (f"web UI of experiment {exp_id} at {launched.url}; "
            f"stop it with `funcapprox experiments --stop {exp_id}`")
