"""The training step, hand-written for the MLP family: the trainer's hot path.

Networks this small (≤ a few thousand weights, batches of 100) spend their time in
per-operation overhead, not arithmetic: autograd plus torch.optim cost about
0.8 ms a step here. So the step is spelled out: parameters live in one flat
buffer (the model's own tensors become views of it), the backward pass is written
with ATen's fused backward kernels, and the optimizers update the flat buffer in
a handful of in-place operations that follow torch.optim's single-tensor code
line for line. tests/test_engine.py checks gradients against autograd and
updates against torch.optim.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from .model import MLP

aten = torch.ops.aten
_MEAN = 1  # ATen's reduction code for "mean"
LEAKY_SLOPE = 0.01
ONE = torch.ones(())


def _activation(name: str) -> tuple[Callable, Callable]:
    """(forward(z) -> h, backward(grad, z, h) -> grad wrt z) for an activation.

    The forward works in place where torch can (z then holds h): one big tensor fewer per layer,
    and a 5-seed evaluation (5 × 1001 × 64 floats) no longer takes fresh pages from the allocator
    each time. So the backward reads h; it reads z only for Softplus, which has no in-place form.
    """
    if name == "ReLU":
        return torch.relu_, lambda g, z, h: aten.threshold_backward(g, h, 0)
    if name == "LeakyReLU":  # h has z's sign, and the sign is all the backward reads
        return (
            lambda z: torch.nn.functional.leaky_relu_(z, LEAKY_SLOPE),
            lambda g, z, h: aten.leaky_relu_backward(g, h, LEAKY_SLOPE, False),
        )
    if name == "Sigmoid":
        return torch.sigmoid_, lambda g, z, h: aten.sigmoid_backward(g, h)
    if name == "Tanh":
        return torch.tanh_, lambda g, z, h: aten.tanh_backward(g, h)
    if name == "Softplus":
        return torch.nn.functional.softplus, lambda g, z, h: aten.softplus_backward(g, z, 1.0, 20.0)
    raise ValueError(f"unknown activation {name!r}")


def _loss_grad(name: str, scale: torch.Tensor = ONE) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """`scale` × d(mean loss)/d(output), as PyTorch's MSELoss / SmoothL1Loss (beta 1) define it."""
    if name == "MSELoss":
        return lambda out, y: aten.mse_loss_backward(scale, out, y, _MEAN)
    if name == "SmoothL1Loss":
        return lambda out, y: aten.smooth_l1_loss_backward(scale, out, y, _MEAN, 1.0)
    raise ValueError(f"unknown loss {name!r}")


