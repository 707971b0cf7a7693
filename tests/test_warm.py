"""The warm worker: a trial delegated to it gives the same numbers as one run in its own
process, relays output and exit code, and stops when its trial process dies."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers.nni import ChannelServer

from funcapprox.nni import warm

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
    args = [sys.executable, "-m", "funcapprox.nni.trial", *(["--warm", warm_socket] if warm_socket else []), *FIXED,
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
    client = subprocess.Popen([sys.executable, "-m", "funcapprox.nni.trial", "--warm", worker, *FIXED[:4],
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


# --- The worker serves only its owner, and only well-formed requests (issue 9) ---

@contextlib.contextmanager
def started_worker(**options):
    """A warm worker with these options, once it listens."""
    with warm.worker(**options) as path:
        deadline = time.monotonic() + 60
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert os.path.exists(path), "the warm worker did not start listening"
        yield path


def request(output_dir: Path, channel_url: str = "http://127.0.0.1:9/", **changes) -> dict:
    """A request as funcapprox.nni.trial's client sends it, with `changes` on top."""
    output_dir.mkdir(parents=True, exist_ok=True)
    env = {"NNI_TRIAL_COMMAND_CHANNEL": channel_url, "NNI_OUTPUT_DIR": str(output_dir), "NNI_TRIAL_JOB_ID": "T1"}
    argv = [f"--set={pair}" for pair in FIXED[1::2]]
    return {"argv": argv, "env": env, "cwd": str(output_dir)} | changes


def line(message) -> bytes:
    return (json.dumps(message) + "\n").encode()


