/* Writing trace events into a process's ring (engram/tracing; layout:
 * TraceRingHeader then TraceEvent[capacity], capacity a power of two).
 * One producer per ring, so the head is ours to read plainly; readers are
 * other processes, read-only. The ring drops the oldest events when full:
 * an event's seq (ring index + 1) is written last, so a reader that copies an
 * event and then finds another seq knows it was overwritten (counted, never
 * returned torn). Filtering (kinds mask, minimum strength, sampling) happens
 * here, before anything is written. Build with -DEG_TRACING=0 and emitting
 * compiles to nothing.
 * A span is written when it ends, stamped with its start (eg_trace_emit_at: the
 * caller's CLOCK_MONOTONIC start, value = its duration), so a consumer can nest
 * it without guessing; an instant is stamped now (eg_trace_emit). Every event
 * carries its writer's OS thread id, read once per thread. */
#ifndef ENGRAM_TRACE_H
#define ENGRAM_TRACE_H
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include "engram_layout.h"

#ifndef EG_TRACING
#define EG_TRACING 1
#endif

#if EG_TRACING
static inline uint64_t eg_trace_now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static inline uint32_t eg_trace_tid(void) {
    static __thread uint32_t tid;                /* 0 until this thread's first event */
    if (__builtin_expect(tid == 0, 0)) tid = (uint32_t)syscall(SYS_gettid);
    return tid;
}

/* 1 if written, 0 if filtered out. ts_ns: the event's CLOCK_MONOTONIC time (0: now). */
static inline int eg_trace_emit_at(eg_trace_ring_header_t *h, eg_trace_event_t *events, uint16_t kind,
                                   uint16_t worker, uint16_t space, uint64_t trace_id, uint64_t node_a,
                                   uint64_t node_b, double value, float strength, uint64_t ts_ns) {
    if (kind >= 64 || !((h->kinds >> kind) & 1u) || strength < h->min_strength) return 0;
    uint64_t n = ++h->considered;
    if (h->sample < 1.0f && (uint64_t)((double)n * h->sample) == (uint64_t)((double)(n - 1) * h->sample)) {
        h->dropped_sampling++;                   /* evenly spaced: exactly `sample` of them are kept */
        return 0;
    }
    uint64_t i = h->head;
    eg_trace_event_t *e = &events[i & (h->capacity - 1)];
    __atomic_store_n(&e->seq, 0, __ATOMIC_RELAXED);          /* being rewritten */
    __atomic_thread_fence(__ATOMIC_RELEASE);
    e->ts_ns = ts_ns ? ts_ns : eg_trace_now_ns();
    e->trace_id = trace_id;
    e->node_a = node_a;
    e->node_b = node_b;
    e->value = value;
    e->strength = strength;
    e->kind = kind;
    e->worker = worker;
    e->space = space;
    e->flags = 0;
    e->tid = eg_trace_tid();
    __atomic_store_n(&e->seq, i + 1, __ATOMIC_RELEASE);
    __atomic_store_n(&h->head, i + 1, __ATOMIC_RELEASE);
    return 1;
}

static inline int eg_trace_emit(eg_trace_ring_header_t *h, eg_trace_event_t *events, uint16_t kind,
                                uint16_t worker, uint16_t space, uint64_t trace_id, uint64_t node_a,
                                uint64_t node_b, double value, float strength) {
    return eg_trace_emit_at(h, events, kind, worker, space, trace_id, node_a, node_b, value, strength, 0);
}
#else
#define eg_trace_emit_at(h, events, kind, worker, space, trace_id, node_a, node_b, value, strength, ts) (0)
#define eg_trace_emit(h, events, kind, worker, space, trace_id, node_a, node_b, value, strength) (0)
#endif
#endif
