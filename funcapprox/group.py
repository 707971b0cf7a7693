"""Train several configurations as one batched step: the trials of a search that belong together.

A trial of the study's grid trains for about as long as NNI takes to start one, so the search is
bound by per-step overhead, not arithmetic. Configurations that share everything a step must share
(group_key: the architecture, activation, optimizer, function, epochs, samples, batch, …) train here
as the copies of one FlatMLP (engine.py), each copy with its own learning rate and schedule, loss,
initialisation and seed. Every copy computes what its run alone (train.train) computes, to float
rounding: its init and data come from its own seed, its loss is the mean over its own batch, its
optimizer state and step size are its own, and no operation mixes copies (tests/test_group.py compares
each copy with its solo run). And copy r's numbers are the same bit for bit whichever others share its
step, or none (train_one): they depend on its configuration only.

A configuration whose network diverges stops at that evaluation, as alone; the others go on without
it (the net is rebuilt from the copies left). A lone copy trains beside a twin (a copy of itself,
never reported): MKL multiplies a batch of one matrix with other kernels (gemv for the 1-wide output
layer) than a batch of several, whose results per copy do not depend on their number or order.
Knows nothing of NNI: the warm worker gathers trials.
"""

from __future__ import annotations

import math
import time
from copy import deepcopy
from typing import Callable, Sequence

import torch

from .config import PER_COPY, TrainConfig, field_names, group_key, padded_hidden
from .engine import FlatMLP, make_optimizer
from .model import MLP, build_model
from .train import EVAL_EVERY, Evaluation, Evaluator, TrainResult, _draw, diverged_message, lr_at, train

__all__ = ["PER_COPY", "Stop", "can_group", "group_key", "train_group", "train_one"]

class Stop(Exception):
    """Raised by train_group's `on_eval` to stop that one configuration; the others go on."""


def can_group(config: TrainConfig) -> bool:
    """Whether train_group takes `config`: not a data file's (its epochs are not fresh draws), and not one
    that refines (refine.py's last phase runs one network at a time)."""
    return not config.is_data and not config.refines


def _check_one_group(configs: Sequence[TrainConfig]) -> None:
    first = configs[0]
    shared = [name for name in field_names() if name not in PER_COPY]

    def value(config: TrainConfig, name: str):
        return padded_hidden(config.hidden) if name == "hidden" else getattr(config, name)

    for config in configs[1:]:
        differ = [name for name in shared if value(first, name) != value(config, name)]
        if differ:
            raise ValueError(f"configurations that differ in {', '.join(differ)} cannot share a batched step")


def train_group(
    configs: Sequence[TrainConfig],
    on_eval: Callable[[int, Evaluation], None] | None = None,
    threads: int | None = 1,
) -> list[TrainResult | None]:
    """Train `configs` (one group_key) as one batched step; for each, the TrainResult train.train gives.

    `on_eval(i, evaluation)` follows every evaluation of configs[i] (its `last`, as train's on_eval);
    raising Stop there stops configs[i] alone, whose result is then None. Any other exception stops all.
    `seconds` of a result is the wall time from the start until that configuration finished.
    """
    configs = list(configs)
    if not configs:
        return []
    _check_one_group(configs)
    if not all(map(can_group, configs)):
        raise ValueError("train_group takes neither data files nor configurations that refine; train those "
                         "with train.train")
    if threads:
        torch.set_num_threads(threads)
    first = configs[0]
    # Copies ordered by loss, so each loss is one kernel over neighbouring copies; a config's seeds in order.
    order = sorted(range(len(configs)), key=lambda i: configs[i].loss)
    copies = [(i, configs[i].seed + r) for i in order for r in range(configs[i].seeds)]  # (config, seed)
    own, models = [], []  # each copy's network, and the network it trains as (padded, see _padded)
    for i, seed in copies:
        torch.manual_seed(seed)  # model init: as the run of that seed alone
        own.append(build_model(configs[i]))
        models.append(_padded(own[-1], padded_hidden(configs[i].hidden)))
    results = [TrainResult(config, [], [[] for _ in range(config.seeds)]) for config in configs]
    for (i, _), model in zip(copies, own):
        results[i].models.append(model)
    data_rngs = {seed: torch.Generator().manual_seed(seed) for _, seed in copies}  # one per seed, as alone

    active = list(range(len(copies))) * (2 if len(copies) == 1 else 1)  # the copy each of the net's is; a twin
    net = FlatMLP([models[0], deepcopy(models[0])] if len(copies) == 1 else models,
                  [configs[copies[c][0]].loss for c in active])
    padding = any(m is not o for m, o in zip(models, own))
    masks = [_real_units(o, m) for o, m in zip(own, models)] if padding else None
    mask = _flat(masks, active) if padding else None
    schedules = [(configs[i].lr_schedule, configs[i].lr) for i, _ in copies]
    scheduled = any(schedule != "constant" for schedule, _ in schedules)

    def learning_rates(progress: float) -> torch.Tensor:
        """Each active copy's learning rate, as train.train sets it (one lr_at per distinct setting)."""
        rates = {s: lr_at(*s, progress) if s[0] != "constant" else s[1] for s in set(schedules)}
        return torch.tensor([rates[schedules[c]] for c in active], dtype=torch.float64)

    optimizer = make_optimizer(first.optimizer, net.params, learning_rates(0.0), copy_of=net.copy_of)
    evaluate = Evaluator(first.func, first.domain)
    f = evaluate.target.unit
    live = set(range(len(configs)))
    stopped: set[int] = set()
    steps, total_steps = 0, first.epochs * math.ceil(first.samples / first.batch)
    start = time.perf_counter()
    with torch.inference_mode():  # no autograd bookkeeping: the backward pass is written out
        for epoch in range(1, first.epochs + 1):
            x, y = _epoch([copies[c][1] for c in active], data_rngs, first.samples, f)
            for xb, yb in zip(x.split(first.batch, dim=-2), y.split(first.batch, dim=-2)):
                if scheduled:
                    optimizer.lr = learning_rates(steps / total_steps)
                net.backward(xb, yb)
                if mask is not None:  # padded units learn nothing: they stay zero, as if absent
                    net.grads.mul_(mask)
                optimizer.step(net.grads)
                steps += 1
            if epoch % EVAL_EVERY != 0 and epoch != first.epochs:
                continue
            bad: dict[int, list[int]] = {}
            for p, (c, evaluation) in enumerate(zip(active, evaluate(net.forward, epoch, len(active)))):
                if c in active[:p]:
                    continue  # a twin
                i, seed = copies[c]
                results[i].histories[seed - configs[i].seed].append(evaluation)
                if not math.isfinite(evaluation.rms):
                    bad.setdefault(i, []).append(seed)
            finished = set()
            for i in sorted(live):
                result = results[i]
                result.steps = steps
                if i in bad:
                    result.diverged = diverged_message(configs[i], epoch, sorted(bad[i]))
                    finished.add(i)
                if on_eval is not None:
                    try:
                        on_eval(i, result.last)
                    except Stop:
                        stopped.add(i)
                        finished.add(i)
            if finished:
                for i in finished:
                    results[i].seconds = time.perf_counter() - start
                    _unpad([(own[c], models[c]) for c in range(len(copies)) if copies[c][0] == i])
                live -= finished
                if not live:
                    break
                keep = [p for p, c in enumerate(active) if copies[c][0] in live and c not in active[:p]]
                keep *= 2 if len(keep) == 1 else 1  # a lone copy gets a twin
                with torch.inference_mode(False):  # the models must stay ordinary tensors
                    net, elements = net.subset(keep)
                optimizer.subset(net.params, net.copy_of, elements, keep)
                active = [active[p] for p in keep]
                if mask is not None:
                    mask = mask[elements]
    for i in live:
        results[i].seconds = time.perf_counter() - start
    _unpad([(own[c], models[c]) for c in range(len(copies)) if copies[c][0] in live])
    return [None if i in stopped else result for i, result in enumerate(results)]


