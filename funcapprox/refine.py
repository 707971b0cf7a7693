"""Refine trained tiny networks by full-batch least squares: an optional last phase of training.

After the Adam phase, `refine` fits each network again on a fixed sample of its function
(`refine_samples`: 2000 uniform x drawn from the run's seed, never the evaluation grids), in
float64, by the trainer's own loss (MSELoss, or SmoothL1Loss by Huber's IRLS weights):

- **Levenberg–Marquardt** (Hagan & Menhaj 1994; Marquardt's diagonal scaling) on every weight,
  with the Jacobian written out for the MLP family: any depth, either output layer.
- For **one hidden layer with a linear output**, LM runs as **variable projection** (Golub &
  Pereyra; Kaufman's Jacobian): the output layer is solved exactly by linear least squares for
  every hidden layer tried, and LM moves only the hidden weights and biases. LM is local: from
  Adam's end it cannot bring in a kink Adam left out (a 10-unit fit of the oscillator keeps
  0.026-0.035), so two global moves, each kept only when it lowers the loss, run between LM runs:
  - a **flip** turns units round (kink kept, the side it is active on swapped); for ReLU,
    LeakyReLU and Softplus, σ(-z) and σ(z) differ by a linear function, so which units face
    which way decides the linear part of the fit. Up to FLIP_ALL units every pattern is scored,
    beyond that single and pair flips, each by one small least-squares solve;
  - a **swap** takes one unit out and puts a new one in at one of KINKS candidate kinks
    (both facings where that matters); every (unit, candidate) pair is scored by least squares
    (with a free linear term for the flippable activations, which the best facing then
    realises) and the TRIES best are polished by LM, the first that beats the current loss kept.
  After each LM run, kinks that no sample sees are tidied (_Shallow.tidy_kinks), and smooth
  activations carry a float32-sized weight decay (RIDGE) against fits by cancelling huge weights.

Deterministic (no random draws, stable orderings: the same inputs give the same numbers on the
same machine and thread count), and safe: a singular or non-finite step is refused and LM damps
harder, and the result is written into the model's own tensors (so a FlatMLP viewing them sees
it) only if the model, run as it is (float32), then has a lower loss on the samples; otherwise,
and for a network that is NaN to begin with, the model is left exactly as it was.

Measured by scripts/bench-tiny (oscillator, Adam lr 0.02, SmoothL1Loss, 1000 epochs, seeds 12-16;
max error on the 1001-point grid; docs/small-networks.md has the tables): LeakyReLU {10,0,0} from
0.026-0.035 to 1.8e-7-2.7e-7, {9,0,0} from 0.018-0.093 to 3.8e-5-4.3e-5 (ReLU: 1.1e-4), {8,0,0}
from 0.019-0.092 to 0.009-0.0099, in 0.01-0.3 s of CPU per network; plain LM without the moves
changes nothing at 8-10 units. Square {8,0,0} LeakyReLU 0.0075 → 0.0034, Sigmoid {4,0,0} 0.026 → 5e-7.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from .engine import LEAKY_SLOPE
from .model import MLP

__all__ = ["Refinement", "refine", "refine_samples"]

SAMPLES = 2000  # refine_samples: x per seed
STEPS = 100  # LM iterations per LM run at most
MOVES = 30  # flips and swaps kept per network at most
KINKS = 200  # candidate kink positions a swap tries, evenly over the samples' range
TRIES = 5  # best-scored swaps polished by LM per round before the moves stop
TRY_STEPS = 30  # LM steps a swap is given to prove itself (the one kept is polished to STEPS at the end)
FLIP_ALL = 12  # up to this many units every facing pattern is scored; more: single and pair flips
FLIPPABLE = ("ReLU", "LeakyReLU", "Softplus")  # σ(-z) = σ(z) - (linear in z): facing matters
KINKED = ("ReLU", "LeakyReLU")  # linear on either side of a kink: _Shallow.tidy_kinks applies
MU_START, MU_MIN, MU_MAX = 1e-3, 1e-12, 1e10  # LM damping, relative to diag(JᵀJ)
RTOL = 1e-10  # an LM run stops when a step lowers the loss by less than this fraction
FLOOR = 1e-18  # ... or below this loss (RMS 1e-9): float32 weights cannot hold a closer fit anyway
GAIN = 1e-3  # a flip or swap is kept only if it lowers the loss by at least this fraction
NOISE = 1e-15  # about the loss float32 rounding alone gives outputs of order 1: changes below it are noise
# Weight decay for the smooth activations, (2^-24)², the float32 rounding a weight carries: without it LM
# fits x² with two nearly linear tanh units and output weights of ±1e6 that cancel, exact in float64 and
# 0.1 off in float32. ReLU and LeakyReLU cannot play that trick and get none (their scale is free).
RIDGE = 2.0**-48
F64 = torch.float64

Activation = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]  # z -> (σ(z), σ'(z))


@dataclass(frozen=True)
class Refinement:
    """What refining one network did; losses are the training loss on the refinement samples."""

    loss_before: float
    loss_after: float  # equals loss_before when the model was left as it was
    steps: int  # LM steps taken (accepted)
    moves: int  # flips and swaps kept
    seconds: float
    kept: bool  # the refined parameters were written into the model


def refine_samples(f: Callable[[torch.Tensor], torch.Tensor], seeds: Sequence[int],
                   n: int = SAMPLES) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` uniform x in [0, 1] per seed, in float64, and f's values there: the refinement's data.

    Shapes (copies, n, 1), as train's epochs; a generator of its own per seed, so the samples
    depend on the seed alone. `f` is what the network learns (targets.Target.unit).
    """
    x = torch.stack([torch.rand(n, 1, generator=torch.Generator().manual_seed(s), dtype=F64) for s in seeds])
    return x, f(x).to(F64)


