"""Running the real thing in tests: `funcapprox` as a user runs it, NNI managers that never
outlive a test, NNI's own GridSearchTuner, NNI's trial channel in miniature, and what a port
listens on.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from funcapprox.nni.manager import manager_status
from funcapprox.results import experiment_ids, read_meta


def funcapprox(*args: str, workdir: Path, timeout: float = 300, env: dict[str, str] | None = None,
               ) -> subprocess.CompletedProcess:
    env = {**os.environ, "FUNCAPPROX_WORKDIR": str(workdir), **(env or {})}
    return subprocess.run([sys.executable, "-m", "funcapprox", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=workdir.parent)


def nni_workdir(tmp_path: Path):
    """A work folder whose experiments are all stopped afterwards; no NNI manager may outlive it."""
    folder = tmp_path / "experiments"
    yield folder
    from funcapprox.nni.manager import stop

    for exp_id in experiment_ids(folder):
        stop(exp_id, folder)
    assert not nni_processes(folder), "an NNI manager outlived the test"


def manager_answers(workdir: Path, exp_id: str) -> str | None:
    """The status from the experiment's manager at the port and secret prefix it was started with."""
    meta = read_meta(workdir / exp_id)
    return manager_status(meta["port"], meta["url_prefix"])


def nni_processes(workdir: Path) -> list[str]:
    """Command lines of NNI managers of `workdir`, read from /proc (`ps` cuts long lines when its width
    is not known, and a manager's command line is long)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            line = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "nni_node/main.js" in line and str(workdir) in line:
            found.append(line)
    return found


def write_space(path: Path, space: dict) -> Path:
    path.write_text(json.dumps(space))
    return path


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


LOOPBACK = {"127.0.0.1", "::1"} if _ipv6_loopback() else {"127.0.0.1"}


def listening_addresses(port: int) -> set[str]:
    """Every local address a TCP socket listens on at `port`, as the kernel lists them."""
    found = set()
    for table, width in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, _, state = line.split()[1:4]
            address, hex_port = local.split(":")
            if state != "0A" or int(hex_port, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(address)
            # /proc prints each 32-bit word in host (little-endian) order
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, width, 4))
            found.add(str(ipaddress.ip_address(raw)))
    return found


def grid_schedule(space: dict[str, Any]) -> list[dict[str, Any]]:
    """Every parameter set NNI 3.0's own GridSearchTuner hands out for `space`, in order."""
    from nni.algorithms.hpo.gridsearch_tuner import GridSearchTuner

    tuner = GridSearchTuner()
    tuner.update_search_space(space)
    scheduled = []
    for parameter_id in range(100_000):  # far above any grid here: a tuner that never stops fails the test
        try:
            scheduled.append(tuner.generate_parameters(parameter_id))
        except Exception as exc:  # NoMoreTrialError: the grid is exhausted
            if type(exc).__name__ != "NoMoreTrialError":
                raise
            return scheduled
    raise AssertionError("GridSearchTuner never ran out of parameters")


class ChannelServer:
    """NNI 3.0's trial command channel, server side, in miniature (ts/nni_manager/common/command_channel/http.ts).

    PUT stores the command the trial sends. GET answers 408 ("nothing yet, poll again")
    `polls_before_reply` times before it delivers the parameter reply to a
    request_parameter, and 410 ("closed") once `close()` was called or nothing is left to send.
    """

    def __init__(self, parameters: Any = None, parameter_id: int = 7, polls_before_reply: int = 2) -> None:
        self.parameters = parameters
        self.parameter_id = parameter_id
        self.polls_before_reply = polls_before_reply
        self.received: list[dict[str, Any]] = []  # commands the trial PUT, decoded
        self.put_content_types: list[str | None] = []
        self.get_statuses: list[int] = []  # what each GET was answered
        self.closed = False
        self._outbox: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/"

    def start(self) -> ChannelServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def close(self) -> None:
        with self._lock:
            self.closed = True

    def metrics(self) -> list[dict[str, Any]]:
        """The metric commands received, with their JSON text decoded once (the value stays text)."""
        return [json.loads(c["metric"]) for c in self.received if c.get("type") == "metric"]

    def _reply_for(self, command: dict[str, Any]) -> None:
        if command.get("type") == "request_parameter" and self.parameters is not None:
            record = {"parameter_id": self.parameter_id, "parameter_source": "algorithm",
                      "parameters": self.parameters, "parameter_index": 0}
            self._outbox.append({"type": "parameter", "parameter": json.dumps(record)})

    def _next(self) -> tuple[int, bytes]:
        with self._lock:
            if self.closed:
                status, body = 410, b""
            elif self._outbox and self.polls_before_reply > 0:
                self.polls_before_reply -= 1
                status, body = 408, b""
            elif self._outbox:
                status, body = 200, json.dumps(self._outbox.pop(0)).encode()
            elif sum(1 for s in self.get_statuses if s == 408) > 50:
                status, body = 410, b""  # a client stuck polling for nothing: end it rather than hang the test
            else:
                status, body = 408, b""
            self.get_statuses.append(status)
            return status, body

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                command = json.loads(self.rfile.read(length))
                with server._lock:
                    server.received.append(command)
                    server.put_content_types.append(self.headers.get("Content-Type"))
                    server._reply_for(command)
                self._answer(200, b"")

            def do_GET(self) -> None:  # noqa: N802
                self._answer(*server._next())

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                if body:
                    self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # keep the test output clean
                pass

        return Handler
