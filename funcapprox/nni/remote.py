"""Remote machines for NNI's SSH training service: machines.yml, checked, as NNI's config.

A machines.yml is a YAML list of machines, or a mapping `{machines: [...]}`:

    - host: gpu1.lab.example
      port: 22                       # optional, 22 by default
      user: alice
      sshKeyFile: ~/.ssh/id_ed25519  # a private key without passphrase, readable here
      python: /home/alice/venv/bin/python   # on the remote machine: the interpreter or its bin folder
      reuse: false                   # optional: NNI's reuseMode (see below)

Key files only, no passwords: NNI keeps a password in plain text in the experiment's
config and database and shows it in its web UI, and a passphrase would be stored
the same way. An unencrypted key (or a dedicated one) avoids both.

On each machine the `python` must have nni 3.0 (NNI's trial keeper runs in it) and
funcapprox with torch (the trials run in it). NNI runs one trialCommand everywhere,
so every machine must name the same interpreter path.

With `reuse: false` (NNI's default) each machine runs any number of trials at once and
keeps each trial's files in `~/nni-experiments/<id>/environments/remote-worker<N>/trials/
<trial>/` on that machine (N = the machine's place in the list, from 1); NNI's database
records `<host>:<that path>` as the trial's log path. `reuse: true` runs one trial at a
time per machine, in `/tmp/nni-experiments/<id>/trials/<trial>/nnioutput/`, and needs
the manager's port + 1 reachable from the machines.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import posixpath
import re
import shlex
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ExperimentError

FIELDS = ("host", "port", "user", "sshKeyFile", "python", "reuse")
REQUIRED = ("host", "user", "sshKeyFile", "python")
# NNI's own machineList spellings and fields funcapprox leaves out on purpose: say what to write instead.
HINTS = {
    "pythonPath": "write python: the interpreter's full path (or its bin folder) on that machine",
    "reuseMode": "write reuse: true or false",
    "username": "write user",
    "sshKeyPath": "write sshKeyFile",
    "password": "funcapprox takes SSH key files only (NNI would keep the password in plain text and show it "
                "in its web UI): give sshKeyFile",
    "sshPassphrase": "use a key without passphrase (NNI would keep the passphrase in plain text)",
}
DEFAULT_PORT = 22
ENV_PREFIX = "remote-worker"  # NNI 3.0 names machine N's environment remote-worker<N> (reuse: false)
PYTHON_NAME = re.compile(r"python[0-9.]*")  # /…/bin/python3.11 is an interpreter; anything else a folder
SAFE_PATH = re.compile(r"/[\w.+@%/-]*")  # NNI pastes pythonPath into shell commands unquoted
CODE_PLACEHOLDER = "README.funcapprox"


@dataclass(frozen=True)
class Machine:
    host: str
    user: str
    key_file: Path  # absolute, on this computer
    python: str  # the interpreter's full path on the remote machine: what trialCommand runs
    port: int = DEFAULT_PORT
    reuse: bool = False

    @property
    def python_dir(self) -> str:
        """NNI's pythonPath: the interpreter's folder (NNI puts it first on PATH for its own scripts)."""
        return posixpath.dirname(self.python)

    @property
    def address(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"

    def to_nni(self) -> dict[str, Any]:
        """This machine as an entry of NNI's trainingService.machineList."""
        return {"host": self.host, "port": self.port, "user": self.user, "sshKeyFile": str(self.key_file),
                "pythonPath": self.python_dir}


def load_machines(path: Path | str) -> list[Machine]:
    """Read and check a machines.yml; every problem is one ConfigError naming the machine and the field."""
    import yaml

    path = Path(path).expanduser()
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"the machines file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the machines file {path}: {exc}") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise ConfigError(f"{path} is not valid YAML{line}: {getattr(exc, 'problem', None) or exc}") from None
    if isinstance(data, dict):
        unknown = sorted(set(map(str, data)) - {"machines"})
        if unknown:
            raise ConfigError(f"{path}: unknown key {unknown[0]!r} at the top; write a list of machines, "
                              "or machines: [...]")
        data = data.get("machines")
    if not isinstance(data, list) or not data:
        raise ConfigError(f"{path} lists no machines: write a YAML list of machines, each with "
                          f"{', '.join(REQUIRED)}")
    machines = [_machine(entry, number, path) for number, entry in enumerate(data, start=1)]
    seen: dict[tuple[str, int, str], int] = {}
    for number, m in enumerate(machines, start=1):
        first = seen.setdefault((m.host, m.port, m.user), number)
        if first != number:
            raise ConfigError(f"{path}: machine {number} ({m.host}) repeats machine {first} ({m.address})")
    shared(machines, str(path))
    return machines


