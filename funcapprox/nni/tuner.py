"""The NNI tuner of `search --stage smallest`: funcapprox's width search (funcapprox/widths.py) as NNI 3.0's
customised tuner (`tuner: {codeDirectory, className, classArgs}`), so every width it tries is a trial in
NNI's store and web UI like any other.

NNI asks for a trial whenever a slot is free; while a trial is out the search waits for its result, so the
tuner answers NoMoreTrialError, which NNI takes back when the next trial ends. On resume, what was measured
comes in classArgs (`known`, from the trials' own records: search/run.py), never from NNI's import_data,
which pairs results with parameters by the order trials were created.
"""

from __future__ import annotations

from typing import Any

import nni
from nni.tuner import Tuner

from ..config import HIDDEN_KEYS
from ..widths import WAIT, WidthSearch


def hidden_of(parameters: Any) -> tuple[int, ...] | None:
    """The hidden sizes of a trial's NNI parameters (hidden_size_1, …)."""
    if not isinstance(parameters, dict):
        return None
    sizes = [parameters.get(key) for key in HIDDEN_KEYS]
    sizes = [s for s in sizes if isinstance(s, int) and not isinstance(s, bool) and s > 0]
    return tuple(sizes) or None


class WidthSearchTuner(Tuner):
    def __init__(self, max_error: float, depths: list[int], max_width: int, known: list | None = None) -> None:
        self.search = WidthSearch.from_args(max_error, depths, max_width, known)
        self.asked: dict[int, tuple[int, ...]] = {}  # parameter id → the network it was given

    def update_search_space(self, search_space: dict) -> None:
        pass  # the widths are the search's own; the space NNI shows only describes them

    def generate_parameters(self, parameter_id: int, **kwargs: Any) -> dict[str, int]:
        hidden = self.search.next()
        if hidden is None or hidden == WAIT:
            raise nni.NoMoreTrialError("the width search waits for a result" if hidden == WAIT else "search done")
        self.asked[parameter_id] = hidden
        return dict(zip(HIDDEN_KEYS, hidden))

    def receive_trial_result(self, parameter_id: int, parameters: dict, value: Any, **kwargs: Any) -> None:
        hidden = self.asked.pop(parameter_id, None) or hidden_of(parameters)
        error = value.get("max_error") if isinstance(value, dict) else None
        if hidden is not None:
            self.search.record(hidden, error if isinstance(error, (int, float)) else None)

    def trial_end(self, parameter_id: int, success: bool, **kwargs: Any) -> None:
        hidden = self.asked.pop(parameter_id, None)
        if hidden is not None:  # ended without a final result (failed, killed): it did not reach
            self.search.record(hidden, None)

    def import_data(self, data: list) -> None:
        pass  # see the module docstring
