"""Several configurations trained as one batched step (funcapprox.group): each copy is its run alone.

Against its solo run a copy may differ by float rounding only (MKL's batched products against its
2-D ones); against itself in any other group, in any order, it must not differ at all.
"""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch

from funcapprox.config import ACTIVATIONS, LOSSES, OPTIMIZERS, TrainConfig
from funcapprox.engine import FlatMLP, make_optimizer
from funcapprox.group import PER_COPY, Stop, group_key, train_group, train_one
from funcapprox.model import build_model
from funcapprox.train import train

BASE = TrainConfig(func="oscillator", hidden=(8, 4), act="Sigmoid", optimizer="Adam", epochs=12)
LRS = (0.005, 0.01, 0.02, 0.03, 0.04, 0.05)  # stage 1's grid
DIVERGING = {"optimizer": "SGD", "lr": 1e6, "loss": "MSELoss"}  # NaN by the first evaluation (conftest.DIVERGING)


def _stage1(base: TrainConfig = BASE) -> list[TrainConfig]:
    """One stage-1 group: every learning rate and loss of one activation and optimizer."""
    return [base.replace(lr=lr, loss=loss) for lr in LRS for loss in LOSSES]


def _flat(result) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for model in result.models for p in model.parameters()])


def _bits(result) -> tuple:
    """Everything a result holds, exactly: histories as bit patterns, parameters, summary but time."""
    histories = tuple(tuple(tuple(float(v).hex() for v in (e.epoch, e.metric, e.rms, e.max_error, e.max_error_x))
                            for e in history) for history in result.histories)
    summary = {k: v for k, v in result.summary().items() if k != "seconds"}
    params = _flat(result)
    return histories, json.dumps(summary), params.numpy().tobytes(), result.steps, result.diverged


def _relative_error(mine: torch.Tensor, theirs: torch.Tensor) -> float:
    return ((mine - theirs).abs().max() / theirs.abs().max()).item()


# --- which configurations can share a step -------------------------------------------------------


def test_configs_that_differ_only_per_copy_share_a_key():
    others = [BASE.replace(lr=0.05), BASE.replace(loss="SmoothL1Loss"), BASE.replace(seed=3),
              BASE.replace(seeds=2), BASE.replace(init="default"), BASE.replace(lr_schedule="constant")]
    assert {group_key(c) for c in others} == {group_key(BASE)}
    assert PER_COPY == {"lr", "lr_schedule", "loss", "seed", "seeds", "init"}


@pytest.mark.parametrize("change", [{"act": "Tanh"}, {"optimizer": "SGD"}, {"hidden": (8, 32)}, {"epochs": 13},
                                    {"samples": 500}, {"batch": 50}, {"func": "square"}, {"output_act": True},
                                    {"domain": (0.0, 2.0)}])
def test_configs_that_differ_in_a_shared_setting_do_not(change):
    other = BASE.replace(**change)
    assert group_key(other) != group_key(BASE)
    with pytest.raises(ValueError, match=next(iter(change))):
        train_group([BASE, other])


def test_the_stage_1_grid_falls_into_15_groups_of_12():
    grid = [TrainConfig(func="oscillator", act=act, optimizer=opt, lr=lr, loss=loss)
            for act, opt, lr, loss in itertools.product(ACTIVATIONS, OPTIMIZERS, LRS, LOSSES)]
    parts: dict[str, list[TrainConfig]] = {}
    for config in grid:
        parts.setdefault(group_key(config), []).append(config)
    assert len(grid) == 180 and len(parts) == 15
    for part in parts.values():
        assert len(part) == 12
        assert len({(c.act, c.optimizer) for c in part}) == 1
        assert {(c.lr, c.loss) for c in part} == set(itertools.product(LRS, LOSSES))


# --- the engine: a learning rate and a loss per copy ----------------------------------------------


