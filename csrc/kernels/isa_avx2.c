/* AVX2 + FMA + F16C variant (compiled with -mavx2 -mfma -mf16c). */
#include <immintrin.h>
#define EG_SUFFIX _avx2
typedef __m256 vf;
#define VW 8
#define VZERO() _mm256_setzero_ps()
#define VLOAD32(p) _mm256_loadu_ps(p)
#define VLOAD16(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
#define VLOADI8(p) _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(p))))
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define VADD(a, b) _mm256_add_ps(a, b)
static inline float eg_hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 0x55));
    return _mm_cvtss_f32(s);
}
#define VSUM(a) eg_hsum256(a)
#define EG_HW_CRC
#include "dot_u4_avx2.h"
#include "topk_impl.h"
#include "decay_impl.h"
#include "crc_impl.h"