@torch.no_grad()
def refine(models: MLP | Sequence[MLP], x: torch.Tensor, y: torch.Tensor, loss: str = "MSELoss", *,
           steps: int = STEPS, moves: int = MOVES, domain: tuple[float, float] = (0.0, 1.0)) -> list[Refinement]:
    """Refine each model in place on samples (x, y) of its function; one Refinement per model.

    x and y: (n, 1) shared by every model, or (copies, n, 1) with copy r fitted to x[r], y[r]
    (refine_samples). `loss` is the trainer's ("MSELoss" or "SmoothL1Loss", beta 1). `steps`
    bounds each LM run, `moves` the flips and swaps per model (0: LM only). `domain` is where
    the network is judged (the network's own x: [0, 1] in funcapprox); kinks between the samples
    and its ends are moved to the ends.
    """
    models = [models] if isinstance(models, MLP) else list(models)
    if x.dim() == 2:
        x, y = x.expand(len(models), -1, -1), y.expand(len(models), -1, -1)
    if x.shape[0] != len(models) or x.shape != y.shape or x.shape[-1] != 1:
        raise ValueError(f"x and y must be (n, 1) or ({len(models)}, n, 1); got {tuple(x.shape)}, {tuple(y.shape)}")
    return [_refine_one(m, _Problem(xr, yr, loss, m.act_name, domain), steps, moves)
            for m, xr, yr in zip(models, x, y)]


