/* Top-k scan kernels, written once and compiled once per ISA variant.
 * The including file defines EG_SUFFIX (_scalar, _avx2, _avx512) and the
 * vector layer: VW lanes, vf, VZERO, VLOAD32, VLOAD16, VLOADI8, VFMA, VADD, VSUM.
 * Four accumulators per sum hide the FMA latency; the rows are streamed
 * once, so for large n the scan runs at memory bandwidth.
 */
#include "engram.h"
#include "topk_heap.h"
#include <stdlib.h>

#define EG_CAT2(a, b) a##b
#define EG_CAT(a, b) EG_CAT2(a, b)
#define EG_FN(name) EG_CAT(name, EG_SUFFIX)

typedef float (*eg_tail_load_t)(const void *, uint64_t);
static inline float eg_at_f32(const void *p, uint64_t i) { return ((const float *)p)[i]; }
static inline float eg_at_f16(const void *p, uint64_t i) { return eg_half_to_float(((const uint16_t *)p)[i]); }
static inline float eg_at_i8(const void *p, uint64_t i) { return (float)((const int8_t *)p)[i]; }

/* One row: dot product with q, and (when want_rr) the row's squared norm. */
#define EG_ROW_KERNEL(NAME, T, LOAD, AT)                                              \
static inline float NAME(const float *q, const T *r, uint64_t dim, float *rr_out) {   \
    vf d0 = VZERO(), d1 = VZERO(), d2 = VZERO(), d3 = VZERO();                        \
    vf n0 = VZERO(), n1 = VZERO(), n2 = VZERO(), n3 = VZERO();                        \
    uint64_t i = 0;                                                                   \
    for (; i + 4 * VW <= dim; i += 4 * VW) {                                          \
        vf r0 = LOAD(r + i), r1 = LOAD(r + i + VW);                                   \
        vf r2 = LOAD(r + i + 2 * VW), r3 = LOAD(r + i + 3 * VW);                      \
        d0 = VFMA(VLOAD32(q + i), r0, d0);                                            \
        d1 = VFMA(VLOAD32(q + i + VW), r1, d1);                                       \
        d2 = VFMA(VLOAD32(q + i + 2 * VW), r2, d2);                                   \
        d3 = VFMA(VLOAD32(q + i + 3 * VW), r3, d3);                                   \
        if (rr_out) {                                                                 \
            n0 = VFMA(r0, r0, n0); n1 = VFMA(r1, r1, n1);                             \
            n2 = VFMA(r2, r2, n2); n3 = VFMA(r3, r3, n3);                             \
        }                                                                             \
    }                                                                                 \
    for (; i + VW <= dim; i += VW) {                                                  \
        vf r0 = LOAD(r + i);                                                          \
        d0 = VFMA(VLOAD32(q + i), r0, d0);                                            \
        if (rr_out) n0 = VFMA(r0, r0, n0);                                            \
    }                                                                                 \
    float dot = VSUM(VADD(VADD(d0, d1), VADD(d2, d3)));                               \
    float rr = rr_out ? VSUM(VADD(VADD(n0, n1), VADD(n2, n3))) : 0.0f;                \
    for (; i < dim; i++) {                                                            \
        float x = AT(r, i);                                                           \
        dot += q[i] * x;                                                              \
        rr += x * x;                                                                  \
    }                                                                                 \
    if (rr_out) *rr_out = rr;                                                         \
    return dot;                                                                       \
}

EG_ROW_KERNEL(EG_FN(eg_row_f32), float, VLOAD32, eg_at_f32)
EG_ROW_KERNEL(EG_FN(eg_row_f16), uint16_t, VLOAD16, eg_at_f16)
EG_ROW_KERNEL(EG_FN(eg_row_i8), int8_t, VLOADI8, eg_at_i8)

/* Eight sums: one dependent chain of double adds cost ~0.5 us at 384-d, which a
 * caller scoring single rows (the index's candidates: scan.pyx's rescore) paid per row. */
static double EG_FN(eg_qnorm)(const float *q, uint64_t dim) {
    double s[8] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
    uint64_t i = 0;
    for (; i + 8 <= dim; i += 8)
        for (int j = 0; j < 8; j++) s[j] += (double)q[i + j] * q[i + j];
    double t = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    for (; i < dim; i++) t += (double)q[i] * q[i];
    return __builtin_sqrt(t);
}