def _models(config: TrainConfig, seeds) -> list:
    models = []
    for seed in seeds:
        torch.manual_seed(seed)
        models.append(build_model(config))
    return models


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_each_copy_steps_with_its_own_learning_rate(name):
    config = BASE.replace(init="default")
    lrs = [0.005, 0.05, 0.02]
    net = FlatMLP(_models(config, (1, 1, 1)), ["MSELoss"] * 3)  # three equal copies: only the lr differs
    optimizer = make_optimizer(name, net.params, lrs, copy_of=net.copy_of)
    x = torch.rand(100, 1, generator=torch.Generator().manual_seed(0))
    for _ in range(3):
        net.backward(x.expand(3, -1, -1), x.square().expand(3, -1, -1))
        optimizer.step(net.grads)
    for r, lr in enumerate(lrs):
        solo = FlatMLP(_models(config, (1,))[0], "MSELoss")
        solo_optimizer = make_optimizer(name, solo.params, lr)
        for _ in range(3):
            solo.backward(x, x.square())
            solo_optimizer.step(solo.grads)
        mine = torch.cat([block[r].reshape(-1) for block in net.weights + net.biases])
        theirs = torch.cat([block.reshape(-1) for block in solo.weights + solo.biases])
        assert _relative_error(mine, theirs) <= 1e-6, f"copy {r} did not step with lr {lr}"
    assert not torch.equal(net.weights[0][0], net.weights[0][1])


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_each_copy_s_gradient_is_that_of_its_own_loss(act):
    config = BASE.replace(act=act, hidden=(16, 16, 16), init="default")
    seeds, losses = (1, 1, 2, 2), ["SmoothL1Loss", "MSELoss", "MSELoss", "SmoothL1Loss"]
    net = FlatMLP(_models(config, seeds), losses)
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(100, 1, generator=generator)
    y = x.square() + 2 * torch.randn(100, 1, generator=generator)  # residuals beyond SmoothL1's beta too
    net.backward(x.expand(4, -1, -1), y.expand(4, -1, -1))
    for r, (seed, loss) in enumerate(zip(seeds, losses)):
        solo = FlatMLP(_models(config, (seed,))[0], loss)
        solo.backward(x, y)
        for mine, theirs in zip(net.weight_grads + net.bias_grads, solo.weight_grads + solo.bias_grads):
            torch.testing.assert_close(mine[r], theirs, rtol=1e-5, atol=1e-7)
    # The same network on the same batch: only the loss differs between copies 0 and 1.
    assert not torch.allclose(net.bias_grads[-1][0], net.bias_grads[-1][1])


def test_per_copy_settings_are_checked():
    net = FlatMLP(_models(BASE, (1, 2)), ["MSELoss", "MSELoss"])
    with pytest.raises(ValueError, match="losses for 2 copies"):
        FlatMLP(_models(BASE, (1, 2)), ["MSELoss"])
    with pytest.raises(ValueError, match="unknown loss"):
        FlatMLP(_models(BASE, (1, 2)), ["MSELoss", "L1Loss"])
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        make_optimizer("Adam", net.params, [0.01, 0.02, 0.03], copy_of=net.copy_of)
    assert net.copy_of.tolist() == sum(([0] * n + [1] * n for n in net.block_sizes), [])


# --- grouped runs against themselves and against solo runs ------------------------------------------


def test_the_same_group_gives_identical_numbers_every_time():
    configs = _stage1()
    first, second = train_group(configs), train_group(configs)
    assert [_bits(a) for a in first] == [_bits(b) for b in second]


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_a_copy_does_not_depend_on_the_copies_beside_it(optimizer):
    # {16,16,16}: there MKL's product for one matrix (a batch of one) rounds unlike its batched one.
    configs = _stage1(BASE.replace(optimizer=optimizer, act="LeakyReLU", hidden=(16, 16, 16)))
    alone = [_bits(r) for r in train_group(configs)]
    picked = [7, 2, 11]
    assert [_bits(r) for r in train_group([configs[i] for i in picked])] == [alone[i] for i in picked]
    assert [_bits(r) for r in train_group(configs[::-1])] == alone[::-1]
    assert _bits(train_group([configs[4]])[0]) == alone[4]  # a group of one: trained beside its twin
    assert _bits(train_one(configs[4])) == alone[4]  # a trial of a batched stage in its own process


