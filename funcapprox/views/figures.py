"""The PNG files commands write: a run's fit, and an experiment trial's fit and metric history."""

from __future__ import annotations

from pathlib import Path

from ..artifacts import load_model
from ..config import TrainConfig
from ..errors import FuncApproxError
from ..results import META_DIR, Experiment, TrialRecord, TrialState, check_id

BEST_PLOT = "best.png"


def save_fit_plot(model, config: TrainConfig, path: Path) -> Path:
    from .plot import draw_fit, fit_data, save_figure

    return save_figure(draw_fit(fit_data(model, config)), path)


def _trial_model(trial: TrialRecord, retrain: bool):
    """The trial's saved network; with `retrain`, train its configuration again if the weights are gone."""
    config = trial.config
    try:
        if trial.output_dir is None:
            raise FuncApproxError(f"trial {trial.trial_id} has no output folder")
        return load_model(trial.output_dir, config)
    except FuncApproxError as exc:
        if not retrain:
            raise FuncApproxError(f"{exc}; add --retrain to train its configuration again") from None
    from ..train import train

    result = train(config)  # same configuration and seed: the same network, deterministically
    if not result.ok:
        raise FuncApproxError(f"retraining trial {trial.trial_id} failed: {result.diverged}")
    return result.model


def plot_trial(workdir: Path, experiment_id: str, trial_id: str, out: Path | None = None,
               retrain: bool = False) -> list[Path]:
    """Write a trial's fit PNG and its metric-history PNG; return their paths."""
    from ..nni.store import load_experiment  # not at the top: `funcapprox train` needs no NNI store
    from .plot import draw_history, history_data, save_figure

    experiment = load_experiment(workdir, experiment_id)
    trial = experiment.trial(trial_id)
    if trial.status is not TrialState.SUCCEEDED and not retrain:
        raise FuncApproxError(f"trial {trial.trial_id} did not succeed ({trial.status}"
                              + (f": {trial.reason})" if trial.reason else ")"))
    model = _trial_model(trial, retrain)
    out = Path(out) if out else experiment.folder / META_DIR / f"trial-{check_id(trial.trial_id, 'trial id')}.png"
    if out.parent and not out.parent.exists():
        raise FuncApproxError(f"the folder of --out {out} does not exist")
    fit = save_fit_plot(model, trial.config, out)
    records = trial_history(trial)
    history = draw_history([history_data(records, f"{trial.trial_id} {trial.arch}")],
                           title=f"metric history of trial {trial.trial_id} ({trial.arch}, experiment {experiment.id})")
    history_path = save_figure(history, out.with_name(out.stem + "-history.png"))
    return [fit, history_path]


def trial_history(trial: TrialRecord) -> list[dict]:
    """The trial's evaluations with their epochs: its own history.json, else NNI's intermediate results."""
    from ..artifacts import HISTORY_FILE, read_json
    from ..nni.trial import reported_epochs
    from ..train import EVAL_EVERY

    if trial.output_dir is not None:
        try:
            return read_json(trial.output_dir / HISTORY_FILE)
        except FuncApproxError:
            pass
    epochs = trial.config.epochs
    evaluated = list(range(EVAL_EVERY, epochs + 1, EVAL_EVERY)) + ([epochs] if epochs % EVAL_EVERY else [])
    at = reported_epochs(evaluated, epochs, len(trial.history))
    return [{"epoch": epoch, "metric": m, "max_error": float("nan")} for epoch, m in zip(at, trial.history)]


def plot_best(experiment: Experiment) -> Path | None:
    """The best trial's fit in the experiment's funcapprox folder (None if nothing succeeded)."""
    if not experiment.succeeded():
        return None
    best = experiment.best()
    try:
        model = load_model(best.output_dir, best.config)
    except FuncApproxError:
        return None
    return save_fit_plot(model, best.config, experiment.folder / META_DIR / BEST_PLOT)
