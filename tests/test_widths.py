"""The width search of `search --stage smallest` (funcapprox/widths.py) and its NNI tuner (nni/tuner.py)."""

from __future__ import annotations

import math

import pytest

from funcapprox.widths import WAIT, WidthSearch, n_params, wilson


def run(search: WidthSearch, error_of) -> list[tuple[int, ...]]:
    """Drive the search to its end with `error_of(hidden)` as each network's measured max error."""
    probed = []
    while (hidden := search.next()) is not None:
        assert hidden != WAIT
        assert search.next() == WAIT  # one network out at a time
        probed.append(hidden)
        search.record(hidden, error_of(hidden))
    return probed


def width_error(*needed: int):
    """A max error that falls with width: `needed[d - 1]` units per layer reach 0.01 at depth d."""
    return lambda h: 0.005 if h[0] >= needed[min(len(h), len(needed)) - 1] else 0.02 + 0.001 / h[0]


@pytest.mark.parametrize("needed", [1, 2, 3, 7, 10, 11, 16, 100, 256])
def test_one_depth_finds_the_narrowest_width_in_logarithmic_probes(needed):
    search = WidthSearch(0.01, depths=(1,), max_width=256)
    probed = run(search, width_error(needed))
    assert search.best() == (needed,)
    assert len(probed) <= 2 * math.ceil(math.log2(needed)) + 2 and len(set(probed)) == len(probed)


def test_no_width_reaches_and_the_search_ends_at_the_widest():
    search = WidthSearch(0.001, depths=(1,), max_width=20)
    probed = run(search, lambda h: 0.5)
    assert search.best() is None and probed == [(1,), (2,), (4,), (8,), (16,), (20,)]


def test_deeper_networks_are_searched_only_below_the_size_found():
    search = WidthSearch(0.01, depths=(1, 2, 3))
    probed = run(search, width_error(10, 6, 5))  # {6,6} and {5,5,5} would reach, with 55 and 76 parameters > 31
    one_layer = n_params((10,))
    assert search.best() == (10,)
    deeper = [h for h in probed if len(h) > 1]
    assert deeper and all(n_params(h) < one_layer for h in deeper)


def test_a_deeper_network_with_fewer_parameters_wins():
    search = WidthSearch(0.01, depths=(1, 2))
    run(search, lambda h: 0.005 if (len(h) == 1 and h[0] >= 40) or (len(h) == 2 and h[0] >= 3) else 0.5)
    assert search.best() == (3, 3) and n_params((3, 3)) < n_params((40,))


def test_a_failed_trial_does_not_reach_and_non_monotone_results_keep_the_smallest_that_did():
    search = WidthSearch(0.01, depths=(1,))
    probed = run(search, lambda h: None if h[0] == 8 else (0.005 if h[0] >= 5 else 0.5))
    assert (8,) in probed and search.best() == (9,)  # 8 failed, so the search looked above it
    odd = WidthSearch(0.01, depths=(1,))
    run(odd, lambda h: 0.005 if h[0] in (4, 6) else 0.5)  # 4 reached, 8 did not: the answer is what was seen
    assert odd.best() == (4,)


def test_the_same_results_give_the_same_search_and_a_replay_goes_on_where_it_stopped():
    error_of = width_error(11)
    whole = run(WidthSearch(0.006, depths=(1, 2)), error_of)
    first = WidthSearch(0.006, depths=(1, 2))
    for _ in range(4):
        hidden = first.next()
        first.record(hidden, error_of(hidden))
    known = [[list(h), e] for h, e in first.results.items()]
    resumed = WidthSearch.from_args(0.006, [1, 2], 256, known)
    assert whole == list(first.results) + run(resumed, error_of)


def test_wilson_interval():
    assert wilson(5, 5) == pytest.approx((0.5655, 1.0), abs=1e-4)
    assert wilson(0, 5) == pytest.approx((0.0, 0.4345), abs=1e-4)
    assert wilson(3, 5) == pytest.approx((0.2307, 0.8824), abs=1e-4)
    low, high = wilson(50, 100)
    assert low < 0.5 < high and high - low == pytest.approx(2 * 1.96 * 0.05, rel=0.02)


@pytest.mark.nni
def test_the_nni_tuner_waits_for_results_and_reads_nni_values():
    nni = pytest.importorskip("nni")
    from funcapprox.nni.tuner import WidthSearchTuner

    tuner = WidthSearchTuner(max_error=0.01, depths=[1], max_width=8, known=[[[1], 0.5]])
    assert tuner.generate_parameters(0) == {"hidden_size_1": 2}
    with pytest.raises(nni.NoMoreTrialError):
        tuner.generate_parameters(1)  # waits for trial 0
    tuner.receive_trial_result(0, {"hidden_size_1": 2}, {"default": 2.0, "max_error": 0.004})
    tuner.trial_end(0, True)
    assert tuner.search.best() == (2,)
    with pytest.raises(nni.NoMoreTrialError):
        tuner.generate_parameters(2)  # 1 failed, 2 reached: done
    killed = WidthSearchTuner(max_error=0.01, depths=[1], max_width=8)
    assert killed.generate_parameters(0) == {"hidden_size_1": 1}
    killed.trial_end(0, False)  # no final result: it did not reach
    assert killed.generate_parameters(1) == {"hidden_size_1": 2}