/* Cosine in double: the slow path for rows (or queries) whose squares
 * overflow or underflow float, where the fast path would return 0 or NaN. */
static float EG_FN(eg_cosine_exact)(const float *q, double qn, const void *r, uint64_t dim, eg_tail_load_t at) {
    double dot = 0.0, rr = 0.0;
    for (uint64_t i = 0; i < dim; i++) {
        double x = at(r, i);
        dot += q[i] * x;
        rr += x * x;
    }
    double den = qn * __builtin_sqrt(rr);
    return den > 0.0 ? (float)(dot / den) : 0.0f;
}

/* Outside these bounds float sums of squares lose precision or overflow. */
#define EG_SAFE_LO 1e-28f
#define EG_SAFE_HI 1e28f

/* M:N top-k, the one implementation (1:N is m = 1). Rows are visited in
 * blocks small enough to stay in L2, and every query scans a block before the
 * next is read, so each row comes from memory once for all m queries. For
 * cosine the first query also computes the block's row norms (unless the
 * caller passes them); the others reuse them. Heaps live in the caller's output arrays (query j at j*k). */
#define EG_MN_BLOCK 128
#define EG_MN_STACK 8

#define EG_TOPK_KERNEL(NAME, NAME_MN, T, ROW, AT, COSINE)                             \
EG_API int64_t NAME_MN(EG_TOPK_MN_ARGS) {                                             \
    if (m == 0) return 0;                                                             \
    if (!qs || !out_idx || !out_score || !out_count || (n && !rows) || dim == 0       \
        || q_stride < dim)                                                            \
        return EG_EINVAL;                                                             \
    if (k == 0 || n == 0) {                                                           \
        for (uint64_t j = 0; j < m; j++) out_count[j] = 0;                            \
        return 0;                                                                     \
    }                                                                                 \
    eg_topk_t stack_h[EG_MN_STACK];                                                   \
    double stack_qn[EG_MN_STACK];                                                     \
    eg_topk_t *h = stack_h;                                                           \
    double *qn = stack_qn;                                                            \
    if (m > EG_MN_STACK) {                                                            \
        h = (eg_topk_t *)malloc(m * sizeof *h);                                       \
        qn = (double *)malloc(m * sizeof *qn);                                        \
        if (!h || !qn) { free(h); free(qn); return EG_ENOMEM; }                       \
    }                                                                                 \
    for (uint64_t j = 0; j < m; j++) {                                                \
        h[j] = (eg_topk_t){out_idx + j * k, out_score + j * k, k, 0};                 \
        qn[j] = COSINE ? EG_FN(eg_qnorm)(qs + j * q_stride, dim) : 1.0;               \
    }                                                                                 \
    const char *base = (const char *)rows;                                            \
    float rrs[EG_MN_BLOCK];                                                           \
    for (uint64_t b = 0; b < n; b += EG_MN_BLOCK) {                                   \
        const uint64_t e = n - b < EG_MN_BLOCK ? n : b + EG_MN_BLOCK;                 \
        for (uint64_t j = 0; j < m; j++) {                                            \
            const float *q = qs + j * q_stride;                                       \
            /* an extreme query takes the exact path for every row */                 \
            const int q_extreme = COSINE && qn[j] > 0.0 && (qn[j] < 1e-14 || qn[j] > 1e14); \
            for (uint64_t i = b; i < e; i++) {                                        \
                if (mask && !mask[i]) continue;                                       \
                const T *r = (const T *)(base + i * row_stride);                      \
                float s = ROW(q, r, dim, (COSINE && j == 0 && !row_norms) ? &rrs[i - b] : (float *)0); \
                if (COSINE) {                                                         \
                    float rr = row_norms ? row_norms[i] * row_norms[i] : rrs[i - b];  \
                    if (q_extreme || !(rr > EG_SAFE_LO && rr < EG_SAFE_HI)            \
                        || !(__builtin_fabsf(s) < EG_SAFE_HI)) {                      \
                        s = EG_FN(eg_cosine_exact)(q, qn[j], r, dim, AT);             \
                    } else {                                                          \
                        float den = (float)qn[j] * __builtin_sqrtf(rr);               \
                        s = den > 0.0f ? s / den : 0.0f;                              \
                    }                                                                 \
                }                                                                     \
                eg_topk_push(&h[j], s, (int64_t)i);                                   \
            }                                                                         \
        }                                                                             \
    }                                                                                 \
    for (uint64_t j = 0; j < m; j++) out_count[j] = eg_topk_finish(&h[j]);            \
    int64_t got = out_count[0];                                                       \
    if (h != stack_h) { free(h); free(qn); }                                          \
    return got;                                                                       \
}                                                                                     \
EG_API int64_t NAME(EG_TOPK_ARGS) {                                                   \
    int64_t count = 0;                                                                \
    int64_t rc = NAME_MN(q, 1, dim, rows, n, dim, row_stride, mask, row_norms, k, out_idx, out_score, &count); \
    return rc < 0 ? rc : count;                                                       \
}

