"""A throw-away OpenSSH server on 127.0.0.1 for tests of NNI's remote (SSH) training service.

Debian's openssh-server (`/usr/sbin/sshd`, installed by `scripts/setup --dev`) runs in
the foreground with a configuration of its own: a free high port on loopback only, its
own host key, and one authorized ed25519 client key, all generated into a temporary
folder. Only that key logs in (no passwords, no PAM), as the user running the tests.
Everything stops when the `with` block ends, on failure too.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

SSHD = Path("/usr/sbin/sshd")  # sshd refuses to start unless run by its absolute path
PRIVSEP_DIR = Path("/run/sshd")  # sshd will not start without it; the package does not create it outside systemd


@dataclass(frozen=True)
class SshServer:
    host: str
    port: int
    user: str
    key_file: Path  # the authorized client's private key (ed25519, no passphrase)
    folder: Path  # config, keys, pid file and sshd's log

    @property
    def log(self) -> str:
        return (self.folder / "sshd.log").read_text(errors="replace")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "funcapprox-test", "-f", str(path)],
                   check=True, capture_output=True, timeout=30)


def _config(folder: Path, port: int, user: str) -> str:
    return "\n".join([
        "ListenAddress 127.0.0.1",
        f"Port {port}",
        f"HostKey {folder / 'host_key'}",
        f"AuthorizedKeysFile {folder / 'authorized_keys'}",
        f"PidFile {folder / 'sshd.pid'}",
        f"AllowUsers {user}",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",  # PAM would want /etc/pam.d/sshd and a real login session
        "StrictModes no",  # pytest's tmp folders are not what sshd expects of a home's key files
        "PermitRootLogin prohibit-password",  # tests run as root here; keys only, as for everyone else
        "Subsystem sftp internal-sftp",  # NNI uploads the trial code and its launcher config over SFTP
        "LogLevel VERBOSE",
        "",
    ])


def _wait_for_port(process: subprocess.Popen, port: int, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sshd exited with code {process.returncode}: {log.read_text(errors='replace')}")
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"sshd did not accept connections on port {port} within {timeout} s: "
                       f"{log.read_text(errors='replace')}")


def _stop(process: subprocess.Popen) -> None:
    """End sshd and the session processes it forked (they share its process group)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@contextlib.contextmanager
def ssh_server(folder: Path | None = None, start_timeout: float = 15) -> Iterator[SshServer]:
    """Start sshd on 127.0.0.1 at a free port; skip the calling test if openssh-server is not installed."""
    if not SSHD.exists():
        import pytest

        pytest.skip(f"{SSHD} is missing: install openssh-server (scripts/setup --dev does)")
    with contextlib.ExitStack() as cleanup:
        if folder is None:
            folder = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="funcapprox-sshd-")))
        folder.mkdir(parents=True, exist_ok=True)
        user = getpass.getuser()
        _keygen(folder / "host_key")
        _keygen(folder / "client_key")
        (folder / "authorized_keys").write_text((folder / "client_key.pub").read_text())
        with contextlib.suppress(OSError):
            PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
        log = folder / "sshd.log"
        for attempt in range(3):  # another process may take the free port before sshd binds it
            port = _free_port()
            config = folder / "sshd_config"
            config.write_text(_config(folder, port, user))
            with log.open("w") as log_out:
                process = subprocess.Popen([str(SSHD), "-f", str(config), "-D", "-e"], stdin=subprocess.DEVNULL,
                                           stdout=log_out, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                _wait_for_port(process, port, log, start_timeout)
                break
            except RuntimeError:
                _stop(process)
                if attempt == 2 or "Address already in use" not in log.read_text(errors="replace"):
                    raise
        cleanup.callback(_stop, process)
        yield SshServer("127.0.0.1", port, user, folder / "client_key", folder)
