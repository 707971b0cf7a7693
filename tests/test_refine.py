"""The refinement phase (funcapprox/refine.py): never worse, deterministic, exact where the target
is a network, safe on NaN and singular networks, and per copy for several seeds."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from funcapprox.config import TrainConfig
from funcapprox.engine import FlatMLP
from funcapprox.model import MLP
from funcapprox.refine import Refinement, refine, refine_samples
from funcapprox.targets import target
from funcapprox.train import train

N = 400  # samples: enough for the small fits here, and fast


def _samples(func="oscillator", seeds=(12,), n=N):
    x, y = refine_samples(target(func), list(seeds), n)
    return (x[0], y[0]) if len(seeds) == 1 else (x, y)


def _torch_loss(model: MLP, x: torch.Tensor, y: torch.Tensor, loss: str) -> float:
    """The reference: torch's own loss of the model as it runs (float32), summed in float64."""
    with torch.no_grad():
        out = model(x.float()).double()
    fn = torch.nn.functional.smooth_l1_loss if loss == "SmoothL1Loss" else torch.nn.functional.mse_loss
    return fn(out, y.double()).item()


def _set(model: MLP, layers: list[tuple[list, list]]) -> MLP:
    with torch.no_grad():
        for layer, (w, b) in zip(model.layers, layers):
            layer.weight.copy_(torch.tensor(w).reshape(layer.weight.shape))
            layer.bias.copy_(torch.tensor(b))
    return model


def _trained(hidden=(6,), act="LeakyReLU", loss="SmoothL1Loss", func="oscillator", epochs=20, **kw) -> MLP:
    config = TrainConfig(func=func, hidden=hidden, act=act, loss=loss, lr=0.02, epochs=epochs, **kw)
    return train(config).models[0]


@pytest.mark.parametrize("act", ["ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Softplus"])
@pytest.mark.parametrize("loss", ["MSELoss", "SmoothL1Loss"])
def test_refining_lowers_the_training_loss(act, loss):
    model = _trained(act=act, loss=loss)
    x, y = _samples()
    before = _torch_loss(model, x, y, loss)
    (report,) = refine(model, x, y, loss, steps=30, moves=2)
    after = _torch_loss(model, x, y, loss)
    assert report.kept
    assert after < before
    assert report.loss_before == pytest.approx(before, rel=1e-9)
    assert report.loss_after == pytest.approx(after, rel=1e-9)


@pytest.mark.parametrize("changes", [{"hidden": (4, 4), "act": "Tanh"}, {"hidden": (3, 3, 3), "act": "ReLU"},
                                     {"hidden": (5,), "act": "Sigmoid", "output_act": True}])
def test_deeper_networks_and_an_output_activation_get_plain_lm_and_are_never_worse(changes):
    model = _trained(**changes)
    x, y = _samples()
    before = _torch_loss(model, x, y, "SmoothL1Loss")
    (report,) = refine(model, x, y, "SmoothL1Loss", steps=20)
    after = _torch_loss(model, x, y, "SmoothL1Loss")
    assert after <= before
    assert report.kept == (after < before)
    assert report.moves == 0
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_a_target_that_the_trainer_fits_badly_is_not_made_worse_where_nothing_helps():
    """A single unit cannot fit the oscillator: whatever refine finds, the loss does not rise."""
    model = _trained(hidden=(1,), act="ReLU")
    x, y = _samples()
    before = _torch_loss(model, x, y, "SmoothL1Loss")
    refine(model, x, y, "SmoothL1Loss", steps=20, moves=3)
    assert _torch_loss(model, x, y, "SmoothL1Loss") <= before


@pytest.mark.parametrize("act, hidden", [("Softplus", (4,)), ("ReLU", (4,)), ("LeakyReLU", (3, 3))])
def test_refining_a_refined_network_does_not_make_it_worse(act, hidden):
    """At the optimum, float64 finds gains smaller than float32 rounding: they must not be written.
    Softplus (4,) is such a case: written anyway, they raise its loss in the eleventh digit."""
    model = _trained(hidden=hidden, act=act)
    x, y = _samples()
    refine(model, x, y, "SmoothL1Loss", steps=50, moves=3)
    once = _torch_loss(model, x, y, "SmoothL1Loss")
    saved = [p.clone() for p in model.parameters()]
    (report,) = refine(model, x, y, "SmoothL1Loss", steps=50, moves=3)
    assert _torch_loss(model, x, y, "SmoothL1Loss") <= once
    if not report.kept:
        assert all(torch.equal(p, q) for p, q in zip(model.parameters(), saved))