class _Problem:
    """One model's samples, loss and activation, in float64."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, loss: str, act: str,
                 domain: tuple[float, float] = (0.0, 1.0)) -> None:
        if loss not in ("MSELoss", "SmoothL1Loss"):
            raise ValueError(f"unknown loss {loss!r}")
        self.x, self.y = x.to(F64).reshape(-1), y.to(F64).reshape(-1)
        self.domain = domain
        self.huber = loss == "SmoothL1Loss"
        self.act_name, self.act = act, _activation(act)
        ridge = 0.0 if act in KINKED else RIDGE
        # Rows √(λn) θ under the data's make ½|r|² = n (loss + penalty) for either loss (Huber is r²/2 inside).
        self.ridge_row = math.sqrt(ridge * len(self.x))
        self.ridge_factor = ridge * (0.5 if self.huber else 1.0)

    def penalty(self, *tensors: torch.Tensor) -> float:
        return self.ridge_factor * sum(float(t.square().sum()) for t in tensors) if self.ridge_factor else 0.0

    def loss(self, out: torch.Tensor) -> float:
        """The trainer's loss (mean over the samples); inf when anything is not finite."""
        r = out - self.y
        if self.huber:
            a = r.abs()
            value = torch.where(a < 1, 0.5 * r * r, a - 0.5).mean().item()
        else:
            value = r.square().mean().item()
        return value if math.isfinite(value) else math.inf

    def row_weights(self, out: torch.Tensor) -> torch.Tensor:
        """√ of the Gauss–Newton weights of the loss at `out`: 1 for MSE; Huber's IRLS weights
        min(1, 1/|r|) for SmoothL1 (inside |r| < 1 it is MSE/2, so the same fit)."""
        if not self.huber:
            return torch.ones_like(self.y)
        return (out - self.y).abs().clamp_min(1.0).rsqrt()


def _activation(name: str) -> Activation:
    if name == "ReLU":
        return lambda z: (z.clamp_min(0), (z > 0).to(F64))
    if name == "LeakyReLU":
        return lambda z: (torch.where(z > 0, z, LEAKY_SLOPE * z), torch.where(z > 0, 1.0, LEAKY_SLOPE).to(F64))
    if name == "Sigmoid":
        return lambda z: (h := torch.sigmoid(z), h * (1 - h))
    if name == "Tanh":
        return lambda z: (h := torch.tanh(z), 1 - h * h)
    if name == "Softplus":  # beta 1, threshold 20, as torch's
        return lambda z: (torch.where(z > 20, z, torch.log1p(torch.exp(z.clamp_max(20)))), torch.sigmoid(z))
    raise ValueError(f"unknown activation {name!r}")


# --- one network: float64 parameters in, the best found out ------------------------------------------


def _refine_one(model: MLP, prob: _Problem, steps: int, moves: int) -> Refinement:
    start = time.perf_counter()
    params = list(model.parameters())
    saved = [p.detach().clone() for p in params]
    shapes = [p.shape for p in params]
    theta0 = torch.cat([p.reshape(-1).to(F64) for p in saved])
    loss0 = _model_loss(model, prob)
    if not math.isfinite(loss0):
        return Refinement(loss0, loss0, 0, 0, time.perf_counter() - start, False)
    layers0 = _unflatten(theta0, shapes)
    if len(layers0) == 2 and not model.output_act:
        layers, n_steps, n_moves = _refine_shallow(layers0, prob, steps, moves)
        theta = torch.cat([t.reshape(-1) for layer in layers for t in layer])
    else:  # deeper, or an activation after the output: plain LM on every weight
        theta, n_steps = _full_lm(theta0, shapes, prob, model.output_act, steps)
        n_moves = 0
    # Judge the model as it will run, float32 weights and arithmetic: rounding must not undo a gain.
    for p, value in zip(params, [t for layer in _unflatten(theta, shapes) for t in layer]):
        p.copy_(value)  # in place: the flat buffer of a FlatMLP sees it
    loss1 = _model_loss(model, prob)
    kept = math.isfinite(loss1) and loss1 < loss0
    if not kept:
        for p, value in zip(params, saved):
            p.copy_(value)
    return Refinement(loss0, loss1 if kept else loss0, n_steps, n_moves, time.perf_counter() - start, kept)


def _model_loss(model: MLP, prob: _Problem) -> float:
    """The training loss of the model as it runs (its own dtype and forward), summed in float64."""
    dtype = next(model.parameters()).dtype
    return prob.loss(model(prob.x.unsqueeze(1).to(dtype)).reshape(-1).to(F64))


