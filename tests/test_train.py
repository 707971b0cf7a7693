"""The trainer: determinism, the study's evaluation schedule and metric, divergence, and the quality figures."""

from __future__ import annotations

import json
import math

import pytest
import torch

from funcapprox.config import TrainConfig
from funcapprox.targets import grid, target
from funcapprox.train import Evaluation, TrainResult, train


def _bits(history: list[Evaluation]) -> list[tuple]:
    """Every number of a history as its exact bit pattern (so 0.0 vs -0.0 or NaN payloads count too)."""
    return [tuple(float(v).hex() for v in (e.epoch, e.metric, e.rms, e.max_error, e.max_error_x)) for e in history]


def _without_time(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k != "seconds"}  # wall time is the one thing that may differ


def test_same_config_gives_identical_numbers(tiny_config):
    first, second = train(tiny_config), train(tiny_config)
    assert _bits(first.history) == _bits(second.history)
    assert first.history == second.history
    assert _without_time(first.summary()) == _without_time(second.summary())
    for a, b in zip(first.model.parameters(), second.model.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("changes", [{"func": "oscillator"}, {"optimizer": "RMSprop", "act": "ReLU", "hidden": (8, 4)}])
def test_determinism_holds_for_other_configs(tiny_config, changes):
    config = tiny_config.replace(**changes)
    assert _bits(train(config).history) == _bits(train(config).history)


def test_different_seed_gives_different_numbers(tiny_config):
    first, second = train(tiny_config), train(tiny_config.replace(seed=13))
    assert [e.epoch for e in first.history] == [e.epoch for e in second.history]
    assert all(a.rms != b.rms for a, b in zip(first.history, second.history))
    assert first.metric != second.metric
    assert not torch.equal(first.model.layers[0].weight, second.model.layers[0].weight)


@pytest.mark.parametrize("epochs, expected", [(12, [5, 10, 12]), (20, [5, 10, 15, 20]), (3, [3]), (5, [5])])
def test_evaluations_every_five_epochs_and_at_the_end(tiny_config, epochs, expected):
    result = train(tiny_config.replace(epochs=epochs))
    assert [e.epoch for e in result.history] == expected
    assert result.steps == epochs * 10  # 1000 samples in batches of 100


def test_steps_count_a_short_last_batch(tiny_config):
    result = train(tiny_config.replace(samples=250, batch=100, epochs=5))
    assert result.steps == 5 * 3


def test_on_eval_sees_every_evaluation_in_order(tiny_config):
    seen: list[Evaluation] = []
    result = train(tiny_config, on_eval=seen.append)
    assert seen == result.history


def test_metric_is_the_minimum_of_the_last_five_evaluations(tiny_config):
    result = train(tiny_config.replace(epochs=40))
    metrics = [e.metric for e in result.history]
    assert len(metrics) == 8
    assert result.metric == min(metrics[-5:])
    assert result.summary()["metric"] == result.metric


def test_metric_uses_fewer_evaluations_when_there_are_fewer(tiny_config):
    result = train(tiny_config.replace(epochs=10))
    assert result.metric == min(e.metric for e in result.history)


def test_metric_of_a_hand_made_history(tiny_config):
    history = [Evaluation(5 * (i + 1), m, 10**-m, 0.1, 0.5) for i, m in enumerate([1.0, 3.0, 2.5, 2.0, 2.8, 2.9, 3.1])]
    result = TrainResult(tiny_config, models=[None], histories=[history])
    assert result.metric == 2.0  # min of the last five: 2.5, 2.0, 2.8, 2.9, 3.1; the early 1.0 is ignored
    assert TrainResult(tiny_config, models=[None], histories=[[]]).metric is None


def test_evaluation_measures_the_study_metric(tiny_config):
    """Recompute the last evaluation from the trained module itself, independently of the trainer."""
    result = train(tiny_config)
    last = result.last
    f = target(tiny_config.func)
    with torch.no_grad():
        coarse = grid(101)  # x = 0, 0.01, …, 1.0
        rms = (result.model(coarse) - f(coarse)).square().mean().sqrt().item()
        fine = grid(1001)
        errors = (result.model(fine) - f(fine)).abs().squeeze(1)
    assert last.rms == pytest.approx(rms, rel=1e-4)
    assert last.metric == pytest.approx(-math.log10(last.rms), rel=1e-12)
    assert last.max_error == pytest.approx(errors.max().item(), rel=1e-4)
    assert last.max_error_x == pytest.approx(fine[int(errors.argmax())].item(), abs=1e-3)


def test_summary_is_plain_json(tiny_config):
    result = train(tiny_config)
    summary = result.summary()
    assert result.ok and result.diverged is None
    assert summary["status"] == "ok" and summary["reason"] is None
    assert summary["n_params"] == tiny_config.n_params
    assert summary["epochs"] == 12 and summary["steps"] == 120
    assert summary["rms"] == result.last.rms and summary["max_error"] == result.last.max_error
    json.dumps(summary, allow_nan=False)


# --- divergence ------------------------------------------------------------------------------------


def test_divergence_is_reported_and_stops_training(diverging_config):
    seen: list[Evaluation] = []
    result = train(diverging_config, on_eval=seen.append)
    assert not result.ok
    assert "diverged at epoch 5" in result.diverged
    assert "NaN or infinite" in result.diverged
    assert "smaller learning rate" in result.diverged
    # Stopped at the first evaluation, not after 50 epochs.
    assert [e.epoch for e in result.history] == [5]
    assert seen == result.history
    assert result.steps == 5 * 10
    assert not math.isfinite(result.history[-1].rms)


def test_diverged_summary_has_no_nan(diverging_config):
    summary = train(diverging_config).summary()
    assert summary["status"] == "diverged"
    assert "diverged" in summary["reason"]
    assert summary["epochs"] == 5
    assert summary["metric"] is None and summary["rms"] is None and summary["max_error"] is None
    json.dumps(summary, allow_nan=False)  # raises on NaN or inf


def test_diverged_summary_keeps_the_finite_evaluations(tiny_config):
    """Divergence after some good evaluations: the metric comes from the finite ones, still no NaN."""
    nan = math.nan
    history = [Evaluation(5, 1.5, 10**-1.5, 0.1, 1.0), Evaluation(10, 1.7, 10**-1.7, 0.08, 1.0),
               Evaluation(15, nan, nan, nan, 0.0)]
    result = TrainResult(tiny_config, models=[None], histories=[history], diverged="training diverged at epoch 15")
    summary = result.summary()
    assert summary["status"] == "diverged"
    assert summary["metric"] == 1.5
    assert summary["rms"] is None and summary["max_error"] is None and summary["max_error_x"] is None
    json.dumps(summary, allow_nan=False)


# --- quality: the study's figures, trained for real at the default seed --------------------------------


STUDY_TRAINER = {"init": "default", "lr_schedule": "constant"}


@pytest.mark.slow
@pytest.mark.parametrize("trainer", [STUDY_TRAINER, {}], ids=["study-trainer", "defaults"])
def test_square_reaches_the_study_max_error(trainer):
    config = TrainConfig(func="square", hidden=(16, 16, 16), act="Sigmoid", optimizer="Adam", lr=0.01,
                         loss="MSELoss", epochs=250, **trainer)
    result = train(config)
    assert result.ok
    assert result.last.max_error <= 0.02
    assert result.metric >= 2.0  # the study's "good"


@pytest.mark.slow
@pytest.mark.parametrize("trainer", [STUDY_TRAINER, {}], ids=["study-trainer", "defaults"])
def test_oscillator_reaches_the_study_max_error_with_193_parameters(trainer):
    config = TrainConfig(func="oscillator", hidden="64,0,0", act="LeakyReLU", optimizer="Adam", lr=0.005,
                         loss="SmoothL1Loss", epochs=1000, **trainer)
    result = train(config)
    assert result.ok
    assert config.n_params == 193
    assert result.last.max_error <= 0.006


@pytest.mark.slow
@pytest.mark.parametrize("units", [12, 16])
def test_a_single_layer_of_at_most_16_units_fits_the_oscillator(units):
    """The study's budget; the study needed 64 units and found < 16 never learned."""
    config = TrainConfig(func="oscillator", hidden=(units,), act="LeakyReLU", optimizer="Adam", lr=0.02,
                         loss="SmoothL1Loss", epochs=1000)
    assert (config.init, config.lr_schedule) == ("spread", "cosine")  # the defaults
    result = train(config)
    assert result.ok and result.last.max_error <= 0.006


@pytest.mark.slow
def test_the_study_trainer_does_not_fit_the_oscillator_with_16_units():
    config = TrainConfig(func="oscillator", hidden=(16,), act="LeakyReLU", optimizer="Adam", lr=0.02,
                         loss="SmoothL1Loss", epochs=1000, **STUDY_TRAINER)
    assert train(config).last.max_error > 0.006


def test_spread_init_tiles_the_kinks():
    from funcapprox.model import build_model

    model = build_model(TrainConfig(hidden=(4, 3), init="spread"))
    weight, bias = model.layers[0].weight.squeeze(1), model.layers[0].bias
    assert torch.allclose(-bias / weight, torch.tensor([0.125, 0.375, 0.625, 0.875]))
    assert weight.tolist() == [5.0, -5.0, 5.0, -5.0]
    assert model.layers[-1].weight.abs().sum() == 0


def test_cosine_schedule():
    from funcapprox.train import lr_at

    assert lr_at("cosine", 0.02, 0.0) == 0.02
    assert lr_at("cosine", 0.02, 0.5) == pytest.approx(0.01)
    assert lr_at("cosine", 0.02, 0.999) < 1e-6
    assert lr_at("constant", 0.02, 0.7) == 0.02


# --- a function of the user's: its own domain and units ----------------------------------------------


def _own_units(result: TrainResult) -> tuple[float, float, float]:
    """rms (on every 10th of the 1001 points), max error and where, worked out here in the function's units."""
    import numpy as np

    from funcapprox.expression import parse_expression
    from funcapprox.targets import Target

    config = result.config
    low, high = config.domain
    x = np.linspace(low, high, 1001)
    truth = parse_expression(config.func).evaluate(x)
    f = Target(config.func, config.domain)
    with torch.no_grad():
        prediction = f.own(result.model(grid(1001)).double()).squeeze(1).numpy()
    error = prediction - truth
    worst = int(np.abs(error).argmax())
    return float(np.sqrt(np.mean(error[::10] ** 2))), float(abs(error[worst])), float(x[worst])


@pytest.mark.parametrize("func, domain", [("sin(6*x)*exp(-x)", (0.0, 1.0)), ("x**2", (-3.0, 5.0))])
def test_a_formula_trains_and_reports_in_its_own_units(func, domain):
    result = train(TrainConfig(func=func, domain=domain, hidden=(16,), act="Tanh", lr=0.01, epochs=300, refine="none"))
    rms, max_error, where = _own_units(result)
    last = result.last
    assert last.rms == pytest.approx(rms, rel=1e-4) and last.max_error == pytest.approx(max_error, rel=1e-4)
    assert last.max_error_x == pytest.approx(where, abs=1e-6) and domain[0] <= where <= domain[1]
    assert last.metric == pytest.approx(-math.log10(rms), rel=1e-4)  # the study's metric, in the function's units
    assert max_error < 0.05 * (25 if func == "x**2" else 1)  # it learned the function, not a constant


def test_the_range_of_y_does_not_change_what_the_network_learns():
    """The output is scaled: 100·f trains like f, its errors 100 times as large, its metric 2 lower."""
    small, large = (train(TrainConfig(func=f, hidden=(12,), act="Tanh", lr=0.02, epochs=200, refine="none"))
                    for f in ("sin(6*x)", "100 * sin(6*x)"))
    assert large.last.max_error == pytest.approx(100 * small.last.max_error, rel=0.02)
    assert large.last.rms == pytest.approx(100 * small.last.rms, rel=0.02)
    assert large.last.metric == pytest.approx(small.last.metric - 2, abs=0.01)


def test_the_built_ins_are_not_mapped(tiny_config):
    from funcapprox.targets import Target

    f = Target(tiny_config.func)
    u = grid(11)
    assert f.identity and f.x(u) is u and f.own(u) is u and torch.equal(f.unit(u), target(tiny_config.func)(u))


# --- refine: refine.py as training's last phase -----------------------------------------------------


def test_auto_refines_one_small_layer_and_its_evaluation_is_final():
    from funcapprox.train import train

    base = dict(func="oscillator", hidden=(10,), act="LeakyReLU", lr=0.02, loss="SmoothL1Loss", epochs=200)
    plain = train(TrainConfig(**base, refine="none"))
    refined = train(TrainConfig(**base))
    assert TrainConfig(**base).refines and refined.refined and not plain.refined
    assert refined.summary()["refined"] is True and "refined" not in plain.summary()
    assert refined.summary()["max_error"] < plain.summary()["max_error"] / 10
    assert refined.metric == refined.history[-1].metric  # not the worst of the last 5: the refined network is kept
    assert [e.epoch for e in refined.history] == [e.epoch for e in plain.history]
    assert refined.history[:-1] == plain.history[:-1]  # training itself is unchanged
    assert train(TrainConfig(**base)).summary() | {"seconds": 0} == refined.summary() | {"seconds": 0}


@pytest.mark.parametrize(("settings", "refines"), [
    ({"hidden": (32,)}, True), ({"hidden": (33,)}, False), ({"hidden": (8, 8)}, False),
    ({"hidden": (8,), "output_act": True}, False), ({"hidden": (8,), "refine": "none"}, False),
    ({"hidden": (16, 16, 16), "refine": "lm"}, True),
])
def test_where_auto_refines(settings, refines):
    assert TrainConfig(func="square", **settings).refines is refines
