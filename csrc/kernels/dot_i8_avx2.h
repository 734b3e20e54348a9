/* int8 dot product with AVX2 (also used by the AVX-512 variant: its 256-bit form is as
 * fast for the sketch's row sizes, and AVX-512 BW lacks vpsignb). |q| as unsigned times
 * r with q's sign moved onto it: vpmaddubsw's pair sums stay within int16 because both
 * sides are in [-127, 127] (2 x 127 x 127 < 32767); vpmaddwd widens them to int32. */
#include <immintrin.h>
#include <stdint.h>

static inline int32_t eg_dot_i8_avx2(const int8_t *q, const int8_t *r, uint64_t dim) {
    __m256i a0 = _mm256_setzero_si256(), a1 = _mm256_setzero_si256();
    const __m256i ones = _mm256_set1_epi16(1);
    uint64_t i = 0;
    for (; i + 64 <= dim; i += 64) {
        __m256i q0 = _mm256_loadu_si256((const __m256i *)(q + i));
        __m256i q1 = _mm256_loadu_si256((const __m256i *)(q + i + 32));
        __m256i r0 = _mm256_loadu_si256((const __m256i *)(r + i));
        __m256i r1 = _mm256_loadu_si256((const __m256i *)(r + i + 32));
        a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(q0), _mm256_sign_epi8(r0, q0)), ones));
        a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(q1), _mm256_sign_epi8(r1, q1)), ones));
    }
    for (; i + 32 <= dim; i += 32) {
        __m256i q0 = _mm256_loadu_si256((const __m256i *)(q + i));
        __m256i r0 = _mm256_loadu_si256((const __m256i *)(r + i));
        a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(q0), _mm256_sign_epi8(r0, q0)), ones));
    }
    __m256i a = _mm256_add_epi32(a0, a1);
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    int32_t acc = _mm_cvtsi128_si32(s);
    for (; i < dim; i++) acc += (int16_t)q[i] * (int16_t)r[i];
    return acc;
}
#define EG_DOT_I8 eg_dot_i8_avx2
