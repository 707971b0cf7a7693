"""The project's exceptions: one base class, one subclass per kind of failure."""

from __future__ import annotations


class FuncApproxError(Exception):
    """Base of every error funcapprox raises on purpose; the CLI prints its message."""


class ConfigError(FuncApproxError, ValueError):
    """A configuration value, file or option is invalid."""


class Interrupted(FuncApproxError):
    """The user stopped a search (Ctrl-C, SIGTERM, SIGHUP); its finished trials are kept."""


class ExperimentError(FuncApproxError):
    """An NNI experiment could not be started, found, read or stopped."""
