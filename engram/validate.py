"""Input checks shared by the public API. Each raises an engram error that
names the argument, what was wrong, and what is expected; none mutates."""
from __future__ import annotations

import math
import re

import numpy as np

from engram.errors import (
    DimensionError,
    EmptyBatchError,
    InvalidInputError,
    InvalidSpaceNameError,
    InvalidWeightError,
    NonFiniteError,
    shown,
)
from engram.kernels.checks import as_query
from engram.layout import CONSTANTS

TIER_CODES = {"hot": CONSTANTS["TIER_HOT"], "warm": CONSTANTS["TIER_WARM"], "cold": CONSTANTS["TIER_COLD"]}

SPACE_NAME = re.compile(r"^[a-z0-9_-]{3,64}$")
F16_MAX = float(np.finfo(np.float16).max)
# row-wise dot products; numpy 2's vecdot is twice einsum's speed (86 against 178 us per 500 x 384 batch)
rowdot = getattr(np, "vecdot", None) or (lambda a, b: np.einsum("ij,ij->i", a, b))


def space_name(name) -> str:
    if not isinstance(name, str) or not SPACE_NAME.match(name):
        raise InvalidSpaceNameError(
            f"memory space name {shown(name)} is invalid: use 3-64 characters of lowercase a-z, 0-9, '_' or '-'")
    return str(name)          # a numpy str_ becomes a plain str


def vectors(v, dim: int, *, f16: bool = False) -> np.ndarray:
    """A (n, dim) finite float32 batch from one vector or a batch."""
    try:
        a = np.asarray(v)
    except ValueError as e:          # rows of different lengths
        raise InvalidInputError(f"vectors must be one vector ({dim},) or rows of {dim} numbers each: {e}") from None
    if a.dtype.kind not in "fiu":
        raise InvalidInputError(f"vectors must be numeric, got dtype {a.dtype}")
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2:
        raise InvalidInputError(f"vectors must be one vector ({dim},) or a batch (n, {dim}), got shape {a.shape}")
    if a.shape[0] == 0:
        raise EmptyBatchError("vectors is an empty batch: pass at least one vector")
    if a.shape[1] != dim:
        raise DimensionError(f"vectors have {a.shape[1]} dimensions, this engine stores {dim}")
    with np.errstate(over="ignore"):   # values past float32's range become inf: reported below
        a = np.ascontiguousarray(a, dtype=np.float32)
    # One pass over the batch decides for almost every batch: a row with a NaN or an
    # infinity has a NaN or infinite sum of squares, and a row whose sum of squares is
    # finite and positive is finite and not all zeros. Only a batch where some row's sum
    # fails that (a bad row, or squares past float32's range or below its smallest value)
    # goes through the exact checks below, which name the rows.
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        sq = rowdot(a, a)
    if np.isfinite(sq).all() and (sq > 0).all():
        if f16 and sq.max() > F16_MAX * F16_MAX:     # no value is larger than its row's norm
            fits_tier(a, "warm")
        return a
    bad = ~np.isfinite(a).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)[:5].tolist()
        raise NonFiniteError(f"vectors contain NaN, infinity or values beyond float32's range (rows "
                             f"{rows}{'...' if bad.sum() > 5 else ''}); remove or replace those values")
    zero = ~a.any(axis=1)
    if zero.any():      # a direction is what similarity compares: as for a query
        rows = np.flatnonzero(zero)[:5].tolist()
        raise InvalidInputError(f"vectors rows {rows}{'...' if zero.sum() > 5 else ''} are all zeros: cosine "
                                "similarity is undefined for them; pass a vector with a direction")
    if f16:
        fits_tier(a, "warm")
    return a


def tier_code(name) -> int:
    """The code of a tier named "hot", "warm" or "cold"."""
    if not isinstance(name, str) or name not in TIER_CODES:
        raise InvalidInputError(f"tier must be 'hot', 'warm' or 'cold', got {shown(name)}")
    return TIER_CODES[name]


def fits_tier(a: np.ndarray, name: str) -> None:
    """Refuse vectors the tier cannot store: past float16's range for the warm tier."""
    if name != "warm":
        return
    big = (np.abs(a) > F16_MAX).any(axis=1)
    if big.any():
        raise InvalidInputError(f"rows {np.flatnonzero(big)[:5].tolist()} exceed the float16 range "
                                f"(|x| <= {F16_MAX:g}) of the warm tier: scale them or use tier='hot'")


def query(q, dim: int) -> np.ndarray:
    """A finite float32 query vector of ``dim`` values, not all zero (a direction to compare)."""
    a = as_query(q, dim)
    if not a.any():
        raise InvalidInputError("query is all zeros: cosine similarity is undefined for it")
    return a


