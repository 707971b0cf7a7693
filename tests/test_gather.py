"""The warm worker's gathering (funcapprox/nni/gather.py): which trials train together, and that a real
search gives every grid point the same numbers run after run, whichever trials shared its step."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
from helpers.nni import funcapprox, nni_workdir, write_space

from funcapprox.config import TrainConfig, group_key
from funcapprox.nni import gather
from funcapprox.nni.store import load_experiment
from funcapprox.nni.trial import REPORT_EVERY
from funcapprox.results import experiment_ids
from funcapprox.train import train

BASE = TrainConfig(func="oscillator", hidden=(16, 16, 16), act="Tanh", optimizer="Adam", epochs=10)


def member(config: TrainConfig) -> gather.Member:
    return gather.Member(connection=object(), channel=None, config=config, output_dir=Path("."), cwd=".")


def take_in(gathering: gather.Gathering, config: TrainConfig) -> None:
    taken = member(config)
    gathering.starting(taken.connection)
    gathering.add(taken.connection, taken)


def gathering_of(configs: list[TrainConfig], sizes: dict[str, int]) -> gather.Gathering:
    gathering = gather.Gathering(sizes)
    for config in configs:
        take_in(gathering, config)
    return gathering


def test_a_group_trains_once_it_is_whole_and_not_before():
    configs = [BASE.replace(lr=lr) for lr in (0.01, 0.02, 0.03)]
    gathering = gathering_of(configs[:2], {group_key(BASE): 3})
    assert gathering.ready(idle=False) == [] and len(gathering) == 2
    take_in(gathering, configs[2])
    (group,) = gathering.ready(idle=False)
    assert [m.config for m in group] == configs and len(gathering) == 0


def test_a_group_short_of_whole_trains_only_when_a_trainer_idles_and_nothing_comes(monkeypatch):
    monkeypatch.setattr(gather, "GATHER_WAIT", 0.2)
    gathering = gathering_of([BASE.replace(lr=0.01), BASE.replace(lr=0.02)], {group_key(BASE): 12})
    assert gathering.ready(idle=True) == []  # something came in just now
    time.sleep(0.3)
    assert gathering.ready(idle=False) == []  # every trainer busy: wait for the rest
    connection = object()
    gathering.starting(connection)  # a trial being taken in: its key may be this group's
    assert gathering.ready(idle=True) == [] and gathering.connections()[0] is connection
    gathering.add(connection, None)  # it was answered while taken in (rejected parameters)
    assert connection not in gathering.connections() and len(gathering.connections()) == 2
    time.sleep(0.3)
    (group,) = gathering.ready(idle=True)
    assert len(group) == 2


def test_groups_are_cut_at_group_limit_and_the_rest_is_whole_when_the_grid_has_no_more():
    configs = [BASE.replace(lr=0.001 * (i + 1)) for i in range(gather.GROUP_LIMIT + 3)]
    gathering = gathering_of(configs, {group_key(BASE): len(configs)})
    first, second = gathering.ready(idle=False)
    assert len(first) == gather.GROUP_LIMIT and len(second) == 3


def test_configurations_alone_in_the_grid_or_not_for_group_py_train_at_once():
    single = BASE.replace(hidden=(64, 32, 32))
    refines = BASE.replace(hidden=(8,), refine="lm")
    gathering = gathering_of([single, refines, refines.replace(lr=0.02)],
                             {group_key(single): 1, group_key(refines): 3})
    groups = gathering.ready(idle=False)
    assert [[m.config for m in g] for g in groups] == [[single], [refines], [refines.replace(lr=0.02)]]
    # alone in its grid group: still a batched step (of one), as beside others; one that refines: train.train
    assert not groups[0][0].key.startswith(gather.ALONE) and groups[1][0].key.startswith(gather.ALONE)


def test_the_key_pads_widths_to_the_rungs_and_keeps_wider_layers():
    assert group_key(BASE.replace(hidden=(4, 8, 16))) == group_key(BASE)
    assert group_key(BASE.replace(hidden=(4, 8, 32))) != group_key(BASE)
    assert group_key(BASE.replace(hidden=(64, 8))) == group_key(BASE.replace(hidden=(64, 16)))
    assert group_key(BASE.replace(hidden=(64, 8))) != group_key(BASE.replace(hidden=(128, 8)))
    assert group_key(BASE.replace(lr=0.5, loss="MSELoss", seed=3)) == group_key(BASE)  # per copy
    assert group_key(BASE.replace(optimizer="SGD")) != group_key(BASE)


# --- a real search, twice ---------------------------------------------------------------------------

STAGE1_SPACE = {  # 8 points: two groups of 4 (Adam, SGD), each a batched step
    "optimizer": {"_type": "choice", "_value": ["Adam", "SGD"]},
    "learning_rate": {"_type": "choice", "_value": [0.01, 0.03]},
    "loss": {"_type": "choice", "_value": ["MSELoss", "SmoothL1Loss"]},
}
STAGE2_SPACE = {"arch": {"_type": "choice", "_value": [  # 8 networks: six pad to {16,16}, two to {64,16}
    {"_name": "2 hidden layers", "hidden_size_1": {"_type": "choice", "_value": [4, 8, 16, 64]},
     "hidden_size_2": {"_type": "choice", "_value": [4, 8]}}]}}
STAGE2_SET = ("--set", "act_func=LeakyReLU", "--set", "learning_rate=0.02", "--set", "optimizer=Adam",
              "--set", "loss=SmoothL1Loss")
EPOCHS = 2 * REPORT_EVERY


@pytest.fixture
def workdirs(tmp_path):
    first, second = (tmp_path / "a", tmp_path / "b")
    for folder in (first, second):
        folder.mkdir()
    gen_a, gen_b = nni_workdir(first), nni_workdir(second)
    yield next(gen_a), next(gen_b)
    for gen in (gen_a, gen_b):
        next(gen, None)


def run_stage(workdir: Path, stage: str, space: Path, *extra: str, env: dict[str, str] | None = None):
    done = funcapprox("search", "--stage", stage, "--func", "oscillator", "--space", str(space),
                      "--epochs", str(EPOCHS), *extra, workdir=workdir, timeout=600, env=env)
    assert done.returncode == 0, done.stderr
    (exp_id,) = experiment_ids(workdir)
    return load_experiment(workdir, exp_id)


def by_point(experiment) -> dict[str, dict]:
    """Each grid point's numbers: its final result and its every evaluation, keyed by its configuration."""
    points = {}
    for trial in experiment.trials:
        key = json.dumps(trial.params, sort_keys=True)
        assert key not in points, "a grid point ran twice"
        history = json.loads((trial.output_dir / "history.json").read_text())
        points[key] = {"final": (trial.metric, trial.rms, trial.max_error), "history": history,
                       "stdout": (trial.output_dir / "trial.stdout").read_text(), "trial": trial}
    return points


