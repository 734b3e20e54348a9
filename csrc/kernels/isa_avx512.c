/* AVX-512 F/BW/VL/DQ variant (compiled with -mavx512f -mavx512bw -mavx512vl -mavx512dq). */
#include <immintrin.h>
#define EG_SUFFIX _avx512
typedef __m512 vf;
#define VW 16
#define VZERO() _mm512_setzero_ps()
#define VLOAD32(p) _mm512_loadu_ps(p)
#define VLOAD16(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p)))
#define VLOADI8(p) _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(p))))
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define VADD(a, b) _mm512_add_ps(a, b)
#define VSUM(a) _mm512_reduce_add_ps(a)
#define EG_HW_CRC
#include "dot_u4_avx2.h"
#include "topk_impl.h"
#include "decay_impl.h"
#include "crc_impl.h"