def load_search_machines(path: Path | str) -> list[Machine]:
    """The machines of a `funcapprox search --platform remote`: reuse mode is refused, since NNI
    then keeps trial files where they cannot be fetched and runs one trial at a time per machine."""
    machines = load_machines(path)
    if any(m.reuse for m in machines):
        raise ConfigError(f"{path}: reuse: true is not supported by funcapprox search (NNI then keeps trial files "
                          "where they cannot be fetched, and runs one trial at a time per machine); use reuse: false")
    return machines


def _machine(entry: Any, number: int, path: Path) -> Machine:
    host = entry.get("host") if isinstance(entry, dict) else None
    label = f"{path}: machine {number}" + (f" ({host})" if isinstance(host, str) and host.strip() else "")

    def fail(message: str) -> ConfigError:
        return ConfigError(f"{label}: {message}")

    if not isinstance(entry, dict):
        raise fail(f"expected a mapping with {', '.join(REQUIRED)}; got {type(entry).__name__} {entry!r}")
    for key in entry:
        if key not in FIELDS:
            hint = HINTS.get(str(key), f"known fields: {', '.join(FIELDS)}")
            raise fail(f"unknown field {key!r}: {hint}")
    for key in REQUIRED:
        if entry.get(key) is None:
            raise fail(f"{key} is missing")
    for key in ("host", "user"):
        value = entry[key]
        if not isinstance(value, str) or not value.strip() or any(c.isspace() for c in value):
            raise fail(f"{key} must be a name without spaces, not {value!r}")
    port = entry.get("port", DEFAULT_PORT)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise fail(f"port must be a whole number from 1 to 65535, not {port!r}")
    reuse = entry.get("reuse", False)
    if not isinstance(reuse, bool):
        raise fail(f"reuse must be true or false, not {reuse!r}")
    key_problem, key_file = _key_file(entry["sshKeyFile"], path.parent)
    if key_problem:
        raise fail(f"sshKeyFile {key_problem}")
    python = entry["python"]
    if not isinstance(python, str) or not SAFE_PATH.fullmatch(python) or "//" in python:
        raise fail(f"python must be an absolute path on {host} without spaces or shell characters, like "
                   f"/home/{entry['user']}/venv/bin/python; got {python!r}")
    python = python.rstrip("/") or "/"
    if not PYTHON_NAME.fullmatch(posixpath.basename(python)):
        python = posixpath.join(python, "python3")  # a bin folder: venvs and /usr/bin both have python3
    return Machine(host=entry["host"], user=entry["user"], key_file=key_file, python=python, port=port, reuse=reuse)


def _key_file(value: Any, base: Path) -> tuple[str | None, Path]:
    """(the problem with it or None, the absolute path). Relative paths are from the machines file's folder."""
    if not isinstance(value, str) or not value.strip():
        return f"must be the path of a private key file, not {value!r}", Path()
    path = Path(value).expanduser()
    path = path if path.is_absolute() else (base / path)
    path = Path(os.path.abspath(path))
    if not path.exists():
        return f"{path} does not exist", path
    if not path.is_file():
        return f"{path} is not a file", path
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"{path} is not readable: {exc.strerror}", path
    if "PRIVATE KEY-----" not in text:
        hint = " (that is the public half; give the file without .pub)" if text.startswith(("ssh-", "ecdsa-")) else ""
        return f"{path} is not an SSH private key{hint}", path
    if _encrypted(text):
        return f"{path} is protected by a passphrase; use a key without one (ssh-keygen -N '')", path
    return None, path