@pytest.mark.nni
@pytest.mark.parametrize("stage, space, extra, batched", [
    ("nonarch", STAGE1_SPACE, (), {4}),
    ("arch", STAGE2_SPACE, STAGE2_SET, {6, 2}),
])
def test_the_same_search_twice_gives_every_grid_point_the_same_numbers(workdirs, tmp_path, stage, space,
                                                                       extra, batched):
    space_file = write_space(tmp_path / "space.json", space)
    first, second = (by_point(run_stage(w, stage, space_file, *extra)) for w in workdirs)
    assert len(first) == len(second) == 8 and set(first) == set(second)
    steps = set()
    for key, mine in first.items():
        theirs = second[key]
        assert mine["final"] == theirs["final"], key  # bit for bit, every figure
        assert mine["history"] == theirs["history"], key
        # NNI saw this trial as one of its own: its own intermediate results and final result
        trial = mine["trial"]
        assert trial.status == "SUCCEEDED" and len(trial.history) == EPOCHS // REPORT_EVERY
        assert trial.history == pytest.approx([e["metric"] for e in mine["history"] if e["epoch"] % REPORT_EVERY == 0])
        steps.add(int(mine["stdout"].split("one batched step for ")[1].split()[0]))
    assert steps == batched  # the trials did share batched steps, as the grid groups them


