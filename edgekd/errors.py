"""The one error hierarchy of edgekd; the CLI maps each class to an exit code."""

from __future__ import annotations


class EdgekdError(Exception):
    """Base of every error edgekd raises on purpose. Its message says what failed and how to fix it."""

    exit_code = 2


class ConfigError(EdgekdError):
    """A recipe, an override or a budget is invalid."""


class DataError(EdgekdError):
    """A dataset is missing, empty, malformed, or does not fit its task."""


class BundleError(EdgekdError):
    """A bundle directory is missing, incomplete, altered, or of an unknown schema."""


class UnsupportedError(EdgekdError):
    """A valid request that this model, format or backend cannot do."""


class ParityError(EdgekdError):
    """An exported or quantized model disagrees with its parent beyond tolerance."""

    exit_code = 1


class GateFailure(EdgekdError):
    """A benchmark report misses its budget."""

    exit_code = 1