@pytest.mark.parametrize("steps", [1, 10])
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_first_steps_equal_the_solo_runs_to_rounding(optimizer, steps):
    base = TrainConfig(func="oscillator", hidden=(16, 16, 16), act="Tanh", optimizer=optimizer, epochs=1,
                       samples=100 * steps)
    configs = _stage1(base)
    for config, grouped in zip(configs, train_group(configs)):
        solo = train(config)
        assert grouped.steps == solo.steps == steps
        assert _relative_error(_flat(grouped), _flat(solo)) <= 1e-6, config
        assert grouped.history[-1].rms == pytest.approx(solo.history[-1].rms, rel=1e-5)


def test_a_whole_short_run_matches_the_solo_runs():
    base = BASE.replace(epochs=20)
    configs = _stage1(base) + [base.replace(seeds=2, lr_schedule="constant", init="default")]
    for config, grouped in zip(configs, train_group(configs)):
        solo = train(config)
        assert [e.epoch for e in grouped.history] == [e.epoch for e in solo.history] == [5, 10, 15, 20]
        for mine, theirs in zip(grouped.history, solo.history):
            assert mine.metric == pytest.approx(theirs.metric, abs=1e-4)
            assert mine.max_error == pytest.approx(theirs.max_error, rel=1e-3)
        mine, theirs = grouped.summary(), solo.summary()
        assert {k for k in mine} == {k for k in theirs}
        assert (mine["status"], mine["steps"], mine["epochs"], mine["n_params"]) == \
            (theirs["status"], theirs["steps"], theirs["epochs"], theirs["n_params"])
        assert len(grouped.models) == config.seeds


# --- narrower networks padded into one shape ----------------------------------------------------

SMALL_SHAPES = [(4, 8), (8, 4), (16, 16), (4, 4), (16, 2)]  # all pad to {16,16}


@pytest.mark.parametrize("act", ["Sigmoid", "Softplus", "ReLU"])  # Sigmoid, Softplus: a padded unit's output is not 0
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_a_padded_network_steps_as_its_own_shape_to_rounding(act, optimizer):
    configs = [BASE.replace(hidden=h, act=act, optimizer=optimizer, lr=0.02, epochs=1) for h in SMALL_SHAPES]
    assert len({group_key(c) for c in configs}) == 1
    for config, grouped in zip(configs, train_group(configs)):
        solo = train(config)
        assert [tuple(p.shape) for p in grouped.model.parameters()] == [tuple(p.shape) for p in solo.model.parameters()]
        assert grouped.summary()["n_params"] == solo.summary()["n_params"]
        assert grouped.steps == solo.steps == 10
        assert _relative_error(_flat(grouped), _flat(solo)) <= 1e-6, config.hidden


def test_padded_units_stay_inert_so_the_network_handed_back_is_the_one_that_was_scored():
    # Trained long enough for leaking padding to show: the own-shape network returned must compute what the
    # padded one computed at the last evaluation.
    from funcapprox.train import Evaluator

    configs = [BASE.replace(hidden=h, act="Sigmoid", lr=0.03, epochs=40) for h in SMALL_SHAPES]
    evaluate = Evaluator(BASE.func)
    for grouped in train_group(configs):
        (again,) = evaluate(grouped.model, grouped.history[-1].epoch)
        assert again.rms == pytest.approx(grouped.history[-1].rms, rel=1e-5)
        assert again.max_error == pytest.approx(grouped.history[-1].max_error, rel=1e-5)


def test_a_padded_copy_does_not_depend_on_the_copies_beside_it():
    configs = [BASE.replace(hidden=h, lr=lr) for h in SMALL_SHAPES for lr in (0.01, 0.04)]
    alone = [_bits(r) for r in train_group(configs)]
    picked = [9, 0, 4]
    assert [_bits(r) for r in train_group([configs[i] for i in picked])] == [alone[i] for i in picked]
    assert _bits(train_group([configs[3]])[0]) == alone[3]
    assert _bits(train_one(configs[3])) == alone[3]


