"""Exceptions raised by erasekit.

Every error derives from ``ErasekitError`` so that callers (and the CLI) can catch the library's own failures
without swallowing unrelated bugs.
"""

from __future__ import annotations


class ErasekitError(Exception):
    """Base class of every error raised on purpose by erasekit."""


class ModelNotFoundError(ErasekitError):
    """A model id or path does not resolve to a model that can be loaded."""


class UnsupportedModelError(ErasekitError):
    """The model exists but its architecture is not one erasekit knows how to edit."""


class InvalidEditError(ErasekitError):
    """An edit file or edit object is malformed or does not fit the model it is applied to."""


class UnknownConceptError(ErasekitError, ValueError):
    """A concept is not known to the component asked to handle it (e.g. the toy world)."""


class UnknownMethodError(ErasekitError):
    """An erasure method name is not registered."""


class ResumeMismatchError(ErasekitError):
    """A resume folder belongs to another run (method, model, concepts or configuration), or is no checkpoint."""


class NoOpEditError(ErasekitError):
    """A method's run changed nothing (every trained weight as it was, no unit masked): not an erasure."""


class InvalidArgumentError(ErasekitError, ValueError):
    """A command's arguments do not go together (a suite without the file or folder it needs, ...)."""
