"""Accuracy against size: which networks no other trial beats, and the smallest that fits."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ExperimentError
from ..results import TrialRecord, TrialState


def measured(trials: list[TrialRecord]) -> list[TrialRecord]:
    """Succeeded trials with a max error and a size: the ones a front can place."""
    return [t for t in trials if t.status is TrialState.SUCCEEDED and None not in (t.max_error, t.n_params)]


def pareto_front(trials: list[TrialRecord], by: str = "max_error") -> list[TrialRecord]:
    """Trials no other succeeded trial beats on both parameter count and `by`, smallest first.

    `by` is "max_error" (lower is better) or "metric" (higher is better).
    """
    def score(t: TrialRecord) -> float:
        return t.max_error if by == "max_error" else -t.metric

    front: list[TrialRecord] = []
    for t in sorted(measured(trials), key=lambda t: (t.n_params, score(t), t.sequence)):
        if not front or score(t) < score(front[-1]):  # fewer parameters all came before: it must be better
            front.append(t)
    return front


@dataclass(frozen=True)
class Smallest:
    trial: TrialRecord
    reached: bool  # False: no trial reached the target; `trial` came closest


def smallest_within(trials: list[TrialRecord], max_error: float) -> Smallest:
    """The network with the fewest parameters whose max error is at most `max_error`."""
    placed = measured(trials)
    if not placed:
        raise ExperimentError("no succeeded trial with a max error to compare")
    fits = [t for t in placed if t.max_error <= max_error]
    if fits:
        return Smallest(min(fits, key=lambda t: (t.n_params, t.max_error, t.sequence)), True)
    return Smallest(min(placed, key=lambda t: (t.max_error, t.n_params, t.sequence)), False)


def seeds_within(trial: TrialRecord, max_error: float) -> tuple[int, int] | None:
    """(seeds whose own max error is at most `max_error`, seeds) of a trial trained with several seeds,
    from its metrics.json; None when it has no record of its seeds."""
    import json

    try:
        errors = json.loads((trial.output_dir / "metrics.json").read_text()).get("max_errors")
    except (OSError, TypeError, ValueError, AttributeError, RecursionError):
        return None
    if not isinstance(errors, list) or not all(isinstance(e, (int, float)) for e in errors) or not errors:
        return None
    return sum(e <= max_error for e in errors), len(errors)


def closest_miss(trials: list[TrialRecord], smallest: TrialRecord, max_error: float) -> TrialRecord | None:
    """The largest network of the same depth below `smallest` that did not reach `max_error`: how close it came."""
    below = [t for t in measured(trials) if t.max_error > max_error and t.n_params < smallest.n_params
             and len(t.params.get("hidden", ())) == len(smallest.params.get("hidden", ()))]
    return max(below, key=lambda t: (t.n_params, -t.max_error), default=None)