def per_item(value, n: int, what: str, default: float, lo: float, hi: float, lo_open: bool = False) -> np.ndarray:
    """A float32 array of n values in [lo, hi] (or (lo, hi]) from a scalar or sequence."""
    if value is None:
        return np.full(n, default, np.float32)
    a = np.asarray(value, dtype=np.float64)
    if a.ndim == 0:
        a = np.full(n, float(a))
    if a.shape != (n,):
        raise InvalidInputError(f"{what} must be a scalar or have {n} values, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise NonFiniteError(f"{what} contains NaN or infinity")
    low_bad = a <= lo if lo_open else a < lo
    if (low_bad | (a > hi)).any():
        i = int(np.flatnonzero(low_bad | (a > hi))[0])
        interval = f"({lo}, {hi}]" if lo_open else f"[{lo}, {hi}]"
        err = InvalidWeightError if what.startswith("weight") else InvalidInputError
        raise err(f"{what}[{i}] = {shown(a[i])} is outside {interval}")
    return a.astype(np.float32)


def ids(value, what: str = "ids") -> np.ndarray:
    """A non-empty 1-D int64 array from an int or a sequence of ints."""
    a = np.asarray(value)
    if a.ndim == 0:
        a = a[None]
    if a.ndim != 1:
        raise InvalidInputError(f"{what} must be an id or a 1-D sequence of ids, got shape {a.shape}")
    if a.size == 0:
        raise EmptyBatchError(f"{what} is empty: pass at least one id")
    if a.dtype.kind not in "iu":
        if a.dtype.kind == "f" and np.all(np.isfinite(a)) and np.all(a == np.round(a)):
            a = a.astype(np.int64)
        else:
            raise InvalidInputError(f"{what} must be integers, got dtype {a.dtype}")
    return a.astype(np.int64)


def contents(content, n: int) -> list:
    if content is None:
        return [None] * n
    if isinstance(content, str):
        content = [content]
    items = list(content)
    if len(items) != n:
        raise InvalidInputError(f"content has {len(items)} items for {n} vectors; pass one string (or None) per vector")
    for i, c in enumerate(items):
        if c is not None and not isinstance(c, str):
            raise InvalidInputError(f"content[{i}] must be a string or None, got {type(c).__name__}")
    return items


def texts(value, what: str = "texts") -> list:
    """A non-empty list of strings (one str is a list of one), each with a non-blank character."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) and not (isinstance(items, np.ndarray) and items.ndim == 1):
        raise InvalidInputError(f"{what} must be a string or a list of strings, got {type(value).__name__}")
    if not len(items):
        raise EmptyBatchError(f"{what} is empty: pass at least one text")
    for i, t in enumerate(items):
        if not isinstance(t, str):
            raise InvalidInputError(f"{what}[{i}] must be a string, got {type(t).__name__}")
        if not t.strip():
            raise InvalidInputError(f"{what}[{i}] is blank: an embedding of no words means nothing")
    return [str(t) for t in items]


def positive_int(value, what: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InvalidInputError(f"{what} must be an integer >= {minimum}, got {shown(value)}")
    return int(value)


def positive_float(value, what: str) -> float:
    """A finite number > 0 (not a bool)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InvalidInputError(f"{what} must be a number > 0, got {shown(value)}")
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise InvalidInputError(f"{what} must be a finite number > 0, got {shown(value)}")
    return v


def known_settings(changes: dict, known, what: str) -> dict:
    """Refuse settings a configuration does not have, naming them and the ones it has; returns
    the changes with numpy scalars as the plain Python values they hold (np.int64(3) -> 3),
    which the checks take and snapshots keep as JSON."""
    unknown = set(changes) - set(known)
    if unknown:
        raise InvalidInputError(f"unknown {what} settings {sorted(unknown)}; known: {sorted(known)}")
    return {k: v.item() if isinstance(v, np.generic) else v for k, v in changes.items()}


def observations(values, dim: int, content, confidence, tier: str) -> tuple:
    """remember's input, checked: (vectors f32 (n, dim), tier code, texts, confidence f32)."""
    code = tier_code(tier)
    v = vectors(values, dim, f16=(tier == "warm"))
    n = v.shape[0]
    return v, code, contents(content, n), per_item(confidence, n, "confidence", 1.0, 0.0, 1.0)


def lane_capacities(lanes, names) -> dict:
    """Checked ingest lane capacities (observations) by lane name (``names``: the lanes)."""
    if lanes is None:
        return {}
    if not isinstance(lanes, dict) or not set(lanes) <= set(names):
        raise InvalidInputError(f"lanes must be a dict of capacities by lane ({', '.join(names)}), "
                                f"got {shown(lanes)}")
    return {k: positive_int(v, f"lanes[{k!r}]", 1) for k, v in lanes.items()}
