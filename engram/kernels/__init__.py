"""Kernel backends: c, zig, numba and numpy behind one function table.

    engram.kernels.backend()              # the default: ENGRAM_KERNELS, else the fastest that loads
    engram.kernels.backend("zig")         # a named backend, best ISA variant the CPU runs
    engram.kernels.backend("c", isa="avx2")   # a forced variant (ENGRAM_ISA does this globally)

Preference order (fastest first, measured by benches/scan.py): c, zig,
numba, numpy. A backend that cannot load falls back to the next with one
warning naming why; nothing falls back silently.
"""
from __future__ import annotations

import functools
import os
import warnings

from engram.errors import KernelError, shown
from engram.kernels import abi, native
from engram.kernels.native import cpu_isas  # noqa: F401  (public)
from engram.kernels.spreadrun import CsrGraph  # noqa: F401  (public)
from engram.kernels.table import KernelTable

BACKENDS = ("c", "zig", "numba", "numpy")
_warned: set = set()


def _warn_once(msg: str):
    if msg not in _warned:
        _warned.add(msg)
        warnings.warn(msg, RuntimeWarning, stacklevel=3)


def _pick_isa(isa: str | None) -> str:
    runnable = native.cpu_isas()
    isa = isa or os.environ.get("ENGRAM_ISA") or runnable[0]
    if isa not in abi.ISAS:
        raise KernelError(f"unknown ISA variant {shown(isa)}; choose one of {', '.join(abi.ISAS)}")
    if isa not in runnable:
        raise KernelError(f"ISA variant {shown(isa)} is not supported by this CPU; it runs {', '.join(runnable)}")
    return isa


@functools.cache
def _load(name: str, isa: str | None) -> KernelTable:
    if name == "c":
        from engram.kernels.native_table import NativeTable
        return NativeTable("c", native.load_c(), _pick_isa(isa))
    if name == "zig":
        from engram.kernels.native_table import NativeTable
        chosen = _pick_isa(isa)
        return NativeTable("zig", native.load_zig(chosen), chosen)
    if name == "numba":
        try:
            from engram.kernels.numba_backend import NumbaTable
        except ImportError as e:
            raise KernelError(f"numba is not importable ({e}); pip install numba") from e
        return NumbaTable()
    if name == "numpy":
        from engram.kernels.reference import NumpyTable
        return NumpyTable()
    raise KernelError(f"unknown kernel backend {shown(name)}; choose one of {', '.join(BACKENDS)}")


def backend(name: str | None = None, isa: str | None = None) -> KernelTable:
    """The kernel table of backend ``name`` (default: ENGRAM_KERNELS, else the fastest that loads).

    A named backend that cannot load raises KernelError. The default instead
    falls back to the next fastest (c -> zig -> numba -> numpy), warning once.
    """
    if name is not None:
        return _load(name, isa)
    wanted = os.environ.get("ENGRAM_KERNELS") or None
    if wanted is not None and wanted not in BACKENDS:
        raise KernelError(f"ENGRAM_KERNELS={wanted!r} is not a backend; choose one of {', '.join(BACKENDS)}")
    # the wanted backend first, then the rest fastest first
    order = (wanted,) + tuple(b for b in BACKENDS if b != wanted) if wanted else BACKENDS
    for i, cand in enumerate(order):
        try:
            return _load(cand, isa)
        except KernelError as e:
            if i + 1 < len(order):
                _warn_once(f"engram: kernel backend {cand!r} unavailable ({e}); falling back to {order[i + 1]!r}")
            else:
                raise


def available() -> dict:
    """{backend: table or the error that stops it}, for every backend and runnable ISA."""
    out = {}
    for name in BACKENDS:
        isas = native.cpu_isas() if name in ("c", "zig") else (None,)
        for isa in isas:
            key = f"{name}/{isa}" if isa else name
            try:
                out[key] = _load(name, isa)
            except KernelError as e:
                out[key] = e
    return out
