"""The width search of `search --stage smallest`: the fewest parameters that reach a max error, without a grid.

Per depth (1, 2, 3 hidden layers of one width each), widths grow 1, 2, 4, … until a network reaches the max
error, then the gap between the widest that did not and the narrowest that did is bisected. It assumes that a
wider network of the same depth does no worse, which the trainer makes likely but not certain; every width it
measured is kept, and the answer is the fewest-parameter network among them that reached. A depth is searched
only below the size already found: a deeper network must have fewer parameters to be the answer. Decisions
depend on the results alone, so the same results give the same search (a resume replays them).

Pure logic, no NNI: nni/tuner.py is the NNI tuner that runs it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

MAX_DEPTH = 3
DEFAULT_MAX_WIDTH = 256
WAIT = "wait"  # a trial is still out: its result decides what comes next


def n_params(hidden: tuple[int, ...]) -> int:
    widths = (1, *hidden, 1)
    return sum(i * o + o for i, o in zip(widths[:-1], widths[1:]))


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval (95% with z = 1.96) for a share of successes in n tries."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class WidthSearch:
    max_error: float
    depths: tuple[int, ...] = (1, 2, 3)
    max_width: int = DEFAULT_MAX_WIDTH
    results: dict[tuple[int, ...], float | None] = field(default_factory=dict)  # hidden → median max error
    pending: set[tuple[int, ...]] = field(default_factory=set)

    @classmethod
    def from_args(cls, max_error: float, depths: list[int], max_width: int, known: list | None = None) -> WidthSearch:
        """The search from the width search tuner's arguments (classArgs), with what was already measured."""
        search = cls(float(max_error), tuple(depths), int(max_width))
        for hidden, error in known or ():
            search.record(tuple(hidden), error)
        return search

    def record(self, hidden: tuple[int, ...], max_error: float | None) -> None:
        """A measured network: its median max error, or None when it failed (it did not reach)."""
        hidden = tuple(hidden)
        self.pending.discard(hidden)
        self.results[hidden] = max_error if max_error is not None and math.isfinite(max_error) else None

    def reached(self, hidden: tuple[int, ...]) -> bool:
        error = self.results.get(tuple(hidden))
        return error is not None and error <= self.max_error

    def best(self) -> tuple[int, ...] | None:
        """The answer so far: the fewest parameters among the networks that reached, then fewer layers, then
        the smaller error."""
        reached = [h for h in self.results if self.reached(h)]
        return min(reached, key=lambda h: (n_params(h), len(h), self.results[h]), default=None)

    def next(self) -> tuple[int, ...] | str | None:
        """The next network to measure, WAIT while one is out, or None when the search is over."""
        if self.pending:
            return WAIT
        for depth in self.depths:
            width = self._next_width(depth)
            if width is not None:
                hidden = (width,) * depth
                self.pending.add(hidden)
                return hidden
        return None

    def _next_width(self, depth: int) -> int | None:
        measured = {h[0]: self.reached(h) for h in self.results if len(h) == depth and len(set(h)) == 1}
        failed = max((w for w, ok in measured.items() if not ok), default=0)
        reached = min((w for w, ok in measured.items() if ok), default=None)
        best = self.best()
        # Widths worth measuring at this depth: fewer parameters than the answer found at another depth.
        limit = self.max_width
        if best is not None and len(best) != depth:
            limit = min(limit, max((w for w in range(1, self.max_width + 1)
                                    if n_params((w,) * depth) < n_params(best)), default=0))
        if reached is None:
            width = min(2 * failed if failed else 1, limit)
            return width if width > failed else None
        return (failed + reached) // 2 if reached - failed > 1 else None
