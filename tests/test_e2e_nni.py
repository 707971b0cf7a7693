"""End to end with the real thing: `funcapprox search` starts NNI 3.0 through `nnictl`,
trials run as NNI's processes, and results/plot read the store after the manager stopped.

Budgets are tiny (a few trials of 10 epochs). Every experiment a test starts is
stopped afterwards, on failure too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from helpers.nni import funcapprox, manager_answers, nni_workdir, write_space

from funcapprox.nni.manager import manager_status
from funcapprox.nni.store import load_experiment
from funcapprox.results import experiment_ids, read_meta

pytestmark = pytest.mark.nni

SMALL_NONARCH = {
    "act_func": {"_type": "choice", "_value": ["LeakyReLU", "Tanh"]},
    "learning_rate": {"_type": "quniform", "_value": [0.005, 0.01, 0.01]},
}
SMALL_ARCH_FLAT = {  # the study's flat form: the invalid {n1,0,n3} must never be scheduled
    "hidden_size_1": {"_type": "choice", "_value": [8, 16]},
    "hidden_size_2": {"_type": "choice", "_value": [0, 4]},
    "hidden_size_3": {"_type": "choice", "_value": [0, 4]},
}










@pytest.fixture
def workdir(tmp_path):
    yield from nni_workdir(tmp_path)




def test_two_stages_hand_off_and_results_after_the_manager_stopped(workdir, tmp_path):
    nonarch = write_space(tmp_path / "nonarch.json", SMALL_NONARCH)
    run = funcapprox("search", "--stage", "nonarch", "--func", "oscillator", "--space", str(nonarch),
                     "--epochs", "10", workdir=workdir)
    assert run.returncode == 0, run.stderr + run.stdout
    assert "finished" in run.stdout and "best trial" in run.stdout
    (stage1_id,) = experiment_ids(workdir)
    stage1 = load_experiment(workdir, stage1_id)
    # quniform [0.005, 0.01, 0.01] → 0.005 and 0.01 under GridSearch: 2 × 2 trials, all run once.
    assert len(stage1.trials) == 4 and len(stage1.succeeded()) == 4
    assert sorted((t.params["act"], t.params["lr"]) for t in stage1.trials) == [
        ("LeakyReLU", 0.005), ("LeakyReLU", 0.01), ("Tanh", 0.005), ("Tanh", 0.01)]
    # 10 epochs: evaluated at 5 and 10 (history.json), and NNI gets the last (an intermediate every REPORT_EVERY)
    assert all(t.params["hidden"] == [16, 16, 16] and len(t.history) == 1 for t in stage1.trials)
    assert all(len(json.loads((t.output_dir / "history.json").read_text())) == 2 for t in stage1.trials)
    assert manager_answers(workdir, stage1_id) is None, "the manager was left running"

    arch = write_space(tmp_path / "arch.json", SMALL_ARCH_FLAT)
    run = funcapprox("search", "--stage", "arch", "--func", "oscillator", "--space", str(arch),
                     "--epochs", "10", workdir=workdir)
    assert run.returncode == 0, run.stderr + run.stdout
    best1 = stage1.best()
    assert f"best trial of {stage1_id}" in run.stdout  # the hand-off is printed
    stage2_id = experiment_ids(workdir)[-1]
    stage2 = load_experiment(workdir, stage2_id)
    nets = sorted(tuple(t.params["hidden"]) for t in stage2.trials)
    # 2 one-layer, 2 two-layer, 2 three-layer networks; never {n1,0,4}, never a duplicate.
    assert nets == [(8,), (8, 4), (8, 4, 4), (16,), (16, 4), (16, 4, 4)]
    assert all(t.params["act"] == best1.params["act"] and t.params["lr"] == best1.params["lr"]
               for t in stage2.trials)

    results = funcapprox("results", "--experiment", stage2_id, "--format", "json", workdir=workdir)
    assert results.returncode == 0, results.stderr
    rows = json.loads(results.stdout)
    assert len(rows) == 6 and rows[0]["metric"] >= rows[-1]["metric"]
    assert {r["trial_id"] for r in rows} == {t.trial_id for t in stage2.trials}

    out = tmp_path / "best.png"
    plot = funcapprox("plot", "--trial", "best", "--out", str(out), workdir=workdir)
    assert plot.returncode == 0, plot.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "best-history.png").exists()

    listing = funcapprox("experiments", workdir=workdir)
    assert stage1_id in listing.stdout and stage2_id in listing.stdout


def test_stage_all_with_a_trial_budget(workdir):
    run = funcapprox("search", "--stage", "all", "--func", "square", "--max-trials", "2", "--epochs", "5",
                     workdir=workdir)
    assert run.returncode == 0, run.stderr + run.stdout
    ids = experiment_ids(workdir)
    assert [read_meta(workdir / i)["stage"] for i in ids] == ["nonarch", "arch"]
    assert read_meta(workdir / ids[1])["from_experiment"] == ids[0]
    for exp_id in ids:
        assert len(load_experiment(workdir, exp_id).succeeded()) == 2
        assert (workdir / exp_id / "funcapprox" / "best.png").exists()
        assert (workdir / exp_id / "funcapprox" / "report.html").exists()  # search writes the report


def test_busy_port_is_a_clear_error(workdir):
    import socket

    with socket.socket() as busy:
        busy.bind(("", 0))
        busy.listen()
        port = busy.getsockname()[1]
        run = funcapprox("search", "--stage", "nonarch", "--func", "square", "--max-trials", "1", "--epochs", "5",
                         "--port", str(port), workdir=workdir)
    assert run.returncode == 1
    assert f"port {port} is in use" in run.stderr
    assert "Traceback" not in run.stderr


def test_view_reopens_a_stopped_experiment_and_stop_closes_it(workdir):
    run = funcapprox("search", "--stage", "nonarch", "--func", "square", "--max-trials", "1", "--epochs", "5",
                     workdir=workdir)
    assert run.returncode == 0, run.stderr + run.stdout
    (exp_id,) = experiment_ids(workdir)
    view = funcapprox("experiments", "--view", exp_id, workdir=workdir)
    assert view.returncode == 0, view.stderr
    port, prefix = view.stdout.split("http://127.0.0.1:")[1].split(";")[0].split("/")
    assert manager_status(int(port), prefix) is not None  # NNI's web UI and REST API answer again
    assert prefix != read_meta(workdir / exp_id)["url_prefix"]  # a new secret for every start
    again = funcapprox("experiments", "--view", exp_id, workdir=workdir)  # a second manager would orphan the first
    assert again.returncode == 1 and "already has a running manager" in again.stderr
    stop = funcapprox("experiments", "--stop", exp_id, workdir=workdir)
    assert stop.returncode == 0 and f"experiment {exp_id} stopped" in stop.stdout
    assert manager_status(int(port), prefix) is None


def test_sigterm_stops_the_experiment_and_keeps_what_finished(workdir, tmp_path):
    import signal
    import time

    # 8 configurations that share no batched step (each its own activation and optimizer), so they finish
    # a few at a time rather than all at once
    space = write_space(tmp_path / "space.json", {
        "act_func": {"_type": "choice", "_value": ["ReLU", "LeakyReLU", "Tanh", "Softplus"]},
        "optimizer": {"_type": "choice", "_value": ["Adam", "RMSprop"]}})
    env = {**os.environ, "FUNCAPPROX_WORKDIR": str(workdir)}
    search = subprocess.Popen([sys.executable, "-m", "funcapprox", "search", "--stage", "nonarch", "--func", "square",
                               "--space", str(space), "--epochs", "1500"], env=env, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            ids = experiment_ids(workdir)
            if ids and load_experiment(workdir, ids[0]).succeeded():
                break
            time.sleep(1)
        search.send_signal(signal.SIGTERM)  # a service manager or `kill`; Ctrl-C: test_faults.py
        out, err = search.communicate(timeout=120)
    finally:
        if search.poll() is None:
            search.kill()
    (exp_id,) = experiment_ids(workdir)
    assert search.returncode == 1
    assert "search interrupted" in err and f"funcapprox results --experiment {exp_id}" in err
    assert "Traceback" not in err
    assert manager_answers(workdir, exp_id) is None
    assert read_meta(workdir / exp_id)["status"] == "INTERRUPTED"
    experiment = load_experiment(workdir, exp_id)
    assert 1 <= len(experiment.succeeded()) < 8
    results = funcapprox("results", "--experiment", exp_id, "--format", "json", workdir=workdir)
    assert results.returncode == 0 and any(r["status"] == "SUCCEEDED" for r in json.loads(results.stdout))


def test_a_search_on_a_data_file_reads_the_experiments_copy_and_hands_off_by_content(workdir, tmp_path):
    """Measurements through a real NNI search: the file is copied into the work folder, so results, plot, report
    and stage 2 read the very same data after the user's file has changed; a changed file is another function."""
    from helpers.files import write_measurements

    from funcapprox.samples import load_samples

    data = write_measurements(tmp_path / "measurements.csv")
    digest = load_samples(data).digest
    nonarch = write_space(tmp_path / "nonarch.json", SMALL_NONARCH)
    stage1 = funcapprox("search", "--stage", "nonarch", "--func", str(data), "--space", str(nonarch),
                        "--epochs", "10", workdir=workdir)
    assert stage1.returncode == 0, stage1.stderr + stage1.stdout
    assert "stage nonarch for measurements.csv" in stage1.stdout
    (copy,) = (workdir / ".trial-code" / "data").iterdir()
    assert copy.name == f"{digest[:12]}-measurements.csv" and copy.read_bytes() == data.read_bytes()
    write_measurements(data, seed=1)  # the user's file changes: stage 1 is not its stage 1
    other = funcapprox("search", "--stage", "arch", "--func", str(data), "--dry-run", workdir=workdir)
    assert other.returncode == 2 and "no finished nonarch experiment for measurements.csv (this data)" in other.stderr
    write_measurements(data)  # the same content again
    arch = write_space(tmp_path / "arch.json", {"hidden_size_1": {"_type": "choice", "_value": [4, 8]}})
    stage2 = funcapprox("search", "--stage", "arch", "--func", str(data), "--space", str(arch), "--epochs", "10",
                        workdir=workdir)
    assert stage2.returncode == 0, stage2.stderr + stage2.stdout
    first, second = experiment_ids(workdir)
    assert read_meta(workdir / second).from_experiment == first
    data.unlink()  # every later command reads the experiment's copy
    listed = funcapprox("results", "--experiment", second, "--format", "json", workdir=workdir)
    trials = json.loads(listed.stdout)
    assert len(trials) == 2 and all(t["status"] == "SUCCEEDED" for t in trials)
    assert {(t["params"]["func"], t["params"]["data"]) for t in trials} == {(str(copy), digest)}
    table = funcapprox("experiments", workdir=workdir)
    assert table.stdout.count(" measurements.csv ") == 2
    plot = funcapprox("plot", "--trial", "best", "--experiment", second, "--out", str(tmp_path / "best.png"),
                      workdir=workdir)
    assert plot.returncode == 0 and (tmp_path / "best.png").stat().st_size > 0, plot.stderr
    report = funcapprox("report", "--experiment", second, "--out", str(tmp_path / "report.html"), workdir=workdir)
    assert report.returncode == 0, report.stderr
    page = (tmp_path / "report.html").read_text()
    assert f"measurements.csv (20% of its points held out; sha256 {digest[:12]}" in page
    moved = tmp_path / "moved"
    workdir.rename(moved)  # a moved work folder still finds its copy
    again = funcapprox("plot", "--trial", "best", "--experiment", second, "--out", str(tmp_path / "again.png"),
                       workdir=moved)
    assert again.returncode == 0, again.stderr
    moved.rename(workdir)


