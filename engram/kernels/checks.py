"""Checks of what callers hand the kernels: each raises an engram error naming the argument,
what is wrong and what is expected, and returns arrays the backends can trust."""
from __future__ import annotations

import numpy as np

from engram.errors import DimensionError, InvalidInputError, KernelError, NonFiniteError, shown
from engram.kernels.abi_generated import CONSTANTS

ENOSPACE = CONSTANTS["EG_ENOSPACE"]     # a gather out of space, which callers handle
KERNEL_ERRORS = {CONSTANTS["EG_EINVAL"]: "EG_EINVAL: an argument is out of range",
                 CONSTANTS["EG_ENOSPACE"]: "EG_ENOSPACE: an output buffer is too small",
                 CONSTANTS["EG_ENOMEM"]: "EG_ENOMEM: scratch memory could not be allocated"}


def checked(got: int, what: str) -> int:
    """A kernel's return value, or a KernelError naming the kernel and its EG_E* code."""
    if got < 0:
        raise KernelError(f"{what} returned {got} ({KERNEL_ERRORS.get(got, 'an unknown error')})")
    return got

ROW_DTYPES = (np.dtype(np.float32), np.dtype(np.float16), np.dtype(np.int8))
DTYPE_TAG = {np.dtype(np.float32): "f32", np.dtype(np.float16): "f16", np.dtype(np.int8): "i8"}
METRICS = ("cosine", "dot")


def finite_f32(a: np.ndarray, what: str) -> np.ndarray:
    """C-contiguous float32 of a numeric array with no NaN, inf or float32 overflow."""
    if not np.isfinite(a).all():
        raise NonFiniteError(f"{what} contains NaN or infinity; remove or replace those values")
    if a.dtype == np.float32 and a.flags.c_contiguous:      # the common case: no copy, no second pass
        return a
    with np.errstate(over="ignore"):
        a = np.ascontiguousarray(a, dtype=np.float32)
    if not np.isfinite(a).all():
        raise NonFiniteError(f"{what} has values beyond the float32 range (|x| > 3.4e38)")
    return a


def as_query(query, dim: int | None = None, what: str = "query") -> np.ndarray:
    """A finite, contiguous f32 vector; raises a clear error otherwise."""
    q = np.asarray(query)
    if q.dtype.kind not in "fiu":
        raise InvalidInputError(f"{what} must be numeric, got dtype {q.dtype}")
    if q.ndim != 1:
        raise InvalidInputError(f"{what} must be a 1-D vector, got shape {q.shape}")
    if dim is not None and q.shape[0] != dim:
        raise DimensionError(f"{what} has {q.shape[0]} dimensions, expected {dim}")
    return finite_f32(q, what)


def as_queries(queries, dim: int) -> np.ndarray:
    """A finite, C-contiguous (m, dim) float32 batch."""
    qs = np.asarray(queries)
    if qs.dtype.kind not in "fiu":
        raise InvalidInputError(f"queries must be numeric, got dtype {qs.dtype}")
    if qs.shape[1] != dim:
        raise DimensionError(f"queries have {qs.shape[1]} dimensions, expected {dim}")
    return finite_f32(qs, "queries")


def as_rows(rows) -> np.ndarray:
    if not isinstance(rows, np.ndarray) or rows.ndim != 2:
        raise InvalidInputError("rows must be a 2-D numpy array (n, dim)")
    if rows.dtype not in ROW_DTYPES:
        raise InvalidInputError(f"rows must be float32, float16 or int8, got {rows.dtype}")
    if rows.shape[0] == 0:
        return rows   # numpy gives empty arrays arbitrary (even zero) strides: nothing to check
    if rows.shape[1] > 1 and rows.strides[1] != rows.itemsize:
        raise InvalidInputError("rows must be contiguous along the last axis (use np.ascontiguousarray)")
    if rows.shape[0] > 1 and rows.strides[0] % rows.itemsize:
        raise InvalidInputError("rows' row stride must be a multiple of the element size")
    if rows.shape[0] > 1 and rows.strides[0] < 0:
        raise InvalidInputError("rows must have a positive row stride")
    return rows


def as_mask(mask, n: int):
    if mask is None:
        return None
    m = np.asarray(mask)
    if m.shape != (n,):
        raise InvalidInputError(f"mask must have shape ({n},), got {m.shape}")
    if m.dtype != np.uint8:
        if m.dtype != np.bool_:
            raise InvalidInputError(f"mask must be bool or uint8, got {m.dtype}")
        m = m.view(np.uint8)
    return np.ascontiguousarray(m)



DECAY_CURVES = {"exponential": (CONSTANTS["EG_DECAY_EXP"], ("tau",)),
                "power": (CONSTANTS["EG_DECAY_POWER"], ("beta",)),
                "two_component": (CONSTANTS["EG_DECAY_TWO"], ("tau_fast", "tau_slow", "weight"))}


