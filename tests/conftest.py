"""Shared fixtures: small configurations that train in milliseconds, and a throw-away working directory."""

from __future__ import annotations

import pytest

from funcapprox.config import TrainConfig

# Plain SGD at lr 1e6 on the study's Sigmoid {16,16,16}: the output is NaN by the first evaluation (epoch 5).
DIVERGING = {"func": "square", "hidden": (16, 16, 16), "act": "Sigmoid", "optimizer": "SGD", "lr": 1e6, "epochs": 50}


@pytest.fixture(autouse=True)
def _work_in_tmp_path(tmp_path, monkeypatch):
    """Run every test from its own tmp_path, so nothing (a default runs/ folder) lands in the repo."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def tiny_config() -> TrainConfig:
    """A run of a few hundredths of a second; 12 epochs, so evaluations fall at 5, 10 and 12; the training loop
    alone (refine.py's last phase has tests of its own)."""
    return TrainConfig(func="square", hidden=(8,), act="Tanh", optimizer="Adam", lr=0.01, epochs=12, refine="none")


@pytest.fixture
def diverging_config() -> TrainConfig:
    return TrainConfig(**DIVERGING)
