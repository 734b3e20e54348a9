"""A space's recall settings in its directory segment, for readers in other processes.

The owner publishes them whenever they change (configure_recall, a reopened space's saved
settings, an embedder's calibration); a reader from ``attach`` or ``connect`` recalls with
them, so its answers are the owner's, until it configures its own. Workers need none of
this: each request carries the owner's settings. The cells are written under their own
sequence lock, as the index's are (engram/recall/ann.py), and read as untrusted: a value
that makes no setting is a damaged segment.
"""
from __future__ import annotations

import numpy as np

from engram.config import RecallConfig
from engram.errors import AttachError, EngramError, SegmentError
from engram.layout import SPACE_DIRECTORY_DTYPE

MAX_VALUES = SPACE_DIRECTORY_DTYPE["recall"].shape[0]
_DEFAULTS = RecallConfig().to_vector()


def publish(directory: np.ndarray, config: RecallConfig) -> None:
    """The owner: write ``config`` for readers."""
    v = config.to_vector()
    if len(v) > MAX_VALUES:       # a schema that holds fewer settings than RecallConfig has
        raise ValueError(f"{len(v)} recall settings do not fit the directory's {MAX_VALUES}")
    seq, cells = directory[0]["recall_seq"], directory[0]["recall"]
    seq[0] += 1
    cells[:len(v)] = v
    seq[1] = len(v)
    seq[0] += 1


def read(directory: np.ndarray, space: str):
    """(sequence, RecallConfig) as published, or (sequence, None) before the first publish."""
    seq_cells, cells = directory[0]["recall_seq"], directory[0]["recall"]
    for _ in range(1000):
        seq = int(seq_cells[0])
        if seq & 1:
            continue
        n, v = int(seq_cells[1]), cells.tolist()
        if int(seq_cells[0]) == seq:
            break
    else:
        raise AttachError(f"space {space!r}: its recall settings kept changing while read (1,000 tries)", "recall")
    if seq == 0:
        return 0, None
    if not 0 < n <= MAX_VALUES:
        raise SegmentError(f"space {space!r}: its directory says it holds {n} recall settings (at most "
                           f"{MAX_VALUES}): the segment is damaged")
    # an owner with fewer settings than this version: the rest at their defaults; with more: the
    # ones this version knows
    values = v[:n] + _DEFAULTS[n:]
    try:
        return seq, RecallConfig.from_vector(values[:len(_DEFAULTS)]).check()
    except (EngramError, ValueError, IndexError, TypeError, OverflowError) as e:
        raise SegmentError(f"space {space!r}: its directory's recall settings are damaged ({e})") from None
