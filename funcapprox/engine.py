"""The training step, hand-written for the MLP family: the trainer's hot path.

Networks this small (≤ a few thousand weights, batches of 100) spend their time in
per-operation overhead, not arithmetic: autograd plus torch.optim cost about
0.8 ms a step here. So the step is spelled out: parameters live in one flat
buffer (the model's own tensors become views of it), the backward pass is written
with ATen's fused backward kernels, and the optimizers update the flat buffer in
a handful of in-place operations that follow torch.optim's single-tensor code
line for line. tests/test_engine.py checks gradients against autograd and
updates against torch.optim.

Several copies of one architecture train as one batched step: several seeds of one
configuration (train.py), or several configurations that share what a step must share
(group.py): then each copy has its own loss and learning rate, computed as its run alone
computes them, and no operation mixes copies, so a copy's numbers do not depend on the others
beside it (tests/test_group.py); against its run alone they differ only where MKL's batched
matrix products round differently from its 2-D ones.
"""

from __future__ import annotations

import math
from copy import deepcopy
from typing import Callable, Sequence

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


# The loss gradient per element, unreduced: reduction "none" with grad_output = 1/batch is the same
# arithmetic, bit for bit, as reduction "mean" on one copy's batch (ATen computes 2/n · d there, and
# 2 · d · (1/n) here: 2/n rounds to exactly twice 1/n), whatever the number of copies beside it.
_UNREDUCED = 0
_LOSS_GRAD_INTO = {
    "MSELoss": lambda go, out, y, into: aten.mse_loss_backward.grad_input(go, out, y, _UNREDUCED, grad_input=into),
    "SmoothL1Loss": lambda go, out, y, into: aten.smooth_l1_loss_backward.grad_input(
        go, out, y, _UNREDUCED, 1.0, grad_input=into),
}