def test_a_search_on_a_formula_hands_off_to_stage_2_of_the_same_function_and_reads_back(workdir, tmp_path):
    """Your own function through a real NNI search: both stages, results, plot, report."""
    func, nonarch = "sin(6*x)*exp(-x)", write_space(tmp_path / "nonarch.json", SMALL_NONARCH)
    stage1 = funcapprox("search", "--stage", "nonarch", "--func", func, "--domain", "0,2", "--space", str(nonarch),
                        "--epochs", "10", workdir=workdir)
    assert stage1.returncode == 0, stage1.stderr + stage1.stdout
    assert "stage nonarch for sin(6 * x) * exp(-x) on [0, 2]" in stage1.stdout
    other = funcapprox("search", "--stage", "arch", "--func", func, "--dry-run", workdir=workdir)  # another domain
    assert other.returncode == 2 and "no finished nonarch experiment for sin(6 * x) * exp(-x):" in other.stderr
    arch = write_space(tmp_path / "arch.json", {"hidden_size_1": {"_type": "choice", "_value": [4, 8]}})
    stage2 = funcapprox("search", "--stage", "arch", "--func", func, "--domain", "0,2", "--space", str(arch),
                        "--epochs", "10", workdir=workdir)
    assert stage2.returncode == 0, stage2.stderr + stage2.stdout
    first, second = experiment_ids(workdir)
    assert read_meta(workdir / second).from_experiment == first
    listed = funcapprox("results", "--experiment", second, "--format", "json", workdir=workdir)
    trials = json.loads(listed.stdout)
    assert len(trials) == 2 and all(t["status"] == "SUCCEEDED" for t in trials)
    assert {(t["params"]["func"], tuple(t["params"]["domain"])) for t in trials} == {("sin(6 * x) * exp(-x)", (0, 2))}
    plot = funcapprox("plot", "--trial", "best", "--experiment", second, "--out", str(tmp_path / "best.png"),
                      workdir=workdir)
    assert plot.returncode == 0 and (tmp_path / "best.png").stat().st_size > 0, plot.stderr
    report = funcapprox("report", "--experiment", second, "--out", str(tmp_path / "report.html"), workdir=workdir)
    assert report.returncode == 0 and "sin(6 * x) * exp(-x)" in (tmp_path / "report.html").read_text()
