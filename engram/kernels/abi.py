"""The kernel C ABI for ctypes: every signature comes from csrc/include/engram.h.

tools/gen_abi.py turns the header's prototypes into abi_generated.py (restype,
argtypes, the constants and ABI_HASH, the hash of the prototypes the library
must also report); this module adds how they are bound: the identity symbols
first (so a stale library is named as such), then every kernel, with symbols
only one kind of library exports (EG_API_C, EG_API_ZIG) bound where present.
"""
import ctypes as C

# ABI_HASH is re-exported: native.py checks each library's eg_abi_hash() against it
from engram.kernels.abi_generated import ABI_HASH, CONSTANTS, SYMBOLS, VARIANT_ISAS, VARIANT_OPS  # noqa: F401

ISAS = ("avx512", "avx2", "scalar")          # best first
if set(ISAS) != set(VARIANT_ISAS):
    raise ImportError(f"ISAS {ISAS} differ from engram.h's EG_DECLARE_VARIANT suffixes {VARIANT_ISAS}")
IDENTITY = ("eg_abi_hash", "eg_layout_hash", "eg_isa", "eg_layout_lookup")
#: kernels the C and Zig libraries both export; the rest are bound if present
REQUIRED = tuple(n for n, (_, _, libs) in SYMBOLS.items() if len(libs) > 1 and n not in IDENTITY)
OPTIONAL = tuple(n for n, (_, _, libs) in SYMBOLS.items() if len(libs) == 1)

ARENA_OVERFLOW = {"panic": CONSTANTS["EG_ARENA_PANIC"], "error": CONSTANTS["EG_ARENA_ERROR"],
                  "fallback": CONSTANTS["EG_ARENA_FALLBACK"]}
CPU_AVX2, CPU_AVX512 = CONSTANTS["EG_CPU_AVX2"], CONSTANTS["EG_CPU_AVX512"]
POOL_CACHE_MAX = CONSTANTS["EG_POOL_CACHE_MAX"]
POOL_CACHE_BYTES = 16 + 4 * POOL_CACHE_MAX   # sizeof(eg_pool_cache_t)


def kernel_symbol(op: str, isa: str) -> str:
    return f"eg_{op}_{isa}"


def _declare(lib: C.CDLL, name: str, res, args, fns: dict, required: bool = True) -> None:
    fn = getattr(lib, name) if required else getattr(lib, name, None)
    if fn is not None:
        fn.restype, fn.argtypes = res, args
        fns[name] = fn


def bind_identity(lib: C.CDLL) -> dict:
    """The ABI hash, layout hash, ISA and layout lookup, bound first so a stale library is named as such."""
    fns = {}
    for name in IDENTITY:
        _declare(lib, name, *SYMBOLS[name][:2], fns)
    return fns


def bind(lib: C.CDLL, isas) -> dict:
    """Declare every kernel symbol; return {name: function}. Raises AttributeError if one is missing."""
    fns = {}
    for name in REQUIRED:
        _declare(lib, name, *SYMBOLS[name][:2], fns)
    for name in OPTIONAL:
        _declare(lib, name, *SYMBOLS[name][:2], fns, required=False)
    for isa in isas:
        for op, (res, args) in VARIANT_OPS.items():
            _declare(lib, kernel_symbol(op, isa), res, args, fns)
    return fns
