/* Bounded top-k selection kept in the caller's output arrays.
 * The arrays hold a min-heap whose root is the worst kept result, so a new
 * score costs one compare unless it beats the root. "Worse" means a lower
 * score, or an equal score with a higher index (ties keep the lower index).
 */
#ifndef EG_TOPK_HEAP_H
#define EG_TOPK_HEAP_H
#include <stdint.h>
#include <string.h>

typedef struct {
    int64_t *idx;
    float *score;
    uint64_t k, size;
} eg_topk_t;

static inline int eg_worse(float sa, int64_t ia, float sb, int64_t ib) {
    return sa < sb || (sa == sb && ia > ib);
}

static inline void eg_sift_down(eg_topk_t *h, uint64_t i, uint64_t size) {
    float s = h->score[i];
    int64_t x = h->idx[i];
    for (;;) {
        uint64_t c = 2 * i + 1;
        if (c >= size) break;
        if (c + 1 < size && eg_worse(h->score[c + 1], h->idx[c + 1], h->score[c], h->idx[c])) c++;
        if (!eg_worse(h->score[c], h->idx[c], s, x)) break;
        h->score[i] = h->score[c];
        h->idx[i] = h->idx[c];
        i = c;
    }
    h->score[i] = s;
    h->idx[i] = x;
}

static inline void eg_topk_push(eg_topk_t *h, float s, int64_t x) {
    if (h->size < h->k) {              /* fill: sift up */
        uint64_t i = h->size++;
        while (i > 0) {
            uint64_t p = (i - 1) / 2;
            if (!eg_worse(s, x, h->score[p], h->idx[p])) break;
            h->score[i] = h->score[p];
            h->idx[i] = h->idx[p];
            i = p;
        }
        h->score[i] = s;
        h->idx[i] = x;
    } else if (eg_worse(h->score[0], h->idx[0], s, x)) {
        h->score[0] = s;
        h->idx[0] = x;
        eg_sift_down(h, 0, h->size);
    }
}

/* The threshold a score must beat to enter (only meaningful when full). */
static inline int eg_topk_full(const eg_topk_t *h) { return h->size == h->k; }

/* Heap-sort in place: best first. Returns the number of results. */
static inline int64_t eg_topk_finish(eg_topk_t *h) {
    for (uint64_t end = h->size; end > 1; end--) {
        float s = h->score[0]; int64_t x = h->idx[0];
        h->score[0] = h->score[end - 1]; h->idx[0] = h->idx[end - 1];
        h->score[end - 1] = s; h->idx[end - 1] = x;
        eg_sift_down(h, 0, end - 1);
    }
    return (int64_t)h->size;
}

/* IEEE half -> float, exact, for tails and the scalar variant. */
static inline float eg_half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu, bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else {                       /* subnormal: normalise */
            exp = 113;
            while (!(mant & 0x400u)) { mant <<= 1; exp--; }
            bits = sign | (exp << 23) | ((mant & 0x3ffu) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}
#endif
