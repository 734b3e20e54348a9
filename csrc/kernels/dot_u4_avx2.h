/* The 4-bit sketch's dot product with AVX2, also used by the AVX-512 variant (a 512-bit
 * form scanned WordNet-30K x 384 no faster: 304 against 310 us, bound by the caches).
 * The codes are unsigned ([0, 15]) and q signed, which is what vpmaddubsw multiplies: a
 * byte's two nibbles meet q's two halves, and each int16 lane sums four products of at most
 * 15 x 128, so nothing saturates; vpmaddwd widens to int32. The caller subtracts the
 * codes' offset (8 x sum(q)). */
#include <immintrin.h>
#include <stdint.h>

static inline __m256i eg_u4_step(__m256i acc, const int8_t *q, const int8_t *q_hi, const uint8_t *r,
                                 __m256i low, __m256i ones) {
    __m256i v = _mm256_loadu_si256((const __m256i *)r);
    __m256i lo = _mm256_and_si256(v, low), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
    __m256i s = _mm256_add_epi16(_mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)q)),
                                 _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)q_hi)));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(s, ones));
}

static inline int32_t eg_dot_u4_avx2(const int8_t *q, const uint8_t *r, uint64_t dim) {
    const __m256i low = _mm256_set1_epi8(15), ones = _mm256_set1_epi16(1);
    const int8_t *q_hi = q + dim;
    __m256i a0 = _mm256_setzero_si256(), a1 = _mm256_setzero_si256();
    uint64_t b = 0;
    for (; b + 64 <= dim; b += 64) {        /* two chains: the adds' latency overlaps */
        a0 = eg_u4_step(a0, q + b, q_hi + b, r + b, low, ones);
        a1 = eg_u4_step(a1, q + b + 32, q_hi + b + 32, r + b + 32, low, ones);
    }
    if (b + 32 <= dim) {
        a0 = eg_u4_step(a0, q + b, q_hi + b, r + b, low, ones);
        b += 32;
    }
    __m256i a = _mm256_add_epi32(a0, a1);
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    int32_t acc = _mm_cvtsi128_si32(s);
    for (; b < dim; b++) acc += (int32_t)q[b] * (r[b] & 15) + (int32_t)q_hi[b] * (r[b] >> 4);
    return acc;
}
#define EG_DOT_U4 eg_dot_u4_avx2

/* Four rows at once (at r, r + stride, ...): q's loads and the final sums are shared, and
 * the int16 pair sums of up to four 32-byte steps (each at most 7,680) are added before
 * they are widened, sparing the multiply ports a vpmaddwd per step. */
static inline void eg_dot_u4x4_avx2(const int8_t *q, const uint8_t *r, uint64_t stride, uint64_t dim,
                                    int32_t out[4]) {
    const __m256i low = _mm256_set1_epi8(15), ones = _mm256_set1_epi16(1);
    const int8_t *q_hi = q + dim;
    __m256i a[4], w[4];
    for (int j = 0; j < 4; j++) a[j] = _mm256_setzero_si256();
    uint64_t b = 0;
    while (b + 32 <= dim) {
        for (int j = 0; j < 4; j++) w[j] = _mm256_setzero_si256();
        for (int step = 0; step < 4 && b + 32 <= dim; step++, b += 32) {
            __m256i ql = _mm256_loadu_si256((const __m256i *)(q + b));
            __m256i qh = _mm256_loadu_si256((const __m256i *)(q_hi + b));
            for (int j = 0; j < 4; j++) {
                __m256i v = _mm256_loadu_si256((const __m256i *)(r + j * stride + b));
                __m256i lo = _mm256_and_si256(v, low), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
                w[j] = _mm256_add_epi16(w[j], _mm256_add_epi16(_mm256_maddubs_epi16(lo, ql),
                                                               _mm256_maddubs_epi16(hi, qh)));
            }
        }
        for (int j = 0; j < 4; j++) a[j] = _mm256_add_epi32(a[j], _mm256_madd_epi16(w[j], ones));
    }
    /* lane sums of the four: two rounds of pair adds, then the two 128-bit halves */
    __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(a[0], a[1]), _mm256_hadd_epi32(a[2], a[3]));
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
    _mm_storeu_si128((__m128i *)out, s);
    for (; b < dim; b++)
        for (int j = 0; j < 4; j++) {
            uint8_t c = r[j * stride + b];
            out[j] += (int32_t)q[b] * (c & 15) + (int32_t)q_hi[b] * (c >> 4);
        }
}
#define EG_DOT_U4_X4 eg_dot_u4x4_avx2
