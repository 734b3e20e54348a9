"""Errors raised by engram. Every message says what was wrong and what to do.

All derive from EngramError, and also from the builtin that fits, so
``except ValueError`` keeps working for callers that do not know engram.
"""


def shown(value) -> str:
    """``value`` as an error message shows it: numpy scalars and arrays as the plain Python
    values they hold (``5``, ``1.5``, ``'x'``, ``[1, 2]``, not ``np.int64(5)``), inside
    lists, tuples and dicts too; anything else as its repr."""
    if isinstance(value, (list, tuple)):
        inner = ", ".join(shown(v) for v in value)
        return f"({inner}{',' if len(value) == 1 else ''})" if isinstance(value, tuple) else f"[{inner}]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{shown(k)}: {shown(v)}" for k, v in value.items()) + "}"
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):   # np.generic or ndarray
        if getattr(value, "ndim", 1) == 0 and value.dtype.kind == "f":
            return str(value)             # a float32's shortest digits: 0.1, not 0.10000000149011612
        value = value.tolist()
    return repr(value)


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


class AttachError(SegmentError):
    """A shared-memory segment could not be attached: it is missing, another user's, or a
    field of its header (or of the header of what it holds) is out of bounds. The message
    names the segment and what is wrong; ``segment`` is its name and ``field`` the field
    found wrong ("" when no single field is)."""

    def __init__(self, message: str, segment: str = "", field: str = ""):
        super().__init__(message)
        self.segment, self.field = segment, field


class SegmentLayoutError(AttachError, LayoutMismatchError):
    """A segment was written by an engram of another format version or layout."""


class ReadOnlyError(EngramError, PermissionError):
    """A write was attempted through a read-only attachment."""


class ReconsolidationWindowError(EngramError, RuntimeError):
    """A memory is not labile now. ``reason``: "never recalled", "too young", "too soon" or "too late"."""

    def __init__(self, message: str, reason: str = ""):
        super().__init__(message)
        self.reason = reason


class SnapshotError(EngramError, OSError):
    """A snapshot is unusable: locked by another engine, damaged, or of another format.
    The message names the file and what is wrong with it."""


class WALError(EngramError, OSError):
    """The write-ahead log is damaged somewhere other than its torn tail (or a segment is
    missing): the engine refuses to open rather than lose acknowledged writes silently.
    ``engram recover --truncate PATH`` accepts the loss explicitly. Names file and offset."""

    def __init__(self, message: str, file: str = "", offset: int = -1):
        super().__init__(message)
        self.file, self.offset = file, offset


class DurabilityError(EngramError, OSError):
    """A write could not be made durable (write or fsync failed). The engine stops
    acknowledging writes (reads go on); reopen it to recover from what is on disk."""


class StorageFullError(DurabilityError):
    """The disk is full: the write was refused before anything changed. Free space; writes
    resume once the log can grow again."""


class OverloadError(EngramError, RuntimeError):
    """An ingest lane is at capacity: the batch was refused, not dropped. Retry after
    ``retry_after`` seconds (a hint from the lane's drain rate)."""

    def __init__(self, message: str, retry_after: float = 0.0):
        super().__init__(message)
        self.retry_after = retry_after


class EmbedderError(EngramError, RuntimeError):
    """The engine's embedder could not be loaded, failed, or returned something other than
    one finite vector of its dimension per text. Names the embedder."""


class EmbedderUnavailableError(EmbedderError):
    """``embedder="default"`` needs the text extra: ``pip install 'engram[text]'``."""


class NoEmbedderError(InvalidInputError):
    """Text was given to an engine (or an attached reader) that has no embedder: create the
    engine with ``embedder="default"`` (or an object with encode), or pass vectors."""


class EmbedderMismatchError(InvalidInputError):
    """Text was given to a space whose vectors another embedder made (or that holds vectors
    with no record of what made them): mixing two embeddings would make similarity
    meaningless. The message names both."""


class IdempotencyKeyError(InvalidInputError):
    """An idempotency key already guards a different write (another body, or another kind
    of change): it is not applied, and the key keeps its first result."""
