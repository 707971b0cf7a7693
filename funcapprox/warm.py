"""A warm worker: trials fork from a process that has already imported torch.

Every NNI trial is a fresh process, and `import torch` alone costs about 2-3 s of
a trial that trains for about as long. While `funcapprox search` follows an
experiment it runs this worker; each trial process (`funcapprox.trial --warm
SOCKET`) is then a thin client: it connects, the worker forks a child that runs
the whole trial (NNI protocol, training, files) with the client's NNI
environment, and the client relays the child's output and exit code. The child
stops as soon as its client disappears (NNI cancelled or killed the trial), so
NNI's control over its trial processes is kept. When no worker answers, the
trial simply runs in its own process.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Iterator

DISABLE_VARIABLE = "FUNCAPPROX_WARM"
ENV_KEYS = ("NNI_TRIAL_COMMAND_CHANNEL", "NNI_TRIAL_JOB_ID", "NNI_OUTPUT_DIR", "NNI_EXP_ID", "NNI_TRIAL_SEQ_ID",
            "NNI_PLATFORM", "NNI_SYS_DIR")


class _Relay:
    """A text stream that forwards writes to the client as {"out"|"err": text} lines."""

    def __init__(self, connection: socket.socket, kind: str) -> None:
        self.connection, self.kind = connection, kind

    def write(self, text: str) -> int:
        if text:
            _send(self.connection, {self.kind: text})
        return len(text)

    def flush(self) -> None:
        pass


def _send(connection: socket.socket, message: dict) -> None:
    connection.sendall((json.dumps(message) + "\n").encode())


def client_gone(connection: socket.socket) -> bool:
    """True once the trial process on the other end has closed or died."""
    try:
        return connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def _run_child(connection: socket.socket) -> int:
    """In the forked child: run one trial as its client asked, then report the exit code."""
    from . import trial

    request = json.loads(connection.makefile("r").readline())
    os.environ.update({k: v for k, v in request["env"].items() if k in ENV_KEYS})
    os.chdir(request["cwd"])
    sys.stdout, sys.stderr = _Relay(connection, "out"), _Relay(connection, "err")
    try:
        code = trial.main(request["argv"], should_stop=lambda: client_gone(connection))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
        code = 1
    _send(connection, {"exit": code})
    return code


def serve(path: str) -> None:
    """Import what a trial needs, then fork a child per connection until the parent goes away."""
    import torch

    from . import artifacts, train, trial  # noqa: F401  (imported once here, shared by every child)

    torch.set_num_threads(1)  # before any fork: children must not inherit a thread pool
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped automatically
    parent = os.getppid()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path + ".new")
    listener.listen(16)
    os.rename(path + ".new", path)  # the path appears only once connections are accepted
    listener.settimeout(1.0)
    while os.getppid() == parent:  # the search that started us is still there
        try:
            connection, _ = listener.accept()
        except socket.timeout:
            continue
        if os.fork() == 0:
            listener.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            code = 1
            try:
                code = _run_child(connection)
            finally:
                os._exit(code)
        connection.close()


def delegate(path: str, argv: list[str]) -> int | None:
    """In the trial process: have the worker run this trial; None when no worker answers."""
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect(path)
    except OSError:
        return None
    env = {k: os.environ[k] for k in ENV_KEYS if k in os.environ}
    _send(connection, {"argv": argv, "env": env, "cwd": os.getcwd()})
    for line in connection.makefile("r"):
        message = json.loads(line)
        if "out" in message:
            sys.stdout.write(message["out"])
        elif "err" in message:
            sys.stderr.write(message["err"])
        elif "exit" in message:
            return int(message["exit"])
    print("funcapprox trial: the warm worker died during the trial", file=sys.stderr)
    return 1


@contextlib.contextmanager
def worker(enabled: bool = True) -> Iterator[str | None]:
    """Run a warm worker for the duration of the block and yield its socket path
    (None when not enabled or FUNCAPPROX_WARM=0 turns it off: every trial then imports torch itself).

    It does not wait for the worker to be ready: trials that start before it listens
    (it takes a few seconds to import torch) run in their own process.
    """
    if not enabled or os.environ.get(DISABLE_VARIABLE, "1") == "0":
        yield None
        return
    folder = tempfile.mkdtemp(prefix="funcapprox-warm-")  # short path: sockets allow ~100 characters
    path = str(Path(folder) / "socket")
    # A session of its own: a Ctrl-C at the terminal goes to `funcapprox search`, which stops
    # the experiment in order, not to the trials running in this worker's children.
    process = subprocess.Popen([sys.executable, "-m", "funcapprox.warm", path], start_new_session=True,
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield path
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        for leftover in (path, path + ".new"):
            with contextlib.suppress(OSError):
                os.unlink(leftover)
        with contextlib.suppress(OSError):
            os.rmdir(folder)

if __name__ == "__main__":
    serve(sys.argv[1])