def _per_copy_loss_grad(losses: Sequence[str]) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """d(each copy's own mean loss)/d(its output) for outputs of shape (copies, n, 1), copy r taking
    losses[r]; one kernel per run of neighbouring copies with the same loss."""
    for name in losses:
        if name not in _LOSS_GRAD_INTO:
            raise ValueError(f"unknown loss {name!r}")
    runs: list[tuple[str, int, int]] = []  # (loss, first copy, last copy + 1)
    for r, name in enumerate(losses):
        if runs and runs[-1][0] == name:
            runs[-1] = (name, runs[-1][1], r + 1)
        else:
            runs.append((name, r, r + 1))
    inverse: dict[int, torch.Tensor] = {}  # a copy's batch size → 1/size, as float32

    def grad(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        size = out[0].numel()
        if size not in inverse:
            inverse[size] = torch.tensor(1.0 / size)
        g = torch.empty_like(out)
        for name, first, stop in runs:
            _LOSS_GRAD_INTO[name](inverse[size], out[first:stop], y[first:stop], g[first:stop])
        return g

    return grad


class FlatMLP:
    """One MLP, or several copies of one architecture (one per seed), whose parameters and
    gradients each live in one flat buffer.

    The buffer is layer-major: block k holds parameter tensor k of every copy, so with
    several copies each layer is one (copies, out, in) block and a step is the same few
    batched operations whatever the count. Every copy's own tensors become views of the
    buffer, so each model stays a usable nn.Module. One copy keeps plain 2-D operations.

    `loss` is one name for every copy, or one name per copy: then each copy's loss is the mean over
    its own batch computed exactly as for that copy alone, the step is batched even for one copy,
    and `copy_of` tells the optimizers (with a learning rate per copy) which copy owns each element.
    """

    def __init__(self, models: MLP | list[MLP], loss: str | Sequence[str]) -> None:
        models = models if isinstance(models, list) else [models]
        n = len(models)
        per_copy = not isinstance(loss, str)
        if per_copy and len(loss) != n:
            raise ValueError(f"{len(loss)} losses for {n} copies")
        self.models, self.losses = models, (list(loss) if per_copy else [loss] * n)
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
        self.batched = n > 1 or per_copy
        self.block_sizes = [p.numel() for p in per_model[0]]  # one copy's elements in each block
        self._copy_of: torch.Tensor | None = None
        if per_copy and n == 1:  # blocks were made 2-D above for one copy; a per-copy net keeps the copies axis
            blocks = [b.unsqueeze(0) for b in blocks]
            grad_blocks = [g.unsqueeze(0) for g in grad_blocks]
        self.weights, self.biases = blocks[0::2], blocks[1::2]
        if self.batched:
            self.biases = [b.unsqueeze(1) for b in self.biases]  # (copies, 1, out): broadcast over the batch
        self.weights_t = [w.transpose(-2, -1) for w in self.weights]
        self.weight_grads, self.bias_grads = grad_blocks[0::2], grad_blocks[1::2]
        self.act, self.act_backward = _activation(models[0].act_name)
        if per_copy:
            self.loss_grad = _per_copy_loss_grad(self.losses)
        else:
            # ATen's mean runs over every copy's batch; each copy's loss is the mean over its own.
            self.loss_grad = _loss_grad(loss, scale=torch.tensor(float(n)) if self.batched else ONE)
        self.output_act = models[0].output_act
        self.matmul, self.matmul_add = (torch.bmm, torch.baddbmm) if self.batched else (torch.mm, torch.addmm)

    @property
    def copy_of(self) -> torch.Tensor:
        """The copy each element of `params` belongs to, shape (numel,): block k is copy 0's elements
        of parameter k, then copy 1's, … (the layer-major layout)."""
        if self._copy_of is None:
            copies = torch.arange(len(self.models))
            self._copy_of = torch.cat([copies.repeat_interleave(size) for size in self.block_sizes])
        return self._copy_of

    def subset(self, keep: Sequence[int]) -> tuple[FlatMLP, torch.Tensor]:
        """A per-copy net of the copies `keep`, in that order, each with its loss and parameters, and
        the positions in this net's buffer of the new net's elements (to carry optimizer state over).
        A copy named twice is trained twice: the second time as a twin, a deep copy of its model.
        The copies left out keep their models, which still read this (no longer updated) buffer."""
        if not keep or not all(0 <= r < len(self.models) for r in keep):
            raise ValueError(f"keep must name copies 0 to {len(self.models) - 1}, not {list(keep)!r}")
        seen: set[int] = set()
        models = []
        for r in keep:
            models.append(deepcopy(self.models[r]) if r in seen else self.models[r])
            seen.add(r)
        rows = torch.tensor(list(keep))
        elements, offset = [], 0
        for size in self.block_sizes:  # block k of the new net: its copies' rows of block k, in order
            elements.append((offset + rows[:, None] * size + torch.arange(size)).reshape(-1))
            offset += size * len(self.models)
        return FlatMLP(models, [self.losses[r] for r in keep]), torch.cat(elements)

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


def _per_element(values: torch.Tensor, copy_of: torch.Tensor) -> torch.Tensor:
    """Per-copy values (float64, computed as the scalar a copy alone would use) rounded to float32 as
    ATen rounds a scalar, spread over each copy's elements of the flat buffer."""
    return values.to(torch.float32).index_select(0, copy_of)


class _PerCopy:
    """What the optimizers share when `lr` is per copy: a float64 tensor of shape (copies,), `copy_of`
    the copy of each element (FlatMLP.copy_of). Set `lr` to a new tensor to change it."""

    state: tuple[str, ...] = ()

    def _per_copy(self, lr, copy_of: torch.Tensor | None):
        self.copy_of = copy_of
        if copy_of is None:
            return lr
        lr = torch.as_tensor(lr, dtype=torch.float64)
        copies = int(copy_of.max()) + 1
        if lr.shape != (copies,):
            raise ValueError(f"a learning rate per copy needs shape ({copies},), not {tuple(lr.shape)}")
        return lr

    def subset(self, params: torch.Tensor, copy_of: torch.Tensor, elements: torch.Tensor,
               keep: Sequence[int]) -> None:
        """Carry on with the copies `keep` in a new buffer (FlatMLP.subset gives `elements`)."""
        if self.copy_of is None:
            raise ValueError("subset needs a learning rate per copy")
        for name in self.state:
            setattr(self, name, getattr(self, name)[elements])
        self.params, self.copy_of, self.lr = params, copy_of, self.lr[list(keep)]


class SGD(_PerCopy):
    def __init__(self, params: torch.Tensor, lr, copy_of: torch.Tensor | None = None) -> None:
        self.params, self.lr = params, self._per_copy(lr, copy_of)

    def step(self, grads: torch.Tensor) -> None:
        if self.copy_of is None:
            self.params.add_(grads, alpha=-self.lr)
        else:  # one rounding, as add_ with alpha
            self.params.addcmul_(grads, _per_element(-self.lr, self.copy_of))


class Adam(_PerCopy):
    """torch.optim.Adam's single-tensor update with its defaults (betas 0.9, 0.999; eps 1e-8)."""

    state = ("exp_avg", "exp_avg_sq")

    def __init__(self, params: torch.Tensor, lr, betas=(0.9, 0.999), eps: float = 1e-8,
                 copy_of: torch.Tensor | None = None) -> None:
        self.params, self.lr, self.eps = params, self._per_copy(lr, copy_of), eps
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
        if self.copy_of is None:
            self.params.addcdiv_(self.exp_avg, denom, value=-step_size)
        else:  # addcdiv_ computes value · exp_avg / denom: the same product first, then the quotient
            self.params.addcdiv_(self.exp_avg * _per_element(-step_size, self.copy_of), denom)


class RMSprop(_PerCopy):
    """torch.optim.RMSprop's update with its defaults (alpha 0.99, eps 1e-8, no momentum)."""

    state = ("square_avg",)

    def __init__(self, params: torch.Tensor, lr, alpha: float = 0.99, eps: float = 1e-8,
                 copy_of: torch.Tensor | None = None) -> None:
        self.params, self.lr, self.alpha, self.eps = params, self._per_copy(lr, copy_of), alpha, eps
        self.square_avg = torch.zeros_like(params)

    def step(self, grads: torch.Tensor) -> None:
        self.square_avg.mul_(self.alpha).addcmul_(grads, grads, value=1 - self.alpha)
        avg = self.square_avg.sqrt().add_(self.eps)
        if self.copy_of is None:
            self.params.addcdiv_(grads, avg, value=-self.lr)
        else:
            self.params.addcdiv_(grads * _per_element(-self.lr, self.copy_of), avg)


OPTIMIZERS = {"SGD": SGD, "Adam": Adam, "RMSprop": RMSprop}


def make_optimizer(name: str, params: torch.Tensor, lr, copy_of: torch.Tensor | None = None):
    """An optimizer over the flat buffer `params`: one learning rate (a float), or with `copy_of`
    (FlatMLP.copy_of) one per copy, a (copies,) tensor or sequence."""
    if copy_of is None:
        return OPTIMIZERS[name](params, lr)
    return OPTIMIZERS[name](params, lr, copy_of=copy_of)
