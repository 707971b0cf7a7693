"""The NNI trial entry point: `python -m funcapprox.trial --set func=oscillator …`.

Hot path: NNI starts this as a fresh process for every trial. It speaks NNI 3.0's
HTTP trial protocol itself (the whole client is two requests) instead of importing
`nni`, which costs about two seconds of start-up (pandas, scipy) per trial. When
NNI did not provide the HTTP channel (another NNI version or platform) it falls
back to the `nni` package.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

from .artifacts import RECEIVED_FILE
from .config import TrainConfig
from .errors import ConfigError
from .space import params_to_settings

CHANNEL_VARIABLE = "NNI_TRIAL_COMMAND_CHANNEL"


class HttpTrialChannel:
    """NNI 3.0's trial command channel (nni/runtime/trial_command_channel/v3.py) over plain HTTP."""

    def __init__(self, url: str) -> None:
        self.url = url
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
            "trial_job_id": os.environ.get("NNI_TRIAL_JOB_ID"),
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


def parse_fixed(pairs: list[str]) -> dict[str, Any]:
    """`--set key=value` pairs; values are JSON where they parse as JSON, text otherwise."""
    fixed: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep:
            raise ConfigError(f"--set needs key=value, got {pair!r}")
        try:
            fixed[key.strip()] = json.loads(text)
        except (ValueError, RecursionError):  # not JSON, a number over 4,300 digits, or nested too deep
            fixed[key.strip()] = text
    return fixed


def resolve(fixed: dict[str, Any], params: Any) -> TrainConfig:
    """The stage's fixed settings with the tuner's parameters on top, checked in full."""
    # None: NNI sent no parameters; anything else that is not an object ([], 0, "") is rejected
    settings = params_to_settings({} if params is None else params, "the parameters NNI sent")
    return TrainConfig.from_dict({**fixed, **settings}, source="the trial's settings")


def final_result(result) -> dict[str, Any]:
    """NNI's final result: `default` is the study's metric; the rest show in the web UI."""
    s = result.summary()
    final = {"default": s["metric"], "rms": s["rms"], "max_error": s["max_error"],
             "max_error_x": s["max_error_x"], "n_params": s["n_params"], "seconds": s["seconds"]}
    extra = ("metric_spread", "max_error_worst", "max_error_best")  # with several seeds
    return final | {k: s[k] for k in extra if k in s}


class TrialStopped(Exception):
    """The process that asked for this trial went away (see funcapprox.warm)."""


def run(fixed: dict[str, Any], channel, output_dir: Path, should_stop=None) -> int:
    from .artifacts import save_run, write_json
    from .train import train

    started = time.perf_counter()
    params = channel.parameters()
    # NNI 3.0 can record another trial's parameters for this one when trials start together;
    # this file says what this trial really received (funcapprox results reads it).
    write_json(output_dir / RECEIVED_FILE, {"parameter_id": getattr(channel, "parameter_id", None),
                                            "parameters": params, "received_at": time.time()})
    try:
        config = resolve(fixed, params)
    except ConfigError as exc:
        write_json(output_dir / "failure.json", {"reason": str(exc), "parameters": params})
        print(f"funcapprox trial: rejected parameters: {exc}", file=sys.stderr)
        return 2

    def report(evaluation) -> None:
        if should_stop is not None and should_stop():
            raise TrialStopped
        if math.isfinite(evaluation.metric):
            channel.intermediate(evaluation.metric)

    try:
        result = train(config, on_eval=report)
    except TrialStopped:
        return 1
    save_run(output_dir, result)
    if not result.ok:
        write_json(output_dir / "failure.json", {"reason": result.diverged, "metric": result.metric})
        print(f"funcapprox trial: {result.diverged}", file=sys.stderr)
        return 1
    channel.final(final_result(result))
    where = "in a warm worker" if should_stop is not None else "in its own process"
    print(f"funcapprox trial: {config.arch} metric {result.metric:.4f} max error {result.summary()['max_error']:.5f} "
          f"({time.perf_counter() - started:.2f} s {where})")
    return 0


def main(argv: list[str] | None = None, should_stop=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m funcapprox.trial", description=__doc__.splitlines()[0])
    parser.add_argument("--set", dest="fixed", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting fixed for every trial of the stage")
    parser.add_argument("--warm", metavar="SOCKET", help="hand the trial to this warm worker if it answers")
    args = parser.parse_args(argv)
    if args.warm:
        from .warm import delegate

        code = delegate(args.warm, [f"--set={pair}" for pair in args.fixed])  # only what the worker accepts
        if code is not None:
            return code
    output_dir = Path(os.environ.get("NNI_OUTPUT_DIR", "."))
    try:
        fixed = parse_fixed(args.fixed)
    except ConfigError as exc:
        print(f"funcapprox trial: {exc}", file=sys.stderr)
        return 2
    return run(fixed, connect(), output_dir, should_stop)


if __name__ == "__main__":
    sys.exit(main())
