"""Train one configuration and measure it the study's way; knows nothing of NNI or the CLI."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from .config import TrainConfig
from .engine import FlatMLP, make_optimizer
from .model import MLP, build_model
from .targets import grid, target

EVAL_EVERY = 5  # epochs between evaluations, as in the study
FINAL_WINDOW = 5  # the final metric is the minimum of this many last evaluations
METRIC_POINTS = 101  # x = 0, 0.01, …, 1.0: the study's grid plus x = 1.0, where square's error peaks
FINE_POINTS = 1001  # max error is read here so a kink of the oscillator cannot hide between points


@dataclass(frozen=True)
class Evaluation:
    epoch: int
    metric: float  # -log10(RMS error) on the metric grid; higher is better
    rms: float
    max_error: float  # on the fine grid
    max_error_x: float


@dataclass
class TrainResult:
    config: TrainConfig
    model: MLP
    history: list[Evaluation] = field(default_factory=list)
    seconds: float = 0.0  # wall time of the training loop, evaluations included
    steps: int = 0  # optimizer steps taken
    diverged: str | None = None  # why training stopped early, if it did

    @property
    def ok(self) -> bool:
        return self.diverged is None

    @property
    def metric(self) -> float | None:
        """The study's final result: the worst of the last FINAL_WINDOW evaluations."""
        finite = [e.metric for e in self.history if math.isfinite(e.metric)]
        return min(finite[-FINAL_WINDOW:]) if finite else None

    @property
    def last(self) -> Evaluation | None:
        return self.history[-1] if self.history else None

    def summary(self) -> dict:
        """The final figures as plain JSON-ready data."""
        last = self.last
        finite = last is not None and math.isfinite(last.rms)
        return {
            "status": "ok" if self.ok else "diverged",
            "reason": self.diverged,
            "metric": self.metric,
            "rms": last.rms if finite else None,
            "max_error": last.max_error if finite else None,
            "max_error_x": last.max_error_x if finite else None,
            "n_params": self.config.n_params,
            "epochs": last.epoch if last else 0,
            "steps": self.steps,
            "seconds": round(self.seconds, 3),
        }


class Evaluator:
    """Scores a network against its target on the fixed grids."""

    def __init__(self, func: str) -> None:
        self.x = grid(FINE_POINTS)
        self.truth = target(func)(self.x)
        self.stride = (FINE_POINTS - 1) // (METRIC_POINTS - 1)  # metric grid = every 10th fine point

    @torch.no_grad()
    def __call__(self, forward: Callable[[torch.Tensor], torch.Tensor], epoch: int) -> Evaluation:
        error = forward(self.x) - self.truth
        rms = error[:: self.stride].square().mean().sqrt().item()
        abs_error = error.abs()
        worst = int(abs_error.argmax())
        metric = -math.log10(rms) if rms > 0 else math.inf
        if not math.isfinite(rms):
            metric = math.nan
        return Evaluation(epoch, metric, rms, abs_error[worst].item(), self.x[worst].item())


def train(
    config: TrainConfig,
    on_eval: Callable[[Evaluation], None] | None = None,
    threads: int | None = 1,
) -> TrainResult:
    """Train `config` from its seed; call `on_eval` after each evaluation.

    One thread by default: the matrices are tiny, and trials run side by side.
    Divergence (a non-finite output) stops training and is recorded, not raised.
    """
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(config.seed)  # model init
    model = build_model(config)
    data_rng = torch.Generator().manual_seed(config.seed)
    net = FlatMLP(model, config.loss)
    optimizer = make_optimizer(config.optimizer, net.params, config.lr)
    evaluate = Evaluator(config.func)
    result = TrainResult(config, model)

    f = target(config.func)
    start = time.perf_counter()
    with torch.inference_mode():  # no autograd bookkeeping: the backward pass is written out
        for epoch in range(1, config.epochs + 1):
            x = torch.rand(config.samples, 1, generator=data_rng)  # a fresh epoch, drawn at once
            for xb, yb in zip(x.split(config.batch), f(x).split(config.batch)):
                net.backward(xb, yb)
                optimizer.step(net.grads)
            result.steps += math.ceil(config.samples / config.batch)
            if epoch % EVAL_EVERY == 0 or epoch == config.epochs:
                evaluation = evaluate(net.forward, epoch)
                result.history.append(evaluation)
                if not math.isfinite(evaluation.rms):
                    result.diverged = (
                        f"training diverged at epoch {epoch}: the network output became NaN or infinite "
                        f"(try a smaller learning rate than {config.lr:g})"
                    )
                if on_eval is not None:
                    on_eval(evaluation)
                if result.diverged:
                    break
    result.seconds = time.perf_counter() - start
    return result
