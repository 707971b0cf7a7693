"""The network family: a fully connected MLP, 1 input, 1 output, 1 to 3 hidden layers."""

from __future__ import annotations

import torch
from torch import nn

from .config import TrainConfig

ACTIVATION_MODULES: dict[str, type[nn.Module]] = {
    "ReLU": nn.ReLU,
    "LeakyReLU": nn.LeakyReLU,  # negative slope 0.01, PyTorch's default
    "Sigmoid": nn.Sigmoid,
    "Tanh": nn.Tanh,
    "Softplus": nn.Softplus,  # beta 1, threshold 20
}


class MLP(nn.Module):
    """Linear layers with the activation between them.

    The output layer is linear (the usual choice for regression) unless `output_act`
    is set, which reproduces the study's code: activation after the output layer too.
    """

    def __init__(self, hidden: tuple[int, ...], act: str = "Sigmoid", output_act: bool = False) -> None:
        super().__init__()
        widths = (1, *hidden, 1)
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(widths[:-1], widths[1:]))
        self.act = ACTIVATION_MODULES[act]()
        self.act_name = act
        self.output_act = output_act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.layers) - 1
        for k, layer in enumerate(self.layers):
            x = layer(x)
            if k < last or self.output_act:
                x = self.act(x)
        return x


def build_model(config: TrainConfig) -> MLP:
    """A freshly initialised MLP (PyTorch's default init, drawn from torch's global RNG)."""
    return MLP(config.hidden, config.act, config.output_act)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
