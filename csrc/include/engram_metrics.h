/* Recording into engram's shared-memory metrics from C (layout:
 * engram/metrics/definitions.py). One relaxed atomic add per event; the
 * process's own slot, so the adds never contend across processes.
 * Build with -DEG_METRICS=0 and every recording compiles to nothing. */
#ifndef ENGRAM_METRICS_H
#define ENGRAM_METRICS_H
#include <stdint.h>

#ifndef EG_METRICS
#define EG_METRICS 1
#endif
#define EG_HIST_MIN_BITS 10
#define EG_HIST_BUCKETS 31

#if EG_METRICS
static inline void eg_metric_add(uint64_t *cell, uint64_t v) { __atomic_fetch_add(cell, v, __ATOMIC_RELAXED); }
/* cells: buckets[EG_HIST_BUCKETS + 1] (the last is +Inf), count, sum_ns */
static inline void eg_metric_observe_ns(uint64_t *cells, uint64_t ns) {
    int b = (ns ? 64 - __builtin_clzll(ns) : 0) - EG_HIST_MIN_BITS;
    b = b < 0 ? 0 : (b > EG_HIST_BUCKETS ? EG_HIST_BUCKETS : b);
    __atomic_fetch_add(&cells[b], 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&cells[EG_HIST_BUCKETS + 1], 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&cells[EG_HIST_BUCKETS + 2], ns, __ATOMIC_RELAXED);
}
#else
#define eg_metric_add(cell, v) ((void)0)
#define eg_metric_observe_ns(cells, ns) ((void)0)
#endif
#endif