class FlatMLP:
    """One MLP, or several copies of one architecture (one per seed), whose parameters and
    gradients each live in one flat buffer.

    The buffer is layer-major: block k holds parameter tensor k of every copy, so with
    several copies each layer is one (copies, out, in) block and a step is the same few
    batched operations whatever the count. Every copy's own tensors become views of the
    buffer, so each model stays a usable nn.Module. One copy keeps plain 2-D operations.
    """

    def __init__(self, models: MLP | list[MLP], loss: str) -> None:
        models = models if isinstance(models, list) else [models]
        n = len(models)
        per_model = [list(m.parameters()) for m in models]  # [copy][w0, b0, w1, b1, …]
        total = sum(p.numel() for p in per_model[0]) * n
        self.params = torch.empty(total)
        self.grads = torch.zeros(total)
        blocks, grad_blocks, offset = [], [], 0
        for k, first in enumerate(per_model[0]):
            size = first.numel() * n
            block = self.params[offset : offset + size].view(n, *first.shape)
            for copy, params in zip(block, per_model):
                copy.copy_(params[k].data)
                params[k].data = copy  # the model now reads the flat buffer
            grad_block = self.grads[offset : offset + size].view(n, *first.shape)
            blocks.append(block if n > 1 else block[0])
            grad_blocks.append(grad_block if n > 1 else grad_block[0])
            offset += size
        self.batched = n > 1
        self.weights, self.biases = blocks[0::2], blocks[1::2]
        if self.batched:
            self.biases = [b.unsqueeze(1) for b in self.biases]  # (copies, 1, out): broadcast over the batch
        self.weights_t = [w.transpose(-2, -1) for w in self.weights]
        self.weight_grads, self.bias_grads = grad_blocks[0::2], grad_blocks[1::2]
        self.act, self.act_backward = _activation(models[0].act_name)
        # ATen's mean runs over every copy's batch; each copy's loss is the mean over its own.
        self.loss_grad = _loss_grad(loss, scale=torch.tensor(float(n)) if self.batched else ONE)
        self.output_act = models[0].output_act
        self.matmul, self.matmul_add = (torch.bmm, torch.baddbmm) if self.batched else (torch.mm, torch.addmm)

    def forward(self, x: torch.Tensor, keep: list | None = None) -> torch.Tensor:
        """Output for x of shape (n, 1), or (copies, n, 1) with copy r seeing x[r];
        `keep` collects (input, z, output) per layer; activations run in place, so after a
        hidden layer z is the output's own tensor (the backward reads only the output there)."""
        h = x
        last = len(self.weights) - 1
        for k, (wt, b) in enumerate(zip(self.weights_t, self.biases)):
            # The first layer has one input: a broadcast multiply-add beats a 1-wide matmul.
            z = torch.addcmul(b, h, wt) if k == 0 else self.matmul_add(b, h, wt)
            out = self.act(z) if (k < last or self.output_act) else z
            if keep is not None:
                keep.append((h, z, out))
            h = out
        return h

    def backward(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Fill `self.grads` with the gradient of the mean loss on the batch (x, y)."""
        saved: list = []
        out = self.forward(x, saved)
        g = self.loss_grad(out, y)
        for k in range(len(self.weights) - 1, -1, -1):
            inp, z, h = saved[k]
            if k < len(self.weights) - 1 or self.output_act:
                g = self.act_backward(g, z, h)
            if k == 0 and self.batched:
                # One input: x^T g into the (copies, 1, out) view of the same memory. bmm writing
                # g^T x as (copies, out, 1) takes 4x as long (45 µs against 11 µs at 5 × 100 × 64).
                torch.bmm(inp.transpose(-2, -1), g, out=self.weight_grads[k].transpose(-2, -1))
            else:
                self.matmul(g.transpose(-2, -1), inp, out=self.weight_grads[k])
            torch.sum(g, -2, out=self.bias_grads[k])
            if k == len(self.weights) - 1 and self.batched:
                g = g * self.weights[k]  # (copies, n, 1) × (copies, 1, in): an outer product
            elif k:
                g = self.matmul(g, self.weights[k])


class SGD:
    def __init__(self, params: torch.Tensor, lr: float) -> None:
        self.params, self.lr = params, lr

    def step(self, grads: torch.Tensor) -> None:
        self.params.add_(grads, alpha=-self.lr)


class Adam:
    """torch.optim.Adam's single-tensor update with its defaults (betas 0.9, 0.999; eps 1e-8)."""

    def __init__(self, params: torch.Tensor, lr: float, betas=(0.9, 0.999), eps: float = 1e-8) -> None:
        self.params, self.lr, self.eps = params, lr, eps
        self.beta1, self.beta2 = betas
        self.exp_avg = torch.zeros_like(params)
        self.exp_avg_sq = torch.zeros_like(params)
        self.steps = 0

    def step(self, grads: torch.Tensor) -> None:
        self.steps += 1
        self.exp_avg.lerp_(grads, 1 - self.beta1)
        self.exp_avg_sq.mul_(self.beta2).addcmul_(grads, grads, value=1 - self.beta2)
        step_size = self.lr / (1 - self.beta1**self.steps)
        correction2_sqrt = math.sqrt(1 - self.beta2**self.steps)
        denom = (self.exp_avg_sq.sqrt() / correction2_sqrt).add_(self.eps)
        self.params.addcdiv_(self.exp_avg, denom, value=-step_size)


class RMSprop:
    """torch.optim.RMSprop's update with its defaults (alpha 0.99, eps 1e-8, no momentum)."""

    def __init__(self, params: torch.Tensor, lr: float, alpha: float = 0.99, eps: float = 1e-8) -> None:
        self.params, self.lr, self.alpha, self.eps = params, lr, alpha, eps
        self.square_avg = torch.zeros_like(params)

    def step(self, grads: torch.Tensor) -> None:
        self.square_avg.mul_(self.alpha).addcmul_(grads, grads, value=1 - self.alpha)
        avg = self.square_avg.sqrt().add_(self.eps)
        self.params.addcdiv_(grads, avg, value=-self.lr)


OPTIMIZERS = {"SGD": SGD, "Adam": Adam, "RMSprop": RMSprop}


def make_optimizer(name: str, params: torch.Tensor, lr: float):
    return OPTIMIZERS[name](params, lr)
