/* engram kernel ABI: one set of C signatures, exported by the C library
 * (csrc/) and the Zig libraries (zig/). This header is the one place a
 * prototype is written: tools/gen_abi.py reads it and generates the ctypes
 * tables (engram/kernels/abi_generated.py), the Cython function-pointer types
 * (engram/kernels/_cy/abi.pxd), the signatures the Zig exports are checked
 * against at compile time (zig/src/abi.zig) and the ABI hash (engram_abi.h),
 * a hash of the normalised prototypes and constants that eg_abi_hash()
 * returns and Python checks at load.
 *
 * Names are eg_<op>_<dtype>_<isa> for each ISA variant and eg_<op>_<dtype>
 * for the dispatcher, which probes the CPU once and calls the best variant.
 * Kernels never abort: they return a negative EG_E* code on bad arguments.
 *
 * The shape gen_abi.py reads (it refuses anything else): a declaration is
 * `MARK ret eg_name(params);`, where params may be one EG_*_ARGS macro, and a
 * per-ISA kernel is `EG_API ret eg_op##isa_suffix(EG_*_ARGS);` inside
 * EG_DECLARE_VARIANT; a parameter is `[const] type [*]name`; a constant is
 * `#define EG_NAME <integer>`. MARK says who exports it: EG_API every library,
 * EG_API_C the C library only, EG_API_ZIG the Zig libraries only.
 */
#ifndef ENGRAM_H
#define ENGRAM_H
#include <stdint.h>
#include "engram_layout.h"

#if defined(__GNUC__)
#define EG_API __attribute__((visibility("default")))
#else
#define EG_API
#endif
#define EG_API_C EG_API
#define EG_API_ZIG EG_API

#define EG_OK 0
#define EG_EINVAL (-1)   /* a null pointer where data is needed, dim == 0, an id out of range */
#define EG_ENOSPACE (-2) /* an output buffer is too small */
#define EG_ENOMEM (-3)   /* scratch memory could not be allocated */

/* CPU feature bits reported by eg_cpu_features(). */
#define EG_CPU_AVX2 1u     /* AVX2 + FMA + F16C, with OS support */
#define EG_CPU_AVX512 2u   /* AVX-512 F/BW/VL/DQ, with OS support */

/* Top-k similarity over n rows of f32, f16 or int8 (the cold tier's quantised rows;
 * cosine is scale-free, so per-row quantisation scales do not change it).
 *   q          query, dim floats
 *   rows       first row; row i starts at (char*)rows + i*row_stride
 *   mask       NULL, or n bytes: row i is skipped where mask[i] == 0
 *   row_norms  NULL, or n precomputed L2 norms (cosine only): the scan then
 *              reads only the rows for the dot product; NULL computes them
 *              in the same pass
 *   out_idx    k slots; out_score: k slots
 * Results are sorted by score, best first; equal scores by lower index.
 * Returns the number of results (min(k, rows not masked)) or EG_E*.
 * dot: q.r; cosine: q.r / (|q| |r|), 0 where either norm is 0.
 */
#define EG_TOPK_ARGS const float *q, const void *rows, uint64_t n, uint64_t dim, \
    uint64_t row_stride, const uint8_t *mask, const float *row_norms, uint64_t k, int64_t *out_idx, \
    float *out_score

/* Forgetting curves: out[i] = strength[i] * curve(age[i]) (csrc/kernels/decay_impl.h).
 * Ages are >= 0 in the curve's time unit. Returns n or EG_EINVAL. */
#define EG_DECAY_EXP 0u     /* p0 = tau */
#define EG_DECAY_POWER 1u   /* p0 = beta */
#define EG_DECAY_TWO 2u     /* p0 = tau_fast, p1 = tau_slow, p2 = weight of the fast part */
#define EG_DECAY_ARGS const float *strength, const float *age, uint64_t n, uint32_t kind, \
    float p0, float p1, float p2, float *out

/* CRC32C (Castagnoli) of n bytes, continuing from crc (0 to start). */
#define EG_CRC_ARGS uint32_t crc, const void *data, uint64_t n