def test_learning_rates_and_losses_are_really_per_copy():
    # If every copy took copy 0's learning rate or loss, the others would not match their solo runs.
    base = TrainConfig(func="oscillator", hidden=(16, 16, 16), act="Sigmoid", optimizer="Adam", epochs=1)
    configs = [base.replace(lr=0.005, loss="MSELoss"), base.replace(lr=0.05, loss="SmoothL1Loss"),
               base.replace(lr=0.05, loss="MSELoss"), base.replace(lr=0.005, loss="SmoothL1Loss", init="default",
                                                                    lr_schedule="constant", seed=5)]
    grouped = train_group(configs)
    for config, result in zip(configs, grouped):
        assert _relative_error(_flat(result), _flat(train(config))) <= 1e-6, config
    finals = {_flat(r).numpy().tobytes() for r in grouped}
    assert len(finals) == 4


# --- divergence and stopping -------------------------------------------------------------------------


def test_a_diverging_copy_stops_like_its_solo_run_and_leaves_the_others_alone():
    base = BASE.replace(optimizer="SGD", epochs=15, hidden=(16, 16, 16))
    healthy = [base.replace(lr=0.05, loss="MSELoss"), base.replace(lr=0.01, loss="SmoothL1Loss"),
               base.replace(lr=0.05, loss="SmoothL1Loss")]
    diverging = base.replace(**DIVERGING)
    with_it = train_group([healthy[0], diverging, *healthy[1:]])
    without_it = train_group(healthy)
    assert [_bits(r) for r in with_it[:1] + with_it[2:]] == [_bits(r) for r in without_it]

    mine, theirs = with_it[1], train(diverging)
    assert not mine.ok and mine.diverged == theirs.diverged
    assert "diverged at epoch 5" in mine.diverged
    assert [e.epoch for e in mine.history] == [5] and mine.steps == theirs.steps == 50
    assert {k: v for k, v in mine.summary().items() if k != "seconds"} == \
        {k: v for k, v in theirs.summary().items() if k != "seconds"}
    # Its model stays as it was when it diverged, as the diverged copy trained alone in a group.
    assert torch.equal(_flat(mine), _flat(train_group([diverging])[0])) or \
        _flat(mine).isnan().all() and _flat(train_group([diverging])[0]).isnan().all()
    assert all(r.ok and r.steps == 150 for r in without_it)
    # One left: it goes on beside a twin, as a group of one does from the start.
    assert _bits(train_group([diverging, healthy[2]])[1]) == _bits(train_group([healthy[2]])[0]) == _bits(without_it[2])
    for result in with_it:  # ordinary tensors: usable, and changeable, outside inference mode
        assert not any(p.is_inference() for model in result.models for p in model.parameters())


def test_a_diverging_seed_fails_its_config_as_alone():
    config = BASE.replace(act="ReLU", seeds=3, **DIVERGING)
    mine, theirs = train_group([config.replace(lr=0.01, seeds=1), config])[1], train(config)
    assert not mine.ok and mine.diverged == theirs.diverged and "seed" in mine.diverged
    json.dumps(mine.summary(), allow_nan=False)


def test_on_eval_sees_each_config_s_evaluations_and_stop_drops_one():
    configs = _stage1()[:4]
    seen: dict[int, list] = {i: [] for i in range(4)}

    def on_eval(i, evaluation):
        seen[i].append(evaluation)
        if i == 2 and evaluation.epoch == 5:
            raise Stop

    results = train_group(configs, on_eval=on_eval)
    assert results[2] is None and [e.epoch for e in seen[2]] == [5]
    for i in (0, 1, 3):
        assert seen[i] == results[i].history and [e.epoch for e in seen[i]] == [5, 10, 12]
    others = train_group([configs[i] for i in (0, 1, 3)])
    assert [_bits(results[i]) for i in (0, 1, 3)] == [_bits(r) for r in others]


def test_another_exception_in_on_eval_stops_the_group():
    def on_eval(i, evaluation):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_group(_stage1()[:2], on_eval=on_eval)


def test_no_configs_no_results():
    assert train_group([]) == []


def test_summary_of_a_grouped_run_is_plain_json():
    for result in train_group(_stage1()[:2]):
        summary = result.summary()
        assert summary["status"] == "ok" and math.isfinite(summary["metric"]) and summary["seconds"] > 0
        json.dumps(summary, allow_nan=False)
