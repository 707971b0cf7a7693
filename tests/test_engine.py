"""The hand-written training step against torch as the reference: autograd for the gradients,
torch.optim (single-tensor code, foreach=False) for the updates."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from funcapprox.config import ACTIVATIONS, LOSSES, OPTIMIZERS
from funcapprox.engine import FlatMLP, make_optimizer
from funcapprox.model import MLP

ARCHITECTURES = [(16, 16, 16), (64,), (8, 4)]


def _model(hidden, act, output_act=False, seed=0) -> MLP:
    torch.manual_seed(seed)
    model = MLP(hidden, act, output_act)
    with torch.no_grad():
        model.layers[-1].bias.fill_(0.5)  # keeps a ReLU output unit alive, so the gradients are not all 0
    return model


def _batch(n: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """x in [0, 1] and noisy targets: residuals both below and above SmoothL1Loss's beta of 1."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, generator=generator)
    y = x * x + 2 * torch.randn(n, 1, generator=generator)
    return x, y


def _autograd_grads(model: nn.Module, loss: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    model.zero_grad(set_to_none=True)
    getattr(nn, loss)()(model(x), y).backward()
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()])


@pytest.mark.parametrize("output_act", [False, True], ids=["linear-out", "output-act"])
@pytest.mark.parametrize("hidden", ARCHITECTURES, ids=lambda h: "x".join(map(str, h)))
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_backward_matches_autograd(act, loss, hidden, output_act):
    model = _model(hidden, act, output_act)
    net = FlatMLP(model, loss)
    x, y = _batch(100)
    net.backward(x, y)
    # Autograd on the very same module, which now reads its weights from the flat buffer.
    expected = _autograd_grads(model, loss, x, y)
    assert net.grads.shape == expected.shape
    assert expected.abs().max() > 0
    torch.testing.assert_close(net.grads, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("n", [1, 7, 100])
@pytest.mark.parametrize("loss", LOSSES)
def test_backward_matches_autograd_for_any_batch_size(n, loss):
    model = _model((16, 16, 16), "Sigmoid")
    net = FlatMLP(model, loss)
    x, y = _batch(n, seed=n)
    net.backward(x, y)
    torch.testing.assert_close(net.grads, _autograd_grads(model, loss, x, y), rtol=1e-5, atol=1e-7)


def test_backward_overwrites_instead_of_accumulating():
    net = FlatMLP(_model((8, 4), "Tanh"), "MSELoss")
    x, y = _batch(50)
    net.backward(x, y)
    first = net.grads.clone()
    net.backward(*_batch(50, seed=9))
    net.backward(x, y)
    assert torch.equal(net.grads, first)


@pytest.mark.parametrize("output_act", [False, True])
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_forward_matches_the_module(act, output_act):
    model = _model((16, 16, 16), act, output_act)
    net = FlatMLP(model, "MSELoss")
    x, _ = _batch(100)
    with torch.no_grad():
        torch.testing.assert_close(net.forward(x), model(x), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_forward_leaves_its_input_alone(act):
    # The activations work in place: on each layer's fresh output, never on x.
    net = FlatMLP(_model((8,), act, output_act=True), "MSELoss")
    x, _ = _batch(20)
    before = x.clone()
    net.forward(x)
    net.backward(x, x)
    assert torch.equal(x, before)


def test_flat_mlp_keeps_the_initial_weights():
    model = _model((16, 16, 16), "Sigmoid")
    before = copy.deepcopy(model)
    net = FlatMLP(model, "MSELoss")
    expected = torch.cat([p.detach().reshape(-1) for p in before.parameters()])
    assert torch.equal(net.params, expected)
    x, _ = _batch(20)
    with torch.no_grad():
        assert torch.equal(model(x), before(x))


def test_flat_mlp_repoints_the_model_parameters_to_the_flat_buffer():
    model = _model((16, 16, 16), "Tanh")
    net = FlatMLP(model, "MSELoss")
    x, _ = _batch(20)
    storage = net.params.untyped_storage().data_ptr()
    for p in model.parameters():
        assert p.untyped_storage().data_ptr() == storage

    with torch.no_grad():
        before = model(x).clone()
        net.params.mul_(0.5)  # the model must see this
        after = model(x)
        assert not torch.equal(before, after)
        net.params.zero_()  # every weight and bias 0: output 0 for every x
        assert torch.equal(model(x), torch.zeros_like(before))
        net.params[-1] = 3.0  # the output bias is the last parameter
        assert torch.equal(model(x), torch.full_like(before, 3.0))


def test_optimizer_steps_move_the_model():
    model = _model((8,), "Sigmoid")
    net = FlatMLP(model, "MSELoss")
    optimizer = make_optimizer("Adam", net.params, 0.01)
    x, y = _batch(100)
    with torch.no_grad():
        before = model(x).clone()
    net.backward(x, y)
    optimizer.step(net.grads)
    with torch.no_grad():
        assert not torch.equal(model(x), before)
        torch.testing.assert_close(model(x), net.forward(x), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("lr", [0.005, 0.05, 1.0])
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_optimizer_matches_torch_optim(name, lr):
    generator = torch.Generator().manual_seed(2)
    start = torch.randn(593, generator=generator)
    mine = start.clone()
    optimizer = make_optimizer(name, mine, lr)
    theirs = start.clone().requires_grad_(True)
    reference = getattr(torch.optim, name)([theirs], lr=lr, foreach=False)
    for step in range(40):
        # Gradients over several orders of magnitude, some exactly zero.
        grads = torch.randn(593, generator=generator) * 10.0 ** (step % 6 - 3)
        grads[::17] = 0
        optimizer.step(grads)
        theirs.grad = grads.clone()
        reference.step()
        # The engine follows torch.optim's single-tensor code operation for operation: bit-for-bit equal.
        assert torch.equal(mine, theirs.detach()), f"{name} differs from torch.optim after step {step + 1}"


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_training_steps_match_autograd_and_torch_optim(name, loss):
    model = _model((16, 16, 16), "LeakyReLU")
    reference_model = copy.deepcopy(model)
    net = FlatMLP(model, loss)
    optimizer = make_optimizer(name, net.params, 0.01)
    reference = getattr(torch.optim, name)(reference_model.parameters(), lr=0.01, foreach=False)
    criterion = getattr(nn, loss)()
    for step in range(20):
        x, y = _batch(100, seed=step)
        net.backward(x, y)
        optimizer.step(net.grads)
        reference.zero_grad()
        criterion(reference_model(x), y).backward()
        reference.step()
    expected = torch.cat([p.detach().reshape(-1) for p in reference_model.parameters()])
    # Rounding-level gradient differences are amplified where Adam/RMSprop divide a near-zero gradient by its
    # own running size, so allow 1e-5 on weights that have moved by up to lr × steps = 0.2.
    torch.testing.assert_close(net.params, expected, rtol=1e-4, atol=1e-5)
