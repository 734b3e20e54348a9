/* Library identity, CPU probe and the dispatchers.
 * The probe runs once (lazily, thread-safe by idempotence) and picks the
 * best variant the CPU and OS support; ENGRAM_ISA is honoured by Python,
 * which binds the per-ISA symbols directly.
 */
#include <string.h>
#include "engram.h"
#include "engram_abi.h"

EG_API uint64_t eg_abi_hash(void) { return EG_ABI_HASH; }
EG_API uint64_t eg_layout_hash(void) { return EG_LAYOUT_HASH; }

EG_API uint32_t eg_cpu_features(void) {
    uint32_t f = 0;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();   /* libgcc checks XCR0, so OS support is included */
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        unsigned a, b, c, d;
        __asm__("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(1), "c"(0));
        if ((c & (1u << 29)) && (c & (1u << 20))) f |= EG_CPU_AVX2;  /* F16C and SSE4.2 */
        if ((f & EG_CPU_AVX2) && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
            && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
            f |= EG_CPU_AVX512;
    }
#endif
    return f;
}

typedef int64_t (*eg_topk_fn)(EG_TOPK_ARGS);
typedef struct {
    const char *isa;
    eg_topk_fn dot_f32, dot_f16, cos_f32, cos_f16, dot_i8, cos_i8;
    int64_t (*decay)(EG_DECAY_ARGS);
    uint32_t (*crc)(EG_CRC_ARGS);
    int64_t (*sketch)(EG_SKETCH_ARGS);
} eg_table_t;

#define EG_TABLE(s) {#s, eg_dot_topk_f32_##s, eg_dot_topk_f16_##s, eg_cosine_topk_f32_##s, \
                     eg_cosine_topk_f16_##s, eg_dot_topk_i8_##s, eg_cosine_topk_i8_##s, \
                     eg_decay_f32_##s, eg_crc32c_##s, eg_sketch_topk_##s}
#ifndef EG_NO_X86_VARIANTS
static const eg_table_t eg_tables[] = {EG_TABLE(avx512), EG_TABLE(avx2), EG_TABLE(scalar)};
#else
static const eg_table_t eg_tables[] = {EG_TABLE(scalar), EG_TABLE(scalar), EG_TABLE(scalar)};
#endif
static const eg_table_t *eg_active;

static const eg_table_t *eg_table(void) {
    if (!eg_active) {
        uint32_t f = eg_cpu_features();
        eg_active = (f & EG_CPU_AVX512) ? &eg_tables[0] : (f & EG_CPU_AVX2) ? &eg_tables[1] : &eg_tables[2];
    }
    return eg_active;
}

EG_API const char *eg_isa(void) { return eg_table()->isa; }

EG_API int64_t eg_dot_topk_f32(EG_TOPK_ARGS) { return eg_table()->dot_f32(q, rows, n, dim, row_stride, mask, row_norms, k, out_idx, out_score); }
EG_API int64_t eg_dot_topk_f16(EG_TOPK_ARGS) { return eg_table()->dot_f16(q, rows, n, dim, row_stride, mask, row_norms, k, out_idx, out_score); }
EG_API int64_t eg_cosine_topk_f32(EG_TOPK_ARGS) { return eg_table()->cos_f32(q, rows, n, dim, row_stride, mask, row_norms, k, out_idx, out_score); }
EG_API int64_t eg_cosine_topk_f16(EG_TOPK_ARGS) { return eg_table()->cos_f16(q, rows, n, dim, row_stride, mask, row_norms, k, out_idx, out_score); }

EG_API int64_t eg_dot_topk_i8(EG_TOPK_ARGS) { return eg_table()->dot_i8(q, rows, n, dim, row_stride, mask, row_norms, k, out_idx, out_score); }
EG_API int64_t eg_cosine_topk_i8(EG_TOPK_ARGS) { return eg_table()->cos_i8(q, rows, n, dim, row_stride, mask, row_norms, k, out_idx, out_score); }
EG_API int64_t eg_decay_f32(EG_DECAY_ARGS) { return eg_table()->decay(strength, age, n, kind, p0, p1, p2, out); }
EG_API uint32_t eg_crc32c(EG_CRC_ARGS) { return eg_table()->crc(crc, data, n); }
EG_API int64_t eg_sketch_topk(EG_SKETCH_ARGS) { return eg_table()->sketch(q, rows, n, dim, row_stride, row_scale, k, out_idx, out_score); }

static const eg_layout_entry_t eg_layout_entries[] = EG_LAYOUT_ENTRIES;

EG_API int32_t eg_layout_lookup(const char *record, const char *field, int64_t *offset, int64_t *size) {
    if (!record || !field) return EG_EINVAL;
    for (size_t i = 0; i < sizeof eg_layout_entries / sizeof eg_layout_entries[0]; i++) {
        if (!strcmp(eg_layout_entries[i].record, record) && !strcmp(eg_layout_entries[i].field, field)) {
            if (offset) *offset = eg_layout_entries[i].offset;
            if (size) *size = eg_layout_entries[i].size;
            return EG_OK;
        }
    }
    return EG_EINVAL;
}
