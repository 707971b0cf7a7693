"""Helpers for the search-side tests (space, nniconfig, trial, results, search CLI).

Plain functions and classes, not fixtures: each test module wraps what it needs in its own
small fixture, so nothing here depends on (or changes) tests/conftest.py.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent / "data"
RECORDED = DATA / "recorded"  # a work folder holding one experiment recorded by a real NNI 3.0 run
RECORDED_ID = "wrxauyqz"
SUCCEEDED = ("ud7Qq", "wcNBM")  # Sigmoid lr 0.01 and Tanh lr 0.01
FAILED = ("njzKx", "E3Yy2")  # lr 1e6: diverged at epoch 5
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# The recorded files name no folder of the machine they were recorded on: these placeholders
# stand where NNI wrote its work folder and the trial's interpreter, and a copy fills them in.
PLACEHOLDERS = ("@WORKDIR@", "@PYTHON@")
TEXT_FILES = ("funcapprox/run.json", "funcapprox/config.yml")
STORE_COLUMNS = {"TrialJobEvent": ("data", "logPath"), "ExperimentProfile": ("params", "logDir")}


def copy_recorded(tmp_path: Path, name: str = "workdir") -> Path:
    """A private copy of the recorded work folder, its placeholders pointing into the copy:
    tests read and write only the copy."""
    workdir = tmp_path / name
    shutil.copytree(RECORDED, workdir)
    values = dict(zip(PLACEHOLDERS, (str(workdir), sys.executable)))

    def fill(text: str) -> str:
        for placeholder, value in values.items():
            text = text.replace(placeholder, value)
        return text

    for text_file in TEXT_FILES:
        path = workdir / RECORDED_ID / text_file
        path.write_text(fill(path.read_text()))
    with contextlib.closing(sqlite3.connect(workdir / RECORDED_ID / "db" / "nni.sqlite")) as store, store:
        for table, columns in STORE_COLUMNS.items():
            for column in columns:
                store.execute(f"UPDATE {table} SET {column} = replace(replace({column}, ?, ?), ?, ?)",
                              [item for pair in values.items() for item in pair])
    (workdir / ".trial-code").mkdir(exist_ok=True)  # NNI's trialCodeDirectory, as the recording run had it
    return workdir


def trial_folder(workdir: Path, trial_id: str) -> Path:
    return workdir / RECORDED_ID / "environments" / "local-env" / "trials" / trial_id


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
