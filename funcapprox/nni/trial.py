"""The NNI trial entry point: `python -m funcapprox.nni.trial --set func=oscillator …`.

Hot path: NNI starts this as a fresh process for every trial. It speaks NNI 3.0's
HTTP trial protocol itself (the whole client is two requests) instead of importing
`nni`, which costs about two seconds of start-up (pandas, scipy) per trial. When
NNI did not provide the HTTP channel (another NNI version or platform) it falls
back to the `nni` package.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from ..artifacts import RECEIVED_FILE
from ..config import TrainConfig, params_to_settings, read_set_pairs
from ..errors import ConfigError
from .channel import connect


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
    extra = ("metric_spread", "max_error_worst", "max_error_best", "max_errors",  # with several seeds
             "train_rms", "train_max_error")  # a data file: the error on the points it trained on
    return final | {k: s[k] for k in extra if k in s}


class TrialStopped(Exception):
    """The process that asked for this trial went away (see funcapprox.nni.warm)."""


class Rejected(Exception):
    """NNI sent parameters that make no valid configuration (failure.json says why)."""


def receive(fixed: dict[str, Any], channel, output_dir: Path) -> TrainConfig:
    """Ask NNI for this trial's parameters, record what arrived, and resolve the configuration."""
    from ..artifacts import write_json

    params = channel.parameters()
    # NNI 3.0 can record another trial's parameters for this one when trials start together;
    # this file says what this trial really received (funcapprox results reads it).
    write_json(output_dir / RECEIVED_FILE, {"parameter_id": getattr(channel, "parameter_id", None),
                                            "parameters": params, "received_at": time.time()})
    try:
        return resolve(fixed, params)
    except ConfigError as exc:
        write_json(output_dir / "failure.json", {"reason": str(exc), "parameters": params})
        raise Rejected(f"funcapprox trial: rejected parameters: {exc}") from None


# Epochs between the intermediate results sent to NNI (and the last evaluation): each is a message through
# the manager, a row in its store and a call of its tuner and assessor, and a search sends tens of thousands
# at every evaluation (EVAL_EVERY). The trial's history.json keeps every evaluation.
REPORT_EVERY = 50


def reports(evaluation, epochs: int) -> bool:
    """Whether `evaluation` goes to NNI as an intermediate result."""
    return math.isfinite(evaluation.metric) and (evaluation.epoch % REPORT_EVERY == 0 or evaluation.epoch == epochs)


def reported_epochs(evaluated: list[int], epochs: int, count: int) -> list[int]:
    """The epochs of a trial's `count` intermediate results, from the epochs it evaluated at: one in
    REPORT_EVERY, or every one (experiments recorded before REPORT_EVERY)."""
    sparse = [e for e in evaluated if e % REPORT_EVERY == 0 or e == epochs]
    return sparse if count == len(sparse) else evaluated[:count]


def reporter(channel, epochs: int, should_stop=None):
    """train's on_eval for a trial: its intermediate results to NNI, TrialStopped once `should_stop()` says so."""
    def report(evaluation) -> None:
        if should_stop is not None and should_stop():
            raise TrialStopped
        if reports(evaluation, epochs):
            channel.intermediate(evaluation.metric)

    return report


def finish(result, channel, output_dir: Path, seconds: float, where: str) -> tuple[int, str]:
    """Save a trained trial's files and send NNI its final result: the exit code, and the line to print
    (on standard output when the code is 0, else on standard error)."""
    from ..artifacts import save_run, write_json

    save_run(output_dir, result)
    if not result.ok:
        write_json(output_dir / "failure.json", {"reason": result.diverged, "metric": result.metric})
        return 1, f"funcapprox trial: {result.diverged}"
    channel.final(final_result(result))
    return 0, (f"funcapprox trial: {result.config.arch} metric {result.metric:.4f} max error "
               f"{result.summary()['max_error']:.5f} ({seconds:.2f} s {where})")


def run(fixed: dict[str, Any], channel, output_dir: Path, should_stop=None, batched: bool = False) -> int:
    """`batched`: the stage batches its trials (gather.py), so this one trains as a batched step of its own,
    which computes what it would beside the others: where a trial ran never changes its numbers."""
    if batched:
        from ..group import train_one as train
    else:
        from ..train import train

    started = time.perf_counter()
    try:
        config = receive(fixed, channel, output_dir)
    except Rejected as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        result = train(config, on_eval=reporter(channel, config.epochs, should_stop))
    except TrialStopped:
        return 1
    where = "in a warm worker" if should_stop is not None else "in its own process"
    code, line = finish(result, channel, output_dir, time.perf_counter() - started, where)
    print(line, file=sys.stdout if code == 0 else sys.stderr)
    return code


def main(argv: list[str] | None = None, should_stop=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m funcapprox.nni.trial", description=__doc__.splitlines()[0])
    parser.add_argument("--set", dest="fixed", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting fixed for every trial of the stage")
    parser.add_argument("--warm", metavar="SOCKET", help="hand the trial to this warm worker if it answers")
    parser.add_argument("--batched", action="store_true",
                        help="the stage's trials train in batched steps: train as one (of one) here too")
    args = parser.parse_args(argv)
    if args.warm:
        from .warm import delegate

        # only what the worker accepts
        code = delegate(args.warm, [f"--set={pair}" for pair in args.fixed] + (["--batched"] if args.batched else []))
        if code is not None:
            return code
    output_dir = Path(os.environ.get("NNI_OUTPUT_DIR", "."))
    try:
        fixed = read_set_pairs(args.fixed)
    except ConfigError as exc:
        print(f"funcapprox trial: {exc}", file=sys.stderr)
        return 2
    return run(fixed, connect(), output_dir, should_stop, args.batched)


if __name__ == "__main__":
    sys.exit(main())
