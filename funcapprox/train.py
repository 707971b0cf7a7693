"""Train one configuration and measure it the study's way; knows nothing of NNI or the CLI."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from .config import DEFAULT_DOMAIN, DEFAULT_HOLDOUT, TrainConfig
from .engine import FlatMLP, make_optimizer
from .model import MLP, build_model
from .targets import Target, grid

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
    # A data file's: the metric and max error are on its held-out points, these on the points it trained on.
    train_rms: float | None = None
    train_max_error: float | None = None


@dataclass
class TrainResult:
    """A run's record; with `config.seeds` > 1, one history and one model per seed."""

    config: TrainConfig
    models: list[MLP]
    histories: list[list[Evaluation]] = field(default_factory=list)
    seconds: float = 0.0  # wall time of the training loop, evaluations included
    steps: int = 0  # optimizer steps taken
    diverged: str | None = None  # why training stopped early, if it did
    refined: bool = False  # the networks were refined after training (refine.py): their last evaluation is final

    @property
    def ok(self) -> bool:
        return self.diverged is None

    def seed_metric(self, replica: int) -> float | None:
        """The study's final result for one seed: the worst of its last FINAL_WINDOW evaluations."""
        finite = [e.metric for e in self.histories[replica] if math.isfinite(e.metric)]
        if self.refined and finite:  # the refined network is the one kept, whatever training's last steps did
            return finite[-1]
        return min(finite[-FINAL_WINDOW:]) if finite else None

    @property
    def median_replica(self) -> int:
        """The seed whose final metric is the median (the lower one for an even count)."""
        metrics = [self.seed_metric(r) for r in range(len(self.models))]
        order = sorted(range(len(metrics)), key=lambda r: -math.inf if metrics[r] is None else metrics[r])
        return order[(len(order) - 1) // 2]

    @property
    def metric(self) -> float | None:
        """The final metric: the study's, or with several seeds the median of theirs."""
        return self.seed_metric(self.median_replica) if self.histories else None

    @property
    def model(self) -> MLP:
        return self.models[self.median_replica]

    @property
    def history(self) -> list[Evaluation]:
        """Evaluations over training; with several seeds, the median of each figure per epoch."""
        if len(self.histories) == 1:
            return self.histories[0]
        return [_median_evaluation(list(at_epoch)) for at_epoch in zip(*self.histories)]

    @property
    def last(self) -> Evaluation | None:
        history = self.history
        return history[-1] if history else None

    def summary(self) -> dict:
        """The final figures as plain JSON-ready data."""
        last = self.last
        finite = last is not None and math.isfinite(last.rms)
        summary = {
            "status": "ok" if self.ok else "diverged",
            "reason": self.diverged,
            "metric": self.metric,
            "rms": last.rms if finite else None,
            "max_error": last.max_error if finite else None,
            "max_error_x": last.max_error_x if finite else None,
            **({"train_rms": last.train_rms, "train_max_error": last.train_max_error}
               if finite and last.train_rms is not None else {}),
            "n_params": self.config.n_params,
            "epochs": last.epoch if last else 0,
            "steps": self.steps,
            "seconds": round(self.seconds, 3),
            **({"refined": True} if self.refined else {}),
        }
        if len(self.models) > 1 and self.ok:
            metrics = [self.seed_metric(r) for r in range(len(self.models))]
            errors = [h[-1].max_error for h in self.histories]
            summary |= {
                "seeds": len(self.models),
                "metric_spread": max(metrics) - min(metrics),
                "max_error_worst": max(errors),
                "max_error_best": min(errors),
                "max_errors": errors,  # each seed's, in seed order
                "median_seed": self.config.seed + self.median_replica,
            }
        return summary


def _median_evaluation(evaluations: list[Evaluation]) -> Evaluation:
    def median(values: list[float]) -> float:
        return sorted(values)[(len(values) - 1) // 2]

    by_metric = sorted(evaluations, key=lambda e: e.metric if math.isfinite(e.metric) else -math.inf)
    middle = by_metric[(len(by_metric) - 1) // 2]
    train = [e for e in evaluations if e.train_rms is not None]
    return Evaluation(middle.epoch, middle.metric, median([e.rms for e in evaluations]),
                      median([e.max_error for e in evaluations]), middle.max_error_x,
                      median([e.train_rms for e in train]) if train else None,
                      median([e.train_max_error for e in train]) if train else None)


class Evaluator:
    """Scores networks against their target: a function on the fixed grids (the metric on every 10th
    point of the fine grid, the max error on all of it); a data file on its held-out points, and on the
    points it trains on for the training error (all of them when nothing is held out)."""

    def __init__(self, func: str, domain: tuple[float, float] = DEFAULT_DOMAIN,
                 holdout: float = DEFAULT_HOLDOUT) -> None:
        self.target = Target(func, domain, holdout)
        self.scale = self.target.scale  # errors are measured on [0, 1], reported in the function's units
        self.train_points = 0  # a data file's points after the held-out ones in self.x
        if self.target.samples is None:
            self.x = grid(FINE_POINTS)
            self.truth = self.target.unit(self.x)
            self.stride = (FINE_POINTS - 1) // (METRIC_POINTS - 1)  # metric grid = every 10th fine point
        else:
            (train_x, train_y), (held_x, held_y) = self.target.points()
            if not len(held_x):
                held_x, held_y = train_x, train_y
            self.x, self.truth = torch.cat([held_x, train_x]), torch.cat([held_y, train_y])
            self.train_points, self.stride = len(train_x), 1

    @torch.no_grad()
    def __call__(self, forward: Callable[[torch.Tensor], torch.Tensor], epoch: int,
                 replicas: int = 1) -> list[Evaluation]:
        """One Evaluation per replica (a single network: replicas = 1)."""
        x = self.x if replicas == 1 else self.x.expand(replicas, -1, -1)
        errors = (forward(x) - self.truth).reshape(replicas, -1, 1)
        if not self.train_points:
            return [self._score(error, epoch) for error in errors]
        held = len(self.x) - self.train_points
        return [self._score(error[:held], epoch, error[held:]) for error in errors]

    def _score(self, error: torch.Tensor, epoch: int, train_error: torch.Tensor | None = None) -> Evaluation:
        rms = error[:: self.stride].square().mean().sqrt().item()
        abs_error = error.abs()
        worst = int(abs_error.argmax())
        max_error, where = abs_error[worst].item(), self.x[worst]
        if not self.target.identity:
            rms, max_error, where = rms * self.scale, max_error * self.scale, self.target.x(where.double())
        metric = -math.log10(rms) if rms > 0 else math.inf
        if not math.isfinite(rms):
            metric = math.nan
        if train_error is None:
            return Evaluation(epoch, metric, rms, max_error, where.item())
        train_rms = train_error.square().mean().sqrt().item() * self.scale
        return Evaluation(epoch, metric, rms, max_error, where.item(), train_rms,
                          train_error.abs().max().item() * self.scale)


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
    seeds = [config.seed + r for r in range(config.seeds)]
    models = []
    for seed in seeds:
        torch.manual_seed(seed)  # model init: seed r initialises as a run with that seed alone
        models.append(build_model(config))
    data_rngs = [torch.Generator().manual_seed(seed) for seed in seeds]
    net = FlatMLP(models, config.loss)  # several seeds: one batched step for all of them
    optimizer = make_optimizer(config.optimizer, net.params, config.lr)
    evaluate = Evaluator(config.func, config.domain, config.holdout)
    result = TrainResult(config, models, [[] for _ in seeds])

    epoch_data = _EpochData(config, evaluate.target, data_rngs)
    samples, batch = epoch_data.samples, min(config.batch, epoch_data.samples)
    total_steps = config.epochs * math.ceil(samples / batch)
    start = time.perf_counter()
    with torch.inference_mode():  # no autograd bookkeeping: the backward pass is written out
        for epoch in range(1, config.epochs + 1):
            x, y = epoch_data()
            for xb, yb in zip(x.split(batch, dim=-2), y.split(batch, dim=-2)):
                if config.lr_schedule != "constant":
                    optimizer.lr = lr_at(config.lr_schedule, config.lr, result.steps / total_steps)
                net.backward(xb, yb)
                optimizer.step(net.grads)
                result.steps += 1
            if epoch % EVAL_EVERY == 0 or epoch == config.epochs:
                evaluations = evaluate(net.forward, epoch, len(seeds))
                for history, evaluation in zip(result.histories, evaluations):
                    history.append(evaluation)
                bad = [seeds[r] for r, e in enumerate(evaluations) if not math.isfinite(e.rms)]
                if bad:
                    result.diverged = diverged_message(config, epoch, bad)
                if on_eval is not None:
                    on_eval(result.last)
                if result.diverged:
                    break
    if config.refines and result.ok:
        _refine(config, result, net, evaluate, epoch_data, seeds, on_eval)
    result.seconds = time.perf_counter() - start
    return result


def _refine(config: TrainConfig, result: TrainResult, net: FlatMLP, evaluate: Evaluator, epoch_data: _EpochData,
            seeds: list[int], on_eval: Callable[[Evaluation], None] | None) -> None:
    """refine.py's last phase: the refined networks' evaluation replaces the last one and is the final metric."""
    from .refine import refine, refine_samples  # only a refined run imports it

    if epoch_data.points is not None:  # a data file: its training points
        x, y = (part.double() for part in epoch_data.points)
    else:
        x, y = refine_samples(evaluate.target.unit, seeds)
    refine(result.models, x, y, config.loss)
    result.refined = True
    for history, evaluation in zip(result.histories, evaluate(net.forward, config.epochs, len(seeds))):
        history[-1] = evaluation
    if on_eval is not None:
        on_eval(result.last)


def diverged_message(config: TrainConfig, epoch: int, bad_seeds: list[int]) -> str:
    return (f"training diverged at epoch {epoch}: the network output became NaN or infinite "
            f"(try a smaller learning rate than {config.lr:g})"
            + (f"; seed {bad_seeds[0]}" if config.seeds > 1 else ""))


def lr_at(schedule: str, base: float, progress: float) -> float:
    """The learning rate after `progress` (steps taken / total steps, in [0, 1)) of the run."""
    if schedule == "cosine":  # from base down to 0 at the end of the run
        return 0.5 * base * (1.0 + math.cos(math.pi * progress))
    return base


class _EpochData:
    """An epoch's inputs and targets, (samples, 1) for one seed, (seeds, samples, 1) for several: fresh uniform x
    for a function, a shuffled pass over a data file's training points; each seed from its own generator."""

    def __init__(self, config: TrainConfig, target: Target, rngs: list[torch.Generator]) -> None:
        self.rngs, self.f = rngs, target.unit
        self.points = target.points()[0] if target.samples is not None else None
        self.samples = len(self.points[0]) if self.points is not None else config.samples

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.points is None:
            x = _draw(self.rngs, self.samples)  # a fresh epoch per seed, drawn at once
            return x, self.f(x)
        orders = [torch.randperm(self.samples, generator=rng) for rng in self.rngs]
        order = orders[0] if len(orders) == 1 else torch.stack(orders)
        return self.points[0][order], self.points[1][order]



def _draw(rngs: list[torch.Generator], samples: int) -> torch.Tensor:
    """Uniform x in [0, 1]: (samples, 1) for one seed, (seeds, samples, 1) for several."""
    if len(rngs) == 1:
        return torch.rand(samples, 1, generator=rngs[0])
    return torch.stack([torch.rand(samples, 1, generator=rng) for rng in rngs])
