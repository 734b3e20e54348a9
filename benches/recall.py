"""Recall with spreading, end to end, beside a numpy + scipy.sparse pipeline.

    python benches/recall.py                      # 10K memories / 50K links, 1,000 recalls per row
    python benches/recall.py --sizes 10K 100K     # and 100K memories / 500K links
    python benches/recall.py --quick              # 10K, 300 recalls per row (a smoke test)

Workload: ``engram.Engine(dim=768, workers=0)``, one space; N memories in the warm
tier (768-d, stored f16), standard-normal vectors; 5N random directed associations
(distinct pairs, no self-links, weights U[0.1, 1); benches/spread.py's make_graph),
compacted. Each query is a stored memory plus 0.3 x standard-normal noise; every
engram recall is ``space.recall(q, k=10)`` with the defaults: 20 similarity seeds,
spreading 4 hops (decay 0.7, threshold 0.01, cycle penalty 0.5) within a 10 ms
budget, ranking by activation x confidence x retention.

Clients: 1, 2 and 4 at once, as threads calling the owner's space ("threads",
``workers=0``), as threads calling an engine with 2 worker processes ("workers",
routing "auto": a lone caller recalls in its own thread, concurrent callers go to
the workers), and as processes that ``engram.attach`` the engine read-only and
recall from their own address space. Each row is 1,000 recalls in all (split among the clients); latency is per
call as the client sees it; P50 / P95 / P99 / P99.9 and recalls/s.

Peer, measured in the same run with the same clients: a numpy brute-force +
scipy.sparse pipeline doing the same job: cosine of the query against an f32 copy
of the rows (numpy converts f16 to a temporary on every call otherwise, so this is
its best case) with precomputed norms, the 20 best as seeds with the same logistic
activation, 4 hops of sparse-frontier SpMV (``x @ A``; decay, threshold, clamp;
no cycle rule) and the 10 most active. BLAS runs one thread per client
(OPENBLAS_NUM_THREADS=1 is set before numpy loads).

Also reported: the LatencyPredictor's per-request error distribution (sum of the
per-hop predictions against the time of those hops) over the 1-client engram row
(with more threads, waits for the GIL land inside the timed hops), and
how many results came from spreading. JSON: benches/results/recall-<UTC>.json and
recall-latest.json, or --json PATH.
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import multiprocessing as mp
import sys
import threading
import time
from pathlib import Path

import numpy as np

import engram
from engram.observe import hwcounters

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common
import spread as spread_bench

DIM = 768
K = 10
NOISE = 0.3
CLIENTS = (1, 2, 4)
WORKERS = 2


def build(n: int, links_per_node: int = 5):
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((n, DIM), dtype=np.float32)
    offsets, targets, weights = spread_bench.make_graph(n, links_per_node * n)
    src = np.repeat(np.arange(n, dtype=np.int64), np.diff(offsets.astype(np.int64)))
    return vecs, src, targets.astype(np.int64), weights


def make_queries(vecs, count: int):
    rng = np.random.default_rng(1)
    pick = rng.integers(0, vecs.shape[0], count)
    return pick, (vecs[pick] + NOISE * rng.standard_normal((count, DIM), dtype=np.float32)).astype(np.float32)


# ----------------------------------------------------------------- the peer pipeline

class NumpyScipyPipeline:
    """numpy brute force for the seeds, scipy.sparse for spreading (one per client thread)."""

    def __init__(self, rows32, norms, offsets, targets, weights, seeds: int):
        self.rows, self.norms, self.seeds = rows32, norms, seeds
        self.spread = spread_bench.scipy_spvec_fn(offsets, targets, weights)

    def __call__(self, q):
        cos = (self.rows @ q) / (self.norms * np.float32(np.linalg.norm(q)))
        s = np.argpartition(-cos, self.seeds)[:self.seeds]
        act0 = (1.0 / (1.0 + np.exp(-10.0 * (cos[s] - 0.5)))).astype(np.float32)
        nodes, act = self.spread(s, act0)
        top = np.argpartition(-act, min(K, act.size - 1))[:K]
        return nodes[top[np.argsort(-act[top])]]


# ----------------------------------------------------------------- clients

def _client_thread(fn, queries, idx, out, barrier):
    barrier.wait()
    lat = []
    for i in idx:
        t0 = time.perf_counter_ns()
        fn(queries[i])
        lat.append(time.perf_counter_ns() - t0)
    out.extend(lat)


def run_threads(make_fn, queries, clients: int):
    """(latencies ns, wall s): clients threads sharing the queries round-robin."""
    out, threads = [], []
    barrier = threading.Barrier(clients + 1)
    for c in range(clients):
        idx = range(c, queries.shape[0], clients)
        threads.append(threading.Thread(target=_client_thread, args=(make_fn(), queries, idx, out, barrier)))
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return out, time.perf_counter() - t0


def _client_process(name, space, queries, idx, conn, start, budget_ms):
    with engram.attach(name) as eng:
        sp = eng.space(space)
        for i in idx[:20]:                    # warm this process's caches and predictor
            sp.recall(queries[i], k=K, budget_ms=budget_ms)
        start.wait()
        lat = []
        for i in idx:
            t0 = time.perf_counter_ns()
            sp.recall(queries[i], k=K, budget_ms=budget_ms)
            lat.append(time.perf_counter_ns() - t0)
    conn.send(lat)
    conn.close()


def run_processes(name, space, queries, clients: int, budget_ms):
    ctx = mp.get_context("fork")
    start = ctx.Barrier(clients + 1)
    procs, pipes = [], []
    for c in range(clients):
        a, b = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_client_process, args=(name, space, queries, list(range(c, queries.shape[0], clients)),
                                                        b, start, budget_ms))
        p.start()
        procs.append(p)
        pipes.append(a)
    start.wait()
    t0 = time.perf_counter()
    out = []
    for a in pipes:
        out.extend(a.recv())
    wall = time.perf_counter() - t0
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise SystemExit(f"a client process failed with exit code {p.exitcode}")
    return out, wall


def summarize(lat_ns, wall_s) -> dict:
    a = np.asarray(lat_ns, np.float64) / 1e6
    return {"p50_ms": float(np.percentile(a, 50)), "p95_ms": float(np.percentile(a, 95)),
            "p99_ms": float(np.percentile(a, 99)), "p999_ms": float(np.percentile(a, 99.9)),
            "mean_ms": float(a.mean()), "recalls": int(a.size), "recalls_per_s": float(a.size / wall_s)}


# ----------------------------------------------------------------- main

def make_engine(vecs, src, dst, w, workers: int):
    """An engine holding the workload; with workers, they are up before it returns."""
    eng = engram.Engine(dim=DIM, workers=workers)
    sp = eng.space("bench")
    for a in range(0, vecs.shape[0], 20_000):
        sp.remember(vecs[a:a + 20_000], tier="warm")
    sp.link(src, dst, w)
    sp.compact()
    if workers:
        eng.start_workers()
    return eng, sp


def bench_size(n: int, recalls: int, rows_out: list, extra: dict, budget_ms):
    vecs, src, dst, w = build(n)
    t0 = time.perf_counter()
    eng, sp = make_engine(vecs, src, dst, w, 0)
    setup_s = time.perf_counter() - t0
    weng, wsp = make_engine(vecs, src, dst, w, WORKERS)
    pick, queries = make_queries(vecs, recalls)
    warm = make_queries(vecs, 200)[1]
    for q in warm:                            # warm the predictor and caches
        sp.recall(q, k=K, budget_ms=budget_ms)

    # correctness on the way: the memory a query came from ranks first
    # correctness on the way: the memory a query came from ranks first, unless the budget
    # cut the scan short (partial): then it may not have been scanned at all
    checked = [sp.recall(queries[i], k=K, budget_ms=budget_ms) for i in range(min(200, recalls))]
    wrong = sum(int(r.ids[0] != pick[i]) for i, r in enumerate(checked) if not r.partial)
    if wrong:
        raise SystemExit(f"CORRECTNESS FAILURE: {wrong} of {len(checked)} complete recalls did not rank "
                         f"their source memory first")
    sample = [sp.recall(queries[i], k=K, budget_ms=budget_ms) for i in range(50)]
    spread_results = sum(int((r.hops > 0).sum()) for r in sample)
    fallbacks = sum(int(r.fallback) for r in sample)
    partials = sum(int(r.partial) for r in sample)

    g, _ = sp._spread_graph()
    rows32 = sp._store.tier_rows(schema_warm())[0].astype(np.float32)
    norms = np.linalg.norm(rows32, axis=1).astype(np.float32)
    seeds = sp._recall_cfg.seed_factor * K
    label = f"{_common.human(n)} / {_common.human(int(g.n_edges))}"
    prediction = None
    for clients in CLIENTS:
        sp._predictor.stats.errors.clear()
        sp._predictor.spread_stats.errors.clear()
        lat, wall = run_threads(lambda: (lambda q: sp.recall(q, k=K, budget_ms=budget_ms)), queries, clients)
        rows_out.append({"config": label, "clients": clients, "mode": "threads", "system": "engram", **summarize(lat, wall)})
        before = weng.worker_stats()["completed"]
        lat, wall = run_threads(lambda: (lambda q: wsp.recall(q, k=K, budget_ms=budget_ms)), queries, clients)
        rows_out.append({"config": label, "clients": clients, "mode": "workers", "system": "engram",
                         "served_by_workers": weng.worker_stats()["completed"] - before, **summarize(lat, wall)})
        if clients == 1:      # one client: no GIL waits inside the timed hops
            prediction = (sp._predictor.stats.summary(), sp._predictor.spread_stats.summary())
        lat, wall = run_processes(eng.name, "bench", queries, clients, budget_ms)
        rows_out.append({"config": label, "clients": clients, "mode": "processes", "system": "engram",
                         **summarize(lat, wall)})
        lat, wall = run_threads(lambda: NumpyScipyPipeline(rows32, norms, g.offsets, g.targets, g.weights, seeds),
                                queries, clients)
        rows_out.append({"config": label, "clients": clients, "mode": "threads", "system": "numpy+scipy",
                         **summarize(lat, wall)})
    extra[label] = {"setup_s": setup_s, "budget_ms": budget_ms, "spread_results_in_50_recalls": spread_results,
                    "fallbacks_in_50_recalls": fallbacks, "partials_in_50_recalls": partials,
                    "prediction_error": prediction[0], "spread_estimate_error": prediction[1],
                    "batch_size": sp._batcher.batch_size}
    extra[label]["worker_stats"] = {k: v for k, v in weng.worker_stats().items() if k != "pids"}
    extra[label]["spreading_metrics"] = weng.spreading_metrics()
    supported, why = hwcounters.probe()
    extra[label]["hardware_counters"] = {"supported": supported, "reason": why}
    weng.close()
    eng.close()


def schema_warm() -> int:
    from engram.layout import schema
    return schema.CONSTANTS["TIER_WARM"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog="See the module docstring.")
    ap.add_argument("--sizes", nargs="+", default=["10K"], help="memory counts (links: 5 per memory)")
    ap.add_argument("--recalls", type=int, default=1000, help="recalls per row (default 1,000)")
    ap.add_argument("--quick", action="store_true", help="10K, 300 recalls per row")
    ap.add_argument("--budget-ms", default="10", help="recall's budget_ms (default 10; 'none': unbounded)")
    ap.add_argument("--json", help="write the JSON here only")
    a = ap.parse_args(argv)
    sizes = [10_000] if a.quick else [_common.parse_count(s) for s in a.sizes]
    recalls = 300 if a.quick else a.recalls
    info = _common.machine_info()
    print("engram recall bench: recall(q, k=10) with spreading, against numpy + scipy.sparse")
    for line in _common.header_lines(info):
        print(line)
    rows, extra = [], {}
    t0 = time.perf_counter()
    budget = None if a.budget_ms.lower() == "none" else float(a.budget_ms)
    for n in sizes:
        bench_size(n, recalls, rows, extra, budget)
    print()
    hdr = f"{'config':<16}{'clients':>8}  {'mode':<10}{'system':<13}{'P50 ms':>9}{'P95 ms':>9}{'P99 ms':>9}" \
          f"{'P99.9 ms':>10}{'recalls/s':>11}{'x peer P95':>11}"
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        peer = next((p for p in rows if p["config"] == r["config"] and p["clients"] == r["clients"]
                     and p["system"] == "numpy+scipy"), None)
        r["x_peer_p95"] = peer["p95_ms"] / r["p95_ms"] if peer else None
        r["key"] = _common.make_key("recall", r["config"].replace(" / ", "-"), r["system"], r["mode"],
                                    f"{r['clients']}c")
        if peer and r is not peer:
            r["speedup_vs"] = {"numpy+scipy": r["x_peer_p95"]}
        print(f"{r['config']:<16}{r['clients']:>8}  {r['mode']:<10}{r['system']:<13}{r['p50_ms']:>9.3f}"
              f"{r['p95_ms']:>9.3f}{r['p99_ms']:>9.3f}{r['p999_ms']:>10.3f}{r['recalls_per_s']:>11.0f}"
              f"{r['x_peer_p95']:>10.2f}x")
    print()
    for label, e in extra.items():
        pe = e["prediction_error"]
        print(f"{label}: latency prediction error (1 client) over {pe.get('requests', 0)} requests: "
              f"P50 {100 * pe.get('p50', 0):.1f}%, P95 {100 * pe.get('p95', 0):.1f}%, "
              f"within 20%: {100 * pe.get('within_20pct', 0):.1f}% of requests; "
              f"budget {e['budget_ms']} ms: {e['spread_results_in_50_recalls']} of 500 results in 50 recalls came "
              f"from spreading, {e['fallbacks_in_50_recalls']} fallbacks, {e['partials_in_50_recalls']} partial; "
              f"batch size {e['batch_size']}")
        m = e["spreading_metrics"]
        print(f"  shared-memory metrics (engine with workers): cache miss rate {m['engram_spreading_cache_miss_rate']}"
              f"{'' if e['hardware_counters']['supported'] else ' (' + e['hardware_counters']['reason'] + ')'}, "
              f"pool hit rate {m.get('activation_pool_hit_rate', 0):.3f}, high water {m.get('pool_high_water_mark')}")
    doc = {"bench": "recall", "argv": sys.argv[1:], "k": K, "dim": DIM, "rows": rows, "spreading": extra,
           "machine": info}
    _common.finish("recall", doc, a.json, t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