/* Top-k of a 4-bit sketch (engram/recall/sketch.py). Each row is dim bytes (at
 * row_stride), two codes in [0, 15] a byte: byte b's low nibble is element b, its high
 * nibble element dim + b, and an element's value is its code - 8. q is int8[2 x dim],
 * element order. A row's score is its exact integer dot product with q
 * times row_scale[i] (the sketch stores 1 / the row's norm, so the score ranks as cosine
 * does; 0 hides a row). Results as EG_TOPK_ARGS's: best first, equal scores by lower
 * index; returns their number (min(k, n)) or EG_EINVAL. */
#define EG_SKETCH_ARGS const int8_t *q, const uint8_t *rows, uint64_t n, uint64_t dim, uint64_t row_stride, \
    const float *row_scale, uint64_t k, int64_t *out_idx, float *out_score

/* M:N top-k: m queries, query j at qs + j*q_stride (q_stride >= dim floats);
 * query j's results at out_idx/out_score + j*k, its count in out_count[j].
 * Returns out_count[0] (every query has the same count) or EG_E*. */
#define EG_TOPK_MN_ARGS const float *qs, uint64_t m, uint64_t q_stride, const void *rows, uint64_t n, \
    uint64_t dim, uint64_t row_stride, const uint8_t *mask, const float *row_norms, uint64_t k, \
    int64_t *out_idx, float *out_score, int64_t *out_count

#define EG_DECLARE_VARIANT(isa_suffix) \
    EG_API int64_t eg_dot_topk_f32##isa_suffix(EG_TOPK_ARGS); \
    EG_API int64_t eg_dot_topk_f16##isa_suffix(EG_TOPK_ARGS); \
    EG_API int64_t eg_cosine_topk_f32##isa_suffix(EG_TOPK_ARGS); \
    EG_API int64_t eg_cosine_topk_f16##isa_suffix(EG_TOPK_ARGS); \
    EG_API int64_t eg_dot_topk_i8##isa_suffix(EG_TOPK_ARGS); \
    EG_API int64_t eg_cosine_topk_i8##isa_suffix(EG_TOPK_ARGS); \
    EG_API int64_t eg_dot_topk_mn_f32##isa_suffix(EG_TOPK_MN_ARGS); \
    EG_API int64_t eg_dot_topk_mn_f16##isa_suffix(EG_TOPK_MN_ARGS); \
    EG_API int64_t eg_dot_topk_mn_i8##isa_suffix(EG_TOPK_MN_ARGS); \
    EG_API int64_t eg_cosine_topk_mn_f32##isa_suffix(EG_TOPK_MN_ARGS); \
    EG_API int64_t eg_cosine_topk_mn_f16##isa_suffix(EG_TOPK_MN_ARGS); \
    EG_API int64_t eg_cosine_topk_mn_i8##isa_suffix(EG_TOPK_MN_ARGS); \
    EG_API int64_t eg_sketch_topk##isa_suffix(EG_SKETCH_ARGS); \
    EG_API int64_t eg_decay_f32##isa_suffix(EG_DECAY_ARGS); \
    EG_API uint32_t eg_crc32c##isa_suffix(EG_CRC_ARGS);

EG_DECLARE_VARIANT()
EG_DECLARE_VARIANT(_scalar)
EG_DECLARE_VARIANT(_avx2)
EG_DECLARE_VARIANT(_avx512)

/* Spread activation from seeds over CSR (offsets[n+1], targets, weights) for up to
 * max_depth hops. state: n_nodes records owned by the caller, reused across spreads
 * with a new epoch (1..2^24-1) each time. Touched nodes go to out_nodes in
 * first-touch order; fire[] (same capacity) ends holding their activations.
 * Returns the number touched, EG_ENOSPACE if out_cap is too small, or EG_EINVAL.
 * Semantics: csrc/kernels/spread.c. */