@pytest.mark.nni
def test_a_trial_in_its_own_process_gives_what_it_gives_in_a_batched_step(workdirs, tmp_path):
    """Where no warm worker takes a trial (FUNCAPPROX_WARM=0 here; a worker that is busy or not up yet in
    a search) it trains in its own process as a batched step of one: the same numbers, bit for bit."""
    space_file = write_space(tmp_path / "space.json", STAGE1_SPACE)
    batched = by_point(run_stage(workdirs[0], "nonarch", space_file))
    own = by_point(run_stage(workdirs[1], "nonarch", space_file, env={"FUNCAPPROX_WARM": "0"}))
    assert set(batched) == set(own) and len(own) == 8
    for key, mine in own.items():
        assert "in its own process" in mine["stdout"] and "one batched step for 4" in batched[key]["stdout"]
        assert mine["final"] == batched[key]["final"], key
        assert mine["history"] == batched[key]["history"], key


@pytest.mark.nni
def test_a_batched_trial_starts_as_its_run_alone_and_ends_near_it(workdirs, tmp_path):
    """Each trial against `train` of its configuration alone: the first evaluation equal to float rounding
    (rounding apart, a copy of a batched step computes what its run alone computes); the final figures
    drift apart over thousands of steps, as any two roundings do, and are printed side by side."""
    space_file = write_space(tmp_path / "space.json", STAGE2_SPACE)
    points = by_point(run_stage(workdirs[0], "arch", space_file, *STAGE2_SET))
    print("\nhidden    final metric batched / alone   max error batched / alone")
    for mine in points.values():
        config = mine["trial"].config
        alone = train(config)
        first = alone.history[0]
        assert mine["history"][0]["rms"] == pytest.approx(first.rms, rel=1e-4)
        assert mine["history"][0]["max_error"] == pytest.approx(first.max_error, rel=1e-4)
        assert math.isfinite(mine["final"][0]) and math.isfinite(alone.metric)
        print(f"{config.arch:10}{mine['final'][0]:8.4f} / {alone.metric:.4f}"
              f"        {mine['final'][2]:.5f} / {alone.summary()['max_error']:.5f}")


@pytest.mark.nni
def test_trials_the_assessor_stops_show_as_stopped_early_not_failed(workdirs, tmp_path):
    """NNI 3.0 records most of an assessor's stops as USER_CANCELED, as it does a trial killed by a signal
    (shown FAILED). One step at a time: the second group is judged against the first."""
    space_file = write_space(tmp_path / "space.json", STAGE1_SPACE)
    done = funcapprox("search", "--stage", "nonarch", "--func", "oscillator", "--space", str(space_file),
                      "--epochs", str(6 * REPORT_EVERY), "--concurrency", "1", "--assessor", "Medianstop",
                      workdir=workdirs[0], timeout=600)
    assert done.returncode == 0, done.stderr
    experiment = load_experiment(workdirs[0], "latest")
    statuses = {t.trial_id: t.status for t in experiment.trials}
    assert len(statuses) == 8 and "FAILED" not in statuses.values(), statuses
    stopped = [t for t in experiment.trials if t.status == "EARLY_STOPPED"]
    assert stopped and all(t.reason is None and len(t.history) < 6 for t in stopped), statuses  # cut short
    progress = [line for line in done.stderr.splitlines() if line.startswith("trials 8/8")]
    assert progress and f"0 failed, {len(stopped)} stopped early, " in progress[-1], done.stderr
    listing = funcapprox("results", "--experiment", experiment.id, workdir=workdirs[0])
    assert listing.returncode == 0 and "EARLY_STOPPED" in listing.stdout and "FAILED" not in listing.stdout