def _encrypted(text: str) -> bool:
    """Whether a PEM or OpenSSH private key needs a passphrase (NNI cannot ask for one)."""
    if "ENCRYPTED" in text:  # PEM: "Proc-Type: 4,ENCRYPTED" or "BEGIN ENCRYPTED PRIVATE KEY"
        return True
    match = re.search(r"-----BEGIN OPENSSH PRIVATE KEY-----(.*?)-----END", text, re.S)
    if not match:
        return False
    try:
        blob = base64.b64decode("".join(match.group(1).split()))
    except ValueError:
        return False
    magic = b"openssh-key-v1\0"
    if not blob.startswith(magic) or len(blob) < len(magic) + 4:
        return False
    length = int.from_bytes(blob[len(magic):len(magic) + 4], "big")
    return blob[len(magic) + 4:len(magic) + 4 + length] != b"none"  # the cipher name


def shared(machines: list[Machine], source: str = "the machines") -> tuple[str, bool]:
    """The interpreter path and reuse mode all machines share (NNI has one trialCommand and one reuseMode)."""
    if not machines:
        raise ConfigError(f"{source} lists no machines")
    first = machines[0]
    for number, m in enumerate(machines[1:], start=2):
        if m.python != first.python:
            raise ConfigError(
                f"{source}: machine {number} ({m.host}) has python {m.python}, machine 1 ({first.host}) has "
                f"{first.python}; NNI runs one trial command on every machine, so all must use the same path "
                "(a symlink or the same venv location on each)")
        if m.reuse != first.reuse:
            raise ConfigError(f"{source}: machine {number} ({m.host}) has reuse {str(m.reuse).lower()}, machine 1 "
                              f"({first.host}) {str(first.reuse).lower()}; NNI's reuseMode is one for all machines")
    return first.python, first.reuse


def trial_python(machines: list[Machine]) -> str:
    """The interpreter's full path for trialCommand (nni.config.trial_command(fixed, python=...)).

    A full path, not `python`: the trial's shell can put another python first on PATH
    (a login profile, pyenv), and trials then fail with "No module named ...".
    """
    return shared(machines)[0]


def remote_training_service(machines: list[Machine], manager_ip: str | None = None) -> dict[str, Any]:
    """The experiment config's whole `trainingService` for these machines.

    `manager_ip` is the address the machines reach this computer at (NNI's nniManagerIp).
    NNI 3.0 tells the remote workers to connect back to ws://localhost:<port> without it,
    which only works when the "remote" machine is this one: give it, or use manager_ip_for().
    """
    _, reuse = shared(machines)
    service: dict[str, Any] = {"platform": "remote", "reuseMode": reuse,
                               "machineList": [m.to_nni() for m in machines]}
    if manager_ip is not None:
        service["nniManagerIp"] = manager_ip
    return service


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def manager_ip_for(machines: list[Machine]) -> str | None:
    """This computer's address on the route to the first non-loopback machine (None if all are loopback).

    Works out which local interface the kernel would use; sends nothing. Behind NAT or a
    tunnel the machines may need another address: then give it explicitly.
    """
    remote = [m for m in machines if not is_loopback(m.host)]
    if not remote:
        return None
    m = remote[0]
    try:
        family, _, _, _, address = socket.getaddrinfo(m.host, m.port, proto=socket.IPPROTO_UDP)[0]
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect(address)
            return probe.getsockname()[0]
    except OSError as exc:
        raise ConfigError(f"cannot find the address machine {m.host} reaches this computer at: {exc}") from None


def prepare_code_dir(code_dir: Path) -> Path:
    """Make NNI's trialCodeDirectory uploadable: NNI 3.0's remote upload fails on an empty folder
    ("TypeError: no files or directories specified" from tar, and the experiment stops)."""
    code_dir = Path(code_dir)
    code_dir.mkdir(parents=True, exist_ok=True)
    if not any(code_dir.iterdir()):
        (code_dir / CODE_PLACEHOLDER).write_text(
            "NNI uploads this folder to every remote machine as the trials' working directory.\n"
            "funcapprox's trials run the installed package (python -m funcapprox.nni.trial) and need nothing here.\n")
    return code_dir


# --- talking to the machines with OpenSSH's client ----------------------------------------------


