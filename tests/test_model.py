"""The MLP family: layer shapes, parameter counts, output activation, output shape."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from funcapprox.config import ACTIVATIONS, TrainConfig
from funcapprox.model import ACTIVATION_MODULES, MLP, build_model


@pytest.mark.parametrize(
    "hidden, shapes",
    [
        ((16, 16, 16), [(1, 16), (16, 16), (16, 16), (16, 1)]),
        ((64,), [(1, 64), (64, 1)]),
        ((8, 4), [(1, 8), (8, 4), (4, 1)]),
    ],
)
def test_layers(hidden, shapes):
    model = MLP(hidden)
    assert all(isinstance(layer, nn.Linear) for layer in model.layers)
    assert [(layer.in_features, layer.out_features) for layer in model.layers] == shapes


@pytest.mark.parametrize("hidden, n", [((64,), 193), ((16, 16, 16), 593), ((8, 4), 57)])
def test_parameter_counts(hidden, n):
    config = TrainConfig(hidden=hidden)
    assert sum(p.numel() for p in build_model(config).parameters()) == config.n_params == n


@pytest.mark.parametrize("hidden", ["4", "128,0,0", "4,32,8", "32,4"])
def test_count_params_agrees_with_config(hidden):
    config = TrainConfig(hidden=hidden)
    assert sum(p.numel() for p in build_model(config).parameters()) == config.n_params


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_activation_modules(act):
    model = MLP((4,), act)
    assert isinstance(model.act, ACTIVATION_MODULES[act])
    assert type(model.act).__name__ == act


def test_leaky_relu_uses_the_default_slope():
    assert MLP((4,), "LeakyReLU").act.negative_slope == 0.01


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_output_act_applies_the_activation_after_the_output_layer(act):
    torch.manual_seed(0)
    linear_out = MLP((8, 4), act, output_act=False)
    with_act = MLP((8, 4), act, output_act=True)
    with_act.load_state_dict(linear_out.state_dict())
    x = torch.linspace(0, 1, 50).unsqueeze(1)
    with torch.no_grad():
        torch.testing.assert_close(with_act(x), ACTIVATION_MODULES[act]()(linear_out(x)), rtol=0, atol=0)


def test_output_layer_is_linear_by_default():
    torch.manual_seed(0)
    model = MLP((8,), "Sigmoid")
    with torch.no_grad():
        model.layers[-1].bias.fill_(5.0)  # a sigmoid output could never exceed 1
        assert (model(torch.rand(20, 1)) > 1).all()


def test_build_model_follows_the_config():
    config = TrainConfig(hidden="8,4", act="tanh", output_act=True)
    model = build_model(config)
    assert len(model.layers) == 3
    assert isinstance(model.act, nn.Tanh)
    assert model.output_act is True
    torch.manual_seed(5)
    first = build_model(config).state_dict()
    torch.manual_seed(5)
    second = build_model(config).state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)  # init comes from the global RNG


@pytest.mark.parametrize("shape", [(1, 1), (100, 1), (100, 1, 1)])
@pytest.mark.parametrize("output_act", [False, True])
def test_output_shape(shape, output_act):
    model = MLP((16, 16, 16), "Softplus", output_act)
    assert model(torch.rand(shape)).shape == shape
