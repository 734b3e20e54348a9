/* Baseline variant: any x86-64 (SSE2, 4 lanes, no FMA), or plain C elsewhere. */
#include <stdint.h>
#include <string.h>
#define EG_SUFFIX _scalar
#if defined(__SSE2__)
#include <emmintrin.h>
typedef __m128 vf;
#define VW 4
#define VZERO() _mm_setzero_ps()
#define VLOAD32(p) _mm_loadu_ps(p)
#define VFMA(a, b, c) _mm_add_ps(_mm_mul_ps(a, b), c)
#define VADD(a, b) _mm_add_ps(a, b)
/* Exact f16 -> f32 without F16C: shift the bits into place, rescale by 2^112
 * (normals and subnormals), force the exponent to all ones for inf/NaN. */
static inline __m128 eg_load_f16_sse2(const uint16_t *p) {
    __m128i h = _mm_unpacklo_epi16(_mm_loadl_epi64((const __m128i *)p), _mm_setzero_si128());
    __m128i sign = _mm_slli_epi32(_mm_and_si128(h, _mm_set1_epi32(0x8000)), 16);
    __m128i mag = _mm_slli_epi32(_mm_and_si128(h, _mm_set1_epi32(0x7fff)), 13);
    __m128 f = _mm_mul_ps(_mm_castsi128_ps(mag), _mm_set1_ps(0x1.0p112f));
    __m128i infnan = _mm_cmpeq_epi32(_mm_and_si128(h, _mm_set1_epi32(0x7c00)), _mm_set1_epi32(0x7c00));
    __m128i bits = _mm_or_si128(_mm_castps_si128(f), _mm_and_si128(infnan, _mm_set1_epi32(0x7f800000)));
    return _mm_castsi128_ps(_mm_or_si128(bits, sign));
}
#define VLOAD16(p) eg_load_f16_sse2(p)
/* int8 -> float with SSE2 only: place each byte in the top of a 32-bit lane, shift back arithmetically. */
static inline __m128 eg_load_i8_sse2(const int8_t *p) {
    int32_t w;
    memcpy(&w, p, 4);
    __m128i b = _mm_cvtsi32_si128(w);
    __m128i x = _mm_unpacklo_epi16(_mm_unpacklo_epi8(b, b), _mm_unpacklo_epi8(b, b));
    return _mm_cvtepi32_ps(_mm_srai_epi32(x, 24));
}
#define VLOADI8(p) eg_load_i8_sse2(p)
static inline float eg_hsum128(__m128 s) {
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 0x55));
    return _mm_cvtss_f32(s);
}
#define VSUM(a) eg_hsum128(a)
#else
typedef float vf;
#define VW 1
#define VZERO() 0.0f
#define VLOAD32(p) (*(p))
#define VLOAD16(p) eg_half_to_float(*(p))
#define VLOADI8(p) ((float)*(p))
#define VFMA(a, b, c) ((a) * (b) + (c))
#define VADD(a, b) ((a) + (b))
#define VSUM(a) (a)
#endif
#include "topk_impl.h"
#include "decay_impl.h"
#include "crc_impl.h"