def _unflatten(theta: torch.Tensor, shapes: list[torch.Size]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """[(W, b) per layer] as views of theta, in MLP.parameters() order."""
    tensors, offset = [], 0
    for shape in shapes:
        size = math.prod(shape)
        tensors.append(theta[offset : offset + size].view(shape))
        offset += size
    return list(zip(tensors[0::2], tensors[1::2]))


def _forward(layers, prob: _Problem, output_act: bool):
    """Output on the samples, plus each layer's input and σ'(z) (None for a linear output)."""
    h = prob.x.unsqueeze(1)
    inputs, slopes = [], []
    for k, (w, b) in enumerate(layers):
        inputs.append(h)
        z = torch.addmm(b, h, w.T)
        if k < len(layers) - 1 or output_act:
            h, dh = prob.act(z)
            slopes.append(dh)
        else:
            h = z
            slopes.append(None)
    return h.reshape(-1), inputs, slopes


def _lm(theta: torch.Tensor, evaluate, linearise, steps: int) -> tuple[torch.Tensor, float, object, int]:
    """Levenberg–Marquardt from theta; evaluate(θ) -> (loss, state), linearise(θ, state) -> (J, r),
    weighted so that ½|r|² is the Gauss–Newton model of the loss. Only steps that lower the
    loss are taken, so the result is never worse than theta."""
    loss, state = evaluate(theta)
    mu, taken = MU_START, 0
    if not math.isfinite(loss):
        return theta, loss, state, 0
    for _ in range(steps):
        jac, r = linearise(theta, state)
        a, g = jac.T @ jac, jac.T @ r
        diag = torch.diagonal(a).clone()
        scale = diag.clamp_min(1e-12 * float(diag.max()) + 1e-300)  # a dead unit's zero column stays solvable
        before = loss
        while mu <= MU_MAX:
            try:
                delta = torch.linalg.solve(a + torch.diag(mu * scale), -g)
            except RuntimeError:  # singular, or NaN inside
                delta = None
            if delta is not None and bool(torch.isfinite(delta).all()):
                new_loss, new_state = evaluate(theta + delta)
                if new_loss < loss:
                    theta, loss, state = theta + delta, new_loss, new_state
                    mu, taken = max(mu / 10, MU_MIN), taken + 1
                    break
            mu *= 10
        if mu > MU_MAX or before - loss <= RTOL * before or loss < FLOOR:
            break
    return theta, loss, state, taken


def _full_lm(theta: torch.Tensor, shapes, prob: _Problem, output_act: bool, steps: int):
    def evaluate(t):
        out, inputs, slopes = _forward(_unflatten(t, shapes), prob, output_act)
        return prob.loss(out) + prob.penalty(t), (out, inputs, slopes)

    def linearise(t, state):
        out, inputs, slopes = state
        layers = _unflatten(t, shapes)
        sw = prob.row_weights(out)
        delta = sw.unsqueeze(1) if slopes[-1] is None else slopes[-1] * sw.unsqueeze(1)  # (n, 1): d out / d z
        blocks = []
        for k in range(len(layers) - 1, -1, -1):
            blocks[:0] = [(delta.unsqueeze(2) * inputs[k].unsqueeze(1)).flatten(1), delta]  # dW_k, db_k
            if k:
                delta = (delta @ layers[k][0]) * slopes[k - 1]
        jac, r = torch.cat(blocks, 1), sw * (out - prob.y)
        if prob.ridge_row:
            jac = torch.cat([jac, prob.ridge_row * torch.eye(len(t), dtype=F64)])
            r = torch.cat([r, prob.ridge_row * t])
        return jac, r

    theta, _, _, taken = _lm(theta, evaluate, linearise, steps)
    return theta, taken


# --- one hidden layer, linear output: variable projection, flips and swaps ------------------------


class _Shallow:
    """Hidden weights w (n,) and biases b (n,); the output layer always solved by least squares."""

    def __init__(self, prob: _Problem) -> None:
        self.prob = prob
        self.ones = torch.ones_like(prob.x)
        self.sorted_x = prob.x.sort().values

    def fit(self, w: torch.Tensor, b: torch.Tensor):
        """(objective, state) with the best output layer for (w, b): the loss, plus RIDGE's penalty
        on the output weights for a smooth activation; state = (coef, H, σ', sw, U)."""
        prob = self.prob
        h, dh = prob.act(prob.x.unsqueeze(1) * w + b)
        design = torch.cat([h, self.ones.unsqueeze(1)], 1)
        sw = self.ones
        coef, basis = _ridge_lstsq(design, prob.y, sw, prob.ridge_row)
        if coef is not None and prob.huber:  # Huber: one IRLS re-weighting, if any |r| ≥ 1
            sw = prob.row_weights(design @ coef)
            if bool((sw < 1).any()):
                coef, basis = _ridge_lstsq(design, prob.y, sw, prob.ridge_row)
        if coef is None:
            return math.inf, None
        return prob.loss(design @ coef) + prob.penalty(coef[:-1]), (coef, h, dh, sw, basis)

    def linearise(self, theta: torch.Tensor, state):
        """Kaufman's variable-projection Jacobian: P⊥ d(H c)/d(w, b), weighted rows (and the output
        weights' ridge rows, which do not depend on (w, b), under them)."""
        coef, h, dh, sw, basis = state
        prob = self.prob
        c = coef[:-1]
        jac = torch.cat([dh * prob.x.unsqueeze(1) * c, dh * c], 1) * sw.unsqueeze(1)
        design = torch.cat([h, self.ones.unsqueeze(1)], 1)
        r = sw * (design @ coef - prob.y)
        if prob.ridge_row:
            jac = torch.cat([jac, torch.zeros(len(c), jac.shape[1], dtype=F64)])
            r = torch.cat([r, prob.ridge_row * c])
        return jac - basis @ (basis.T @ jac), r

    def lm(self, w: torch.Tensor, b: torch.Tensor, steps: int):
        n = len(w)
        theta, loss, state, taken = _lm(torch.cat([w, b]), lambda t: self.fit(t[:n], t[n:]), self.linearise, steps)
        w, b = theta[:n].clone(), theta[n:].clone()
        if state is not None and self.prob.act_name in KINKED:
            b, w, loss, state = self.tidy_kinks(w, b, loss, state)
        return w, b, loss, state, taken

    def tidy_kinks(self, w: torch.Tensor, b: torch.Tensor, loss: float, state):
        """Kinks no sample can see, made harmless; the fit on the samples stays as it is.

        LM happily parks a kink between two samples or past the last one, where it bends the
        network unseen: a LeakyReLU unit's kink at x = 0.99999, past the last sample, lends its leak
        as a linear term with a jump of -75 that costs 0.001 of max error at x = 1; two or three
        kinks split one kink of the target inside a sample gap, off by 1e-4 between them. So a kink
        between the samples and an end of the domain moves to that end (its unit is linear on every
        sample), and the kinks inside one gap merge into one at their jump-weighted mean (exact
        outside the gap); the units freed are parked at the domain's high end facing left (linear on
        the samples: the linear term the merge needs), where a swap can take them.
        """
        low, high = self.prob.domain
        samples = self.sorted_x
        first, last = float(samples[0]), float(samples[-1])
        kinks = -b / w.masked_fill(w == 0, math.inf)
        w2, b2 = w.clone(), b.clone()
        past, before = (kinks > last) & (kinks < high), (kinks < first) & (kinks > low)
        b2[past], b2[before] = -w[past] * high, -w[before] * low
        inside = (kinks > first) & (kinks < last)
        gaps = torch.searchsorted(samples, kinks.clamp(first, last))  # same index: no sample between
        jumps = state[0][:-1] * w.abs()  # slope change at each kink, up to LeakyReLU's common (1 - leak)
        merged = False
        for gap in torch.unique(gaps[inside]).tolist():
            members = torch.nonzero(inside & (gaps == gap)).flatten()
            if len(members) < 2:
                continue
            total, size = jumps[members].sum(), jumps[members].abs().sum()
            kink = (jumps[members] * kinks[members]).sum() / total if total.abs() > 1e-9 * size \
                else kinks[members].mean()
            slope = w[members].abs().mean()
            w2[members[0]], b2[members[0]] = slope, -slope * kink
            w2[members[1:]], b2[members[1:]] = -slope, slope * high
            merged = True
        if not (merged or bool((past | before).any())):
            return b, w, loss, state
        new_loss, new_state = self.fit(w2, b2)
        if new_state is None or not new_loss <= loss * (1 + 1e-6) + NOISE:  # the same fit, up to rounding
            return b, w, loss, state
        return b2, w2, new_loss, new_state


def _ridge_lstsq(design: torch.Tensor, y: torch.Tensor, sw: torch.Tensor, ridge: float):
    """Minimum-norm solution of min |sw ⊙ (design c - y)|² + ridge² |c[:-1]|² (the last column, the
    bias, free) by SVD, rank-deficient designs allowed (a dead unit), and an orthonormal basis of the
    range of the matrix solved: the weighted design, with the ridge's rows under it when ridge > 0."""
    a = design * sw.unsqueeze(1)
    y = sw * y
    if ridge:
        n = design.shape[1] - 1
        a = torch.cat([a, ridge * torch.eye(n, n + 1, dtype=F64)])
        y = torch.cat([y, torch.zeros(n, dtype=F64)])
    try:
        u, s, vh = torch.linalg.svd(a, full_matrices=False)
    except RuntimeError:
        return None, None
    if not bool(torch.isfinite(s).all()) or float(s[0]) == 0.0:
        return None, None
    rank = s > s[0] * 1e-12
    u, s, vh = u[:, rank], s[rank], vh[rank]
    coef = vh.T @ ((u.T @ y) / s)
    return coef, u


def _refine_shallow(layers, prob: _Problem, steps: int, max_moves: int):
    shallow = _Shallow(prob)
    w, b = layers[0][0][:, 0].clone(), layers[0][1].clone()
    w, b, loss, state, taken = shallow.lm(w, b, steps)
    moves = 0
    while moves < max_moves and state is not None and loss >= FLOOR:
        found = _flip(shallow, w, b, loss, steps) or _swap(shallow, w, b, loss, steps)
        if found is None:
            break
        w, b, loss, state, more = found
        taken, moves = taken + more, moves + 1
    if state is None:  # not even the start had a solvable output layer: keep the start
        return layers, taken, 0
    if moves:  # swaps were tried with fewer steps
        w, b, loss, state, more = shallow.lm(w, b, steps)
        taken += more
    coef = state[0]
    return [(w.unsqueeze(1), b), (coef[:-1].unsqueeze(0), coef[-1:])], taken, moves


def _subset_scores(design: torch.Tensor, target: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """Least-squares residual |target - design[:, S] c|² for every row S of `columns`, batched
    through the Gram matrix (a tiny ridge keeps a repeated or dead column solvable)."""
    gram, proj, total = design.T @ design, design.T @ target, target @ target
    scores = []
    for chunk in columns.split(max(1, 2**22 // columns.shape[1] ** 2)):  # ≤ 32 MB of sub-matrices at once
        g = gram[chunk.unsqueeze(2), chunk.unsqueeze(1)]
        diagonal = torch.diagonal(g, dim1=1, dim2=2)
        diagonal += 1e-12 * diagonal.mean(1, keepdim=True) + 1e-300
        p = proj[chunk]
        factor, info = torch.linalg.cholesky_ex(g)
        solution = torch.cholesky_solve(p.unsqueeze(2), factor).squeeze(2)
        scores.append((total - (p * solution).sum(1)).masked_fill(info != 0, math.inf))
    return torch.cat(scores).nan_to_num(math.inf)


def _facing(shallow: _Shallow, w, b) -> torch.Tensor | None:
    """The signs (±1 per unit) that turn units round (w, b → -w, -b) for the best least-squares fit
    with the kinks where they are, or None if no flip beats the current facing."""
    prob = shallow.prob
    n = len(w)
    if prob.act_name not in FLIPPABLE:
        return None
    if n <= FLIP_ALL:
        patterns = torch.tensor(list(itertools.product((0, 1), repeat=n)), dtype=torch.long)
    else:
        pairs = list(itertools.combinations(range(n), 2))
        patterns = torch.zeros(1 + n + len(pairs), n, dtype=torch.long)
        patterns[1 + torch.arange(n), torch.arange(n)] = 1
        for row, (i, j) in enumerate(pairs, start=1 + n):
            patterns[row, [i, j]] = 1
    z = prob.x.unsqueeze(1) * w + b
    sw = prob.row_weights(_predict(shallow, w, b))
    design = torch.cat([prob.act(z)[0], prob.act(-z)[0], shallow.ones.unsqueeze(1)], 1) * sw.unsqueeze(1)
    columns = torch.cat([torch.arange(n) + n * patterns, torch.full((len(patterns), 1), 2 * n)], 1)
    scores = _subset_scores(design, sw * prob.y, columns)
    best = int(torch.argmin(scores))  # the first minimum: deterministic
    if not patterns[best].any() or not scores[best] < scores[0] * (1 - 1e-9):  # row 0: no flip
        return None
    return 1.0 - 2.0 * patterns[best].to(F64)


def _flip(shallow: _Shallow, w, b, loss: float, steps: int):
    """Turn units round as _facing says, LM-polished, if that lowers the loss."""
    sign = _facing(shallow, w, b)
    if sign is None:
        return None
    w2, b2, loss2, state, taken = shallow.lm(w * sign, b * sign, steps)
    return (w2, b2, loss2, state, taken) if loss2 < loss * (1 - GAIN) else None


def _swap(shallow: _Shallow, w, b, loss: float, steps: int):
    """Replace one unit by a new one at a candidate kink, if that lowers the loss after LM (and flips)."""
    prob = shallow.prob
    n = len(w)
    low, high = float(prob.x.min()), float(prob.x.max())
    kinks = low + (high - low) * (torch.arange(KINKS, dtype=F64) + 0.5) / KINKS
    slope = float(w.abs().median()) or 1.0 / max(high - low, 1e-12)
    flippable = prob.act_name in FLIPPABLE
    facings = (1.0, -1.0) if flippable else (1.0,)  # tanh(-z) = -tanh(z), σ(-z) = 1 - σ(z): same span
    cw = torch.cat([torch.full((KINKS,), f * slope, dtype=F64) for f in facings])
    cb = -cw * kinks.repeat(len(facings))
    x = prob.x.unsqueeze(1)
    sw = prob.row_weights(_predict(shallow, w, b))
    extra = [shallow.ones, prob.x] if flippable else [shallow.ones]  # a free linear term: what flips can add
    design = torch.cat([prob.act(x * w + b)[0], prob.act(x * cw + cb)[0], torch.stack(extra, 1)], 1)
    design = design * sw.unsqueeze(1)
    k = len(cw)
    units = torch.arange(n)
    tail = torch.arange(n + k, n + k + len(extra)).expand(k, -1)
    columns = torch.cat([torch.cat([torch.cat([units[:j], units[j + 1 :]]).expand(k, -1),
                                    (n + torch.arange(k)).unsqueeze(1), tail], 1) for j in range(n)])
    scores = _subset_scores(design, sw * prob.y, columns)
    for q in torch.argsort(scores, stable=True)[:TRIES].tolist():
        j, c = divmod(q, k)
        w2, b2 = w.clone(), b.clone()
        w2[j], b2[j] = cw[c], cb[c]
        sign = _facing(shallow, w2, b2)  # the score assumed the best facing: take it before LM moves kinks
        if sign is not None:
            w2, b2 = w2 * sign, b2 * sign
        w2, b2, loss2, state, taken = shallow.lm(w2, b2, min(steps, TRY_STEPS))
        if state is None:
            continue
        flipped = _flip(shallow, w2, b2, loss2, steps)
        if flipped is not None:
            w2, b2, loss2, state, more = flipped
            taken += more
        if loss2 < loss * (1 - GAIN):
            return w2, b2, loss2, state, taken
    return None


def _predict(shallow: _Shallow, w, b) -> torch.Tensor:
    loss, state = shallow.fit(w, b)
    if state is None:
        return torch.zeros_like(shallow.prob.x)
    coef, h = state[0], state[1]
    return h @ coef[:-1] + coef[-1]
