"""A warm worker: trials fork from a process that has already imported torch.

Every NNI trial is a fresh process, and `import torch` alone costs about 2-3 s of
a trial that trains for about as long. While `funcapprox search` follows an
experiment it runs this worker; each trial process (`funcapprox.nni.trial --warm
SOCKET`) is then a thin client: it connects, the worker forks a child that runs
the whole trial (NNI protocol, training, files) with the client's NNI
environment, and the client relays the child's output and exit code. The child
stops as soon as its client disappears (NNI cancelled or killed the trial), so
NNI's control over its trial processes is kept. When no worker answers, the
trial simply runs in its own process.

In a grid stage the search hands the worker the grid's group sizes: it then
gathers the trials that can share a batched step and trains each group in one
child instead of a child per trial (gather.py), `trainers` groups at once.

The worker serves only its owner: the socket lives in a 0700 folder, and every
connection's peer uid (SO_PEERCRED) must be the worker's own, checked before
anything is forked. A request is one JSON line, read by the child with a size cap
and a timeout, and checked in full before it is acted on: only `--set` arguments,
only the NNI variables in ENV_KEYS, an existing cwd, and an NNI_OUTPUT_DIR inside
the folder the worker serves. At most `max_children` trials run at once. A refused
connection gets one {"error": ...} line and is closed; the worker keeps serving.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Iterator

DISABLE_VARIABLE = "FUNCAPPROX_WARM"
ENV_KEYS = ("NNI_TRIAL_COMMAND_CHANNEL", "NNI_TRIAL_JOB_ID", "NNI_OUTPUT_DIR", "NNI_EXP_ID", "NNI_TRIAL_SEQ_ID",
            "NNI_PLATFORM", "NNI_SYS_DIR")
REQUEST_KEYS = frozenset({"argv", "env", "cwd"})
MAX_REQUEST_BYTES = 64 * 1024  # a real request is a few hundred bytes
REQUEST_TIMEOUT = 5.0  # seconds a forked child waits for its request line
MAX_CHILDREN = 32  # trials running in the worker at once; beyond, trials run in their own process
MAX_GATHERED = 256  # trials taken in or waiting for their group's turn (gather.py); beyond, their own process
BUSY = "too many trials at once"
WORKER_START_WAIT = 20.0  # seconds a trial waits for a worker that has not started listening yet
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


class Refused(Exception):
    """A connection or request the worker does not serve; the message goes back to the client
    (`busy`: nothing of the trial started, so it may run in its own process)."""

    def __init__(self, message: str, busy: bool = False) -> None:
        super().__init__(message)
        self.busy = busy


class _Relay:
    """A text stream that forwards writes to the client as {"out"|"err": text} lines."""

    def __init__(self, connection: socket.socket, kind: str) -> None:
        self.connection, self.kind = connection, kind

    def write(self, text: str) -> int:
        if text:
            send(self.connection, {self.kind: text})
        return len(text)

    def flush(self) -> None:
        pass


def send(connection: socket.socket, message: dict) -> None:
    connection.sendall((json.dumps(message) + "\n").encode())


def _refuse(connection: socket.socket, message: str, busy: bool = False) -> None:
    """Send one error line without ever blocking (it fits any socket buffer), then close."""
    reply = {"error": message, "busy": True} if busy else {"error": message}
    with contextlib.suppress(OSError):
        connection.send((json.dumps(reply) + "\n").encode(), socket.MSG_DONTWAIT)
    connection.close()


def client_gone(connection: socket.socket) -> bool:
    """True once the trial process on the other end has closed or died."""
    try:
        return connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def peer_uid(connection: socket.socket) -> int:
    """The uid of the process on the other end of a Unix socket (Linux's SO_PEERCRED)."""
    _, uid, _ = _UCRED.unpack(connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
    return uid


def read_request(connection: socket.socket, timeout: float = REQUEST_TIMEOUT,
                 limit: int = MAX_REQUEST_BYTES) -> bytes:
    """The client's one request line (without its newline), at most `limit` bytes within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    data = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise Refused(f"no request line within {timeout:g} s")
        connection.settimeout(remaining)
        try:
            chunk = connection.recv(limit + 1 - len(data))
        except socket.timeout:
            raise Refused(f"no request line within {timeout:g} s") from None
        if not chunk:
            raise Refused("the connection closed before a whole request line")
        data += chunk
        end = data.find(b"\n")
        if end >= 0:
            if end + 1 != len(data):
                raise Refused("more than one request line")
            return data[:end]
        if len(data) > limit:
            raise Refused(f"the request line is longer than {limit} bytes")


def _check_argv(argv) -> list[str]:
    """Only what funcapprox.nni.trial accepts from a worker: `--set KEY=VALUE` or `--set=KEY=VALUE` and
    `--batched`, never --warm."""
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        raise Refused("argv must be a list of strings")
    if any(a == "--warm" or a.startswith("--warm=") for a in argv):
        raise Refused("argv must not contain --warm (a trial in the worker never delegates again)")
    i = 0
    while i < len(argv):
        if argv[i].startswith("--set=") or argv[i] == "--batched":
            i += 1
        elif argv[i] == "--set" and i + 1 < len(argv) and not argv[i + 1].startswith("-"):
            i += 2
        else:
            raise Refused(f"argv may hold only --set KEY=VALUE pairs and --batched, got {argv[i]!r}")
    return argv


def _is_dir(text: str) -> bool:
    return "\0" not in text and os.path.isdir(text)


def check_request(request, root: str | None = None) -> tuple[list[str], dict[str, str], str]:
    """(argv, env, cwd) of a decoded request, or Refused saying what is wrong with it.

    `root` (already resolved) is the folder the trials may write to: NNI_OUTPUT_DIR,
    symlinks resolved, must be an existing folder inside it. None: no restriction.
    """
    if not isinstance(request, dict) or set(request) != REQUEST_KEYS:
        raise Refused(f"the request must be one JSON object with exactly the keys {sorted(REQUEST_KEYS)}")
    argv = _check_argv(request["argv"])
    env, cwd = request["env"], request["cwd"]
    if not isinstance(env, dict) or not all(isinstance(v, str) and "\0" not in v for v in env.values()):
        raise Refused("env must be an object of strings")
    unknown = sorted(set(env) - set(ENV_KEYS))
    if unknown:
        raise Refused(f"env may hold only {', '.join(ENV_KEYS)}; got {', '.join(map(repr, unknown))}")
    if not isinstance(cwd, str) or not _is_dir(cwd):
        raise Refused(f"cwd is not an existing folder: {cwd!r}")
    output = env.get("NNI_OUTPUT_DIR")
    if output is None or not _is_dir(output):
        raise Refused(f"NNI_OUTPUT_DIR is not an existing folder: {output!r}")
    if root is not None:
        real = os.path.realpath(output)
        if os.path.commonpath([real, root]) != root or real == root:
            raise Refused(f"NNI_OUTPUT_DIR {output!r} is not inside {root!r}, the folder this worker serves")
    return argv, env, cwd


def _decode(line: bytes):
    try:
        return json.loads(line)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested too deep
        raise Refused("the request is not a JSON line") from None


def _run_child(connection: socket.socket, root: str | None, timeout: float) -> int:
    """In the forked child: read and check the request, run the trial it asks for, report the exit code."""
    try:
        argv, env, cwd = check_request(_decode(read_request(connection, timeout)), root)
    except Refused as exc:
        _refuse(connection, str(exc))
        return 2
    from . import trial

    connection.settimeout(None)
    for key in ENV_KEYS:  # the client's NNI environment, not whatever the worker inherited
        os.environ.pop(key, None)
    os.environ.update(env)
    os.chdir(cwd)
    sys.stdout, sys.stderr = _Relay(connection, "out"), _Relay(connection, "err")
    try:
        code = trial.main(argv, should_stop=lambda: client_gone(connection))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
        code = 1
    send(connection, {"exit": code})
    return code


def _reap(children: set[int]) -> None:
    """Collect the children that ended (without waiting) and forget them."""
    while children:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            children.clear()
            return
        if pid == 0:
            return
        children.discard(pid)


def _take_in(connection: socket.socket, root: str | None, timeout: float, gathering) -> None:
    """In a thread of the worker: check the request and take its trial into the gathering (gather.py)."""
    from . import gather

    member = None
    try:
        try:
            argv, env, cwd = check_request(_decode(read_request(connection, timeout)), root)
            if not env.get(gather.CHANNEL_VARIABLE, "").startswith("http://"):
                raise Refused("no HTTP trial channel from NNI: the trial runs in its own process", True)
        except Refused as exc:
            _refuse(connection, str(exc), busy=exc.busy)
            return
        connection.settimeout(None)
        member = gather.take_in(connection, argv, env, cwd)
    except Exception:  # NNI did not answer, say: the trial fails with the reason, the worker goes on
        with contextlib.suppress(OSError):
            send(connection, {"err": traceback.format_exc()})
            send(connection, {"exit": 1})
        connection.close()
    finally:
        gathering.add(connection, member)


def serve(path: str, root: str | Path | None = None, max_children: int = MAX_CHILDREN,
          request_timeout: float = REQUEST_TIMEOUT, sizes: dict[str, int] | None = None,
          trainers: int = 2) -> None:
    """Import what a trial needs, then serve trials until the parent goes away: a child forked per
    connection, or with `sizes` (the grid's group sizes, gather.py) a child per gathered group.

    `root`: the folder trials may write to (their NNI_OUTPUT_DIR must be inside it); None: anywhere.
    `max_children`: trials at once, one child each (with `sizes`: `trainers` groups train at once, the rest
    wait their turn, and at most MAX_GATHERED trials are held); `request_timeout`: seconds a child waits
    for its request.
    """
    import torch

    from .. import artifacts, group, train  # noqa: F401  (imported once here, shared by every child)
    from . import gather, trial  # noqa: F401

    torch.set_num_threads(1)  # before any fork: children must not inherit a thread pool
    root = None if root is None else os.path.realpath(root)
    owner = os.getuid()
    children: set[int] = set()
    gathering = gather.Gathering(sizes) if sizes is not None else None
    queue: list[list] = []  # gathered groups waiting for a trainer
    parent = os.getppid()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path + ".new")
    listener.listen(64)
    os.rename(path + ".new", path)  # the path appears only once connections are accepted
    listener.settimeout(1.0 if gathering is None else 0.1)
    while os.getppid() == parent:  # the search that started us is still there
        _reap(children)
        if gathering is not None:
            queue += gathering.ready(idle=not queue and len(children) < trainers)
            while queue and len(children) < trainers:
                group = queue.pop(0)
                # what the child must not hold, gathered here: a take-in thread may hold the gathering's lock
                # at the fork, and the child would wait for it for ever
                others = [*gathering.connections(), *(m.connection for waiting in queue for m in waiting)]
                _fork_group(group, listener, others, children)
        try:
            connection, _ = listener.accept()
        except socket.timeout:
            continue
        try:
            uid = peer_uid(connection)
        except OSError:
            connection.close()
            continue
        if uid != owner:
            _refuse(connection, f"this warm worker serves only uid {owner}, not uid {uid}")
            continue
        if gathering is not None:
            if len(gathering) + sum(map(len, queue)) >= MAX_GATHERED:
                _refuse(connection, BUSY, busy=True)
                continue
            gathering.starting(connection)
            threading.Thread(target=_take_in, args=(connection, root, request_timeout, gathering),
                             daemon=True).start()
            continue
        _reap(children)
        if len(children) >= max_children:
            _refuse(connection, BUSY, busy=True)
            continue
        try:
            pid = os.fork()
        except OSError as exc:
            _refuse(connection, f"the warm worker cannot fork: {exc}", busy=True)
            continue
        if pid == 0:
            listener.close()
            code = 1
            try:
                code = _run_child(connection, root, request_timeout)
            finally:
                os._exit(code)
        children.add(pid)
        connection.close()


def _fork_group(members: list, listener: socket.socket, others: list, children: set[int]) -> None:
    """Train a gathered group in a child (gather.train_members); its members' trial processes that went
    away meanwhile are left out. `others`: the connections of the other trials, which the child closes
    (a trial whose trainer dies must see its connection close then, not when another trainer ends)."""
    from . import gather

    live = []
    for member in members:
        if client_gone(member.connection):
            member.connection.close()
        else:
            live.append(member)
    if not live:
        return
    try:
        pid = os.fork()
    except OSError as exc:
        for member in live:
            _refuse(member.connection, f"the warm worker cannot fork: {exc}")
        return
    if pid == 0:
        listener.close()
        for connection in others:
            with contextlib.suppress(OSError):
                connection.close()
        try:
            gather.train_members(live)
        finally:
            os._exit(0)
    children.add(pid)
    for member in live:
        member.connection.close()


def delegate(path: str, argv: list[str]) -> int | None:
    """In the trial process: have the worker run this trial; None when no worker answers.

    A refused request is printed and fails the trial (1): it must not run elsewhere as if nothing
    were wrong. Only a worker that is busy (too many trials at once), cannot fork before it took the
    trial, or gathers trials but has no HTTP channel to NNI for it gives None: nothing of the trial has
    started, so it runs in its own process.
    """
    deadline = time.monotonic() + WORKER_START_WAIT
    while not os.path.exists(path) and os.path.isdir(os.path.dirname(path)) and time.monotonic() < deadline:
        time.sleep(0.05)  # the worker is still importing torch: worth waiting, it takes less than starting here
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        try:
            connection.connect(path)
        except OSError:
            return None
        env = {k: os.environ[k] for k in ENV_KEYS if k in os.environ}
        with contextlib.suppress(OSError):  # a worker that refuses at once may have closed already
            send(connection, {"argv": argv, "env": env, "cwd": os.getcwd()})
        try:
            for line in connection.makefile("r", encoding="utf-8"):
                message = json.loads(line)
                if "out" in message:
                    sys.stdout.write(message["out"])
                elif "err" in message:
                    sys.stderr.write(message["err"])
                elif "exit" in message:
                    return int(message["exit"])
                elif "error" in message:
                    if message.get("busy"):
                        print(f"funcapprox trial: the warm worker did not take the trial ({message['error']}); "
                              "running here",
                              file=sys.stderr)
                        return None
                    print(f"funcapprox trial: the warm worker refused the trial: {message['error']}",
                          file=sys.stderr)
                    return 1
        except OSError:
            pass
    print("funcapprox trial: the warm worker died during the trial", file=sys.stderr)
    return 1


def available() -> bool:
    """Whether searches here get a warm worker: FUNCAPPROX_WARM=0 turns it off, and it needs SO_PEERCRED."""
    return os.environ.get(DISABLE_VARIABLE, "1") != "0" and hasattr(socket, "SO_PEERCRED")


@contextlib.contextmanager
def worker(enabled: bool = True, root: Path | None = None, max_children: int = MAX_CHILDREN,
           request_timeout: float = REQUEST_TIMEOUT, sizes: dict[str, int] | None = None,
           trainers: int = 2) -> Iterator[str | None]:
    """Run a warm worker for the duration of the block and yield its socket path
    (None when not enabled, FUNCAPPROX_WARM=0 turns it off or the system cannot tell a
    socket's peer (no SO_PEERCRED): every trial then imports torch itself).

    `root`: the folder the trials write to (the experiment work folder); a request whose
    NNI_OUTPUT_DIR is not inside it is refused. None: no restriction.
    `sizes`: the stage's grid group sizes ({config.group_key: configurations}): trials that can share a
    batched step are gathered and trained together (gather.py), `trainers` groups at once.

    It does not wait for the worker to be ready: trials that start before it listens
    (it takes a few seconds to import torch) wait for it (delegate).
    """
    if not enabled or not available():
        yield None
        return
    folder = tempfile.mkdtemp(prefix="funcapprox-warm-")  # short path: sockets allow ~100 characters
    path = str(Path(folder) / "socket")
    options = ["--max-children", str(max_children), "--request-timeout", str(request_timeout)]
    if root is not None:
        options += ["--root", str(root)]
    if sizes is not None:
        (Path(folder) / "groups.json").write_text(json.dumps(sizes))
        options += ["--groups", str(Path(folder) / "groups.json"), "--trainers", str(trainers)]
    # A session of its own: a Ctrl-C at the terminal goes to `funcapprox search`, which stops
    # the experiment in order, not to the trials running in this worker's children.
    process = subprocess.Popen([sys.executable, "-m", "funcapprox.nni.warm", path, *options], start_new_session=True,
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield path
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        for leftover in (path, path + ".new", str(Path(folder) / "groups.json")):
            with contextlib.suppress(OSError):
                os.unlink(leftover)
        with contextlib.suppress(OSError):
            os.rmdir(folder)


def _main(args: list[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m funcapprox.nni.warm")
    parser.add_argument("socket")
    parser.add_argument("--root", type=Path)
    parser.add_argument("--max-children", type=int, default=MAX_CHILDREN)
    parser.add_argument("--request-timeout", type=float, default=REQUEST_TIMEOUT)
    parser.add_argument("--groups", help="the grid's group sizes (JSON): gather trials into batched steps")
    parser.add_argument("--trainers", type=int, default=2)
    options = parser.parse_args(args)
    from .gather import load_sizes

    serve(options.socket, options.root, options.max_children, options.request_timeout,
          load_sizes(options.groups), options.trainers)


if __name__ == "__main__":
    _main(sys.argv[1:])
