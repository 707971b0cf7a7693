"""Accuracy against size: the Pareto front and the smallest network within a target."""

from __future__ import annotations

import pytest

from funcapprox.errors import ExperimentError
from funcapprox.results import TrialRecord
from funcapprox.views.pareto import pareto_front, smallest_within


def trial(trial_id: str, n_params: int, max_error: float | None, metric: float = 2.0,
          status: str = "SUCCEEDED", sequence: int = 0) -> TrialRecord:
    return TrialRecord(trial_id=trial_id, status=status, params={}, nni_params={}, metric=metric,
                       max_error=max_error, n_params=n_params, sequence=sequence)


TRIALS = [
    trial("a", 13, 0.066, 1.7),
    trial("b", 25, 0.035, 1.9),
    trial("c", 49, 0.072, 1.6),      # bigger and worse than b: dominated
    trial("d", 193, 0.0054, 2.5),
    trial("e", 385, 0.010, 2.3),     # bigger and worse than d: dominated (the study's {128,0,0})
    trial("f", 593, 0.0038, 2.7),
    trial("g", 593, 0.0050, 2.8),    # same size as f, worse max error: dominated on max error
    trial("h", 20, 0.001, 3.0, status="FAILED"),  # not finished: never on the front
]


def test_front_on_max_error_is_what_no_other_trial_beats_on_both():
    assert [t.trial_id for t in pareto_front(TRIALS)] == ["a", "b", "d", "f"]


def test_front_on_metric_prefers_the_higher_metric():
    assert [t.trial_id for t in pareto_front(TRIALS, by="metric")] == ["a", "b", "d", "g"]


def test_front_is_brute_force_correct():
    done = [t for t in TRIALS if t.status == "SUCCEEDED"]

    def dominated(t):
        return any(o.n_params <= t.n_params and o.max_error <= t.max_error
                   and (o.n_params, o.max_error) != (t.n_params, t.max_error) for o in done)

    assert {t.trial_id for t in pareto_front(TRIALS)} == {t.trial_id for t in done if not dominated(t)}


def test_smallest_within_a_target():
    found = smallest_within(TRIALS, 0.006)
    assert found.reached and found.trial.trial_id == "d"


def test_smallest_says_which_came_closest_when_none_reached():
    found = smallest_within(TRIALS, 0.001)
    assert not found.reached and found.trial.trial_id == "f"


def test_smallest_without_measured_trials_is_an_error():
    with pytest.raises(ExperimentError, match="no succeeded trial"):
        smallest_within([trial("x", 10, None)], 0.01)
