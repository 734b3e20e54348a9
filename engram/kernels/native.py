"""Loading the native kernel libraries (C and Zig) with ctypes.

Libraries live in engram/kernels/lib/ and are found with importlib.resources.
Each is probed for its ABI hash (of engram.h's prototypes) and layout hash
(of the shared-memory schema) before any kernel is bound; a mismatch is
refused with a message that says how to rebuild.
"""
from __future__ import annotations

import ctypes
import functools
import os
from importlib import resources
from pathlib import Path

from engram.errors import KernelError, LayoutMismatchError, shown
from engram.kernels import abi
from engram.layout.schema import LAYOUT_HASH

REBUILD = "rebuild with `pip install -e .` (or ENGRAM_KERNELS=numba to run without it)"


def lib_dir() -> Path:
    return Path(str(resources.files("engram.kernels") / "lib"))


def lib_file(backend: str, isa: str | None = None) -> Path:
    name = "libengram_c.so" if backend == "c" else f"libengram_zig_{isa}.so"
    return lib_dir() / name


class NativeLibrary:
    """One loaded, verified shared library and its bound functions."""

    def __init__(self, path: Path, isas):
        if not path.exists():
            hint = " (was it built with ENGRAM_BUILD_ZIG=0?)" if "zig" in path.name else ""
            raise KernelError(f"kernel library {path} is missing{hint}; {REBUILD}")
        try:
            self.cdll = ctypes.CDLL(str(path))
        except OSError as e:
            raise KernelError(f"cannot load {path}: {e}; {REBUILD}") from e
        self.path = path
        try:
            self.fns = abi.bind_identity(self.cdll)
        except AttributeError as e:
            raise KernelError(f"{path} is not a kernel library of this engram ({e}): it is stale or foreign; "
                              f"{REBUILD}") from e
        got = self.fns["eg_abi_hash"]()
        if got != abi.ABI_HASH:
            raise KernelError(
                f"{path} was built for kernel ABI 0x{got:016x} but engram's csrc/include/engram.h is "
                f"0x{abi.ABI_HASH:016x}: the library is stale; {REBUILD}")
        got = self.fns["eg_layout_hash"]()
        if got != LAYOUT_HASH:
            raise LayoutMismatchError(
                f"{path} was built for shared-memory layout 0x{got:016x} but engram's schema is "
                f"0x{LAYOUT_HASH:016x}: the library is stale; {REBUILD}")
        try:
            self.fns.update(abi.bind(self.cdll, isas))
        except AttributeError as e:
            raise KernelError(f"{path} lacks a kernel symbol ({e}); it is from another version: {REBUILD}") from e
        self.isas = tuple(isas)

    def address(self, op: str, isa: str) -> int:
        return self.address_of(abi.kernel_symbol(op, isa))

    def address_of(self, symbol: str) -> int:
        return ctypes.cast(self.fns[symbol], ctypes.c_void_p).value

    def lookup(self, record: str, field: str = ""):
        off, size = ctypes.c_int64(), ctypes.c_int64()
        rc = self.fns["eg_layout_lookup"](record.encode(), field.encode(), ctypes.byref(off), ctypes.byref(size))
        return (off.value, size.value) if rc == 0 else None


@functools.cache
def load_c() -> NativeLibrary:
    return NativeLibrary(lib_file("c"), abi.ISAS if _x86() else ("scalar",))


@functools.cache
def load_zig(isa: str) -> NativeLibrary:
    return NativeLibrary(lib_file("zig", isa), (isa,))


def _x86() -> bool:
    return os.uname().machine in ("x86_64", "amd64")


@functools.cache
def cpu_isas() -> tuple:
    """ISA variants this CPU (and OS) can run, best first."""
    if not _x86():
        return ("scalar",)
    try:
        feats = load_c().fns["eg_cpu_features"]()
    except KernelError:
        feats = _cpuinfo_features()
    isas = []
    if feats & abi.CPU_AVX512:
        isas.append("avx512")
    if feats & abi.CPU_AVX2:
        isas.append("avx2")
    return tuple(isas) + ("scalar",)


def _cpuinfo_features() -> int:
    """Fallback probe when the C library is absent: the kernel's cpuinfo flags."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return 0
    flags = set(flags)
    feats = 0
    if {"avx2", "fma", "f16c"} <= flags:
        feats |= abi.CPU_AVX2
        if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags:
            feats |= abi.CPU_AVX512
    return feats


class Arena:
    """The Zig library's per-thread scratch arena: size, overflow strategy, counters."""

    FIELDS = ("bytes", "overflow", "high_water", "overflows", "fallbacks", "allocations", "threads")

    def __init__(self, lib: NativeLibrary):
        self._fns = lib.fns

    def configure(self, size_mb: int = 1, overflow: str = "fallback") -> None:
        """size_mb in 1..100 per thread; overflow: "panic" (abort), "error" (kernel fails), "fallback"."""
        from engram.errors import InvalidInputError
        if isinstance(size_mb, bool) or not isinstance(size_mb, int) or not 1 <= size_mb <= 100:
            raise InvalidInputError(f"size_mb must be an integer from 1 to 100, got {shown(size_mb)}")
        if overflow not in abi.ARENA_OVERFLOW:
            raise InvalidInputError(f"overflow must be one of {', '.join(abi.ARENA_OVERFLOW)}, got {shown(overflow)}")
        if self._fns["eg_arena_configure"](size_mb << 20, abi.ARENA_OVERFLOW[overflow]) != 0:
            raise KernelError("eg_arena_configure refused its arguments")

    def stats(self) -> dict:
        out = (ctypes.c_uint64 * len(self.FIELDS))()
        self._fns["eg_arena_stats"](out)
        d = dict(zip(self.FIELDS, (int(x) for x in out)))
        d["overflow"] = {v: k for k, v in abi.ARENA_OVERFLOW.items()}[d["overflow"]]
        return d

    def reset_stats(self) -> None:
        self._fns["eg_arena_reset_stats"]()

    def probe(self, nbytes: int) -> bool:
        """Take nbytes of this thread's arena and check it holds data; False if it did not fit."""
        return self._fns["eg_arena_probe"](nbytes) == 0
