"""The plain PyTorch trainer a user would write for the study, shared by scripts/bench and scripts/bench-peer.

Batched, but nothing more: each epoch one tensor of fresh uniform x (1000 samples) sliced into
mini-batches of 100, an `nn.Sequential` with PyTorch's default init and a linear output layer,
autograd (`loss.backward()`), a `torch.optim` optimizer at a constant learning rate and an `nn`
loss. The problem and its scoring are funcapprox's, imported so they cannot drift: the targets
(funcapprox.targets), the metric grid of 101 points 0, 0.01, …, 1, an evaluation every 5 epochs
and the final metric as the minimum of the last 5 (funcapprox.train). Like funcapprox's trainer
it stops at the first evaluation whose output is not finite.

Not part of the package: scripts import it from this folder (it needs funcapprox importable).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from funcapprox.targets import grid, target
from funcapprox.train import EVAL_EVERY, FINAL_WINDOW, FINE_POINTS, METRIC_POINTS

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "ReLU": nn.ReLU, "LeakyReLU": nn.LeakyReLU, "Sigmoid": nn.Sigmoid, "Tanh": nn.Tanh, "Softplus": nn.Softplus,
}


@dataclass
class PlainResult:
    metric: float | None  # the final metric: the minimum of the last FINAL_WINDOW evaluations
    history: list[float] = field(default_factory=list)  # -log10(RMS) on the metric grid, every EVAL_EVERY epochs
    max_error: float | None = None  # after training, on the 1001-point grid
    steps: int = 0  # optimizer steps taken
    loop_s: float = 0.0  # wall time of the training loop, evaluations included
    cpu_s: float = 0.0  # this process's CPU time over the loop: what a shared machine's load moves less
    diverged: bool = False


def build_mlp(hidden: tuple[int, ...] | list[int], act: str) -> nn.Sequential:
    """1 → hidden … → 1, the activation between layers, a linear output; PyTorch's default init."""
    layers: list[nn.Module] = []
    width = 1
    for size in hidden:
        layers += [nn.Linear(width, size), ACTIVATIONS[act]()]
        width = size
    return nn.Sequential(*layers, nn.Linear(width, 1))


@torch.no_grad()
def _rms(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return (model(x) - y).square().mean().sqrt().item()


def train_plain(
    func: str,
    hidden: tuple[int, ...] | list[int],
    act: str,
    optimizer: str,
    lr: float,
    loss: str,
    epochs: int,
    *,
    samples: int = 1000,
    batch: int = 100,
    seed: int = 12,
    threads: int | None = 1,
) -> PlainResult:
    """Train one configuration from `seed` and score it; one thread by default, as funcapprox trains."""
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)  # the model's init and every epoch's x come from torch's global RNG
    f = target(func)
    model = build_mlp(hidden, act)
    opt = getattr(torch.optim, optimizer)(model.parameters(), lr=lr)
    criterion = getattr(nn, loss)()
    grid_x = grid(METRIC_POINTS)
    grid_y = f(grid_x)

    result = PlainResult(metric=None)
    start, cpu_start = time.perf_counter(), time.process_time()
    for epoch in range(1, epochs + 1):
        x = torch.rand(samples, 1)
        for xb, yb in zip(x.split(batch), f(x).split(batch)):
            opt.zero_grad()
            criterion(model(xb), yb).backward()
            opt.step()
            result.steps += 1
        if epoch % EVAL_EVERY == 0 or epoch == epochs:
            rms = _rms(model, grid_x, grid_y)
            if not math.isfinite(rms):
                result.diverged = True
                break
            result.history.append(-math.log10(rms) if rms > 0 else math.inf)
    result.loop_s, result.cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
    if result.history and not result.diverged:
        result.metric = min(result.history[-FINAL_WINDOW:])
        fine_x = grid(FINE_POINTS)
        with torch.no_grad():
            result.max_error = (model(fine_x) - f(fine_x)).abs().max().item()
    return result
