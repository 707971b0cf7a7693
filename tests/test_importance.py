"""What matters: shares of the metric's variance on experiments whose effects are known in advance
(metrics made of additive parts, whose variances give the shares), and on the recorded store."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from helpers.recorded import FAILED, RECORDED_ID, copy_recorded

from funcapprox.config import TrainConfig, settings_to_params
from funcapprox.errors import ConfigError, ExperimentError
from funcapprox.importance import BINS, EXACT, FANOVA, importance, summary
from funcapprox.nni.store import load_experiment
from funcapprox.results import Experiment, RunMeta, TrialRecord

ACTS = ("ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Softplus")
LRS = (0.005, 0.01, 0.02, 0.03, 0.04, 0.05)
OPTS = ("SGD", "Adam", "RMSprop")
LOSSES = ("SmoothL1Loss", "MSELoss")
A = dict(zip(ACTS, (0.4, 2.1, 1.9, 2.0, 1.6)))  # ReLU poor whatever else
B = dict(zip(LRS, (0.02, 0.0, -0.01, 0.03, -0.02, 0.01)))  # nearly insensitive to the learning rate
C = dict(zip(OPTS, (0.2, 0.9, 0.5)))  # Adam beats SGD and RMSprop


def experiment(rows: list[tuple[dict, float | None]], searched: tuple[str, ...]) -> Experiment:
    """An experiment whose trials ran these settings and got these metrics (None: failed)."""
    base = TrainConfig(func="oscillator").to_dict()
    fixed = {k: v for k, v in base.items() if k not in searched}
    trials = []
    for i, (settings, metric) in enumerate(rows):
        params = TrainConfig.from_dict({**base, **settings}).to_dict()
        trials.append(TrialRecord(trial_id=f"t{i}", status="SUCCEEDED" if metric is not None else "FAILED",
                                  params=params, nni_params=settings_to_params(settings), metric=metric,
                                  sequence=i))
    return Experiment("synthetic", Path("."), RunMeta(id="synthetic", stage="nonarch", fixed=fixed), trials)


def stage_one(metric) -> list[tuple[dict, float | None]]:
    return [(dict(act=a, lr=lr, optimizer=o, loss=loss), metric(a, lr, o, loss))
            for a, lr, o, loss in itertools.product(ACTS, LRS, OPTS, LOSSES)]


U = dict(zip(ACTS, (2.0, -1.0, 0.5, -0.5, -1.0)))  # zero-mean over the activations
W = dict(zip(OPTS, (1.0, -2.0, 1.0)))  # zero-mean over the optimizers: U·W has no main effect


def additive(a, lr, o, loss, interaction=0.0):
    return A[a] + B[lr] + C[o] + interaction * U[a] * W[o]


def variance(values) -> float:
    return float(np.var(list(values)))


@pytest.mark.parametrize("interaction", [0.0, 0.1])
def test_exact_shares_on_a_full_grid_are_the_variances_of_the_additive_parts(interaction):
    rows = stage_one(lambda *s: additive(*s, interaction))
    result = importance(experiment(rows, ("act", "lr", "optimizer", "loss")))
    assert result.method == EXACT and result.exact and (result.n, result.excluded) == (180, 0)
    total = variance(m for _, m in rows)
    expected = {"act": variance(A.values()), "lr": variance(B.values()), "optimizer": variance(C.values()),
                "loss": 0.0}
    for setting, part in expected.items():
        assert result.effect(setting).share == pytest.approx(part / total, abs=1e-12)
    assert result.interactions_share == pytest.approx(interaction**2 * variance(
        U[a] * W[o] for a, o in itertools.product(ACTS, OPTS)) / total, abs=1e-12)
    assert sum(e.share for e in result.effects) + result.interactions_share == pytest.approx(1.0)
    assert [e.setting for e in result.effects] == ["act", "optimizer", "lr", "loss"]
    act = result.effect("act_func")
    assert (act.best, act.worst) == (max(A, key=A.get), min(A, key=A.get))
    assert act.worst_mean == pytest.approx(np.mean([m for s, m in rows if s["act"] == "ReLU"]))
    assert result.effect("optimizer").best == "Adam" and result.effect("learning_rate").n == 180
    assert [level.count for level in act.levels] == [36] * 5


def test_fanova_agrees_with_the_exact_shares_on_a_full_grid():
    exp = experiment(stage_one(additive), ("act", "lr", "optimizer", "loss"))
    exact, forest = importance(exp), importance(exp, method="fanova")
    assert forest.method == FANOVA and not forest.exact and "estimates" in forest.note
    assert "not a full grid" not in forest.note
    for effect in exact.effects:
        assert forest.effect(effect.setting).share == pytest.approx(effect.share, abs=0.05)
    assert [e.setting for e in forest.effects][:2] == ["act", "optimizer"]
    assert forest.interactions_share < 0.05


def test_failed_trials_are_left_out_counted_and_the_rest_estimated():
    rng = np.random.default_rng(3)
    rows = stage_one(additive)
    lost = set(rng.choice(len(rows), 7, replace=False).tolist())
    rows = [(s, None if i in lost else m) for i, (s, m) in enumerate(rows)]
    exp = experiment(rows, ("act", "lr", "optimizer", "loss"))
    result = importance(exp)
    assert result.method == FANOVA and (result.n, result.excluded) == (173, 7)
    assert "7 trials without a metric left out" in result.note
    for effect in result.effects:
        assert sum(level.failed for level in effect.levels) == 7
        assert sum(level.count for level in effect.levels) == 173
    kept = [m for _, m in rows if m is not None]
    total = variance(kept)
    assert result.effect("act").share == pytest.approx(variance(A.values()) / total, abs=0.07)
    assert result.effect("optimizer").share == pytest.approx(variance(C.values()) / total, abs=0.07)
    with pytest.raises(ExperimentError, match="not a full grid"):
        importance(exp, method="grid")


def test_a_sampled_design_is_estimated_and_a_continuous_setting_binned():
    rng = np.random.default_rng(7)
    rows = []
    for _ in range(160):
        a, o, lr = rng.choice(ACTS), rng.choice(OPTS), float(10 ** rng.uniform(-3, -1))
        rows.append((dict(act=str(a), optimizer=str(o), lr=lr), A[a] + C[o] + 0.4 * np.log10(lr)))
    result = importance(experiment(rows, ("act", "optimizer", "lr")))
    assert result.method == FANOVA and not result.exact
    parts = {"act": variance(A.values()), "optimizer": variance(C.values()),
             "lr": variance(0.4 * np.log10([s["lr"] for s, _ in rows]))}
    for setting, part in parts.items():
        assert result.effect(setting).share == pytest.approx(part / sum(parts.values()), abs=0.1)
    lr = result.effect("lr")
    assert len(lr.levels) == BINS and sum(level.count for level in lr.levels) == 160
    assert lr.best == lr.levels[-1].value and lr.worst == lr.levels[0].value  # the metric rises with lr
    low, high = lr.best
    assert low <= high == max(s["lr"] for s, _ in rows) and "–" in lr.levels[-1].label


def test_hidden_sizes_count_as_one_setting_per_layer():
    sizes = (4, 8, 16, 32, 64, 128)
    rest = (4, 8, 16, 32)
    nets = [(n1,) for n1 in sizes] + [(n1, n2) for n1 in sizes for n2 in rest] + \
           [(n1, n2, n3) for n1 in sizes for n2 in rest for n3 in rest]
    assert len(nets) == 126  # the study's stage 2, without its invalid networks
    rows = [(dict(hidden=net), 0.5 * np.log2(net[0]) + 0.01 * len(net)) for net in nets]
    result = importance(experiment(rows, ("hidden",)))
    assert [e.setting for e in result.effects][0] == "hidden_size_1"
    assert {e.setting for e in result.effects} == {"hidden_size_1", "hidden_size_2", "hidden_size_3"}
    assert result.method == FANOVA  # no network {n1, 0, n3}: not a full grid
    first = result.effect("hidden_size_1")
    assert first.share > 0.9 and first.best == 128 and first.worst == 4
    assert [level.value for level in result.effect("hidden_size_3").levels] == [0, 4, 8, 16, 32]


def test_the_recorded_store(tmp_path):
    experiment = load_experiment(copy_recorded(tmp_path), RECORDED_ID)
    result = importance(experiment)
    succeeded = experiment.succeeded()
    failed = [t for t in experiment.trials if t.trial_id in FAILED]
    assert (result.n, result.excluded) == (len(succeeded), len(failed))
    # the two measured trials differ only in the activation, so it explains everything
    assert result.method == EXACT
    assert result.effect("act").share == pytest.approx(1.0) and result.effect("lr").share == 0.0
    assert result.effect("act").best == max(succeeded, key=lambda t: t.metric).params["act"]
    assert set(result.effect("learning_rate").all_failed) == {t.params["lr"] for t in failed}
    line = summary(result)
    assert line.startswith("act_func 100%, learning_rate 0%, interactions 0%") and "2 trials" in line
    json.dumps(result.as_dict())


def test_a_metric_that_does_not_vary_explains_nothing():
    result = importance(experiment([(dict(act=a), 1.5) for a in ACTS], ("act",)))
    assert [e.share for e in result.effects] == [0.0] and result.interactions_share == 0.0
    assert "does not vary" in result.note


def test_no_metric_at_all_is_an_error():
    with pytest.raises(ExperimentError, match="no trial with a metric"):
        importance(experiment([(dict(act=a), None) for a in ACTS], ("act",)))
    with pytest.raises(ConfigError, match="method"):
        importance(experiment([(dict(act="ReLU"), 1.0)], ("act",)), method="anova")