#define EG_SPREAD_ARGS const uint64_t *offsets, const uint32_t *targets, const float *weights, \
    uint64_t n_nodes, const uint32_t *seeds, const float *seed_act, uint64_t n_seeds, \
    uint32_t max_depth, float decay, float threshold, float cycle_penalty, uint32_t prefetch_distance, \
    uint32_t epoch, eg_spread_state_t *state, uint32_t *out_nodes, float *fire, uint64_t out_cap
EG_API int64_t eg_spread(EG_SPREAD_ARGS);

/* One hop: the nodes out_nodes[begin..end) (touched at hop-1) fire; new nodes are
 * appended after out_nodes[count-1]. Returns the new count (the next frontier is
 * [end, new count)), EG_ENOSPACE or EG_EINVAL. fire[begin..end) receives what fired,
 * and the hop's echo ceiling is decay x the largest of it (csrc/kernels/spread.c). */
#define EG_SPREAD_HOP_ARGS const uint64_t *offsets, const uint32_t *targets, const float *weights, \
    uint64_t n_nodes, uint32_t hop, float decay, float threshold, float cycle_penalty, \
    uint32_t prefetch_distance, uint32_t epoch, eg_spread_state_t *state, uint32_t *out_nodes, \
    float *fire, uint64_t begin, uint64_t end, uint64_t count, uint64_t out_cap
EG_API int64_t eg_spread_hop(EG_SPREAD_HOP_ARGS);
/* The same hop over out_nodes[begin..end) of a frontier, firing the given
 * fire[begin..end) (taken when the hop began), with the whole frontier's echo
 * ceiling (decay x the largest fire value of every part): a split hop's parts run
 * in place. */
#define EG_SPREAD_FIRE_ARGS const uint64_t *offsets, const uint32_t *targets, const float *weights, \
    uint64_t n_nodes, uint32_t hop, float decay, float threshold, float cycle_penalty, float ceiling, \
    uint32_t prefetch_distance, uint32_t epoch, eg_spread_state_t *state, uint32_t *out_nodes, \
    float *fire, uint64_t begin, uint64_t end, uint64_t count, uint64_t out_cap
EG_API int64_t eg_spread_fire(EG_SPREAD_FIRE_ARGS);

/* One hop split in two, so the frontier's batches can run in other processes
 * (work stealing) and be applied by the process that owns the spread's state.
 * gather: nodes[0..n) fire with fire[i]; each contribution c = fire * decay * w
 * at or above threshold is summed per target into acc (n_nodes floats, all < 0
 * on entry = untouched, and so again on return); the distinct targets go to
 * out_v in first-contribution order, their sums to out_s. Returns the number of
 * targets, EG_ENOSPACE when out_cap is too small, or EG_EINVAL. */
#define EG_SPREAD_GATHER_ARGS const uint64_t *offsets, const uint32_t *targets, const float *weights, \
    uint64_t n_nodes, float decay, float threshold, uint32_t prefetch_distance, const uint32_t *nodes, \
    const float *fire, uint64_t n, float *acc, uint32_t *out_v, float *out_s, uint64_t out_cap
EG_API int64_t eg_spread_gather(EG_SPREAD_GATHER_ARGS);

/* merge: applies gathered sums (v[i], s[i]) of hop `hop` to the state exactly as
 * eg_spread_hop applies single contributions (first touch appends to out_nodes,
 * a node that fired already gains s * cycle_penalty up to the hop's echo ceiling,
 * clamp at 1). Gathering every batch of a frontier and merging them all equals one
 * eg_spread_hop, up to float summation order. Returns the new count, EG_ENOSPACE or
 * EG_EINVAL. */
#define EG_SPREAD_MERGE_ARGS uint64_t n_nodes, uint32_t hop, float cycle_penalty, float ceiling, uint32_t epoch, \
    eg_spread_state_t *state, const uint32_t *v, const float *s, uint64_t n, uint32_t *out_nodes, \
    uint64_t count, uint64_t out_cap
EG_API int64_t eg_spread_merge(EG_SPREAD_MERGE_ARGS);

/* The shared activation record pool (csrc/kernels/pool.c): a PoolHeader then
 * ActivationRecord[capacity] in one shared segment, and per process a local
 * cache of record indices in front of the shared lock-free freelist. */