@pytest.mark.parametrize("inner, bad", [("_refine_shallow", "worse"), ("_refine_shallow", "nan"), ("_full_lm", "nan")])
def test_whatever_the_inner_fit_returns_the_model_is_never_left_worse_or_nan(monkeypatch, inner, bad):
    """The last guard, on its own: the result is written only if the model, as it runs, gets better."""
    import funcapprox.refine as refine_module

    def spoil(theta: torch.Tensor) -> torch.Tensor:
        return theta * 1.5 if bad == "worse" else theta * math.nan

    if inner == "_refine_shallow":
        monkeypatch.setattr(refine_module, inner, lambda layers, *_: ([(spoil(w), spoil(b)) for w, b in layers], 1, 0))
    else:
        monkeypatch.setattr(refine_module, inner, lambda theta, *_: (spoil(theta), 1))
    model = _trained(hidden=(4,) if inner == "_refine_shallow" else (3, 3))
    saved = [p.clone() for p in model.parameters()]
    x, y = _samples()
    (report,) = refine(model, x, y, "SmoothL1Loss")
    assert not report.kept and report.loss_after == report.loss_before
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), saved))


def test_same_inputs_give_identical_numbers():
    model = _trained(hidden=(8,))
    x, y = _samples()
    first, second = copy.deepcopy(model), copy.deepcopy(model)
    (a,), (b,) = refine(first, x, y, "SmoothL1Loss", moves=3), refine(second, x, y, "SmoothL1Loss", moves=3)
    for p, q in zip(first.parameters(), second.parameters()):
        assert torch.equal(p, q)
    assert (a.loss_before, a.loss_after, a.steps, a.moves) == (b.loss_before, b.loss_after, b.steps, b.moves)
    assert not torch.equal(first.layers[0].weight, model.layers[0].weight)  # it did something


def test_samples_depend_on_the_seed_alone():
    x1, y1 = refine_samples(target("square"), [12, 13], 50)
    x2, y2 = refine_samples(target("square"), [12], 50)
    assert x1.shape == (2, 50, 1) and x1.dtype == torch.float64
    assert torch.equal(x1[0], x2[0]) and not torch.equal(x1[0], x1[1])
    assert torch.equal(y1, x1 * x1)


# Exactly a 3-unit ReLU network: kinks at 0.25 (facing right), 0.5 (left), 0.75 (right).
EXACT = [([4.0, -3.0, 5.0], [-1.0, 1.5, -3.75]), ([[0.7, -0.4, 1.1]], [0.2])]


def _exact_target(x: torch.Tensor) -> torch.Tensor:
    net = _set(MLP((3,), "ReLU").double(), EXACT)
    with torch.no_grad():
        return net(x.double())


def test_a_perturbed_exact_network_converges_to_the_target():
    """A zero-residual least-squares problem: from nearby, LM (no moves) must reach the target."""
    model = _set(MLP((3,), "ReLU"), [([4.3, -2.8, 4.6], [-1.1, 1.45, -3.5]), ([[0.6, -0.5, 1.0]], [0.25])])
    x = torch.rand(N, 1, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    y = _exact_target(x)
    assert _torch_loss(model, x, y, "MSELoss") > 1e-4
    (report,) = refine(model, x, y, "MSELoss", moves=0)
    assert report.loss_after < 1e-12
    grid = torch.linspace(0, 1, 1001, dtype=torch.float64).unsqueeze(1)
    with torch.no_grad():
        error = (model.double()(grid) - _exact_target(grid)).abs().max().item()
    assert error < 1e-5  # float32 weights: about 1e-7 of each unit's output


def test_a_missing_kink_needs_the_moves():
    """Two units on one kink and none on another: LM alone stays stuck, a swap fixes it."""
    start = [([4.0, 4.0, -3.0], [-1.0, -1.0, 1.5]), ([[0.3, 0.4, -0.4]], [0.2])]  # no unit near 0.75
    x = torch.rand(N, 1, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    y = _exact_target(x)
    local = _set(MLP((3,), "ReLU"), start)
    refine(local, x, y, "MSELoss", moves=0)
    assert _torch_loss(local, x, y, "MSELoss") > 1e-3
    moved = _set(MLP((3,), "ReLU"), start)
    (report,) = refine(moved, x, y, "MSELoss")
    assert report.moves >= 1
    assert _torch_loss(moved, x, y, "MSELoss") < 1e-12


def test_a_deep_smooth_network_is_fitted_exactly_from_nearby():
    """The plain-LM path (two hidden layers) on a target that is such a network."""
    torch.manual_seed(3)
    truth = MLP((3, 3), "Tanh").double()
    model = copy.deepcopy(truth).float()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x = torch.rand(N, 1, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    with torch.no_grad():
        y = truth(x)
    assert _torch_loss(model, x, y, "MSELoss") > 1e-6
    (report,) = refine(model, x, y, "MSELoss")
    assert report.loss_after < 1e-12


def test_smooth_units_do_not_fit_by_cancelling_huge_output_weights():
    """Without the float32-sized weight decay (refine.RIDGE), LM fits x² here with output weights of
    5.8e4 that cancel: exact in float64, max error 0.0064 in float32; with it, 6e-7 and weights below 2."""
    config = TrainConfig(func="square", hidden=(4,), act="Softplus", lr=0.01, loss="MSELoss", seed=13)
    model = train(config).models[0]
    x, y = _samples(func="square", seeds=(13,))
    refine(model, x, y, "MSELoss")
    assert model.layers[1].weight.abs().max() < 10
    grid = torch.linspace(0, 1, 1001).unsqueeze(1)
    with torch.no_grad():
        assert (model(grid) - grid * grid).abs().max() < 1e-5


def test_a_nan_network_is_left_alone():
    model = _trained(hidden=(4,))
    with torch.no_grad():
        model.layers[0].weight[1, 0] = math.nan
    saved = [p.clone() for p in model.parameters()]
    x, y = _samples()
    (report,) = refine(model, x, y, "SmoothL1Loss")
    assert not report.kept and report.steps == 0 and not math.isfinite(report.loss_before)
    for p, q in zip(model.parameters(), saved):
        assert torch.equal(p.nan_to_num(7.0), q.nan_to_num(7.0))  # bit for bit, the NaN included


def test_nan_targets_change_nothing():
    model = _trained(hidden=(4,))
    saved = [p.clone() for p in model.parameters()]
    x, y = _samples()
    y = y.clone()
    y[3] = math.nan
    (report,) = refine(model, x, y, "MSELoss")
    assert not report.kept
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), saved))


