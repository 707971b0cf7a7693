"""NNI 3.0's trial command channel: the whole client a trial needs (parameters in, metrics out).

Hot path: every trial process speaks it. It is plain HTTP (nni/runtime/trial_command_channel/v3.py
and nni/runtime/command_channel/http.py), so the trial need not import `nni`, which costs about
two seconds of start-up (pandas, scipy); when NNI did not provide the HTTP channel (another
NNI version or platform) it falls back to the `nni` package.
"""

from __future__ import annotations

import http.client
import json
import os
import urllib.parse
from typing import Any

CHANNEL_VARIABLE = "NNI_TRIAL_COMMAND_CHANNEL"


class HttpTrialChannel:
    """NNI 3.0's trial command channel (nni/runtime/trial_command_channel/v3.py) over plain HTTP."""

    def __init__(self, url: str, trial_job_id: str | None = None) -> None:
        self.url = url
        # A warm worker's batched group speaks for several trials: each channel names its own.
        self.trial_job_id = trial_job_id if trial_job_id is not None else os.environ.get("NNI_TRIAL_JOB_ID")
        parts = urllib.parse.urlsplit(url)
        self.host, self.port = parts.hostname, parts.port or 80
        self.path = parts.path or "/"
        self.parameter_id: Any = None
        self.sequence = 0
        self._connection: http.client.HTTPConnection | None = None

    def _request(self, method: str, body: bytes | None = None) -> tuple[int, bytes]:
        """One request on a kept-alive connection (a trial sends ~200 metrics); reconnect once if it dropped."""
        headers = {"Content-Type": "application/json"} if body is not None else {}
        for attempt in (1, 2):
            if self._connection is None:
                self._connection = http.client.HTTPConnection(self.host, self.port, timeout=120)
            try:
                self._connection.request(method, self.path, body=body, headers=headers)
                response = self._connection.getresponse()
                return response.status, response.read()
            except (http.client.HTTPException, OSError):
                self._connection.close()
                self._connection = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _send(self, command: dict) -> None:
        status, _ = self._request("PUT", json.dumps(command).encode())
        if status >= 300:
            raise ConnectionError(f"NNI's trial channel answered {status} to a {command.get('type')} command")

    def _receive(self) -> dict | None:
        while True:
            status, body = self._request("GET")
            if status == 200:
                return json.loads(body)
            if status == 408:  # nothing yet: poll again
                continue
            if status == 410:  # channel closed
                return None
            raise ConnectionError(f"NNI's trial channel answered {status}")

    def parameters(self) -> Any:
        self._send({"type": "request_parameter"})
        reply = self._receive()
        if reply is None or reply.get("type") != "parameter":
            raise ConnectionError(f"NNI sent no parameters (reply: {reply!r})")
        record = json.loads(reply["parameter"])
        self.parameter_id = record.get("parameter_id")
        return record.get("parameters")

    def _metric(self, kind: str, value: Any, sequence: int) -> None:
        metric = {
            "parameter_id": self.parameter_id,
            "trial_job_id": self.trial_job_id,
            "type": kind,
            "sequence": sequence,
            "value": json.dumps(value),
        }
        self._send({"type": "metric", "metric": json.dumps(metric)})

    def intermediate(self, value: float) -> None:
        self._metric("PERIODICAL", value, self.sequence)
        self.sequence += 1

    def final(self, value: dict) -> None:
        self._metric("FINAL", value, 0)


class NniPackageChannel:
    """The same three calls through the `nni` package, for when the HTTP channel is absent."""

    def __init__(self) -> None:
        import nni

        self.nni = nni

    def parameters(self) -> Any:
        return self.nni.get_next_parameter()

    def intermediate(self, value: float) -> None:
        self.nni.report_intermediate_result(value)

    def final(self, value: dict) -> None:
        self.nni.report_final_result(value)


def connect():
    url = os.environ.get(CHANNEL_VARIABLE, "")
    return HttpTrialChannel(url) if url.startswith("http://") else NniPackageChannel()
