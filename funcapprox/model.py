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
        self.hidden = tuple(hidden)
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


SPREAD_SLOPE = 5.0  # |first-layer weight| of spread_init; with Adam a kink moves about lr/SPREAD_SLOPE per step


def build_model(config: TrainConfig) -> MLP:
    """A freshly initialised MLP: PyTorch's default init, drawn from torch's global RNG,
    then reshaped by spread_init when config.init is "spread"."""
    model = MLP(config.hidden, config.act, config.output_act)
    if config.init == "spread":
        spread_init(model)
    return model


@torch.no_grad()
def spread_init(model: MLP, slope: float = SPREAD_SLOPE) -> None:
    """Tile the first layer's kinks over [0, 1] and start the output weights at zero.

    Unit i of n gets its kink (z = 0) at x = (i + 0.5)/n with slope +slope for even i and
    -slope for odd i, so kinks face both ways and a piecewise-linear target needs only
    small moves of each kink. Draws nothing from the RNG (the output bias keeps PyTorch's init).
    """
    first, last = model.layers[0], model.layers[-1]
    n = first.out_features
    kinks = (torch.arange(n, dtype=torch.float32) + 0.5) / n
    weight = torch.full((n,), slope)
    weight[1::2] = -slope
    first.weight.copy_(weight.unsqueeze(1))
    first.bias.copy_(-weight * kinks)
    last.weight.zero_()