@pytest.mark.parametrize("hidden", [(3,), (3, 2)])
def test_dead_units_and_a_flat_network_are_handled(hidden):
    """Every ReLU unit dead on [0, 1] (a singular Jacobian): no error, nothing NaN, never worse."""
    model = MLP(hidden, "ReLU")
    with torch.no_grad():
        for layer in model.layers:
            layer.weight.zero_()
            layer.bias.fill_(-1.0)
    x, y = _samples(func="square")
    before = _torch_loss(model, x, y, "MSELoss")
    (report,) = refine(model, x, y, "MSELoss", steps=20, moves=2)
    after = _torch_loss(model, x, y, "MSELoss")
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert after <= before and report.loss_after <= report.loss_before


def test_several_seed_copies_are_refined_each_on_its_own_samples_through_the_flat_buffer():
    config = TrainConfig(func="oscillator", hidden=(6,), act="LeakyReLU", loss="SmoothL1Loss", lr=0.02,
                         epochs=20, seeds=3)
    result = train(config)
    models = result.models
    alone = [copy.deepcopy(m) for m in models]
    net = FlatMLP(models, config.loss)  # the models' tensors become views of one buffer, as in train()
    x, y = _samples(seeds=(12, 13, 14))
    grid = torch.linspace(0, 1, 11).unsqueeze(1).expand(3, -1, -1)
    before = net.forward(grid).clone()
    reports = refine(models, x, y, config.loss, steps=20, moves=1)
    assert len(reports) == 3 and all(isinstance(r, Refinement) and r.kept for r in reports)
    after = net.forward(grid)  # the buffer holds the refined weights
    assert (after - before).abs().max() > 1e-4
    with torch.no_grad():
        for r, (model, single) in enumerate(zip(models, alone)):
            torch.testing.assert_close(after[r], model(grid[r]), rtol=0, atol=1e-6)  # bmm vs Linear rounding
            refine(single, x[r], y[r], config.loss, steps=20, moves=1)
            for p, q in zip(model.parameters(), single.parameters()):
                assert torch.equal(p, q)  # the same as refining that copy alone


def test_shared_samples_for_several_models():
    models = [_trained(hidden=(4,)), _trained(hidden=(4,), seed=13)]
    x, y = _samples()
    reports = refine(models, x, y, "SmoothL1Loss", steps=10, moves=0)
    assert [r.kept for r in reports] == [True, True]


def test_mismatched_shapes_are_refused():
    x, y = _samples(seeds=(12, 13))
    with pytest.raises(ValueError, match="x and y must be"):
        refine([MLP((2,), "ReLU")], x, y)
    with pytest.raises(ValueError, match="unknown loss"):
        refine(MLP((2,), "ReLU"), x[0], y[0], "L1Loss")
