"""The kernel C ABI for ctypes, declared once (csrc/include/engram.h).

The C library and every Zig library export the same symbols; ``bind`` applies
this one block of argtypes/restype to whichever library is loaded.
"""
import ctypes as C

ISAS = ("avx512", "avx2", "scalar")          # best first
TOPK_OPS = ("dot_topk_f32", "dot_topk_f16", "cosine_topk_f32", "cosine_topk_f16", "dot_topk_i8", "cosine_topk_i8")

TOPK_ARGTYPES = [C.c_void_p, C.c_void_p, C.c_uint64, C.c_uint64, C.c_uint64,
                 C.c_void_p, C.c_void_p, C.c_uint64, C.c_void_p, C.c_void_p]
TOPK_MN_OPS = tuple(op.replace("_topk_", "_topk_mn_") for op in TOPK_OPS)
TOPK_MN_ARGTYPES = [C.c_void_p, C.c_uint64, C.c_uint64, C.c_void_p, C.c_uint64, C.c_uint64, C.c_uint64,
                    C.c_void_p, C.c_void_p, C.c_uint64, C.c_void_p, C.c_void_p, C.c_void_p]
DECAY_ARGTYPES = [C.c_void_p, C.c_void_p, C.c_uint64, C.c_uint32, C.c_float, C.c_float, C.c_float, C.c_void_p]
CRC_ARGTYPES = [C.c_uint32, C.c_void_p, C.c_uint64]
# per-ISA ops: name -> (restype, argtypes)
VARIANT_OPS = {**dict.fromkeys(TOPK_OPS, (C.c_int64, TOPK_ARGTYPES)),
               **dict.fromkeys(TOPK_MN_OPS, (C.c_int64, TOPK_MN_ARGTYPES)),
               "decay_f32": (C.c_int64, DECAY_ARGTYPES), "crc32c": (C.c_uint32, CRC_ARGTYPES)}
DECAY_KINDS = {"exponential": 0, "power": 1, "two_component": 2}

IDENTITY = {
    "eg_abi_version": (C.c_uint32, []),
    "eg_layout_hash": (C.c_uint64, []),
    "eg_isa": (C.c_char_p, []),
    "eg_layout_lookup": (C.c_int32, [C.c_char_p, C.c_char_p, C.POINTER(C.c_int64), C.POINTER(C.c_int64)]),
}
SPREAD = {
    "eg_spread": (C.c_int64, [C.c_void_p, C.c_void_p, C.c_void_p, C.c_uint64, C.c_void_p, C.c_void_p, C.c_uint64,
                              C.c_uint32, C.c_float, C.c_float, C.c_float, C.c_uint32, C.c_uint32,
                              C.c_void_p, C.c_void_p, C.c_void_p, C.c_uint64]),
    "eg_spread_hop": (C.c_int64, [C.c_void_p, C.c_void_p, C.c_void_p, C.c_uint64, C.c_uint32, C.c_float,
                                  C.c_float, C.c_float, C.c_uint32, C.c_uint32, C.c_void_p, C.c_void_p,
                                  C.c_void_p, C.c_uint64, C.c_uint64, C.c_uint64, C.c_uint64]),
    "eg_spread_fire": (C.c_int64, [C.c_void_p, C.c_void_p, C.c_void_p, C.c_uint64, C.c_uint32, C.c_float,
                                   C.c_float, C.c_float, C.c_uint32, C.c_uint32, C.c_void_p, C.c_void_p,
                                   C.c_void_p, C.c_uint64, C.c_uint64, C.c_uint64, C.c_uint64]),
    "eg_spread_gather": (C.c_int64, [C.c_void_p, C.c_void_p, C.c_void_p, C.c_uint64, C.c_float, C.c_float,
                                     C.c_uint32, C.c_void_p, C.c_void_p, C.c_uint64, C.c_void_p, C.c_void_p,
                                     C.c_void_p, C.c_uint64]),
    "eg_spread_merge": (C.c_int64, [C.c_uint64, C.c_uint32, C.c_float, C.c_uint32, C.c_void_p, C.c_void_p,
                                    C.c_void_p, C.c_uint64, C.c_void_p, C.c_uint64, C.c_uint64]),
}
OPTIONAL = {
    "eg_cpu_features": (C.c_uint32, []),     # C library only
    # C library only: the shared activation record pool (csrc/kernels/pool.c)
    "eg_pool_init": (C.c_int32, [C.c_void_p, C.c_uint32]),
    "eg_pool_acquire": (C.c_int64, [C.c_void_p, C.c_void_p, C.c_void_p, C.c_void_p, C.c_uint64]),
    "eg_pool_release": (C.c_int64, [C.c_void_p, C.c_void_p, C.c_void_p, C.c_void_p, C.c_uint64]),
    "eg_pool_flush": (C.c_int64, [C.c_void_p, C.c_void_p, C.c_void_p]),
    "eg_pool_reset": (C.c_int32, [C.c_void_p]),
    "eg_cas_u32": (C.c_int32, [C.c_void_p, C.c_uint32, C.c_uint32]),
    "eg_load_u32": (C.c_uint32, [C.c_void_p]),
    "eg_store_u32": (None, [C.c_void_p, C.c_uint32]),
    "eg_add_u64": (C.c_uint64, [C.c_void_p, C.c_uint64]),
    "eg_perf_open": (C.c_int64, [C.c_uint32, C.c_uint64]),
    "eg_perf_read": (C.c_int64, [C.c_int32]),
    "eg_perf_close": (C.c_int32, [C.c_int32]),
    # Zig library only: the per-thread kernel scratch arena
    "eg_arena_configure": (C.c_int32, [C.c_uint64, C.c_uint32]),
    "eg_arena_stats": (C.c_int32, [C.POINTER(C.c_uint64)]),
    "eg_arena_reset_stats": (None, []),
    "eg_arena_probe": (C.c_int64, [C.c_uint64]),
}
ARENA_OVERFLOW = {"panic": 0, "error": 1, "fallback": 2}
CPU_AVX2, CPU_AVX512 = 1, 2
POOL_CACHE_MAX = 1024            # EG_POOL_CACHE_MAX
POOL_CACHE_BYTES = 16 + 4 * POOL_CACHE_MAX   # sizeof(eg_pool_cache_t)


def kernel_symbol(op: str, isa: str) -> str:
    return f"eg_{op}_{isa}"


def bind_identity(lib: C.CDLL) -> dict:
    """The version and layout symbols, bound first so a stale library is named as such."""
    fns = {}
    for name, (res, args) in IDENTITY.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
        fns[name] = fn
    return fns


def bind(lib: C.CDLL, isas) -> dict:
    """Declare every kernel symbol; return {name: function}. Raises AttributeError if one is missing."""
    fns = {}
    for name, (res, args) in SPREAD.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
        fns[name] = fn
    for name, (res, args) in OPTIONAL.items():
        fn = getattr(lib, name, None)
        if fn is not None:
            fn.restype, fn.argtypes = res, args
            fns[name] = fn
    for isa in isas:
        for op, (res, args) in VARIANT_OPS.items():
            name = kernel_symbol(op, isa)
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = res, args
            fns[name] = fn
    return fns
