"""The target functions against the study's figures and the scalar reference; the datasets."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from funcapprox.targets import (
    OSCILLATOR_KNOTS,
    FunctionGrid,
    FunctionSamples,
    grid,
    oscillator,
    reference,
    square,
    target,
)

# The knot values at x = 0.0, 0.1, …, 1.0 as the study lists them (6 decimals).
STUDY_KNOTS = [0.5, 0.25, 0.4375, 0.308594, 0.404770, 0.336161, 0.386996, 0.350234, 0.377336, 0.357618, 0.372110]


def test_oscillator_knots_match_the_study():
    assert len(OSCILLATOR_KNOTS) == 11
    assert list(OSCILLATOR_KNOTS) == pytest.approx(STUDY_KNOTS, abs=5e-7)


def test_oscillator_knots_follow_the_recurrence():
    y = 0.0
    for knot in OSCILLATOR_KNOTS:
        y = -(y * y - 0.5)
        assert knot == y


def test_oscillator_hits_its_knots():
    x = torch.arange(11, dtype=torch.float64) / 10
    assert oscillator(x).tolist() == pytest.approx(STUDY_KNOTS, abs=5e-7)
    assert [reference("oscillator", k / 10) for k in range(11)] == pytest.approx(STUDY_KNOTS, abs=5e-7)


@pytest.mark.parametrize("k", range(1, 10))
def test_oscillator_is_continuous_at_interior_knots(k):
    eps = 1e-9
    x = torch.tensor([k / 10 - eps, k / 10, k / 10 + eps], dtype=torch.float64)
    left, at, right = oscillator(x).tolist()
    assert left == pytest.approx(OSCILLATOR_KNOTS[k], abs=1e-8)
    assert right == pytest.approx(OSCILLATOR_KNOTS[k], abs=1e-8)
    assert at == pytest.approx(OSCILLATOR_KNOTS[k], abs=1e-12)


@pytest.mark.parametrize("k", range(1, 10))
def test_oscillator_has_a_kink_at_every_interior_knot(k):
    # Slopes on either side of a knot have opposite signs: the curve zig-zags.
    left_slope = OSCILLATOR_KNOTS[k] - OSCILLATOR_KNOTS[k - 1]
    right_slope = OSCILLATOR_KNOTS[k + 1] - OSCILLATOR_KNOTS[k]
    assert left_slope * right_slope < 0


def test_oscillator_is_linear_between_knots():
    x = torch.tensor([0.05, 0.25, 0.95], dtype=torch.float64)
    expected = [(OSCILLATOR_KNOTS[k] + OSCILLATOR_KNOTS[k + 1]) / 2 for k in (0, 2, 9)]
    assert oscillator(x).tolist() == pytest.approx(expected, abs=1e-12)


def _random_points(dtype: torch.dtype) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(5000, generator=generator, dtype=dtype)
    ends_and_knots = torch.arange(11, dtype=dtype) / 10  # the edge cases: both ends, every knot
    return torch.cat([x, ends_and_knots])


@pytest.mark.parametrize("func", ["square", "oscillator"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_vectorised_matches_scalar_reference(func, dtype):
    x = _random_points(dtype)
    got = target(func)(x)
    assert got.dtype == dtype and got.shape == x.shape
    expected = torch.tensor([reference(func, v) for v in x.tolist()], dtype=torch.float64)
    tolerance = 1e-12 if dtype == torch.float64 else 1e-7  # float32 output: one rounding of the double result
    torch.testing.assert_close(got.double(), expected, rtol=0, atol=tolerance)


@pytest.mark.parametrize("shape", [(7,), (7, 1), (7, 1, 1), (2, 3, 4)])
def test_vectorised_keeps_any_shape(shape):
    x = torch.rand(shape)
    assert oscillator(x).shape == shape
    assert square(x).shape == shape


def test_square_is_x_squared():
    x = _random_points(torch.float32)
    assert torch.equal(square(x), x * x)
    assert target("square") is square
    assert target("quadratic") is square
    assert target("Oscillator") is oscillator
    for v in (0.0, 0.3, 1.0):
        assert reference("square", v) == v * v == reference("quadratic", v)


def test_grid_includes_both_ends():
    x = grid(101)
    assert x.shape == (101, 1)
    assert x[0].item() == 0.0 and x[-1].item() == 1.0
    torch.testing.assert_close(x.squeeze(1), torch.arange(101) / 100)


@pytest.mark.parametrize("func", ["square", "oscillator"])
def test_function_samples(func):
    data = FunctionSamples(func, n=50, seed=3)
    assert len(data) == 50
    x, y = data[0]
    assert x.shape == (1, 1) and y.shape == (1, 1)
    assert ((data.x >= 0) & (data.x < 1)).all()
    assert torch.equal(data.y, target(func)(data.x))
    assert torch.equal(FunctionSamples(func, n=50, seed=3).x, data.x)  # seeded
    assert not torch.equal(FunctionSamples(func, n=50, seed=4).x, data.x)


@pytest.mark.parametrize("func", ["square", "oscillator"])
def test_function_grid(func):
    data = FunctionGrid(func)
    assert len(data) == 101
    x, y = data[0]
    assert x.shape == (1, 1) and y.shape == (1, 1)
    assert data[0][0].item() == 0.0
    assert data[len(data) - 1][0].item() == 1.0
    assert torch.equal(data.y, target(func)(data.x))
    assert len(FunctionGrid(func, points=11)) == 11


@pytest.mark.parametrize("dataset", [FunctionSamples("oscillator", n=50), FunctionGrid("square", points=50)])
def test_datasets_work_in_a_dataloader(dataset):
    batches = list(DataLoader(dataset, batch_size=16, shuffle=False))
    assert [tuple(x.shape) for x, _ in batches] == [(16, 1, 1)] * 3 + [(2, 1, 1)]
    assert [tuple(y.shape) for _, y in batches] == [(16, 1, 1)] * 3 + [(2, 1, 1)]
    assert torch.equal(torch.cat([x for x, _ in batches]), dataset.x)
    assert torch.equal(torch.cat([y for _, y in batches]), dataset.y)


# --- functions of the user's, on domains of their own ---------------------------------------------


def test_a_target_maps_its_domain_onto_0_1_and_its_range_too():
    from funcapprox.targets import Target

    f = Target("x**2", (-3.0, 5.0))
    u = torch.linspace(0, 1, 1001, dtype=torch.float64).unsqueeze(1)
    assert f.x(u)[0].item() == -3.0 and f.x(u)[-1].item() == 5.0
    assert f.unit(u).min().item() == pytest.approx(0, abs=1e-12) and f.unit(u).max().item() == pytest.approx(1)
    assert torch.allclose(f.own(f.unit(u)), f.x(u) ** 2)
    assert not f.identity and (f.offset, f.scale) == pytest.approx((0.0, 25.0))


def test_datasets_of_a_formula_are_in_its_own_units():
    samples = FunctionSamples("sin(6*x)", n=50, domain=(1.0, 3.0))
    assert ((samples.x >= 1) & (samples.x <= 3)).all()
    assert torch.allclose(samples.y, torch.sin(6 * samples.x.double()).float())
    points = FunctionGrid("sin(6*x)", points=11, domain=(1.0, 3.0))
    assert points.x[0].item() == 1.0 and points.x[-1].item() == pytest.approx(3.0)
