"""The floor: where funcapprox knows the target, how few units one hidden layer can have and still
reach a given max error — a provable lower bound, and a size that provably suffices.

The bounds hold for one hidden layer of piecewise-linear units (ReLU, LeakyReLU) and a linear
output layer with a bias (funcapprox's default, output_act false), on the function's domain:

* Counting pieces. A unit a·relu(w·x + b) bends where w·x + b = 0, so N units make a function
  that is linear between at most N bends: at most N + 1 linear pieces on an interval (LeakyReLU
  alike). A target with p linear pieces therefore needs N ≥ p - 1 to be represented exactly, and
  p units always suffice: one per bend plus one, bent at the left end of the domain, for the
  starting slope. That is Arora, Basu, Mianjy & Mukherjee, "Understanding Deep Neural Networks
  with Rectified Linear Units", ICLR 2018, Theorem 2.2 (a piecewise linear R → R function with p
  pieces is represented by one hidden layer of at most p ReLU units, a bound the paper shows
  tight; the piece count above is the lower bound). So "p units on one layer suffice, p - 1 are
  needed": p - 1 is the lower bound, p the construction. Whether p - 1 represent it is decided
  here exactly: with p - 1 units each sits on one bend, its outgoing weight is fixed by the jump
  in slope there, and only the direction it faces is free, so the starting slope is one of
  2^(p-1) values (`orientation_miss`).
* The oscillator (linear between 11 knots at x = 0, 0.1, …, 1, funcapprox.targets) has p = 10
  pieces, 9 bends. Exactly: 10 units (31 parameters) are needed and suffice, for no way of facing
  9 units gives its starting slope -2.5 (the nearest misses by 0.0101 with ReLU, by 0.0022 with
  LeakyReLU's leak of 0.01). Within a max error E > 0, the lower bound: a function linear on
  [a, b] misses the target there by at least the best line's error on [a, b] (`line_error`), so
  it must bend inside every stretch where that exceeds E, and disjoint stretches need distinct
  bends, hence distinct units (`needed_bends`; around one bend t with slope jump Δ the stretch
  [t - h, t + h] gives |Δ|·h/4). The size that suffices is constructed, the smaller of: the fewest
  pieces of a polyline bent only at the target's knots that stays within E at every knot (then
  everywhere: both are linear between them), one unit per piece (`fewest_pieces`); and p - 1 units
  bent on the bends with the best output weights (`bend_network`: not the exact jumps, whose
  starting slope misses, but weights that spread the miss: max error 0.000101 with ReLU, 0.0000365
  with LeakyReLU, so 9 units are the floor from there up to 0.0063). Between the two bounds,
  where they differ, the true minimum is not pinned down.
* y = x² on [lo, hi], width w: the best line on an interval of width h misses x² by h²/8
  (Chebyshev: x² less the line equioscillates at the ends and the middle), and k pieces leave one of
  width ≥ w/k, so no k-piece function comes closer than w²/(8k²); k equal pieces, each the chord
  lowered by h²/8, reach it and join up. With N units, k ≤ N + 1: the lower bound is the smallest
  N with w²/(8(N + 1)²) ≤ E. k equal pieces take k - 1 bends plus one unit for the starting slope
  (k - 1 units only when the starting slope is again a sum of facing choices, as on [-1, 1] with k
  odd): that is the size that suffices. (An earlier note guessed 1/(16k²) on [0, 1]; it is 1/(8k²).)

Deeper networks can bend more often per unit (a composition folds the line), so these are bounds
for one hidden layer only. Sigmoid, Tanh and Softplus are smooth: a network of them has no pieces
to count, and the argument does not apply. Formulas and data files: unknown. The max error is the
largest error over the whole domain; funcapprox measures it on 1001 points, which can read a
little lower.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import asdict, dataclass
from functools import lru_cache
from itertools import combinations, product
from typing import NamedTuple

import numpy as np

from .config import DEFAULT_DOMAIN, canonical_function, is_builtin
from .errors import ConfigError
from .targets import OSCILLATOR_KNOTS

PIECEWISE_LINEAR = {"ReLU": 0.0, "LeakyReLU": 0.01}  # their negative slope (model.py: PyTorch's defaults)
SMOOTH = ("Sigmoid", "Tanh", "Softplus")

SOURCE_PIECES = ("Arora, Basu, Mianjy & Mukherjee, Understanding Deep Neural Networks with Rectified Linear "
                 "Units, ICLR 2018, Thm 2.2: p linear pieces need at least p - 1 and at most p units on one "
                 "hidden layer; within an error E, every stretch no single line fits within E needs a "
                 "bend, so a unit, of its own (Chebyshev line fits)")
SOURCE_SQUARE = ("N units on one hidden layer make at most N + 1 linear pieces (Arora et al., ICLR 2018, "
                 "Sec. 2); the best k-piece approximation of x^2 on an interval of width w is k equal "
                 "lowered chords, max error w^2/(8k^2) (Chebyshev: a line misses x^2 on width h by h^2/8)")

_TOL = 1e-12


@dataclass(frozen=True)
class Floor:
    """How few units one hidden layer of `act` units needs for max error `max_error` on `func`."""

    func: str
    domain: tuple[float, float]
    max_error: float
    act: str
    needed: int  # lower bound: no one-hidden-layer network of fewer such units reaches max_error
    suffices: int  # a one-hidden-layer network of this many units provably reaches it
    pieces: int | None  # the target's linear pieces on the domain; None for a curve (square)
    text: str  # one line for people
    source: str  # where the bounds come from

    @property
    def needed_params(self) -> int:
        return one_layer_params(self.needed)

    @property
    def suffices_params(self) -> int:
        return one_layer_params(self.suffices)

    @property
    def exact(self) -> bool:
        """The floor is known exactly: the lower bound is reached."""
        return self.needed == self.suffices

    def as_dict(self) -> dict:
        data = asdict(self)
        data["domain"] = list(self.domain)
        data.update(needed_params=self.needed_params, suffices_params=self.suffices_params, exact=self.exact)
        return data


def one_layer_params(units: int) -> int:
    """Parameters of {units,0,0}: input weights and biases, output weights, the output bias."""
    return 3 * units + 1


def floor(func: str, domain: tuple[float, float] = DEFAULT_DOMAIN, max_error: float = 0.0,
          act: str = "ReLU") -> Floor | None:
    """The floor for `func` on `domain` at `max_error` (in the function's own units, 0 = exact) with one
    hidden layer of `act` units, or None where funcapprox does not know it (`floor_text` says why)."""
    func, domain, max_error, act = _check(func, domain, max_error, act)
    if _unknown(func, domain, max_error, act) is not None:
        return None
    if func == "oscillator":
        return _oscillator_floor(domain, max_error, act)
    return _square_floor(domain, max_error, act)


def floor_text(func: str, domain: tuple[float, float] = DEFAULT_DOMAIN, max_error: float = 0.0,
               act: str = "ReLU") -> str:
    """The floor as one line, or why it is unknown."""
    func, domain, max_error, act = _check(func, domain, max_error, act)
    reason = _unknown(func, domain, max_error, act)
    if reason is not None:
        return f"floor: unknown for this function ({reason})"
    found = floor(func, domain, max_error, act)
    assert found is not None
    return found.text


def _check(func: str, domain: tuple[float, float], max_error: float, act: str) -> tuple:
    try:
        error = float(max_error)
    except (TypeError, ValueError):
        error = math.nan
    if not (math.isfinite(error) and error >= 0):
        raise ConfigError(f"max error must be a number of at least 0, not {max_error!r}")
    try:
        low, high = (float(v) for v in domain)
    except (TypeError, ValueError):
        low = high = math.nan
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ConfigError(f"domain must be two finite numbers LO < HI, not {domain!r}")
    known = (*PIECEWISE_LINEAR, *SMOOTH)
    names = {a.lower(): a for a in known}
    if not isinstance(act, str) or act.strip().lower() not in names:
        raise ConfigError(f"act must be one of {', '.join(known)}, not {act!r}")
    try:
        func = canonical_function(func)
    except ConfigError:  # an experiment's record of a function funcapprox cannot read: no floor, no error
        func = None
    return func, (low, high), error, names[act.strip().lower()]


def _unknown(func: str | None, domain: tuple[float, float], max_error: float, act: str) -> str | None:
    if func is None:
        return "not a function funcapprox can read"
    if not is_builtin(func):
        return "the floor is known only for the built-in square and oscillator"
    if act in SMOOTH:
        return f"{act} is smooth: the piece-count argument holds only for ReLU and LeakyReLU"
    if func == "square" and max_error == 0:
        return "x² is not piecewise linear: no ReLU network represents it exactly"
    return None


# --- the oscillator: linear between knots ------------------------------------------------------


@dataclass(frozen=True)
class Polyline:
    """A continuous piecewise-linear function on [xs[0], xs[-1]], linear between consecutive xs."""

    xs: tuple[float, ...]
    ys: tuple[float, ...]

    def __call__(self, x: float) -> float:
        k = min(max(bisect_right(self.xs, x) - 1, 0), len(self.xs) - 2)
        x0, x1, y0, y1 = self.xs[k], self.xs[k + 1], self.ys[k], self.ys[k + 1]
        return y0 + (x - x0) * (y1 - y0) / (x1 - x0)

    def slopes(self) -> list[float]:
        return [(y1 - y0) / (x1 - x0) for x0, x1, y0, y1 in zip(self.xs, self.xs[1:], self.ys, self.ys[1:])]

    def bends(self) -> list[tuple[float, float]]:
        """(x, jump in slope) at every interior x where the slope changes."""
        s = self.slopes()
        scale = max((abs(v) for v in s), default=1.0) or 1.0
        return [(x, right - left) for x, left, right in zip(self.xs[1:-1], s, s[1:])
                if abs(right - left) > _TOL * scale]

    def merged(self) -> Polyline:
        """The same function with only its bends as interior points: maximal linear runs."""
        keep = {x for x, _ in self.bends()}
        points = [(x, y) for i, (x, y) in enumerate(zip(self.xs, self.ys))
                  if i in (0, len(self.xs) - 1) or x in keep]
        return Polyline(tuple(p[0] for p in points), tuple(p[1] for p in points))


@lru_cache(maxsize=32)  # immutable, and the report asks for one domain many times
def oscillator_polyline(domain: tuple[float, float] = DEFAULT_DOMAIN) -> Polyline:
    """The oscillator on `domain`, from its knots (funcapprox.targets); outside [0, 1] it carries on
    along its first and last segments, as targets.oscillator does."""
    knots = OSCILLATOR_KNOTS
    whole = Polyline(tuple(i / (len(knots) - 1) for i in range(len(knots))), knots)
    low, high = domain
    xs = (low, *(x for x in whole.xs if low < x < high), high)
    return Polyline(xs, tuple(whole(x) for x in xs)).merged()


def orientation_miss(jumps: list[float], start_slope: float, leak: float = 0.0) -> tuple[float, tuple[bool, ...]]:
    """How close len(jumps) units, one on each bend, get to `start_slope`, and which face left.

    A unit a·σ(w(x - t)) with σ(z) = max(z, leak·z) adds a jump of a·|w|·(1 - leak) at t, fixed by
    the target. Facing right (w > 0) it adds leak·jump/(1 - leak) to the slope left of every bend;
    facing left (w < 0), -jump/(1 - leak). Returns (smallest |miss| of the starting slope, the
    facing, True = left, that gives it).
    """
    best: tuple[float, tuple[bool, ...]] = (math.inf, ())
    for left in product((False, True), repeat=len(jumps)):
        start = sum((-d if faces_left else leak * d) / (1 - leak) for d, faces_left in zip(jumps, left))
        miss = abs(start - start_slope)
        if miss < best[0] - _TOL:
            best = (miss, left)
    return best


def line_error(line: Polyline, a: float, b: float) -> float:
    """The smallest max error any single line leaves on `line` over [a, b].

    Line less polyline is linear between the polyline's bends, so only a, b and the bends between
    count; on a finite set the best line's error is the largest over triples x1 < x2 < x3 of half
    the middle point's distance from the chord of the outer two (Chebyshev's equioscillation).
    """
    xs = [a, *(x for x, _ in line.bends() if a < x < b), b]
    ys = [line(x) for x in xs]
    worst = 0.0
    for i, j, k in combinations(range(len(xs)), 3):
        share = (xs[j] - xs[i]) / (xs[k] - xs[i])
        worst = max(worst, abs(ys[j] - ((1 - share) * ys[i] + share * ys[k])) / 2)
    return worst


def needed_bends(line: Polyline, max_error: float) -> int:
    """How many bends any function within `max_error` of `line` must have: a lower bound on units.

    A function linear on [a, b] misses `line` there by at least line_error(a, b), so it bends inside
    every stretch where that exceeds max_error; disjoint stretches need distinct bends. Taken from the
    left, each stretch as short as it can be (the earliest end leaves the most room, so this count
    is the largest possible); each end is checked to exceed max_error, so the count never overstates.
    """
    a, end, count = line.xs[0], line.xs[-1], 0
    while line_error(line, a, end) > max_error:
        short, long = a, end  # line_error(a, long) > max_error throughout
        for _ in range(100):
            middle = (short + long) / 2
            if line_error(line, a, middle) > max_error:
                long = middle
            else:
                short = middle
        count, a = count + 1, long
    return count


def fewest_pieces(line: Polyline, max_error: float) -> int:
    """The fewest pieces of a polyline bent only at `line`'s points, with free values there, that
    stays within `max_error` of `line` at all its points (and so everywhere between them)."""
    xs, ys, e = line.xs, line.ys, max_error
    # reach[j]: pieces used → intervals of values the approximation can take at xs[j]
    reach: list[dict[int, list[tuple[float, float]]]] = [{} for _ in xs]
    reach[0][0] = [(ys[0] - e, ys[0] + e)]
    for j in range(1, len(xs)):
        for i in range(j):
            for used, intervals in reach[i].items():
                for interval in intervals:
                    got = _segment_reach(xs, ys, e, i, j, interval)
                    if got is not None:
                        reach[j].setdefault(used + 1, []).append(got)
    return min(reach[-1])


def _segment_reach(xs, ys, e, i, j, start: tuple[float, float]) -> tuple[float, float] | None:
    """Values b at xs[j] of a line from (xs[i], a), a in `start`, within e of ys at every point between."""
    lows = [(0.0, ys[j] - e)]  # b ≥ p·a + q, as (p, q)
    highs = [(0.0, ys[j] + e)]  # b ≤ p·a + q
    for m in range(i + 1, j):
        lam = (xs[m] - xs[i]) / (xs[j] - xs[i])  # the point's share of the way: (1 - lam)·a + lam·b
        lows.append((-(1 - lam) / lam, (ys[m] - e) / lam))
        highs.append((-(1 - lam) / lam, (ys[m] + e) / lam))
    lower = lambda a: max(p * a + q for p, q in lows)  # noqa: E731
    upper = lambda a: min(p * a + q for p, q in highs)  # noqa: E731
    candidates = set(start)
    lines = lows + highs
    for (p1, q1), (p2, q2) in product(lines, lines):
        if abs(p1 - p2) > _TOL:
            a = (q2 - q1) / (p1 - p2)
            if start[0] <= a <= start[1]:
                candidates.add(a)
    feasible = [a for a in candidates if lower(a) <= upper(a) + _TOL]
    if not feasible:
        return None
    return min(lower(a) for a in feasible), max(upper(a) for a in feasible)


class OneLayer(NamedTuple):
    """A one-hidden-layer network as plain numbers: y = bias + Σ out[i]·σ(weight[i]·x + shift[i])."""

    weight: tuple[float, ...]
    shift: tuple[float, ...]
    out: tuple[float, ...]
    bias: float
    act: str
    max_error: float  # its largest error on the target over the whole domain


@lru_cache(maxsize=32)  # it does not depend on the max error: computed once per domain and act
def bend_network(domain: tuple[float, float] = DEFAULT_DOMAIN, act: str = "ReLU") -> OneLayer:
    """The best network of p - 1 units, one bent on each of the oscillator's bends, on `domain`.

    Network less target is then linear between the target's points (the domain's ends and the
    bends), so its max error is the largest at those p + 1 points, and the network has p unknowns
    (p - 1 output weights and the bias) for each way the units face. With m = n + 1 points and n
    unknowns the best error is exact: if v spans the vectors orthogonal to every unknown's column,
    every residual r has v·r = v·y, so max|r| ≥ |v·y| / Σ|v|, and r = ±(v·y / Σ|v|)·sign(v) reaches
    it. Every way of facing is tried; ways whose columns are dependent are skipped (this is a
    construction: it only has to be valid).
    """
    line = oscillator_polyline(domain)
    leak = PIECEWISE_LINEAR[act]
    xs, ys = np.array(line.xs), np.array(line.ys)
    bends = np.array([x for x, _ in line.bends()])
    faces = np.array(list(product((1.0, -1.0), repeat=len(bends)))).reshape(-1, len(bends))
    z = (xs[None, :, None] - bends[None, None, :]) * faces[:, None, :]  # (ways, points, units)
    columns = np.concatenate([np.maximum(z, leak * z), np.ones(z.shape[:2] + (1,))], axis=2)
    u, sizes, _ = np.linalg.svd(columns)
    v = u[:, :, -1]  # orthogonal to every column
    errors = np.abs(v @ ys) / np.abs(v).sum(axis=1)
    errors[sizes[:, -1] <= 1e-9 * sizes[:, 0]] = np.inf
    best = int(np.argmin(errors))
    residual = np.sign(v[best] @ ys) * errors[best] * np.sign(v[best])
    solution, *_ = np.linalg.lstsq(columns[best], ys - residual, rcond=None)
    weight = tuple(float(w) for w in faces[best])
    return OneLayer(weight, tuple(float(-w * t) for w, t in zip(weight, bends)),
                    tuple(float(a) for a in solution[:-1]), float(solution[-1]), act, float(errors[best]))


def _oscillator_floor(domain: tuple[float, float], max_error: float, act: str) -> Floor:
    line = oscillator_polyline(domain)
    pieces, bends = len(line.xs) - 1, len(line.bends())
    short = bend_network(domain, act).max_error if bends else math.inf  # p - 1 units, one on each bend
    polyline = fewest_pieces(line, max_error)
    if max_error == 0:
        needed = bends if short <= _TOL else pieces
        lower = f"{pieces} linear pieces need at least {bends} units" if bends else "it is one line there"
        if bends and needed > bends:
            miss, _ = orientation_miss([d for _, d in line.bends()], line.slopes()[0], PIECEWISE_LINEAR[act])
            lower += f", and {bends} on its bends miss its starting slope by {miss:.3g} or more"
    else:
        forced = needed_bends(line, max_error)
        needed = max(1, forced)
        lower = (f"{forced} separate stretches of its {pieces} linear pieces are each too bent for one "
                 f"line within {max_error:g}" if forced else f"one line comes within {max_error:g}")
    if bends and short <= max_error + _TOL and bends < polyline:
        suffices = bends
        upper = f"{bends} units on its bends, facing the best way, come within {short:.3g}"
    elif polyline == 1:
        suffices, upper = 1, "one unit makes that line"
    elif max_error == 0:
        suffices, upper = polyline, f"{polyline} units represent it, one per bend and one for the starting slope"
    else:
        suffices = polyline
        upper = f"{polyline} pieces bent at its knots stay within it, one unit each"
    return Floor("oscillator", domain, max_error, act, needed, suffices, pieces,
                 _text("the oscillator", domain, max_error, act, needed, suffices, f"{lower}; {upper}"),
                 SOURCE_PIECES)


# --- the square ---------------------------------------------------------------------------------


def square_error(pieces: int, domain: tuple[float, float] = DEFAULT_DOMAIN) -> float:
    """The smallest max error any `pieces`-piece linear function leaves on x² over `domain`."""
    width, k = domain[1] - domain[0], float(pieces)
    return width * width / (8 * k * k)


def square_pieces(max_error: float, domain: tuple[float, float] = DEFAULT_DOMAIN) -> int:
    """The fewest linear pieces that approximate x² on `domain` within `max_error` (> 0)."""
    width = domain[1] - domain[0]
    k = max(1, math.ceil(width / math.sqrt(8 * max_error)))
    for _ in range(3):  # the square root's rounding: a step either way at most
        if k > 1 and square_error(k - 1, domain) <= max_error:
            k -= 1
        elif square_error(k, domain) > max_error:
            k += 1
    return k


def square_units(pieces: int, domain: tuple[float, float] = DEFAULT_DOMAIN, act: str = "ReLU") -> int:
    """Units that make the best `pieces`-piece approximation of x²: its pieces - 1 bends, plus one for
    the starting slope unless some facing of the bend units already gives it."""
    if pieces == 1:
        return 1
    low, high = domain
    h = (high - low) / pieces
    jump, start, leak = 2 * h, 2 * low + h, PIECEWISE_LINEAR[act]  # slopes 2·low + (2i + 1)·h: equal jumps
    bends = pieces - 1
    # With equal jumps only how many units face left, m, matters (orientation_miss): the starting slope
    # is (leak·jump·(bends - m) - jump·m)/(1 - leak); solve for m and see if it is a whole number of them.
    m = (leak * jump * bends - start * (1 - leak)) / (jump * (1 + leak))
    if 0 <= round(m) <= bends and abs(m - round(m)) <= 1e-9 * max(1.0, abs(m)):
        return bends
    return pieces


def _square_floor(domain: tuple[float, float], max_error: float, act: str) -> Floor:
    k = square_pieces(max_error, domain)
    needed, suffices = max(1, k - 1), square_units(k, domain, act)
    where = "" if domain == DEFAULT_DOMAIN else f" on [{domain[0]:g}, {domain[1]:g}]"
    width = "" if domain == DEFAULT_DOMAIN else f"{domain[1] - domain[0]:g}²·"
    how = (f"N units make at most N + 1 pieces, and k pieces leave at least {width}1/(8k²) of x²{where}, "
           f"so within {max_error:g} it takes {k} pieces")
    return Floor("square", domain, max_error, act, needed, suffices, None,
                 _text("the square", domain, max_error, act, needed, suffices, how), SOURCE_SQUARE)


def _text(name: str, domain: tuple[float, float], max_error: float, act: str, needed: int, suffices: int,
          how: str) -> str:
    target = "exactly" if max_error == 0 else f"within max error {max_error:g}"
    if domain != DEFAULT_DOMAIN:
        name += f" on [{domain[0]:g}, {domain[1]:g}]"
    size = lambda n: f"{n} unit{'s' if n != 1 else ''} ({one_layer_params(n)} parameters)"  # noqa: E731
    if needed == suffices:
        bound = f"exactly {size(needed)}"
    else:
        bound = f"at least {size(needed)}; {size(suffices)} suffice"
    return f"floor for {name} {target}, one hidden layer of {act} units: {bound} — {how}"
