"""Errors raised by engram. Every message says what was wrong and what to do.

All derive from EngramError, and also from the builtin that fits, so
``except ValueError`` keeps working for callers that do not know engram.
"""


class EngramError(Exception):
    """Base of every engram error."""


class InvalidInputError(EngramError, ValueError):
    """An argument has the wrong shape, type or value."""


class DimensionError(InvalidInputError):
    """A vector's length is not the engine's dimension."""


class NonFiniteError(InvalidInputError):
    """A vector holds NaN or infinity."""


class EmptyBatchError(InvalidInputError):
    """A batch call was given nothing to do."""


class InvalidSpaceNameError(InvalidInputError):
    """A memory space name is not 3-64 characters of [a-z0-9_-]."""


class InvalidWeightError(InvalidInputError):
    """An association weight is outside (0, 1]."""


class UnknownIdError(EngramError, KeyError):
    """An id names no live memory."""

    def __str__(self):  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class UnknownSpaceError(EngramError, KeyError):
    """An attached engine has no memory space of that name."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""


class UnknownEngineError(EngramError, LookupError):
    """No running engine of that name or pid is in shared memory."""


class ClosedError(EngramError, RuntimeError):
    """The engine or space was used after close()."""


class KernelError(EngramError, RuntimeError):
    """A kernel library is missing, mismatched or returned an error."""


class LayoutMismatchError(KernelError):
    """A library or segment was built for a different shared-memory layout."""


class SegmentError(EngramError, OSError):
    """A shared-memory segment could not be created, attached or read."""


class ReadOnlyError(EngramError, PermissionError):
    """A write was attempted through a read-only attachment."""


class ReconsolidationWindowError(EngramError, RuntimeError):
    """A memory is not labile now. ``reason``: "never recalled", "too young", "too soon" or "too late"."""

    def __init__(self, message: str, reason: str = ""):
        super().__init__(message)
        self.reason = reason
