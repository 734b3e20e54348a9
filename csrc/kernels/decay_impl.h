/* Forgetting curves over (strength, age) arrays, written once as plain
 * branch-free C and compiled per ISA variant: the compiler vectorises the
 * loops for the variant's width (SSE2, AVX2, AVX-512). exp and log are
 * Cephes-style polynomials (about 1 ulp) so they vectorise too; libm's
 * would be a call per element.
 *
 *   EG_DECAY_EXP    s * exp(-age / tau)                          p0 = tau
 *   EG_DECAY_POWER  s * (1 + age)^(-beta)                        p0 = beta
 *   EG_DECAY_TWO    s * (w exp(-age/tau_f) + (1-w) exp(-age/tau_s))  p0 = tau_f, p1 = tau_s, p2 = w
 */
#include <stdint.h>
#include <string.h>

static inline float EG_FN(eg_bits_to_float)(int32_t i) { float f; memcpy(&f, &i, 4); return f; }
static inline int32_t EG_FN(eg_float_to_bits)(float f) { int32_t i; memcpy(&i, &f, 4); return i; }

/* exp(x) for x in float range: 0 below -87 (the result would be near or below
 * the smallest normal float, and subnormal arithmetic costs ~100 cycles per
 * operation on SSE/AVX2), clamped above 88.7 so it never overflows. */
static inline float EG_FN(eg_expf)(float x) {
    const float zero = x < -87.0f ? 0.0f : 1.0f;
    x = x < -87.0f ? -87.0f : (x > 88.7f ? 88.7f : x);
    float fn = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;   /* round to nearest */
    float r = x - fn * 0.693359375f + fn * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    return zero * p * EG_FN(eg_bits_to_float)(((int32_t)fn + 127) << 23);
}

/* log(x) for finite x > 0 (normal range). */
static inline float EG_FN(eg_logf)(float x) {
    int32_t bits = EG_FN(eg_float_to_bits)(x);
    int32_t e = ((bits >> 23) & 0xff) - 126;
    float m = EG_FN(eg_bits_to_float)((bits & 0x807fffff) | 0x3f000000);   /* [0.5, 1) */
    int32_t small = m < 0.70710678118654752f;
    e -= small;
    m = small ? m + m - 1.0f : m - 1.0f;
    float z = m * m;
    float y = 7.0376836292e-2f;
    y = y * m - 1.1514610310e-1f;
    y = y * m + 1.1676998740e-1f;
    y = y * m - 1.2420140846e-1f;
    y = y * m + 1.4249322787e-1f;
    y = y * m - 1.6668057665e-1f;
    y = y * m + 2.0000714765e-1f;
    y = y * m - 2.4999993993e-1f;
    y = y * m + 3.3333331174e-1f;
    y = y * m * z;
    float fe = (float)e;
    y += fe * -2.12194440e-4f;
    y += -0.5f * z;
    return m + y + fe * 0.693359375f;
}

EG_API int64_t EG_FN(eg_decay_f32)(EG_DECAY_ARGS) {
    if (n == 0) return 0;
    if (!strength || !age || !out) return EG_EINVAL;
    switch (kind) {
    case EG_DECAY_EXP: {
        if (!(p0 > 0.0f)) return EG_EINVAL;
        const float inv = -1.0f / p0;
        for (uint64_t i = 0; i < n; i++) out[i] = strength[i] * EG_FN(eg_expf)(age[i] * inv);
        break;
    }
    case EG_DECAY_POWER: {
        if (!(p0 >= 0.0f)) return EG_EINVAL;
        const float nb = -p0;
        for (uint64_t i = 0; i < n; i++) out[i] = strength[i] * EG_FN(eg_expf)(nb * EG_FN(eg_logf)(1.0f + age[i]));
        break;
    }
    case EG_DECAY_TWO: {
        if (!(p0 > 0.0f) || !(p1 > 0.0f) || !(p2 >= 0.0f && p2 <= 1.0f)) return EG_EINVAL;
        const float fa = -1.0f / p0, sl = -1.0f / p1, w = p2, w2 = 1.0f - p2;
        for (uint64_t i = 0; i < n; i++)
            out[i] = strength[i] * (w * EG_FN(eg_expf)(age[i] * fa) + w2 * EG_FN(eg_expf)(age[i] * sl));
        break;
    }
    default:
        return EG_EINVAL;
    }
    return (int64_t)n;
}
