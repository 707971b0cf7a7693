"""funcapprox: tune and shrink small MLPs that approximate 1-D functions, with NNI.

The public names are imported on first use, so `import funcapprox` stays cheap
(torch alone takes seconds to import, and a search starts hundreds of processes).
"""

from __future__ import annotations

import importlib

__all__ = [
    "TrainConfig",
    "TrainResult",
    "Evaluation",
    "MLP",
    "build_model",
    "train",
    "FunctionSamples",
    "FunctionGrid",
    "FuncApproxError",
    "ConfigError",
]

_HOMES = {
    "TrainConfig": "config",
    "TrainResult": "train",
    "Evaluation": "train",
    "train": "train",
    "MLP": "model",
    "build_model": "model",
    "FunctionSamples": "targets",
    "FunctionGrid": "targets",
    "FuncApproxError": "errors",
    "ConfigError": "errors",
}


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(f"module 'funcapprox' has no attribute {name!r}")
