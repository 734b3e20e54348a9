/* The shared activation record pool: a lock-free Treiber-stack freelist in
 * shared memory, with a per-process (per-worker) local cache in front of it.
 *
 * Records are linked by index (ActivationRecord.next), never by pointer, so
 * the pool works at any mapping address in any process. The stack head packs
 * (tag << 32 | index) in one 64-bit word updated by compare-exchange; every
 * successful push or pop increments the tag, so a head that was popped and
 * pushed back in between (ABA) fails the exchange. Lock-free 64-bit atomics
 * are address-free, hence valid across processes on a shared mapping.
 *
 * Records never handed out sit above `bump` and are taken by fetch-add before
 * the freelist grows, so a new pool costs no initialisation per record. The
 * counters live in their own cache line and are added once per batch call.
 * A record being held is marked EG_REC_HELD in its flags, so a double release
 * is refused before anything changes.
 */
#include <string.h>

#include "engram.h"

#define EG_REC_HELD 1u
#define EG_TAG(h) ((h) >> 32)
#define EG_IDX(h) ((uint32_t)(h))
#define EG_PACK(tag, idx) (((uint64_t)(tag) << 32) | (uint64_t)(idx))

static inline uint64_t ld(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void add(uint64_t *p, uint64_t v) { if (v) __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }

EG_API int32_t eg_pool_init(eg_pool_header_t *h, uint32_t capacity) {
    if (!h || capacity == 0 || capacity == EG_NIL) return EG_EINVAL;
    memset(h, 0, sizeof *h);
    h->capacity = capacity;
    __atomic_store_n(&h->head, EG_PACK(0, EG_NIL), __ATOMIC_RELEASE);
    return 0;
}

static uint32_t stack_pop(eg_pool_header_t *h, eg_activation_record_t *recs) {
    uint64_t old = ld(&h->head);
    for (;;) {
        uint32_t i = EG_IDX(old);
        if (i == EG_NIL) return EG_NIL;
        if (i >= h->capacity) return EG_NIL;              /* corrupt head: refuse rather than crash */
        /* another process may pop i and rewrite next meanwhile: then the tag has
           moved and the exchange below fails, so a torn next is never used */
        uint32_t next = __atomic_load_n(&recs[i].next, __ATOMIC_RELAXED);
        if (__atomic_compare_exchange_n(&h->head, &old, EG_PACK(EG_TAG(old) + 1, next), 0,
                                        __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            return i;
    }
}

/* Push idx[0..n) as one chain with a single exchange. */
static void stack_push_chain(eg_pool_header_t *h, eg_activation_record_t *recs, const uint32_t *idx, uint32_t n) {
    if (n == 0) return;
    for (uint32_t j = 0; j + 1 < n; j++) __atomic_store_n(&recs[idx[j]].next, idx[j + 1], __ATOMIC_RELAXED);
    uint64_t old = ld(&h->head);
    for (;;) {
        __atomic_store_n(&recs[idx[n - 1]].next, EG_IDX(old), __ATOMIC_RELAXED);
        if (__atomic_compare_exchange_n(&h->head, &old, EG_PACK(EG_TAG(old) + 1, idx[0]), 0,
                                        __ATOMIC_RELEASE, __ATOMIC_ACQUIRE))
            return;
    }
}

static uint32_t bump_take(eg_pool_header_t *h) {
    uint64_t b = ld(&h->bump);
    while (b < h->capacity) {
        if (__atomic_compare_exchange_n(&h->bump, &b, b + 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            return (uint32_t)b;
    }
    return EG_NIL;
}

static void cache_sync(eg_pool_header_t *h, eg_pool_cache_t *c) {
    uint64_t epoch = ld(&h->resets);      /* a reset (engine idle) invalidates every cache */
    if (c->epoch != epoch) {
        c->n = 0;
        c->epoch = epoch;
    }
}

EG_API int64_t eg_pool_acquire(eg_pool_header_t *h, eg_activation_record_t *recs, eg_pool_cache_t *c,
                               uint32_t *out, uint64_t n) {
    if (!h || !recs || !c || (n && !out) || c->cap == 0 || c->cap > EG_POOL_CACHE_MAX) return EG_EINVAL;
    cache_sync(h, c);
    uint64_t got = 0, reused = 0, fresh = 0;
    while (got < n) {
        uint32_t i;
        if (c->n) {
            i = c->idx[--c->n];
            reused++;
        } else {
            uint32_t want = c->cap / 2 ? c->cap / 2 : 1;   /* refill half: room to absorb releases */
            while (c->n < want && (i = stack_pop(h, recs)) != EG_NIL) c->idx[c->n++] = i;
            if (c->n) continue;
            if ((i = bump_take(h)) == EG_NIL) break;       /* exhausted */
            fresh++;
        }
        recs[i].flags = EG_REC_HELD;
        recs[i].next = EG_NIL;
        out[got++] = i;
    }
    add(&h->acquired, got);
    add(&h->reused, reused);
    add(&h->fresh, fresh);
    add(&h->failed, n - got);
    uint64_t now = __atomic_add_fetch(&h->in_use, got, __ATOMIC_RELAXED);
    uint64_t hw = __atomic_load_n(&h->high_water, __ATOMIC_RELAXED);
    while (now > hw && !__atomic_compare_exchange_n(&h->high_water, &hw, now, 0, __ATOMIC_RELAXED,
                                                    __ATOMIC_RELAXED)) {}
    return (int64_t)got;
}

EG_API int64_t eg_pool_release(eg_pool_header_t *h, eg_activation_record_t *recs, eg_pool_cache_t *c,
                               const uint32_t *idx, uint64_t n) {
    if (!h || !recs || (n && !idx) || (c && (c->cap == 0 || c->cap > EG_POOL_CACHE_MAX))) return EG_EINVAL;
    uint64_t bump = ld(&h->bump);
    for (uint64_t j = 0; j < n; j++)                        /* all or nothing */
        if (idx[j] >= bump || !(recs[idx[j]].flags & EG_REC_HELD)) return EG_EINVAL;
    for (uint64_t j = 0; j < n; j++)                        /* and no index twice in one call */
        recs[idx[j]].flags |= 0x8000u;
    int dup = 0;
    for (uint64_t j = 0; j < n; j++) {
        if (!(recs[idx[j]].flags & 0x8000u)) dup = 1;
        recs[idx[j]].flags &= (uint16_t)~0x8000u;
    }
    if (dup) return EG_EINVAL;
    if (!c) {                     /* no local cache (a process that never acquires): straight back */
        for (uint64_t j = 0; j < n; j++) recs[idx[j]].flags = 0;
        for (uint64_t j = 0; j < n; j += EG_POOL_CACHE_MAX) {
            uint32_t m = (uint32_t)(n - j < EG_POOL_CACHE_MAX ? n - j : EG_POOL_CACHE_MAX);
            stack_push_chain(h, recs, idx + j, m);
        }
        add(&h->released, n);
        __atomic_sub_fetch(&h->in_use, n, __ATOMIC_RELAXED);
        return (int64_t)n;
    }
    cache_sync(h, c);
    for (uint64_t j = 0; j < n; j++) {
        recs[idx[j]].flags = 0;
        if (c->n == c->cap) {                               /* spill half to the shared stack */
            uint32_t half = c->cap / 2 ? c->cap / 2 : 1;
            c->n -= half;
            stack_push_chain(h, recs, c->idx + c->n, half);
        }
        c->idx[c->n++] = idx[j];
    }
    add(&h->released, n);
    __atomic_sub_fetch(&h->in_use, n, __ATOMIC_RELAXED);
    return (int64_t)n;
}

EG_API int64_t eg_pool_flush(eg_pool_header_t *h, eg_activation_record_t *recs, eg_pool_cache_t *c) {
    if (!h || !recs || !c) return EG_EINVAL;
    cache_sync(h, c);
    uint32_t n = c->n;
    stack_push_chain(h, recs, c->idx, n);
    c->n = 0;
    return n;
}

/* Idle only (no acquire or release in flight anywhere, nothing held): every record
   becomes never-used again and every process's cache is dropped (by epoch). */
EG_API int32_t eg_pool_reset(eg_pool_header_t *h) {
    if (!h) return EG_EINVAL;
    if (__atomic_load_n(&h->in_use, __ATOMIC_ACQUIRE) != 0) return EG_EINVAL;
    __atomic_store_n(&h->head, EG_PACK(EG_TAG(ld(&h->head)) + 1, EG_NIL), __ATOMIC_RELEASE);
    __atomic_store_n(&h->bump, 0, __ATOMIC_RELEASE);
    __atomic_add_fetch(&h->resets, 1, __ATOMIC_ACQ_REL);
    return 0;
}

/* Word atomics on shared memory for the Python side (the task board's slot
 * states): Python has no compare-exchange of its own. */
EG_API int32_t eg_cas_u32(uint32_t *p, uint32_t expected, uint32_t desired) {
    return __atomic_compare_exchange_n(p, &expected, desired, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}
EG_API uint32_t eg_load_u32(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
EG_API void eg_store_u32(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
EG_API uint64_t eg_add_u64(uint64_t *p, uint64_t v) { return __atomic_add_fetch(p, v, __ATOMIC_ACQ_REL); }