def train_one(config: TrainConfig, on_eval: Callable[[Evaluation], None] | None = None) -> TrainResult:
    """`config` trained as a batched step of its own, as in any group (train.train when group.py does not
    take it); `on_eval` as train's."""
    if not can_group(config):
        return train(config, on_eval=on_eval)
    return train_group([config], None if on_eval is None else lambda i, evaluation: on_eval(evaluation))[0]


def _padded(model: MLP, hidden: tuple[int, ...]) -> MLP:
    """`model` widened to `hidden` with units that are inert: their incoming and outgoing weights and
    their biases are zero (and their gradients are masked to zero, so they stay so). Each real unit then
    computes what it computes in `model`, to float rounding (the sums gain zero terms); `model` itself
    when it already has that shape."""
    if model.hidden == hidden:
        return model
    wide = MLP(hidden, model.act_name, model.output_act)
    with torch.no_grad():
        for mine, theirs in zip(model.layers, wide.layers):
            theirs.weight.zero_()
            theirs.bias.zero_()
            theirs.weight[: mine.out_features, : mine.in_features] = mine.weight
            theirs.bias[: mine.out_features] = mine.bias
    return wide


def _real_units(model: MLP, wide: MLP) -> list[torch.Tensor]:
    """Per parameter tensor of `wide`: 1 where it holds a weight or bias of `model`, 0 for the padding."""
    masks = []
    for mine, theirs in zip(model.layers, wide.layers):
        weight, bias = torch.zeros_like(theirs.weight), torch.zeros_like(theirs.bias)
        weight[: mine.out_features, : mine.in_features] = 1
        bias[: mine.out_features] = 1
        masks += [weight, bias]
    return masks


def _flat(masks: list[list[torch.Tensor]], active: list[int]) -> torch.Tensor:
    """The copies' masks in FlatMLP's layer-major layout (block k: tensor k of every active copy)."""
    return torch.cat([torch.stack([masks[c][k] for c in active]).reshape(-1) for k in range(len(masks[0]))])


def _unpad(pairs: list[tuple[MLP, MLP]]) -> None:
    """Copy each padded network's real units back into the network of its own shape."""
    with torch.no_grad():
        for mine, wide in pairs:
            if mine is wide:
                continue
            for small, big in zip(mine.layers, wide.layers):
                small.weight.copy_(big.weight[: small.out_features, : small.in_features])
                small.bias.copy_(big.bias[: small.out_features])


def _epoch(seeds: list[int], rngs: dict[int, torch.Generator], samples: int,
           f: Callable[[torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """An epoch's (x, y), (copies, samples, 1), copy r's drawn from the generator of seeds[r]: one draw
    per distinct seed, as its runs alone each draw it (copies of one seed share it)."""
    drawn = {}
    for seed in seeds:
        if seed not in drawn:
            x = _draw([rngs[seed]], samples)
            drawn[seed] = (x, f(x))
    if len(drawn) == 1:
        ((x, y),) = drawn.values()
        return x.expand(len(seeds), -1, -1), y.expand(len(seeds), -1, -1)
    return torch.stack([drawn[s][0] for s in seeds]), torch.stack([drawn[s][1] for s in seeds])
