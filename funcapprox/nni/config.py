"""NNI experiment configuration (v2 YAML) for a search stage."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path
from typing import Any

from ..errors import ConfigError

# Every tuner maximizes: the metric is -log10(RMS), higher is better. Seeds make runs repeatable.
# Not Anneal: NNI 3.0's Anneal (hyperopt) fails on every reported result under numpy 2.
TUNERS: dict[str, dict[str, Any]] = {
    "GridSearch": {},  # takes no classArgs
    "TPE": {"optimize_mode": "maximize", "seed": 12},
    "Random": {"optimize_mode": "maximize", "seed": 12},
    "Evolution": {"optimize_mode": "maximize", "population_size": 32},
}


# Early stopping by NNI's own assessors, off by default (a grid search is meant to cover its grid). Each
# judges a trial by its intermediate results, one every nni/trial.py's REPORT_EVERY epochs.
ASSESSORS = ("Medianstop", "Curvefitting")


def assessor_config(name: str, epochs: int) -> dict[str, Any]:
    """NNI's `assessor` entry; `epochs`: the trials' budget (Curvefitting needs its count of results)."""
    from .trial import REPORT_EVERY

    if name == "Medianstop":  # stops a trial whose best so far is below the median of the finished ones
        return {"name": name, "classArgs": {"optimize_mode": "maximize", "start_step": 2}}
    if name == "Curvefitting":  # extrapolates the curve; NNI documents it for accuracies (metrics up to 1)
        reported = epochs // REPORT_EVERY + (1 if epochs % REPORT_EVERY else 0)
        return {"name": name, "classArgs": {"epoch_num": reported, "start_step": max(1, reported // 4),
                                            "threshold": 0.95, "gap": 1}}
    raise ConfigError(f"--assessor must be one of {', '.join(ASSESSORS)}, not {name!r}")


def trial_command(fixed: dict[str, Any], python: str | None = None, warm: str | None = None,
                  batched: bool = False) -> str:
    """The shell command NNI runs per trial: the stage's fixed settings as readable --set pairs
    (`batched`: the trials train in batched steps, see nni/trial.py)."""
    import json

    parts = [python or sys.executable, "-m", "funcapprox.nni.trial", *(["--warm", warm] if warm else []),
             *(["--batched"] if batched else [])]
    for key, value in fixed.items():
        if key == "hidden":
            text = ",".join(map(str, [*value, 0, 0][:3]))  # "64,0,0": never a bare number
        else:
            text = value if isinstance(value, str) else json.dumps(value)
        parts += ["--set", f"{key}={text}"]
    return " ".join(shlex.quote(p) for p in parts)


def parse_duration(text: str | None, option: str) -> str | None:
    """NNI's duration format: a number and a unit, s, m, h or d ("90s", "10m")."""
    if text is None:
        return None
    value = str(text).strip()
    if not re.fullmatch(r"\d+(\.\d+)?[smhd]", value) or float(value[:-1]) <= 0:
        raise ConfigError(f"{option} takes a positive number and a unit s, m, h or d, like 10m; got {text!r}")
    return value


WIDTH_SEARCH = "WidthSearch"  # --stage smallest's own tuner (nni/tuner.py), not one a user picks with --tuner


def tuner_config(name: Any, class_args: dict[str, Any] | None = None) -> dict[str, Any]:
    """NNI's `tuner` entry for one of the tuners funcapprox offers (always maximizing), or the width search
    with its arguments: NNI imports it from the folder funcapprox is imported from, where it runs."""
    if name == WIDTH_SEARCH:
        import funcapprox

        return {"codeDirectory": str(Path(funcapprox.__file__).resolve().parent.parent),
                "className": "funcapprox.nni.tuner.WidthSearchTuner", "classArgs": dict(class_args or {})}
    if name not in TUNERS:
        raise ConfigError(f"--tuner must be one of {', '.join(TUNERS)}, not {name!r}")
    return {"name": name, **({"classArgs": TUNERS[name]} if TUNERS[name] else {})}


def experiment_config(
    *,
    name: str,
    search_space: dict[str, Any],
    command: str,
    code_dir: Path,
    workdir: Path,
    tuner: str = "GridSearch",
    tuner_args: dict[str, Any] | None = None,
    concurrency: int = 2,
    max_trials: int | None = None,
    max_duration: str | None = None,
    max_trial_duration: str | None = None,
    assessor: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The experiment as NNI's v2 config keys (plain data, ready for YAML); `assessor` as assessor_config."""
    if concurrency < 1:
        raise ConfigError(f"--concurrency must be at least 1, not {concurrency}")
    if max_trials is not None and max_trials < 1:
        raise ConfigError(f"--max-trials must be at least 1, not {max_trials}")
    config: dict[str, Any] = {
        "experimentName": name,
        # Inline, not searchSpaceFile: NNI re-reads that path on `nnictl view` and resume.
        "searchSpace": search_space,
        "trialCommand": command,
        "trialCodeDirectory": str(code_dir),
        "trialConcurrency": concurrency,
        "experimentWorkingDirectory": str(workdir),
        "tuner": tuner_config(tuner, tuner_args),
        **({"assessor": assessor} if assessor else {}),
        "trainingService": {"platform": "local", "useActiveGpu": False},
    }
    if max_trials is not None:
        config["maxTrialNumber"] = max_trials
    if max_duration is not None:
        config["maxExperimentDuration"] = parse_duration(max_duration, "--max-duration")
    if max_trial_duration is not None:
        config["maxTrialDuration"] = parse_duration(max_trial_duration, "--max-trial-duration")
    return config


def to_yaml(config: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(config, sort_keys=False, width=1000)


def validate_with_nni(config: dict[str, Any]) -> None:
    """NNI's own check of a config (imports nni: seconds; used by tests and --dry-run)."""
    from nni.experiment.config import ExperimentConfig

    try:
        ExperimentConfig(**config).validate()
    except Exception as exc:  # NNI raises ValueError, TypeError or its own errors
        raise ConfigError(f"NNI rejects the generated config: {exc}") from None