def ssh_command(machine: Machine, remote_command: str, known_hosts: Path | None = None,
                timeout: float = 15) -> list[str]:
    """`ssh` argv for one command on the machine: key only, never a prompt.

    Logs in the way NNI (node's ssh2) does: the machine's host, port, user and key
    only, no ~/.ssh/config (aliases, ProxyJump) and no agent, so what works here works
    for NNI. Host keys: OpenSSH's usual check, a new host accepted and remembered (in
    `known_hosts` if given); NNI itself checks no host key at all.
    """
    options = ["-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
               "-o", f"ConnectTimeout={int(timeout)}",
               "-o", "StrictHostKeyChecking=accept-new", "-o", "LogLevel=ERROR"]
    if known_hosts is not None:
        options += ["-o", f"UserKnownHostsFile={known_hosts}"]
    return ["ssh", "-p", str(machine.port), "-i", str(machine.key_file), *options,
            f"{machine.user}@{machine.host}", remote_command]


def _ssh(machine: Machine, remote_command: str, known_hosts: Path | None, timeout: float,
         total: float | None = None) -> subprocess.CompletedProcess:
    """Run one command on the machine; its output as bytes. `timeout` to connect, `total` for all of it."""
    total = total or timeout * 4
    try:
        return subprocess.run(ssh_command(machine, remote_command, known_hosts, timeout), timeout=total,
                              stdin=subprocess.DEVNULL, capture_output=True)
    except FileNotFoundError:
        raise ExperimentError("the OpenSSH client (ssh) is not installed") from None
    except subprocess.TimeoutExpired:
        raise ExperimentError(f"{machine.address} did not finish within {total:.0f} s") from None


def _one_line(stderr: bytes) -> str:
    return " | ".join(line.strip() for line in stderr.decode(errors="replace").splitlines() if line.strip())


def _login_failure(machine: Machine, done: subprocess.CompletedProcess) -> ExperimentError:
    return ExperimentError(f"cannot log in to {machine.address} with {machine.key_file}: "
                           f"{_one_line(done.stderr) or 'ssh failed'}")


CHECK_SCRIPT = ("import importlib.util as u, sys; "
                "print(' '.join(m for m in ('nni', 'nni_node', 'torch', 'funcapprox') if u.find_spec(m) is None))")


