"""The warm worker: a trial delegated to it gives the same numbers as one run in its own
process, relays output and exit code, and stops when its trial process dies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest_search import ChannelServer

from funcapprox import warm

FIXED = ["--set", "func=oscillator", "--set", "hidden=8,0,0", "--set", "epochs=15"]
PARAMS = {"act_func": "LeakyReLU", "learning_rate": 0.01}


@pytest.fixture
def worker():
    with warm.worker() as path:
        deadline = time.monotonic() + 60
        while not os.path.exists(path) and time.monotonic() < deadline:  # it imports torch first
            time.sleep(0.05)
        assert os.path.exists(path), "the warm worker did not start listening"
        yield path


def run_trial(output_dir: Path, channel_url: str, warm_socket: str | None, extra: list[str] = ()) -> tuple:
    output_dir.mkdir(exist_ok=True)  # NNI makes it before starting the trial
    env = {**os.environ, "NNI_TRIAL_COMMAND_CHANNEL": channel_url, "NNI_OUTPUT_DIR": str(output_dir),
           "NNI_TRIAL_JOB_ID": "T1"}
    args = [sys.executable, "-m", "funcapprox.trial", *(["--warm", warm_socket] if warm_socket else []), *FIXED,
            *extra]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout, done.stderr


def final_metric(server: ChannelServer) -> dict:
    (final,) = [m for m in server.metrics() if m["type"] == "FINAL"]
    return json.loads(final["value"])


def test_warm_trial_matches_a_trial_in_its_own_process(worker, tmp_path):
    results = {}
    for name, socket_path in (("own", None), ("warm", worker)):
        server = ChannelServer(PARAMS).start()
        try:
            code, out, err = run_trial(tmp_path / name, server.url, socket_path)
        finally:
            server.stop()
        assert code == 0, err
        assert ("in a warm worker" in out) == (name == "warm"), out  # the child's output is relayed
        results[name] = (final_metric(server), [m["value"] for m in server.metrics() if m["type"] == "PERIODICAL"])
    (own_final, own_history), (warm_final, warm_history) = results["own"], results["warm"]
    assert own_history == warm_history
    assert {k: v for k, v in own_final.items() if k != "seconds"} == {
        k: v for k, v in warm_final.items() if k != "seconds"}
    assert json.loads((tmp_path / "warm" / "config.json").read_text())["hidden"] == [8]
    assert (tmp_path / "warm" / "model.pt").exists()


def test_exit_code_and_errors_are_relayed(worker, tmp_path):
    server = ChannelServer({"act_func": "Nonsense"}).start()
    try:
        code, _, err = run_trial(tmp_path, server.url, worker)
    finally:
        server.stop()
    assert code == 2
    assert "rejected parameters" in err and "Nonsense" in err


def test_no_worker_means_the_trial_runs_itself(tmp_path):
    server = ChannelServer(PARAMS).start()
    try:
        code, out, err = run_trial(tmp_path, server.url, str(tmp_path / "no-such-socket"))
    finally:
        server.stop()
    assert code == 0, err
    assert "in its own process" in out


def test_killing_the_trial_process_stops_its_worker_child(worker, tmp_path):
    server = ChannelServer(PARAMS).start()
    env = {**os.environ, "NNI_TRIAL_COMMAND_CHANNEL": server.url, "NNI_OUTPUT_DIR": str(tmp_path),
           "NNI_TRIAL_JOB_ID": "T1"}
    client = subprocess.Popen([sys.executable, "-m", "funcapprox.trial", "--warm", worker, *FIXED[:4],
                               "--set", "epochs=1000000"], env=env)
    try:
        deadline = time.monotonic() + 60
        while len(server.metrics()) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(server.metrics()) >= 3, "the trial never reported"
        client.send_signal(signal.SIGKILL)  # what NNI does to a cancelled or timed-out trial
        client.wait(timeout=10)
        time.sleep(1.0)
        count = len(server.metrics())
        time.sleep(1.5)
        assert len(server.metrics()) == count, "the worker's child kept training after its trial was killed"
    finally:
        if client.poll() is None:
            client.kill()
        server.stop()