def ask(path: str, payload: bytes, timeout: float = 20) -> dict | None:
    """Send `payload` on a fresh connection; the worker's first reply line, None if it closed without one."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(timeout)
        connection.connect(path)
        with contextlib.suppress(OSError):  # the worker may refuse before it has read it all
            connection.sendall(payload)
        return read_reply(connection)


def read_reply(connection: socket.socket) -> dict | None:
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while b"\n" not in data:
            chunk = connection.recv(4096)
            if not chunk:
                break
            data += chunk
    return json.loads(data.partition(b"\n")[0]) if data else None


def assert_serves_a_trial(path: str, output_dir: Path) -> None:
    """The worker (still) runs a good trial itself."""
    server = ChannelServer(PARAMS).start()
    try:
        code, out, err = run_trial(output_dir, server.url, path)
    finally:
        server.stop()
    assert code == 0, err
    assert "in a warm worker" in out, out + err


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to connect as another uid")
def test_a_client_of_another_uid_is_refused_before_anything_is_forked(worker, tmp_path):
    os.chmod(os.path.dirname(worker), 0o755)  # let another uid reach the socket at all
    os.chmod(worker, 0o777)
    server = ChannelServer(PARAMS).start()
    try:
        output_dir = tmp_path / "nobody"
        payload = line(request(output_dir, server.url))
        reading, writing = os.pipe()
        pid = os.fork()
        if pid == 0:  # the other user's trial process
            try:
                os.close(reading)
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
                os.write(writing, json.dumps(ask(worker, payload)).encode())
            except BaseException as exc:
                os.write(writing, json.dumps({"child failed": repr(exc)}).encode())
            finally:
                os._exit(0)
        os.close(writing)
        with os.fdopen(reading) as pipe:
            reply = json.loads(pipe.read())
        os.waitpid(pid, 0)
        assert reply is not None and "uid 65534" in reply.get("error", ""), reply
        time.sleep(0.5)  # a trial child, had there been one, would have asked NNI for parameters by now
        assert server.received == [] and list(output_dir.iterdir()) == []
    finally:
        server.stop()
    assert_serves_a_trial(worker, tmp_path / "owner")


@pytest.fixture(scope="module", params=["a child per trial", "gathering trials (gather.py)"])
def guarded(tmp_path_factory, request):
    """A worker that serves only trials writing inside `root`, waiting 1 s for a request line: forking a
    child per trial, or (with the grid's group sizes, as in a grid search) gathering them into groups."""
    root = tmp_path_factory.mktemp("served")
    sizes = {} if request.param.startswith("gathering") else None
    with started_worker(root=root, request_timeout=1.0, sizes=sizes) as path:
        yield path, root


BAD_REQUESTS = {
    "not JSON": (b"argv env cwd\n", "not a JSON line"),
    "not an object": (line(["--set", "func=oscillator"]), "exactly the keys"),
    "an extra key": (None, "exactly the keys"),
    "a missing key": (None, "exactly the keys"),
    "argv with --warm": (None, "--warm"),
    "argv with --warm=": (None, "--warm"),
    "argv not --set": (None, "only --set"),
    "argv not strings": (None, "list of strings"),
    "an env key outside ENV_KEYS": (None, "LD_PRELOAD"),
    "an env value not a string": (None, "object of strings"),
    "no NNI_OUTPUT_DIR": (None, "NNI_OUTPUT_DIR"),
    "cwd missing": (None, "cwd"),
    "NNI_OUTPUT_DIR outside the root": (None, "not inside"),
    "NNI_OUTPUT_DIR a symlink out of the root": (None, "not inside"),
    "two lines": (None, "more than one"),
}


def bad_request(case: str, root: Path, outside: Path) -> bytes:
    payload, _ = BAD_REQUESTS[case]
    if payload is not None:
        return payload
    good = request(root / "trial")
    if case == "an extra key":
        return line(good | {"shell": "rm -rf ~"})
    if case == "a missing key":
        return line({k: v for k, v in good.items() if k != "cwd"})
    if case == "argv with --warm":
        return line(good | {"argv": ["--warm", "/tmp/socket", *good["argv"]]})
    if case == "argv with --warm=":
        return line(good | {"argv": [*good["argv"], "--warm=/tmp/socket"]})
    if case == "argv not --set":
        return line(good | {"argv": ["--help"]})
    if case == "argv not strings":
        return line(good | {"argv": ["--set", 3]})
    if case == "an env key outside ENV_KEYS":
        return line(good | {"env": good["env"] | {"LD_PRELOAD": "/tmp/evil.so"}})
    if case == "an env value not a string":
        return line(good | {"env": good["env"] | {"NNI_TRIAL_JOB_ID": 1}})
    if case == "no NNI_OUTPUT_DIR":
        return line(good | {"env": {k: v for k, v in good["env"].items() if k != "NNI_OUTPUT_DIR"}})
    if case == "cwd missing":
        return line(good | {"cwd": str(root / "no-such-folder")})
    if case == "NNI_OUTPUT_DIR outside the root":
        return line(request(outside))
    if case == "NNI_OUTPUT_DIR a symlink out of the root":
        outside.mkdir(exist_ok=True)
        link = root / "link"
        if not link.exists():
            link.symlink_to(outside)
        return line(good | {"env": good["env"] | {"NNI_OUTPUT_DIR": str(link)}})
    if case == "two lines":
        return line(good) + line(good)
    raise AssertionError(case)


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_a_malformed_request_is_refused(guarded, tmp_path, case):
    path, root = guarded
    reply = ask(path, bad_request(case, root, tmp_path / "outside"))
    assert reply is not None and BAD_REQUESTS[case][1] in reply.get("error", ""), reply
    assert not reply.get("busy")


def test_the_worker_keeps_serving_after_bad_requests(guarded, tmp_path):
    path, root = guarded
    for case in BAD_REQUESTS:
        assert "error" in ask(path, bad_request(case, root, tmp_path / "outside"))
    assert_serves_a_trial(path, root / "good")


def test_the_real_client_fails_a_refused_trial_rather_than_run_it_itself(guarded, tmp_path):
    path, _ = guarded
    server = ChannelServer(PARAMS).start()
    try:
        code, out, err = run_trial(tmp_path / "outside", server.url, path)  # not inside the worker's root
    finally:
        server.stop()
    assert code == 1
    assert "refused the trial" in err and "not inside" in err, err
    assert server.received == [] and "in its own process" not in out


def test_an_oversized_request_line_is_refused(guarded):
    path, root = guarded
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(20)
        connection.connect(path)
        sender = threading.Thread(target=_send_quietly, args=(connection, b"x" * (1 << 20)), daemon=True)
        sender.start()
        reply = read_reply(connection)
        sender.join(timeout=20)
    assert reply is not None and "longer than" in reply["error"], reply
    assert_serves_a_trial(path, root / "after-oversized")


def _send_quietly(connection: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):
        connection.sendall(data)


def test_a_silent_client_neither_blocks_the_worker_nor_stays_forever(guarded):
    path, root = guarded
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent, \
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as partial:
        silent.connect(path)
        partial.connect(path)
        partial.sendall(b'{"argv": [')  # a request line that never ends
        started = time.monotonic()
        assert_serves_a_trial(path, root / "beside-silent")  # served while those two wait
        for connection in (silent, partial):
            connection.settimeout(20)
            reply = read_reply(connection)
            assert reply is not None and "no request line within 1 s" in reply["error"], reply
            assert connection.recv(1) == b""  # and dropped
        assert time.monotonic() - started < 15


def test_too_many_trials_at_once_are_refused_and_run_in_their_own_process(tmp_path):
    with started_worker(max_children=2, request_timeout=60) as path:
        holding = []
        try:
            for _ in range(2):  # two children that wait for a request line: the cap is reached
                connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                connection.connect(path)
                holding.append(connection)
            reply = ask(path, line(request(tmp_path / "third")))
            assert reply == {"error": "too many trials at once", "busy": True}
            server = ChannelServer(PARAMS).start()
            try:  # the real client falls back to running the trial itself
                code, out, err = run_trial(tmp_path / "fallback", server.url, path)
            finally:
                server.stop()
            assert code == 0, err
            assert "in its own process" in out and "too many trials at once" in err, out + err
        finally:
            for connection in holding:
                connection.close()
        deadline = time.monotonic() + 10  # their children end once their clients are gone
        while (ask(path, b"not json\n") or {}).get("busy") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert_serves_a_trial(path, tmp_path / "after")
