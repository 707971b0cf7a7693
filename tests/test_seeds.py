"""Several seeds trained together: each copy is the run of its seed alone, batched."""

from __future__ import annotations

import json

import pytest
import torch

from funcapprox.config import TrainConfig
from funcapprox.engine import FlatMLP
from funcapprox.model import build_model
from funcapprox.train import train

BASE = TrainConfig(func="oscillator", hidden=(8, 4), act="Tanh", optimizer="Adam", lr=0.01, loss="SmoothL1Loss",
                   epochs=5)


@pytest.mark.parametrize("act", ["ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Softplus"])
@pytest.mark.parametrize("loss", ["MSELoss", "SmoothL1Loss"])
def test_batched_gradients_equal_each_copy_s_own(act, loss):
    config = BASE.replace(act=act, loss=loss)
    models = []
    for seed in (1, 2, 3):
        torch.manual_seed(seed)
        models.append(build_model(config))
    singles = []
    for seed in (1, 2, 3):
        torch.manual_seed(seed)
        singles.append(FlatMLP(build_model(config), loss))
    batched = FlatMLP(models, loss)
    x = torch.rand(3, 50, 1, generator=torch.Generator().manual_seed(0))
    y = x.square()
    batched.backward(x, y)
    for r, single in enumerate(singles):
        single.backward(x[r], y[r])
        mine = torch.cat([torch.cat([w[r].reshape(-1), b[r].reshape(-1)])
                          for w, b in zip(batched.weight_grads, batched.bias_grads)])
        theirs = torch.cat([torch.cat([w.reshape(-1), b.reshape(-1)])
                            for w, b in zip(single.weight_grads, single.bias_grads)])
        assert torch.allclose(mine, theirs, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("act", ["LeakyReLU", "Softplus"])
@pytest.mark.parametrize("hidden", [(64,), (16, 16, 16)])
@pytest.mark.parametrize("output_act", [False, True])
def test_batched_forward_equals_each_copy_s_module(act, hidden, output_act):
    config = BASE.replace(act=act, hidden=hidden, output_act=output_act)
    models = []
    for seed in (1, 2, 3):
        torch.manual_seed(seed)
        models.append(build_model(config))
    batched = FlatMLP(models, config.loss)
    x = torch.rand(1001, 1, generator=torch.Generator().manual_seed(0))  # an evaluation's grid size
    out = batched.forward(x.expand(3, -1, -1))
    for r, model in enumerate(models):
        torch.testing.assert_close(out[r], model(x), rtol=1e-5, atol=1e-6)


def test_each_seed_trains_as_it_would_alone():
    together = train(BASE.replace(seeds=3))
    for r in range(3):
        alone = train(BASE.replace(seed=BASE.seed + r))
        for mine, theirs in zip(together.models[r].parameters(), alone.model.parameters()):
            assert torch.allclose(mine, theirs, atol=1e-6)  # the same run, batched: float rounding only


def test_one_seed_is_the_plain_run():
    assert train(BASE.replace(seeds=1)).summary() | {"seconds": 0} == train(BASE).summary() | {"seconds": 0}


def test_summary_of_several_seeds():
    result = train(BASE.replace(seeds=5, epochs=10))
    s = result.summary()
    metrics = sorted(result.seed_metric(r) for r in range(5))
    assert s["metric"] == metrics[2]  # the median
    assert s["metric_spread"] == pytest.approx(metrics[-1] - metrics[0])
    errors = [h[-1].max_error for h in result.histories]
    assert (s["max_error_best"], s["max_error_worst"]) == (min(errors), max(errors))
    assert s["max_error"] == sorted(errors)[2]
    assert s["seeds"] == 5 and s["median_seed"] == BASE.seed + result.median_replica
    assert result.model is result.models[result.median_replica]
    json.dumps(s, allow_nan=False)


def test_a_diverging_seed_fails_the_run():
    result = train(BASE.replace(act="ReLU", loss="MSELoss", optimizer="SGD", lr=1e6, seeds=3))
    assert not result.ok and "seed" in result.diverged
    json.dumps(result.summary(), allow_nan=False)


def test_seeds_are_checked():
    from funcapprox.errors import ConfigError

    with pytest.raises(ConfigError, match="seeds"):
        TrainConfig(seeds=0)