#define EG_POOL_CACHE_MAX 1024
typedef struct {
    uint32_t n;            /* indices held */
    uint32_t cap;          /* 1..EG_POOL_CACHE_MAX; refills and spills move cap/2 */
    uint64_t epoch;        /* PoolHeader.resets when filled: a reset drops the cache */
    uint32_t idx[EG_POOL_CACHE_MAX];
} eg_pool_cache_t;
EG_API_C int32_t eg_pool_init(eg_pool_header_t *h, uint32_t capacity);
/* Up to n records into out[]; returns how many (fewer only when the pool is exhausted). */
EG_API_C int64_t eg_pool_acquire(eg_pool_header_t *h, eg_activation_record_t *recs, eg_pool_cache_t *c,
                                 uint32_t *out, uint64_t n);
/* Give back idx[0..n): all or nothing; an index not held (or twice) is EG_EINVAL.
 * c NULL: straight to the shared freelist (a process that releases what others acquired). */
EG_API_C int64_t eg_pool_release(eg_pool_header_t *h, eg_activation_record_t *recs, eg_pool_cache_t *c,
                                 const uint32_t *idx, uint64_t n);
/* Move this cache's records to the shared freelist (a process that stops). */
EG_API_C int64_t eg_pool_flush(eg_pool_header_t *h, eg_activation_record_t *recs, eg_pool_cache_t *c);
/* Idle only: all records never-used again; every cache is dropped. EG_EINVAL while any is held. */
EG_API_C int32_t eg_pool_reset(eg_pool_header_t *h);
/* Word atomics on shared memory (acquire/release), for the task board's states. */
EG_API_C int32_t eg_cas_u32(uint32_t *p, uint32_t expected, uint32_t desired);
EG_API_C uint32_t eg_load_u32(const uint32_t *p);
EG_API_C void eg_store_u32(uint32_t *p, uint32_t v);
EG_API_C uint64_t eg_add_u64(uint64_t *p, uint64_t v);

/* Hardware counters (csrc/kernels/hwcounters.c): a perf_event_open fd for this
 * thread, or -errno (the machine refuses: "not supported"). */
EG_API_C int64_t eg_perf_open(uint32_t type, uint64_t config);
EG_API_C int64_t eg_perf_read(int32_t fd);
EG_API_C int32_t eg_perf_close(int32_t fd);

/* The per-thread kernel scratch arena of the Zig libraries (zig/src/arena.zig):
 * bytes 1..100 MiB per thread; overflow: what a request that does not fit does. */
#define EG_ARENA_PANIC 0u      /* abort the process (for tests proving it never happens) */
#define EG_ARENA_ERROR 1u      /* the kernel returns EG_ENOMEM */
#define EG_ARENA_FALLBACK 2u   /* take the page allocator's memory, counted */
EG_API_ZIG int32_t eg_arena_configure(uint64_t bytes, uint32_t overflow);
/* out[7]: bytes, overflow, high water, overflows, fallbacks, allocations, threads. */
EG_API_ZIG int32_t eg_arena_stats(uint64_t *out);
EG_API_ZIG void eg_arena_reset_stats(void);
/* Test hook: take `bytes` of this thread's scratch and check it holds data: 0, or -3 if it did not fit. */
EG_API_ZIG int64_t eg_arena_probe(uint64_t bytes);

/* Identity, checked at load before anything else is bound: EG_ABI_HASH (engram_abi.h,
 * generated from this header) and EG_LAYOUT_HASH (engram_layout.h). */
EG_API uint64_t eg_abi_hash(void);
EG_API uint64_t eg_layout_hash(void);
EG_API_C uint32_t eg_cpu_features(void);
/* Name of the variant the dispatchers call: "scalar", "avx2" or "avx512". */
EG_API const char *eg_isa(void);
/* Offset and size of record.field (field "" gives the record's size). 0 if found. */
EG_API int32_t eg_layout_lookup(const char *record, const char *field, int64_t *offset, int64_t *size);

#endif /* ENGRAM_H */
