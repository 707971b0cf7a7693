"""The floor: networks built here by hand must reach what floor() says suffices, and networks with
fewer units, however their weights are chosen (linear programs, scipy), must not beat its lower bound."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
from scipy.optimize import linprog

from funcapprox.config import TrainConfig
from funcapprox.errors import ConfigError
from funcapprox.floor import (
    PIECEWISE_LINEAR,
    bend_network,
    fewest_pieces,
    floor,
    floor_text,
    line_error,
    needed_bends,
    one_layer_params,
    orientation_miss,
    oscillator_polyline,
    square_error,
    square_pieces,
    square_units,
)
from funcapprox.model import MLP
from funcapprox.targets import OSCILLATOR_KNOTS, Target, oscillator

FINE = torch.linspace(0, 1, 10001, dtype=torch.float64)  # steps of 1e-4: every knot is on it


def network(weight, shift, out, bias, act: str = "ReLU") -> MLP:
    """funcapprox's own one-hidden-layer MLP, in float64, with these weights."""
    model = MLP((len(weight),), act).double()
    with torch.no_grad():
        model.layers[0].weight.copy_(torch.tensor(weight, dtype=torch.float64).unsqueeze(1))
        model.layers[0].bias.copy_(torch.tensor(shift, dtype=torch.float64))
        model.layers[1].weight.copy_(torch.tensor(out, dtype=torch.float64).unsqueeze(0))
        model.layers[1].bias.fill_(bias)
    return model


def max_error(model: MLP, truth, x: torch.Tensor = FINE) -> float:
    with torch.no_grad():
        return float((model(x.unsqueeze(1)).squeeze(1) - truth(x)).abs().max())


def features(x: np.ndarray, bends, faces, leak: float) -> np.ndarray:
    z = (x[:, None] - np.asarray(bends)[None, :]) * np.asarray(faces, dtype=float)[None, :]
    return np.hstack([np.maximum(z, leak * z), np.ones((len(x), 1))])


