"""The `funcapprox` command: parse options, call the library, format what it returns.

Heavy modules (torch, matplotlib, nni) are imported inside the commands that use
them, so `funcapprox --help` and the result readers start fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .config import ACTIVATIONS, DEFAULT_EPOCHS, LOSSES, OPTIMIZERS, TrainConfig, parse_hidden
from .errors import ConfigError, FuncApproxError

DEFAULTS = TrainConfig()


class UserError(click.ClickException):
    """A user mistake found after parsing (bad value combination): exit 2 like a parse error."""

    exit_code = 2


def _library_call(fn, *args, **kwargs):
    """Run a library function, turning its errors into one-line CLI errors."""
    try:
        return fn(*args, **kwargs)
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    except FuncApproxError as exc:
        raise click.ClickException(str(exc)) from None


class HiddenSizes(click.ParamType):
    name = "SIZES"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            return parse_hidden(value)
        except ConfigError as exc:
            self.fail(str(exc), param, ctx)


def _choice(names: tuple[str, ...]) -> click.Choice:
    return click.Choice(names, case_sensitive=False)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="funcapprox")
def cli() -> None:
    """Find the best hyper-parameters and the smallest network that approximates a function."""


@cli.command()
@click.option("--func", type=_choice(("square", "quadratic", "oscillator")), default=DEFAULTS.func,
              show_default=True, help="Target function on [0, 1] (quadratic = square).")
@click.option("--hidden", type=HiddenSizes(), default=",".join(map(str, DEFAULTS.hidden)), show_default=True,
              help="1-3 hidden layer sizes; a 0 ends the stack (64,0,0 is one layer).")
@click.option("--act", type=_choice(ACTIVATIONS), default=DEFAULTS.act, show_default=True)
@click.option("--optimizer", type=_choice(OPTIMIZERS), default=DEFAULTS.optimizer, show_default=True)
@click.option("--lr", type=float, default=DEFAULTS.lr, show_default=True, help="Learning rate.")
@click.option("--loss", type=_choice(LOSSES), default=DEFAULTS.loss, show_default=True)
@click.option("--epochs", type=int, default=None,
              help=f"Epochs [default: {DEFAULT_EPOCHS['square']} for square, {DEFAULT_EPOCHS['oscillator']} "
                   "for oscillator].")
@click.option("--samples", type=int, default=DEFAULTS.samples, show_default=True,
              help="Fresh random samples per epoch.")
@click.option("--batch", type=int, default=DEFAULTS.batch, show_default=True, help="Mini-batch size.")
@click.option("--seed", type=int, default=DEFAULTS.seed, show_default=True)
@click.option("--output-act", is_flag=True, help="Apply the activation after the output layer too (the study's code).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Run folder [default: runs/FUNC-TIMESTAMP].")
@click.option("--json", "as_json", is_flag=True, help="Print the final metrics as one JSON object.")
def train(func, hidden, act, optimizer, lr, loss, epochs, samples, batch, seed, output_act, out, as_json):
    """Train one configuration and plot the fit.

    Example: funcapprox train --func oscillator --hidden 64,0,0 --act LeakyReLU --lr 0.005 --loss SmoothL1Loss
    """
    from .runs import default_run_dir, run_training

    config = _library_call(
        TrainConfig, func=func, hidden=hidden, act=act, optimizer=optimizer, lr=lr, loss=loss, epochs=epochs,
        samples=samples, batch=batch, seed=seed, output_act=output_act,
    )
    folder = out or default_run_dir(config)
    if not as_json:
        click.echo(f"training {_describe(config)} → {folder}", err=True)
    result = _library_call(run_training, config, folder, _progress_printer(config.epochs))
    summary = result.summary()
    if as_json:
        keys = ("status", "reason", "metric", "rms", "max_error", "max_error_x", "n_params", "seconds")
        click.echo(json.dumps({**{k: summary[k] for k in keys}, "run_dir": str(folder)}))
    else:
        _print_summary(summary, folder)
    if not result.ok:
        if not as_json:
            click.echo(f"Error: {result.diverged}", err=True)
        sys.exit(1)


def _describe(config: TrainConfig) -> str:
    return (f"{config.func} {config.arch} {config.act} {config.optimizer} lr={config.lr:g} {config.loss}, "
            f"{config.epochs} epochs, seed {config.seed}")


def _progress_printer(epochs: int):
    """Print about ten evenly spaced progress lines, so a long run never looks frozen."""
    every = max(5, round(epochs / 10 / 5) * 5)

    def on_eval(e) -> None:
        if e.epoch % every == 0 or e.epoch == epochs:
            click.echo(f"  epoch {e.epoch:>{len(str(epochs))}}/{epochs}  metric {e.metric:6.3f}  "
                       f"rms {e.rms:.5f}  max error {e.max_error:.5f}", err=True)

    return on_eval


def _fmt(value, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _print_summary(s: dict, folder: Path) -> None:
    click.echo(f"metric      {_fmt(s['metric'], '.4f')}   (-log10 RMS error; worst of the last 5 evaluations)")
    click.echo(f"rms         {_fmt(s['rms'], '.6f')}")
    click.echo(f"max error   {_fmt(s['max_error'], '.6f')} at x = {_fmt(s['max_error_x'], '.3f')}")
    click.echo(f"parameters  {s['n_params']}")
    click.echo(f"time        {s['seconds']:.2f} s ({s['steps']} optimizer steps)")
    click.echo(f"files       {folder}/")


def main() -> None:
    cli(prog_name="funcapprox")