def check_machine(machine: Machine, known_hosts: Path | None = None, timeout: float = 15) -> None:
    """Log in and check that the machine's python has what trials need (nni, torch, funcapprox).

    Seconds, where NNI takes half a minute to set a machine up before its first trial;
    and a trial that fails remotely leaves its error only on the remote machine.
    """
    command = f"{shlex.quote(machine.python)} -c {shlex.quote(CHECK_SCRIPT)}"
    done = _ssh(machine, command, known_hosts, timeout)
    if done.returncode == 255:
        raise _login_failure(machine, done)
    if done.returncode != 0:
        last = (done.stderr.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
        raise ExperimentError(f"{machine.python} does not run on {machine.host}: {last}")
    missing = done.stdout.decode().split()
    if missing:
        raise ExperimentError(f"{machine.python} on {machine.host} lacks {', '.join(missing)}: install nni==3.0, "
                              "torch and funcapprox into it")


# POSIX sh whatever the login shell; no output when the machine ran no trial of the experiment.
FETCH_SCRIPT = ('cd nni-experiments/{id} 2>/dev/null || exit 0; set -- environments/{prefix}*/trials; '
                '[ -d "$1" ] || exit 0; exec tar -cf - "$@"')

# A remote machine is not trusted: what its tar sends is spooled (within these limits), every member checked,
# and only then anything written. Trials leave kilobytes (a small MLP's weights, JSON, logs).
MAX_ARCHIVE_BYTES = 512 * 2**20  # one machine's whole archive
MAX_MEMBER_BYTES = 64 * 2**20  # one file in it
MAX_MEMBERS = 100_000  # files and folders in it
WORKER_NAME = re.compile(rf"{re.escape(ENV_PREFIX)}[0-9]{{1,9}}")  # any N: NNI numbers a restarted worker anew
CHUNK = 1 << 16
STDERR_KEPT = 64 * 1024
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def fetch_trials(machines: list[Machine], workdir: Path, exp_id: str, known_hosts: Path | None = None,
                 timeout: float = 15, total: float = 600) -> list[Path]:
    """Copy each machine's trial folders (weights, config, history, stdout/stderr) into the experiment's
    local folder, `<workdir>/<id>/environments/remote-worker<N>/trials/<trial>/`: where
    funcapprox.results looks for them (it maps NNI's recorded log path onto that folder).

    NNI copies nothing back; without this, results come from NNI's database alone (no
    weights for plot, no parameters.json, no failure reasons). reuse: false only.

    Each machine's archive is streamed into a temporary file (MAX_ARCHIVE_BYTES at most) and
    checked whole before anything is written: regular files and folders only, each inside
    environments/remote-worker<N>/trials/<trial>/, none over MAX_MEMBER_BYTES, none through a
    symbolic link here. A machine whose archive fails a check changes nothing; the others are
    still fetched, then one ExperimentError names every machine that failed and why.
    """
    from ..results import check_id

    check_id(exp_id)
    if shared(machines)[1]:
        raise ConfigError("trial files of reuse: true stay in /tmp/nni-experiments/<id>/trials/<trial>/nnioutput "
                          "on each machine; fetching them is supported for reuse: false only")
    target = Path(workdir) / exp_id
    if not target.is_dir():
        raise ExperimentError(f"no experiment folder {target}")
    command = f"sh -c {shlex.quote(FETCH_SCRIPT.format(id=exp_id, prefix=ENV_PREFIX))}"
    failures = []
    for m in machines:
        try:
            _fetch_machine(m, command, target, exp_id, known_hosts, timeout, total)
        except _NoSsh:
            raise ExperimentError("the OpenSSH client (ssh) is not installed") from None
        except ExperimentError as exc:
            failures.append(str(exc))
    if failures:
        raise ExperimentError("; ".join(failures))
    return sorted((target / "environments").glob(f"{ENV_PREFIX}*/trials/*"))


class _NoSsh(Exception):
    pass


class _Tail:
    """Drain a pipe in a thread (ssh must never block writing it), keeping its first STDERR_KEPT bytes."""

    def __init__(self, pipe) -> None:
        import threading

        self.data = b""
        self._pipe = pipe
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while chunk := self._pipe.read(CHUNK):
            if len(self.data) < STDERR_KEPT:
                self.data += chunk[:STDERR_KEPT - len(self.data)]

    def join(self) -> bytes:
        self._thread.join()
        return self.data


def _fetch_machine(m: Machine, command: str, target: Path, exp_id: str, known_hosts: Path | None,
                   timeout: float, total: float) -> None:
    """One machine's trial folders into `target`: ssh's output streamed through _receive."""
    import signal
    import threading

    try:
        process = subprocess.Popen(ssh_command(m, command, known_hosts, timeout), stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except FileNotFoundError:
        raise _NoSsh() from None
    stderr = _Tail(process.stderr)
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        process.kill()

    timer = threading.Timer(total, expire)
    timer.daemon = True
    timer.start()

    def finished() -> None:
        """After ssh's output ended, before anything is checked: did the remote tar finish well?"""
        code = process.wait()
        errors = stderr.join()
        if expired.is_set() and code == -signal.SIGKILL:
            raise ExperimentError(f"{m.address} did not finish within {total:.0f} s")
        if code == 255:
            raise _login_failure(m, subprocess.CompletedProcess(process.args, code, b"", errors))
        if code != 0:
            raise ExperimentError(f"cannot pack the trials of {exp_id} on {m.address}: "
                                  f"{_one_line(errors) or f'exit code {code}'}")

    try:
        _receive(process.stdout, target, f"of {exp_id} from {m.address}", finished=finished)
    finally:
        timer.cancel()
        if process.poll() is None:
            process.kill()  # refused while it was still sending
        process.wait()
        stderr.join()
        process.stdout.close()
        process.stderr.close()


def _receive(stream, target: Path, source: str, *, finished=None, max_archive: int | None = None,
             max_member: int | None = None, max_members: int | None = None) -> bool:
    """Spool a tar archive from `stream` (a pipe or file object), check every member, then unpack it into
    `target`; whether there was anything. `finished()`, if given, runs once the stream has ended and before any
    check (it raises if the sender failed). Any refusal is one ExperimentError naming `source` (the trial files
    <source>), the first bad member and what is wrong with it, and leaves `target` as it was."""
    import tarfile
    import tempfile

    max_archive = MAX_ARCHIVE_BYTES if max_archive is None else max_archive
    max_member = MAX_MEMBER_BYTES if max_member is None else max_member
    max_members = MAX_MEMBERS if max_members is None else max_members
    try:
        spool = tempfile.TemporaryFile(dir=target, prefix=".fetch-", suffix=".tar")  # O_TMPFILE: never named
    except OSError as exc:
        raise ExperimentError(f"cannot receive the trial files {source} in {target}: {exc}") from None
    with spool:
        size = 0
        while chunk := stream.read(CHUNK):
            size += len(chunk)
            if size > max_archive:
                raise ExperimentError(f"refused the trial files {source}: the archive is over the limit of "
                                      f"{_size(max_archive)}; nothing was written")
            try:
                spool.write(chunk)
            except OSError as exc:
                raise ExperimentError(f"cannot receive the trial files {source} in {target}: {exc}") from None
        if finished is not None:
            finished()
        if size == 0:
            return False  # the machine ran no trial of this experiment
        spool.flush()
        spool.seek(0)
        try:
            with tarfile.open(fileobj=spool, mode="r:") as archive:  # uncompressed only: no bombs
                members = _checked_members(archive, size, target, source, max_member, max_members)
                _extract(archive, members, target, source)
        except tarfile.TarError as exc:
            raise ExperimentError(f"refused the trial files {source}: not a tar archive ({exc}); "
                                  "nothing was written") from None
    return True


def _size(n: int) -> str:
    return f"{n / 2**20:g} MiB" if n >= 2**20 else f"{n} bytes"


def _checked_members(archive, size: int, target: Path, source: str, max_member: int, max_members: int) -> list:
    """Every member of the archive, each checked (see _member_problem); the first bad one refuses them all."""
    kinds: dict[tuple[str, ...], str] = {}  # what the archive makes of each path: file, folder, implied (a parent)
    here: dict[tuple[str, ...], str | None] = {}  # what is at each path on disk now
    members = []
    while True:
        member = archive.next()
        if member is None:
            return members
        if len(members) == max_members:
            raise ExperimentError(f"refused the trial files {source}: more than {max_members} files and folders; "
                                  "nothing was written")
        problem = _member_problem(member, size, max_member, kinds, here, target)
        if problem:
            raise ExperimentError(f"refused the trial files {source}: member {member.name!r} {problem}; "
                                  "nothing was written")
        members.append(member)


def _member_problem(member, size: int, max_member: int, kinds: dict, here: dict, target: Path) -> str | None:
    """What is wrong with one member of a remote archive, or None; records it in `kinds` if nothing is."""
    import tarfile

    from ..results import ID_PATTERN

    if member.type == tarfile.SYMTYPE:
        return f"is a symbolic link (to {member.linkname!r})"
    if member.type == tarfile.LNKTYPE:
        return f"is a hard link (to {member.linkname!r})"
    if member.type in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        return "is a device node"
    if member.type == tarfile.FIFOTYPE:
        return "is a FIFO"
    if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE):
        return f"is of tar type {member.type!r}, not a regular file or a folder"
    is_dir = member.type == tarfile.DIRTYPE
    name = member.name
    if not name:
        return "has an empty name"
    if any(c in "\0\\" or ord(c) < 32 or ord(c) == 127 for c in name):
        return "has a NUL, backslash or control character in its name"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "has a name that is not UTF-8"
    if name.startswith("/"):
        return "has an absolute name"
    parts = tuple(name.split("/"))
    if ".." in parts:
        return "has a '..' component"
    if "" in parts or "." in parts:
        return "has an empty or '.' component"
    if len(name.encode()) > 1024 or any(len(p.encode()) > 255 for p in parts):
        return "has a name too long"
    inside = (len(parts) >= 3 and parts[0] == "environments" and WORKER_NAME.fullmatch(parts[1])
              and parts[2] == "trials")
    if not inside or (len(parts) < 5 and not is_dir):  # folders trials/ and trials/<trial>, files in those
        return f"is not inside environments/{ENV_PREFIX}<N>/trials/<trial>/"
    if len(parts) >= 4 and not ID_PATTERN.fullmatch(parts[3]):
        return f"is in {parts[3]!r}, which is not a trial id (letters, digits, - and _ only)"
    return _placement_problem(member, parts, is_dir, size, max_member, kinds, here, target)


def _placement_problem(member, parts: tuple[str, ...], is_dir: bool, size: int, max_member: int, kinds: dict,
                       here: dict, target: Path) -> str | None:
    if is_dir and member.size:
        return "is a folder with data"
    if member.size > max_member:
        return f"is {member.size} bytes, over the limit of {_size(max_member)} per file"
    if member.offset_data + member.size > size:
        return "is cut short (the archive ends inside it)"
    for i in range(1, len(parts)):
        if kinds.get(parts[:i]) == "file":
            return f"lies inside {'/'.join(parts[:i])!r}, a file in the same archive"
    seen = kinds.get(parts)
    if seen is not None and not (seen == "implied" and is_dir):
        return "appears twice in the archive" if seen != "implied" else "is a file, and other members lie inside it"
    for i in range(1, len(parts) + 1):
        if parts[:i] not in here:
            here[parts[:i]] = _what_is_at(target.joinpath(*parts[:i]))
        found = here[parts[:i]]
        rel = "/".join(parts[:i])
        if found == "link":
            return f"would be written through {rel!r}, a symbolic link here"
        wanted = "folder" if i < len(parts) or is_dir else "file"
        if found is not None and found != wanted:
            return f"would replace {rel!r}, which is a {found} here"
    for i in range(1, len(parts)):
        kinds.setdefault(parts[:i], "implied")
    kinds[parts] = "folder" if is_dir else "file"
    return None


def _what_is_at(path: Path) -> str | None:
    import stat

    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"path that cannot be examined ({exc.strerror})"
    if stat.S_ISLNK(mode):
        return "link"
    if stat.S_ISDIR(mode):
        return "folder"
    return "file" if stat.S_ISREG(mode) else "special file"


def _extract(archive, members: list, target: Path, source: str) -> None:
    """Write checked members under `target`. Folders are created (mode from the umask), never entered through a
    symbolic link (O_NOFOLLOW at every step, in case the folder changed since the check); files are written to a
    temporary name beside their place, with the umask's mode, then renamed over it."""
    dirs: dict[tuple[str, ...], int] = {}
    try:
        dirs[()] = os.open(target, _OPEN_DIR)
        for member in members:
            parts = tuple(member.name.split("/"))
            if member.isdir():
                _dir_fd(dirs, parts)
            else:
                _write_file(_dir_fd(dirs, parts[:-1]), parts[-1], archive.extractfile(member), member.size)
    except OSError as exc:
        raise ExperimentError(f"cannot unpack the trial files {source} into {target}: {exc}") from None
    finally:
        for fd in dirs.values():
            os.close(fd)


def _dir_fd(dirs: dict[tuple[str, ...], int], parts: tuple[str, ...]) -> int:
    if parts in dirs:
        return dirs[parts]
    parent = _dir_fd(dirs, parts[:-1])
    try:
        fd = os.open(parts[-1], _OPEN_DIR, dir_fd=parent)
    except FileNotFoundError:
        os.mkdir(parts[-1], 0o777, dir_fd=parent)
        fd = os.open(parts[-1], _OPEN_DIR, dir_fd=parent)
    dirs[parts] = fd
    return fd


def _write_file(dir_fd: int, name: str, data, size: int) -> None:
    import secrets
    import stat

    try:
        if not stat.S_ISREG(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
            raise OSError(f"{name} is no longer a regular file here")
    except FileNotFoundError:
        pass
    temp = f".fetch-{secrets.token_hex(8)}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666, dir_fd=dir_fd)
    try:
        with os.fdopen(fd, "wb") as out:
            left = size
            while left:
                chunk = data.read(min(CHUNK, left))
                if not chunk:
                    raise OSError(f"the archive ends inside {name}")
                out.write(chunk)
                left -= len(chunk)
        os.replace(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        try:
            os.unlink(temp, dir_fd=dir_fd)
        except OSError:
            pass
        raise
