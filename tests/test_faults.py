"""Faults a search must survive, each caused for real: Ctrl-C then --resume, a trial killed with
SIGKILL, the NNI manager killed mid-search, a trial that runs too long, two searches at once,
and a work folder that is full or read-only.

Every test runs real `nnictl` with a tiny budget and leaves no NNI process behind.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.nni import funcapprox, manager_answers, nni_processes, nni_workdir, write_space

from funcapprox.nni.manager import manifest_entry, trial_processes
from funcapprox.nni.store import load_experiment
from funcapprox.results import experiment_ids, read_meta
from funcapprox.search.resume import grid_points, has_result, point_key

pytestmark = pytest.mark.nni

# Three batched steps of two (a search batches the points of one optimizer), so trials finish a few at a time.
SIX_POINTS = {"optimizer": {"_type": "choice", "_value": ["Adam", "RMSprop", "SGD"]},
              "learning_rate": {"_type": "choice", "_value": [0.001, 0.002]}}


@pytest.fixture
def workdir(tmp_path):
    yield from nni_workdir(tmp_path)


def start_search(workdir: Path, *args: str) -> subprocess.Popen:
    """`funcapprox search` in a process group of its own, like a command typed at a terminal."""
    env = {**os.environ, "FUNCAPPROX_WORKDIR": str(workdir)}
    return subprocess.Popen([sys.executable, "-m", "funcapprox", "search", "--stage", "nonarch", "--func", "square",
                             *args], env=env, cwd=workdir.parent, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # A shell runs background jobs with Ctrl-C ignored, and children inherit that;
                            # a command typed at a terminal has it: give it back, whatever runs these tests.
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_for(condition, what: str, timeout: float = 180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def only_experiment(workdir: Path):
    ids = experiment_ids(workdir)
    return load_experiment(workdir, ids[0]) if len(ids) == 1 else None


def running_trial(workdir: Path):
    """A trial that has its parameters and is training (its own record says so)."""
    experiment = only_experiment(workdir)
    for t in experiment.trials if experiment else []:
        if t.status == "RUNNING" and t.output_dir and (t.output_dir / "parameters.json").exists():
            return t
    return None


def assert_each_point_once(workdir: Path, exp_id: str, space: dict) -> None:
    experiment = load_experiment(workdir, exp_id)
    fixed = experiment.meta["fixed"]
    with_result = sorted(json.dumps(t.params, sort_keys=True) for t in experiment.trials if has_result(t))
    assert with_result == sorted(point_key(fixed, p) for p in grid_points(space))


def finish(search: subprocess.Popen, timeout: float = 240) -> tuple[str, str]:
    try:
        return search.communicate(timeout=timeout)
    finally:
        if search.poll() is None:
            os.killpg(search.pid, signal.SIGKILL)


def test_ctrl_c_twice_then_resume_runs_every_grid_point_exactly_once(workdir, tmp_path):
    space = write_space(tmp_path / "space.json", SIX_POINTS)
    search = start_search(workdir, "--space", str(space), "--epochs", "800")  # seconds a trial: time to interrupt
    wait_for(lambda: (e := only_experiment(workdir)) and len(e.succeeded()) >= 2, "two finished trials")
    os.killpg(search.pid, signal.SIGINT)  # what Ctrl-C at a terminal does: the whole foreground group
    time.sleep(0.5)
    os.killpg(search.pid, signal.SIGINT)  # an impatient second Ctrl-C must not leave NNI half stopped
    out, err = finish(search)
    (exp_id,) = experiment_ids(workdir)
    assert search.returncode == 1 and "Traceback" not in err
    assert f"funcapprox search --resume {exp_id}" in err
    assert manager_answers(workdir, exp_id) is None and not trial_processes(exp_id)
    before = {t.trial_id: t.metric for t in load_experiment(workdir, exp_id).succeeded()}
    assert 2 <= len(before) < 6

    resumed = funcapprox("search", "--resume", exp_id, workdir=workdir)
    assert resumed.returncode == 0, resumed.stderr
    assert f"experiment {exp_id} resumed: {len(before)} done, {6 - len(before)} to run" in resumed.stdout
    assert_each_point_once(workdir, exp_id, json.loads(space.read_text()))
    after = {t.trial_id: t.metric for t in load_experiment(workdir, exp_id).succeeded()}
    assert {k: after[k] for k in before} == before  # what had finished is kept, not run again
    again = funcapprox("search", "--resume", exp_id, workdir=workdir)
    assert again.returncode == 0 and "nothing left to run (6 done)" in again.stdout
    report = funcapprox("report", "--experiment", exp_id, workdir=workdir)
    assert report.returncode == 0, report.stderr


def test_ctrl_c_while_the_manager_starts_stops_it_once_it_is_up(workdir, tmp_path):
    space = write_space(tmp_path / "space.json", SIX_POINTS)
    search = start_search(workdir, "--space", str(space), "--epochs", "800")
    wait_for(lambda: workdir.exists() and any(p.name.startswith(".new-") for p in workdir.iterdir()),
             "nnictl create to begin")
    os.killpg(search.pid, signal.SIGINT)
    out, err = finish(search)
    assert search.returncode == 1 and "search interrupted" in err and "Traceback" not in err
    (exp_id,) = experiment_ids(workdir)  # recorded, not lost: it can be resumed
    assert read_meta(workdir / exp_id)["status"] == "INTERRUPTED" and manager_answers(workdir, exp_id) is None
    assert not nni_processes(workdir) and not any(p.name.startswith(".new-") for p in workdir.iterdir())


def test_closing_the_terminal_sighup_stops_the_search_like_ctrl_c(workdir, tmp_path):
    space = write_space(tmp_path / "space.json", SIX_POINTS)
    search = start_search(workdir, "--space", str(space), "--epochs", "800")
    wait_for(lambda: running_trial(workdir), "a running trial")
    os.killpg(search.pid, signal.SIGHUP)
    out, err = finish(search)
    (exp_id,) = experiment_ids(workdir)
    assert search.returncode == 1 and "search interrupted" in err and "Traceback" not in err
    assert manager_answers(workdir, exp_id) is None and not trial_processes(exp_id)


def test_a_trial_killed_with_sigkill_is_recorded_failed_and_the_search_goes_on(workdir, tmp_path):
    space = write_space(tmp_path / "space.json", {"learning_rate": {"_type": "choice", "_value": [
        0.001, 0.002, 0.003, 0.004]}})
    search = start_search(workdir, "--space", str(space), "--epochs", "3000")  # seconds a trial: time to kill one

    def running_process():  # a training trial and its process, both still there
        trial = running_trial(workdir)
        if trial is None:
            return None
        for pid in trial_processes(only_experiment(workdir).id):
            try:
                if f"NNI_TRIAL_JOB_ID={trial.trial_id}".encode() in Path(f"/proc/{pid}/environ").read_bytes():
                    return trial, pid
            except OSError:  # it ended meanwhile
                pass
        return None

    victim, pid = wait_for(running_process, "a running trial's process")
    victim_exp = only_experiment(workdir).id
    os.kill(pid, signal.SIGKILL)
    out, err = finish(search)
    assert search.returncode == 0, err
    experiment = load_experiment(workdir, victim_exp)
    killed = experiment.trial(victim.trial_id)
    assert killed.status == "FAILED" and "killed" in killed.reason
    assert len(experiment.succeeded()) == 3
    listed = funcapprox("results", "--format", "json", workdir=workdir)
    assert {"trial_id": victim.trial_id, "status": "FAILED"}.items() <= next(
        r for r in json.loads(listed.stdout) if r["trial_id"] == victim.trial_id).items()

    resumed = funcapprox("search", "--resume", victim_exp, workdir=workdir)  # runs the killed point again
    assert resumed.returncode == 0 and "3 done, 1 to run" in resumed.stdout
    assert_each_point_once(workdir, victim_exp, json.loads(space.read_text()))


def test_a_dead_manager_is_noticed_within_seconds_and_the_search_can_be_resumed(workdir, tmp_path):
    space = write_space(tmp_path / "space.json", SIX_POINTS)
    search = start_search(workdir, "--space", str(space), "--epochs", "600")
    wait_for(lambda: running_trial(workdir), "a running trial")
    exp_id = only_experiment(workdir).id
    os.kill(manifest_entry(exp_id)["pid"], signal.SIGKILL)
    killed_at = time.monotonic()
    out, err = finish(search)
    noticed = time.monotonic() - killed_at
    assert search.returncode == 1 and "Traceback" not in err
    assert f"the NNI manager of experiment {exp_id} stopped answering" in err and "nnimanager.log" in err
    assert f"--resume {exp_id}" in err
    assert noticed < 30, f"took {noticed:.0f} s to notice"  # a generous bound on a busy machine: not a benchmark
    assert not trial_processes(exp_id), "trial processes outlived their manager"

    resumed = funcapprox("search", "--resume", exp_id, workdir=workdir)
    assert resumed.returncode == 0, resumed.stderr
    assert_each_point_once(workdir, exp_id, json.loads(space.read_text()))


def test_max_trial_duration_ends_a_trial_that_runs_too_long(workdir, tmp_path):
    space = write_space(tmp_path / "space.json", {"learning_rate": {"_type": "choice", "_value": [0.001]}})
    done = funcapprox("search", "--stage", "nonarch", "--func", "square", "--space", str(space),
                      "--epochs", "100000", "--max-trial-duration", "5s", workdir=workdir)
    assert done.returncode == 0, done.stderr
    (trial,) = only_experiment(workdir).trials
    assert trial.status == "FAILED" and "max-trial-duration" in trial.reason
    assert not trial_processes(only_experiment(workdir).id)


def test_two_searches_at_once_and_a_third_on_a_busy_port(workdir, tmp_path):
    space = write_space(tmp_path / "space.json", {"learning_rate": {"_type": "choice", "_value": [0.001, 0.002]}})
    first = start_search(workdir, "--space", str(space), "--epochs", "600")
    second = start_search(workdir, "--space", str(space), "--epochs", "600", "--func", "oscillator")
    ids = wait_for(lambda: len(experiment_ids(workdir)) == 2 and experiment_ids(workdir), "both experiments")
    busy_port = read_meta(workdir / ids[0])["port"]
    third = funcapprox("search", "--stage", "nonarch", "--space", str(space), "--port", str(busy_port),
                       workdir=workdir)
    assert third.returncode == 1 and f"port {busy_port} is in use" in third.stderr
    for search in (first, second):
        out, err = finish(search)
        assert search.returncode == 0, err
    assert sorted(load_experiment(workdir, i).func for i in ids) == ["oscillator", "square"]
    for exp_id in ids:
        experiment = load_experiment(workdir, exp_id)
        assert len(experiment.succeeded()) == 2 and len(experiment.trials) == 2


def mounted_tmpfs(folder: Path, size: str):
    """A real tmpfs of `size` (root only): full or read-only for real, no faked errors."""
    folder.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.fixture
def small_filesystem(tmp_path):
    yield from mounted_tmpfs(tmp_path / "small", "16m")


def test_a_full_or_read_only_work_folder_is_a_clear_error_before_launch(small_filesystem):
    experiments = small_filesystem / "experiments"
    full = funcapprox("search", "--stage", "nonarch", "--epochs", "5", workdir=experiments)
    assert full.returncode == 1 and "MiB free in the work folder" in full.stderr and "--workdir" in full.stderr
    assert len(full.stderr.strip().splitlines()) == 1 and not nni_processes(experiments)

    subprocess.run(["mount", "-o", "remount,ro", str(small_filesystem)], check=True)
    read_only = funcapprox("search", "--stage", "nonarch", "--epochs", "5", workdir=small_filesystem / "other")
    assert read_only.returncode == 1 and "cannot write to the work folder" in read_only.stderr
    assert "Read-only file system" in read_only.stderr and "Traceback" not in read_only.stderr


@pytest.fixture
def filling_workdir(tmp_path):
    """A work folder on a 96 MiB tmpfs, every experiment in it stopped afterwards."""
    for mount in mounted_tmpfs(tmp_path / "filling", "96m"):
        yield from nni_workdir(mount)


def test_a_disk_that_fills_up_mid_search_stops_it_cleanly(filling_workdir):
    search = start_search(filling_workdir, "--space", str(write_space(filling_workdir.parent / "six.json", SIX_POINTS)),
                          "--epochs", "1500", "--concurrency", "1")
    try:
        wait_for(lambda: (e := only_experiment(filling_workdir)) and e.succeeded(), "a finished trial")
        free = os.statvfs(filling_workdir).f_bavail * os.statvfs(filling_workdir).f_frsize
        with open(filling_workdir.parent / "ballast", "wb") as ballast:  # leave 8 MiB: under the 16 MiB floor
            ballast.write(b"\0" * (free - 8 * 2**20))
        out, err = finish(search)
    finally:
        if search.poll() is None:
            search.kill()
    assert search.returncode == 1, err
    assert "is nearly full" in err and "finished trials are kept" in err and "--resume" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    experiment = only_experiment(filling_workdir)
    assert experiment.succeeded() and len(experiment.succeeded()) < 6
    assert read_meta(filling_workdir / experiment.id)["status"] == "ERROR"
    assert not nni_processes(filling_workdir) and not trial_processes(experiment.id)


def test_a_failure_after_the_manager_started_stops_it(workdir, tmp_path, monkeypatch):
    from funcapprox.errors import ExperimentError
    from funcapprox.search import run
    from funcapprox.search.plan import plan_stage

    plan = plan_stage("nonarch", "square", workdir, space_file=write_space(tmp_path / "s.json", SIX_POINTS), epochs=5)

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(run, "write_meta", full_disk)  # run.json, written once the manager is up
    with pytest.raises(ExperimentError, match="started but its files could not be written .No space left on device.; "
                                              "it was stopped"):
        run.launch(plan)
    assert not nni_processes(workdir)


def test_a_closed_output_pipe_stops_the_experiment(workdir, tmp_path):
    """`funcapprox search … | head -1`: the reader leaves after one line; the manager must not run on unseen."""
    space = write_space(tmp_path / "space.json", SIX_POINTS)
    pipeline = (f"set -o pipefail; {shlex.quote(sys.executable)} -m funcapprox search --stage nonarch --func square "
                f"--space {shlex.quote(str(space))} --epochs 400 | head -1")
    done = subprocess.run(["bash", "-c", pipeline], env={**os.environ, "FUNCAPPROX_WORKDIR": str(workdir)},
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and done.stdout.startswith("stage nonarch for square"), done.stderr
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
    (exp_id,) = experiment_ids(workdir)
    assert not nni_processes(workdir) and not trial_processes(exp_id) and manager_answers(workdir, exp_id) is None