def best_max_error(columns: np.ndarray, y: np.ndarray) -> float:
    """min over weights w of max |columns·w - y|: a linear program."""
    n = columns.shape[1]
    ones = np.ones((len(y), 1))
    rows = np.vstack([np.hstack([columns, -ones]), np.hstack([-columns, -ones])])
    tight = {"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10}
    result = linprog(np.r_[np.zeros(n), 1.0], A_ub=rows, b_ub=np.r_[y, -y], bounds=[(None, None)] * n + [(0, None)],
                     method="highs", options=tight)
    assert result.status == 0
    return float(result.x[-1])


# --- the oscillator -----------------------------------------------------------------------------


def knots_by_hand():
    xs = np.arange(len(OSCILLATOR_KNOTS)) / (len(OSCILLATOR_KNOTS) - 1)
    ys = np.array(OSCILLATOR_KNOTS)
    slopes = np.diff(ys) / np.diff(xs)
    return xs, ys, slopes


@pytest.mark.parametrize("domain", [(0.0, 1.0), (-0.5, 1.5), (0.25, 0.75), (0.33, 0.91)])
def test_the_polyline_is_the_oscillator_funcapprox_trains_on(domain):
    line = oscillator_polyline(domain)
    x = torch.linspace(*domain, 5001, dtype=torch.float64)
    ours = torch.tensor([line(float(v)) for v in x], dtype=torch.float64)
    assert float((ours - Target("oscillator", domain).values(x)).abs().max()) < 1e-12
    xs, _, slopes = knots_by_hand()
    inside = [x for x, jump in zip(xs[1:-1], np.diff(slopes)) if domain[0] < x < domain[1] and jump != 0]
    assert [x for x, _ in line.bends()] == pytest.approx(inside)
    assert floor("oscillator", domain, 0.0).pieces == len(inside) + 1


def test_ten_relu_units_represent_the_oscillator_exactly():
    xs, ys, slopes = knots_by_hand()
    # one unit for the starting slope, bent at x = 0, and one per knot where the slope changes
    weight = [1.0] * len(slopes)
    shift = [-x for x in xs[:-1]]
    out = [slopes[0], *np.diff(slopes)]
    model = network(weight, shift, out, ys[0])
    assert max_error(model, oscillator) < 1e-12
    found = floor("oscillator", (0, 1), 0.0)
    assert (found.needed, found.suffices, found.pieces) == (len(weight), len(weight), 10)
    assert found.suffices_params == sum(p.numel() for p in model.parameters()) == TrainConfig(hidden=(10,)).n_params


@pytest.mark.parametrize("act", ["ReLU", "LeakyReLU"])
def test_nine_units_on_the_bends_represent_it_whichever_way_they_face_never(act):
    """With 9 units, each must bend on one of the 9 bends; no way of facing them fits all 11 knots."""
    xs, ys, slopes = knots_by_hand()
    bends = xs[1:-1]
    leak = PIECEWISE_LINEAR[act]
    residuals = []
    for faces in itertools.product((1, -1), repeat=len(bends)):
        columns = features(xs, bends, faces, leak)
        weights, *_ = np.linalg.lstsq(columns, ys, rcond=None)
        residuals.append(np.abs(columns @ weights - ys).max())
    assert min(residuals) > 1e-6
    miss, _ = orientation_miss(list(np.diff(slopes)), slopes[0], leak)
    assert miss > 1e-3
    assert floor("oscillator", (0, 1), 0.0, act).needed == 10


@pytest.mark.parametrize("act", ["ReLU", "LeakyReLU"])
def test_nine_units_on_the_bends_come_within_what_the_floor_says_and_no_weights_do_better(act):
    built = bend_network((0, 1), act)
    assert len(built.weight) == 9
    model = network(built.weight, built.shift, built.out, built.bias, act)
    assert max_error(model, oscillator) == pytest.approx(built.max_error, abs=1e-12)
    assert 0 < built.max_error < 1e-3
    xs, ys, _ = knots_by_hand()
    x = np.linspace(0, 1, 1001)
    rng = np.random.default_rng(5)
    tried = [built.weight] + [tuple(rng.choice((1.0, -1.0), 9)) for _ in range(5)]
    for faces in tried:  # the error read on a grid: any weights, not only the null-space ones
        columns = features(x, xs[1:-1], faces, PIECEWISE_LINEAR[act])
        assert best_max_error(columns, oscillator(torch.from_numpy(x)).numpy()) >= built.max_error - 1e-9
    assert floor("oscillator", (0, 1), built.max_error * 1.01, act).suffices == 9
    assert floor("oscillator", (0, 1), built.max_error * 0.99, act).suffices == 10


def test_line_error_is_the_best_line_on_the_stretch():
    line = oscillator_polyline()
    rng = np.random.default_rng(1)
    for _ in range(25):
        a, b = sorted(rng.uniform(0, 1, 2))
        x = np.union1d(np.linspace(a, b, 400), [x for x, _ in line.bends() if a < x < b])
        y = np.array([line(v) for v in x])
        assert line_error(line, a, b) == pytest.approx(best_max_error(np.c_[x, np.ones_like(x)], y), abs=1e-9)


@pytest.mark.parametrize("target", [0.002, 0.006, 0.02, 0.05])
def test_fewer_units_than_needed_never_reach_the_error(target):
    """Networks of needed - 1 units: bent on a choice of the bends (where bends help most) or
    anywhere at random, facing every which way, with the best output weights a linear program finds."""
    line = oscillator_polyline()
    needed = floor("oscillator", (0, 1), target).needed
    assert needed == needed_bends(line, target) >= 1
    units = needed - 1
    if units == 0:
        return
    bends = np.array([x for x, _ in line.bends()])
    rng = np.random.default_rng(int(target * 1e4))
    best = np.inf
    for trial in range(30):
        at = np.sort(rng.choice(bends, units, replace=False) if trial % 2 else rng.uniform(0, 1, units))
        faces = rng.choice((1.0, -1.0), units)
        x = np.union1d(np.asarray(line.xs), at)  # network less target is linear between these
        y = np.array([line(v) for v in x])
        best = min(best, best_max_error(features(x, at, faces, PIECEWISE_LINEAR["ReLU"]), y))
    assert best > target


def _polyline_within(target: float, bends: int) -> bool:
    """Some polyline bent at `bends` of the oscillator's knots, with the best values at its knots, is
    within `target` at every knot (and so everywhere: both are linear between the knots)."""
    line = oscillator_polyline()
    xs, ys = np.array(line.xs), np.array(line.ys)
    for kept in itertools.combinations(range(1, len(xs) - 1), bends):
        at = xs[[0, *kept, len(xs) - 1]]
        columns = np.column_stack([np.interp(xs, at, hat) for hat in np.eye(len(at))])
        if best_max_error(columns, ys) <= target + 1e-12:
            return True
    return False


@pytest.mark.parametrize("target", [0.001, 0.01, 0.05, 0.2])
def test_what_suffices_is_the_best_of_the_two_constructions(target):
    """A polyline bent at some knots, with the best values there (a continuous polyline of c pieces is
    c ReLU units, as the ten-unit test builds), or nine units on the bends: the fewer units of the two."""
    pieces = fewest_pieces(oscillator_polyline(), target)
    # a polyline with pieces - 1 bends fits, none with pieces - 2 does (nor, then, any with fewer)
    assert _polyline_within(target, pieces - 1)
    assert pieces == 1 or not _polyline_within(target, pieces - 2)
    for act in ("ReLU", "LeakyReLU"):
        found = floor("oscillator", (0, 1), target, act)
        bend_units = 9 if bend_network((0, 1), act).max_error <= target else np.inf
        assert found.suffices == min(pieces, bend_units)
        assert 1 <= found.needed <= found.suffices <= found.pieces == 10
        assert found.exact == (found.needed == found.suffices)


def test_the_study_figures_read_off():
    six = floor("oscillator", (0, 1), 0.006)
    assert (six.needed, six.suffices, six.needed_params) == (9, 9, 28)
    assert "exactly 9 units (28 parameters)" in six.text
    exact = floor_text("oscillator", (0, 1), 0.0)
    assert "exactly 10 units (31 parameters)" in exact


# --- the square ---------------------------------------------------------------------------------


def lowered_chords(k: int, domain) -> tuple[np.ndarray, np.ndarray]:
    low, high = domain
    xs = np.linspace(low, high, k + 1)
    h = (high - low) / k
    return xs, xs**2 - h * h / 8


@pytest.mark.parametrize("domain", [(0.0, 1.0), (-1.0, 2.0), (-1.0, 1.0)])
@pytest.mark.parametrize("k", [1, 2, 3, 5, 8])
def test_equal_lowered_chords_reach_the_bound_exactly(k, domain):
    xs, ys = lowered_chords(k, domain)
    x = np.union1d(np.linspace(*domain, 20001), (xs[:-1] + xs[1:]) / 2)  # ends and middles of the pieces
    assert np.abs(np.interp(x, xs, ys) - x * x).max() == pytest.approx(square_error(k, domain), abs=1e-9)


@pytest.mark.parametrize("domain", [(0.0, 1.0), (-1.0, 2.0)])
@pytest.mark.parametrize("k", [2, 3, 6])
def test_no_k_piece_polyline_beats_the_bound(k, domain):
    """The best values at random joins (and at equal ones, which reach it), read on a grid: between
    grid points a piece can stray further by at most a quarter step squared."""
    rng = np.random.default_rng(k)
    x = np.linspace(*domain, 4001)
    slack = ((x[1] - x[0]) / 2) ** 2 + 1e-10
    equal = np.linspace(*domain, k + 1)
    for trial in range(6):
        knots = equal + (0 if trial == 0 else np.r_[0, rng.normal(0, 0.3 / k, k - 1), 0] * (domain[1] - domain[0]))
        knots = np.sort(np.clip(knots, *domain))
        grid = np.union1d(x, knots)
        columns = np.column_stack([np.interp(grid, knots, hat) for hat in np.eye(k + 1)])
        best = best_max_error(columns, grid * grid)
        assert best >= square_error(k, domain) - slack
        if trial == 0:
            assert best == pytest.approx(square_error(k, domain), abs=slack)


@pytest.mark.parametrize("domain", [(0.0, 1.0), (-1.0, 1.0), (2.0, 3.5)])
@pytest.mark.parametrize("target", [0.3, 0.05, 0.006, 0.001])
@pytest.mark.parametrize("act", ["ReLU", "LeakyReLU"])
def test_square_floor_is_reached_by_a_network_built_here(target, domain, act):
    found = floor("square", domain, target, act)
    k = square_pieces(target, domain)
    assert found.needed == max(1, k - 1)
    assert square_error(k, domain) <= target < (square_error(k - 1, domain) if k > 1 else np.inf)
    assert found.needed >= 1 and (found.needed == 1 or square_error(found.needed, domain) > target)
    assert found.suffices in (found.needed, found.needed + 1)
    # a one-hidden-layer network with `suffices` units within `target`: equal lowered chords, bent
    # at the pieces' joins, the first `left` units facing left, the rest right, plus (when there is
    # room) one unit bent at the left end for the starting slope
    xs, ys = lowered_chords(k, domain)
    bends = xs[1:-1]
    x = np.union1d(np.linspace(*domain, 2001), xs)
    best = np.inf
    for left in range(len(bends) + 1):
        if best <= target + 1e-9:
            break
        faces = [-1.0] * left + [1.0] * (len(bends) - left)
        at, facing = list(bends), faces
        if found.suffices > len(bends):
            at, facing = [domain[0], *bends], [1.0, *faces]
        if len(at) != found.suffices:
            continue
        columns = features(x, at, facing, PIECEWISE_LINEAR[act])
        weights, *_ = np.linalg.lstsq(columns, np.interp(x, xs, ys), rcond=None)
        best = min(best, np.abs(columns @ weights - x * x).max())
    assert best <= target + 1e-9


def test_square_on_minus_one_one_takes_one_unit_less_when_the_pieces_are_odd():
    assert square_units(3, (-1, 1)) == 2 and square_units(4, (-1, 1)) == 4 and square_units(3, (0, 1)) == 3
    assert floor("square", (-1, 1), square_error(3, (-1, 1))).exact


# --- what the floor does not know, and bad input ------------------------------------------------


@pytest.mark.parametrize("func, act, max_error, words", [
    ("sin(6*x)", "ReLU", 0.01, "known only for the built-in"),
    ("data.csv", "ReLU", 0.01, "known only for the built-in"),
    ("square", "Tanh", 0.01, "piece-count argument"),
    ("oscillator", "Sigmoid", 0.01, "piece-count argument"),
    ("square", "ReLU", 0.0, "not piecewise linear"),
    ("cubic", "ReLU", 0.01, "not a function funcapprox can read"),
])
def test_unknown_floors_say_why(func, act, max_error, words):
    assert floor(func, (0, 1), max_error, act) is None
    text = floor_text(func, (0, 1), max_error, act)
    assert text.startswith("floor: unknown for this function") and words in text


@pytest.mark.parametrize("kwargs", [{"max_error": -0.1}, {"max_error": float("nan")}, {"act": "GELU"},
                                    {"domain": (1.0, 0.0)}, {"domain": (0.0, float("inf"))},
                                    {"domain": (0.5,)}])
def test_bad_input_is_a_config_error(kwargs):
    args = {"func": "oscillator", "domain": (0.0, 1.0), "max_error": 0.01, "act": "ReLU", **kwargs}
    with pytest.raises(ConfigError):
        floor(**args)


def test_a_floor_is_plain_data():
    found = floor("quadratic", (0, 1), 0.006, "relu")
    data = json.loads(json.dumps(found.as_dict()))
    assert data["func"] == "square" and data["act"] == "ReLU" and data["domain"] == [0.0, 1.0]
    assert data["needed_params"] == one_layer_params(found.needed) == TrainConfig(hidden=(found.needed,)).n_params
    assert data["source"] and data["text"] == found.text