def decay_params(curve, params):
    """(kind, (p0, p1, p2)) for a curve and its named parameters, validated."""
    if curve not in DECAY_CURVES:
        raise InvalidInputError(f"unknown decay curve {shown(curve)}; choose one of {', '.join(DECAY_CURVES)}")
    kind, names = DECAY_CURVES[curve]
    extra = set(params) - set(names)
    missing = [n for n in names if n not in params]
    if extra or missing:
        raise InvalidInputError(f"curve {shown(curve)} takes {', '.join(names)}"
                                + (f"; unknown: {', '.join(sorted(extra))}" if extra else "")
                                + (f"; missing: {', '.join(missing)}" if missing else ""))
    vals = []
    for n in names:
        v = params[n]
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not np.isfinite(v):
            raise InvalidInputError(f"{n} must be a finite number, got {shown(v)}")
        ok = {"tau": v > 0, "tau_fast": v > 0, "tau_slow": v > 0, "beta": v >= 0, "weight": 0 <= v <= 1}[n]
        if not ok:
            rule = {"beta": ">= 0", "weight": "in [0, 1]"}.get(n, "> 0")
            raise InvalidInputError(f"{n} must be {rule}, got {shown(v)}")
        vals.append(float(v))
    return kind, tuple(vals + [0.0] * (3 - len(vals)))


def int_array(x, what: str) -> np.ndarray:
    """A 1-D integer array, checked before any narrowing cast."""
    a = np.asarray(x)
    if a.size == 0 and a.dtype.kind == "f":       # [] arrives as float64
        a = a.astype(np.int64)
    if a.ndim != 1 or a.dtype.kind not in "iu":
        raise InvalidInputError(f"{what} must be a 1-D array of integers (node ids or offsets), "
                                f"got {a.dtype} with shape {a.shape}")
    return a


def float_array(x, what: str) -> np.ndarray:
    """A finite, non-negative float32 array (checked in place when it already is one)."""
    a = np.asarray(x)
    if a.dtype.kind not in "fiu":
        raise InvalidInputError(f"{what} must be numeric, got {a.dtype}")
    if a.dtype == np.float32:                    # the common case: no conversion, one pass each
        if not np.isfinite(a).all():
            raise NonFiniteError(f"{what} must be finite")
        if (a < 0).any():
            raise InvalidInputError(f"{what} must be >= 0")
        return np.ascontiguousarray(a)
    a64 = a.astype(np.float64)
    if not np.isfinite(a64).all():
        raise NonFiniteError(f"{what} must be finite")
    if (a64 < 0).any():
        raise InvalidInputError(f"{what} must be >= 0")
    with np.errstate(over="ignore"):
        a32 = np.ascontiguousarray(a64, dtype=np.float32)
    if not np.isfinite(a32).all():
        raise NonFiniteError(f"{what} has values beyond the float32 range")
    return a32


_CSR_INDEX = {np.dtype(t) for t in (np.int32, np.int64, np.uint32, np.uint64)}
_CSR_ERRORS = {
    1: "offsets must start at 0",
    2: "offsets must never decrease (offsets[{i}] < offsets[{i_1}])",
    3: "offsets must end at len(targets)",
    5: "weights must be finite (weights[{i}] is not)",
    6: "weights must be >= 0 (weights[{i}] is negative)",
    7: "targets and weights must be equal in length",
}


def _csr_checker():
    try:
        from engram.kernels._cy.csr import csr_check
    except ImportError:          # the Cython drivers are not built: the numpy checks below
        return None
    return csr_check


_csr_check = _csr_checker()


def as_csr(offsets, targets, weights):
    """Validated CSR arrays (u64 offsets[n+1], u32 targets[m], f32 weights[m])."""
    o = int_array(offsets, "offsets")
    t = int_array(targets, "targets")
    if o.shape[0] < 1:
        raise InvalidInputError("offsets must have n_nodes + 1 entries (at least one)")
    n = o.shape[0] - 1
    w = np.asarray(weights)
    if (_csr_check is not None and n < 2**31 and o.dtype in _CSR_INDEX and t.dtype in _CSR_INDEX
            and w.dtype == np.float32
            and o.flags.c_contiguous and t.flags.c_contiguous and w.flags.c_contiguous and w.ndim == 1):
        code, i = _csr_check(o, t, w)           # one typed pass over each array
        if code == 4:
            raise InvalidInputError(f"targets[{i}] names node {int(t[i])}, but the graph has {n} nodes "
                                    f"(ids 0..{n - 1})")
        if code == 5:
            raise NonFiniteError(_CSR_ERRORS[code].format(i=i))
        if code:
            if code == 7:
                raise InvalidInputError(f"{_CSR_ERRORS[7]}, got {t.shape} and {w.shape}")
            raise InvalidInputError(_CSR_ERRORS[code].format(i=i, i_1=i - 1))
    else:
        w = float_array(w, "weights")
        if w.shape != t.shape:
            raise InvalidInputError(f"targets and weights must be equal in length, got {t.shape} and {w.shape}")
        if o[0] != 0 or int(o[-1]) != t.shape[0] or (np.diff(o.astype(np.int64)) < 0).any():
            raise InvalidInputError("offsets must start at 0, never decrease, and end at len(targets)")
        if t.size and int(t.max()) >= n:
            raise InvalidInputError(f"targets name node {int(t.max())}, but the graph has {n} nodes (ids 0..{n - 1})")
        if t.size and int(t.min()) < 0:
            raise InvalidInputError(f"targets name node {int(t.min())}: node ids are >= 0")
    return (np.ascontiguousarray(o, dtype=np.uint64), np.ascontiguousarray(t, dtype=np.uint32), w)
