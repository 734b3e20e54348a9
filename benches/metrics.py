"""What recording a metric or a trace event costs: from C, from Python, and to the whole engine.

    python benches/metrics.py            # all three parts
    python benches/metrics.py --quick    # fewer repeats

1. C: csrc/include/engram_metrics.h compiled into a small program (gcc -O2),
   once as shipped and once with -DEG_METRICS=0 (recording compiled out).
   Each sample times a batch of 64 recordings with clock_gettime and divides;
   P50 / P99 per recording over 20,000 batches, on a cell in shared memory
   (an mmap'd /dev/shm file, as the engine's slots are). Also a trace event
   written into a 4,096-event ring (csrc/include/engram_trace.h), one that its
   kind filter drops, and both compiled out (-DEG_TRACING=0).
2. Python: per call, timed over 1M calls (best of 5): Counter.inc(),
   Histogram.observe_ns(), the no-op bound when metrics are off, and an empty
   Python method call for scale.
3. The engine: a recall workload near 10K recalls/s (1,000 warm 128-d
   memories, 5,000 links, `recall(q, k=10)` with spreading) in two processes,
   metrics on and ENGRAM_METRICS=0, interleaved 7 times; overhead = median
   time with metrics / without - 1.

JSON: benches/results/metrics-<UTC>.json and metrics-latest.json (or --json).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

ROOT = Path(__file__).resolve().parent.parent

C_BENCH = r"""
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include "engram_metrics.h"
#include "engram_trace.h"
#define BATCH 64
static double now_ns(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e9 + t.tv_nsec; }
static int cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }
int main(int argc, char **argv) {
    int n = atoi(argv[1]);
    size_t bytes = 4096 + 64 + 4096 * 64;
    int fd = open(argv[2], O_RDWR | O_CREAT, 0600);
    if (fd < 0 || ftruncate(fd, (off_t)bytes)) return 2;
    uint64_t *cells = mmap(0, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    eg_trace_ring_header_t *ring = (eg_trace_ring_header_t *)((char *)cells + 4096);
    eg_trace_event_t *events = (eg_trace_event_t *)((char *)ring + 64);
    ring->capacity = 4096; ring->kinds = ~0ull; ring->min_strength = 0.0f; ring->sample = 1.0f;
    double *ctr = malloc(n * sizeof(double)), *hist = malloc(n * sizeof(double)), *empty = malloc(n * sizeof(double));
    double *trace = malloc(n * sizeof(double)), *filtered = malloc(n * sizeof(double));
    for (int i = 0; i < n; i++) {
        double t0 = now_ns();
        for (int j = 0; j < BATCH; j++) { eg_metric_add(&cells[0], 1); __asm__ volatile("" ::: "memory"); }
        double t1 = now_ns();
        for (int j = 0; j < BATCH; j++) { eg_metric_observe_ns(&cells[8], (uint64_t)(1000 + 37 * j)); __asm__ volatile("" ::: "memory"); }
        double t2 = now_ns();
        for (int j = 0; j < BATCH; j++) { __asm__ volatile("" ::: "memory"); }
        double t3 = now_ns();
        for (int j = 0; j < BATCH; j++) { eg_trace_emit(ring, events, 4, 1, 0, (uint64_t)i, (uint64_t)j, 7, 1234.0, 0.5f); __asm__ volatile("" ::: "memory"); }
        double t4 = now_ns();
        for (int j = 0; j < BATCH; j++) { eg_trace_emit(ring, events, 63, 1, 0, (uint64_t)i, (uint64_t)j, 7, 1234.0, -1.0f); __asm__ volatile("" ::: "memory"); }
        double t5 = now_ns();
        ctr[i] = (t1 - t0) / BATCH; hist[i] = (t2 - t1) / BATCH; empty[i] = (t3 - t2) / BATCH;
        trace[i] = (t4 - t3) / BATCH; filtered[i] = (t5 - t4) / BATCH;
    }
    qsort(ctr, n, sizeof(double), cmp); qsort(hist, n, sizeof(double), cmp); qsort(empty, n, sizeof(double), cmp);
    qsort(trace, n, sizeof(double), cmp); qsort(filtered, n, sizeof(double), cmp);
    printf("{\"counter_p50_ns\": %.2f, \"counter_p99_ns\": %.2f, \"histogram_p50_ns\": %.2f, "
           "\"histogram_p99_ns\": %.2f, \"empty_p50_ns\": %.2f, \"empty_p99_ns\": %.2f, "
           "\"trace_emit_p50_ns\": %.2f, \"trace_emit_p99_ns\": %.2f, "
           "\"trace_filtered_p50_ns\": %.2f, \"trace_filtered_p99_ns\": %.2f, \"check\": %llu}\n",
           ctr[n / 2], ctr[n * 99 / 100], hist[n / 2], hist[n * 99 / 100], empty[n / 2], empty[n * 99 / 100],
           trace[n / 2], trace[n * 99 / 100], filtered[n / 2], filtered[n * 99 / 100],
           (unsigned long long)cells[0]);
    unlink(argv[2]);
    return 0;
}
"""

ENGINE_RUN = textwrap.dedent("""
    import sys, time, json, numpy as np, engram
    sys.path.insert(0, {benches!r})
    import spread as sb
    n, recalls, dim = {n}, {recalls}, {dim}
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((n, dim), dtype=np.float32)
    o, t, w = sb.make_graph(n, 5 * n)
    src = np.repeat(np.arange(n), np.diff(o.astype(np.int64)))
    with engram.Engine(dim=dim, workers=0) as eng:
        sp = eng.space("bench")
        sp.remember(vecs, tier="warm"); sp.link(src, t.astype(np.int64), w); sp.compact()
        qs = vecs[rng.integers(0, n, recalls)] + 0.3 * rng.standard_normal((recalls, dim), dtype=np.float32)
        for q in qs[:200]:
            sp.recall(q)
        t0 = time.perf_counter()
        for q in qs:
            sp.recall(q)
        print(json.dumps({{"seconds": time.perf_counter() - t0}}))
""")


def c_costs(batches: int) -> dict:
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, flags in (("enabled", []), ("compiled_out", ["-DEG_METRICS=0", "-DEG_TRACING=0"])):
            exe = Path(tmp) / f"metrics_{label}"
            src = Path(tmp) / "bench.c"
            src.write_text(C_BENCH)
            subprocess.run(["gcc", "-O2", "-I", str(ROOT / "csrc" / "include"), *flags, str(src), "-o", str(exe)],
                           check=True)
            shm = f"/dev/shm/engram-metrics-bench-{os.getpid()}"
            r = subprocess.run([str(exe), str(batches), shm], check=True, capture_output=True, text=True)
            out[label] = json.loads(r.stdout)
    return out


def python_costs(calls: int) -> dict:
    from engram.observe import metrics
    from engram.observe.metrics.segment import MetricsSegment
    from engram.store.shm.names import EngineName

    name = EngineName.new()
    seg = MetricsSegment.create(name, slots=2)
    try:
        rec = metrics.Recorder(seg, seg.claim(metrics.ROLE_OTHER), "bench", assign=True)
        off = metrics.Recorder(None, 0, "bench", assign=False)

        class Empty:
            def inc(self, v=1):
                pass

        def per_call(fn, arg=None):
            best = float("inf")
            for _ in range(5):
                t0 = time.perf_counter_ns()
                if arg is None:
                    for _ in range(calls):
                        fn()
                else:
                    for _ in range(calls):
                        fn(arg)
                best = min(best, (time.perf_counter_ns() - t0) / calls)
            return best

        def loop_only():
            best = float("inf")
            for _ in range(5):
                t0 = time.perf_counter_ns()
                for _ in range(calls):
                    pass
                best = min(best, (time.perf_counter_ns() - t0) / calls)
            return best

        from engram.observe.tracing import KINDS, TraceConfig, Tracer
        tracer = Tracer(name, TraceConfig(ring_size=1 << 12), worker=0)
        quiet = Tracer(None, None)
        hop = KINDS["hop"]

        def emit_on():
            tracer.emit(hop, 0, 1, 2, 3, 4.0, 0.5)

        def emit_off():
            quiet.emit(hop, 0, 1, 2, 3, 4.0, 0.5)

        base = loop_only()
        empty_call = per_call(lambda: None)
        trace_on = per_call(emit_on) - empty_call
        trace_off = per_call(emit_off) - empty_call
        tracer.ring.seg.unlink(tracer.ring.seg.name)
        return {"loop_ns": base, "trace_emit_ns": trace_on, "trace_emit_off_ns": trace_off,
                "counter_inc_ns": per_call(rec.recalls_total.inc) - base,
                "histogram_observe_ns": per_call(rec.recall_latency_seconds.observe_ns, 123456) - base,
                "disabled_noop_ns": per_call(off.recalls_total.inc) - base,
                "empty_method_ns": per_call(Empty().inc) - base}
    finally:
        seg.seg.unlink(seg.seg.name)


def engine_overhead(rounds: int, n: int, recalls: int, dim: int) -> dict:
    code = ENGINE_RUN.format(benches=str(Path(__file__).resolve().parent), n=n, recalls=recalls, dim=dim)
    on, off = [], []
    for _ in range(rounds):
        for env_val, dest in (("1", on), ("0", off)):
            env = dict(os.environ, ENGRAM_METRICS=env_val)
            r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
            dest.append(json.loads(r.stdout.strip().splitlines()[-1])["seconds"])
    med_on, med_off = float(np.median(on)), float(np.median(off))
    return {"recalls": recalls, "memories": n, "dim": dim, "seconds_on": on, "seconds_off": off,
            "recalls_per_s_on": recalls / med_on, "recalls_per_s_off": recalls / med_off,
            "overhead_pct": 100.0 * (med_on / med_off - 1.0)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog="See the module docstring.")
    ap.add_argument("--quick", action="store_true", help="fewer batches, calls and rounds")
    ap.add_argument("--json", help="write the JSON here only")
    a = ap.parse_args(argv)
    info = _common.machine_info()
    print("engram metrics bench: the cost of recording")
    for line in _common.header_lines(info):
        print(line)
    t0 = time.perf_counter()
    c = c_costs(2_000 if a.quick else 20_000)
    py = python_costs(100_000 if a.quick else 1_000_000)
    # a workload near 10K recalls/s: 1,000 memories of 128-d, with spreading over 5,000 links
    eng = engine_overhead(1 if a.quick else 7, 1_000, 2_000 if a.quick else 20_000, 128)
    print()
    print("C, per recording (batches of 64, shared-memory cell):")
    for label, r in c.items():
        print(f"  {label:<13} counter P50 {r['counter_p50_ns']:.2f} ns  P99 {r['counter_p99_ns']:.2f} ns   "
              f"histogram P50 {r['histogram_p50_ns']:.2f} ns  P99 {r['histogram_p99_ns']:.2f} ns   "
              f"trace event P50 {r['trace_emit_p50_ns']:.2f} ns  P99 {r['trace_emit_p99_ns']:.2f} ns   "
              f"filtered out P99 {r['trace_filtered_p99_ns']:.2f} ns")
    print("Python, per call (loop cost subtracted):")
    for k, v in py.items():
        if k != "loop_ns":
            print(f"  {k:<22} {v:7.1f} ns")
    print(f"Engine: {eng['recalls']} recalls of {eng['memories']:,} memories, {len(eng['seconds_on'])} rounds: "
          f"{eng['recalls_per_s_on']:,.0f} recalls/s with metrics, {eng['recalls_per_s_off']:,.0f} without; "
          f"overhead {eng['overhead_pct']:+.2f}%")
    rows = [{"key": _common.make_key("metrics", "c", label, k.rsplit("_", 1)[0]), k: v}
            for label, r in c.items() for k, v in r.items() if k.endswith("_ns")]
    rows += [{"key": _common.make_key("metrics", "python", k.removesuffix("_ns")), "per_call_ns": v}
             for k, v in py.items()]
    doc = {"bench": "metrics", "argv": sys.argv[1:], "c": c, "python": py, "engine": eng, "rows": rows,
           "machine": info}
    _common.finish("metrics", doc, a.json, t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
