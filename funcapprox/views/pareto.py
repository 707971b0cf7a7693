"""Accuracy against size: which networks no other trial beats, and the smallest that fits."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ExperimentError
from ..results import TrialRecord


def _measured(trials: list[TrialRecord]) -> list[TrialRecord]:
    return [t for t in trials if t.status == "SUCCEEDED" and t.max_error is not None and t.n_params is not None]


def pareto_front(trials: list[TrialRecord], by: str = "max_error") -> list[TrialRecord]:
    """Trials no other succeeded trial beats on both parameter count and `by`, smallest first.

    `by` is "max_error" (lower is better) or "metric" (higher is better).
    """
    def score(t: TrialRecord) -> float:
        return t.max_error if by == "max_error" else -t.metric

    front: list[TrialRecord] = []
    for t in sorted(_measured(trials), key=lambda t: (t.n_params, score(t), t.sequence)):
        if not front or score(t) < score(front[-1]):  # fewer parameters all came before: it must be better
            front.append(t)
    return front


@dataclass(frozen=True)
class Smallest:
    trial: TrialRecord
    reached: bool  # False: no trial reached the target; `trial` came closest


def smallest_within(trials: list[TrialRecord], max_error: float) -> Smallest:
    """The network with the fewest parameters whose max error is at most `max_error`."""
    measured = _measured(trials)
    if not measured:
        raise ExperimentError("no succeeded trial with a max error to compare")
    fits = [t for t in measured if t.max_error <= max_error]
    if fits:
        return Smallest(min(fits, key=lambda t: (t.n_params, t.max_error, t.sequence)), True)
    return Smallest(min(measured, key=lambda t: (t.max_error, t.n_params, t.sequence)), False)