EG_TOPK_KERNEL(EG_FN(eg_dot_topk_f32), EG_FN(eg_dot_topk_mn_f32), float, EG_FN(eg_row_f32), eg_at_f32, 0)
EG_TOPK_KERNEL(EG_FN(eg_dot_topk_f16), EG_FN(eg_dot_topk_mn_f16), uint16_t, EG_FN(eg_row_f16), eg_at_f16, 0)
EG_TOPK_KERNEL(EG_FN(eg_cosine_topk_f32), EG_FN(eg_cosine_topk_mn_f32), float, EG_FN(eg_row_f32), eg_at_f32, 1)
EG_TOPK_KERNEL(EG_FN(eg_cosine_topk_f16), EG_FN(eg_cosine_topk_mn_f16), uint16_t, EG_FN(eg_row_f16), eg_at_f16, 1)
EG_TOPK_KERNEL(EG_FN(eg_dot_topk_i8), EG_FN(eg_dot_topk_mn_i8), int8_t, EG_FN(eg_row_i8), eg_at_i8, 0)
EG_TOPK_KERNEL(EG_FN(eg_cosine_topk_i8), EG_FN(eg_cosine_topk_mn_i8), int8_t, EG_FN(eg_row_i8), eg_at_i8, 1)

/* The sketch's scan (EG_SKETCH_ARGS): an integer dot product per row of q with the
 * codes, then minus 8 x sum(q) for their offset. An ISA with a faster one defines
 * EG_DOT_U4 before including this file. */
#ifndef EG_DOT_U4
static inline int32_t EG_FN(eg_dot_u4)(const int8_t *q, const uint8_t *r, uint64_t dim) {
    int32_t acc = 0;
    for (uint64_t b = 0; b < dim; b++)
        acc += (int32_t)q[b] * (r[b] & 15) + (int32_t)q[dim + b] * (r[b] >> 4);
    return acc;
}
#define EG_DOT_U4 EG_FN(eg_dot_u4)
#endif

EG_API int64_t EG_FN(eg_sketch_topk)(EG_SKETCH_ARGS) {
    if (!q || !out_idx || !out_score || (n && (!rows || !row_scale)) || dim == 0 || row_stride < dim)
        return EG_EINVAL;
    if (k == 0 || n == 0) return 0;
    int32_t bias = 0;
    for (uint64_t b = 0; b < 2 * dim; b++) bias += 8 * (int32_t)q[b];
    eg_topk_t h = {out_idx, out_score, k, 0};
    const uint8_t *base = rows;
    uint64_t i = 0;
#ifdef EG_DOT_U4_X4
    for (; i + 4 <= n; i += 4) {
        int32_t dot[4];
        EG_DOT_U4_X4(q, base + i * row_stride, row_stride, dim, dot);
        for (int j = 0; j < 4; j++) eg_topk_push(&h, (float)(dot[j] - bias) * row_scale[i + j], (int64_t)(i + j));
    }
#endif
    for (; i < n; i++) {
        /* the next rows' first lines: the scan is bound by memory past a few MB */
        __builtin_prefetch(base + (i + 4) * row_stride);
        float s = (float)(EG_DOT_U4(q, base + i * row_stride, dim) - bias) * row_scale[i];
        eg_topk_push(&h, s, (int64_t)i);
    }
    return eg_topk_finish(&h);
}
