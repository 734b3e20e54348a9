"""Recall with spreading, end to end, beside a numpy + scipy.sparse pipeline doing the same work.

    python benches/recall.py                      # 10K memories / 50K links, 1,000 recalls per row
    python benches/recall.py --sizes 10K 100K     # and 100K memories / 500K links
    python benches/recall.py --budget-ms none     # engram spreads without a budget (no fallbacks)
    python benches/recall.py --quick              # 10K, 300 recalls per row (a smoke test)

Workload: ``engram.Engine(dim=768, workers=0)``, one space; N memories in the warm
tier (768-d, stored f16), standard-normal vectors; 5N random directed associations
(distinct pairs, no self-links, weights U[0.1, 1); benches/spread.py's make_graph),
compacted. Each query is a stored memory plus 0.3 x standard-normal noise; every
engram recall is ``space.recall(q, k=10)`` with the defaults: 20 similarity seeds,
spreading 4 hops (decay 0.9, threshold 0.01, cycle penalty 0.5 up to the hop's echo
ceiling, clamp at 1) over the fan-discounted weights (fan="source": w / (1 + ln
out-degree), engram/fan.py) within a 10 ms budget, ranking by (a0 + 0.9 (a - a0)) x
confidence x retention (RecallConfig's defaults since issue 18; decay 0.7 and 0.75 before).

Modes, each with 1, 2 and 4 clients: "threads" (threads calling the owner's space,
``workers=0``), "workers" (threads calling an engine with 2 worker processes, routing
"auto": a lone caller recalls in its own thread, concurrent callers go to the
workers), and "processes" (processes that ``engram.attach`` the engine read-only and
recall from their own address space; readers do not record accesses). Each row is
1,000 recalls in all (split round-robin among the clients); latency is per call as
the client sees it; P50 / P95 / P99 / P99.9 and recalls/s.

The peer ("numpy+scipy f16") does the same job with the same data, rules, clients
and warm-up:

* Data: its own copy of the same f16 rows (checked equal to what ``space.get``
  returns), row norms computed as engram computes them at remember time (float64 over
  the f16 values, stored f32), and the CSR of the links inserted (checked against
  ``space.neighbors`` on a sample), with engram's default fan="source" discount.
* Seeds: cosine of the f32 query against the f16 rows. numpy has no fused f16 dot
  product, so the peer converts 128 rows at a time into an f32 buffer that stays in
  L2 and multiplies that (one sgemv per chunk, BLAS 1 thread): it reads the same
  f16 bytes as engram. What it costs: numpy's f16 -> f32 cast is scalar, about
  1.5 ns per element here, so the 10K x 768 scan takes ~12 ms where an f32 copy of
  the rows (twice the bytes, which the older version of this bench scanned) takes
  ~1.3 ms; the peer's time is mostly that cast. ``rows16 @ q16`` (numpy's own f16
  matmul) is slower still (~28 ms) and rounds the cosines to f16. The 20 best
  (ties by lower id) get engram's logistic activation.
* Spreading: engram's rules (csrc/kernels/spread.c; engram/_kernels/reference.py is
  the oracle), hop by hop in float32 like the C kernel: the frontier's out-edges are
  taken with scipy's CSR row indexing, each edge carries fire x decay x w, edges below
  the threshold are dropped, a node touched in an earlier hop gains x cycle_penalty up
  to the hop's echo ceiling (decay x the largest activation fired) and never fires
  again, sums per node by ``np.unique`` + ``np.bincount``, clamp at 1, 4 hops. No
  budget: the peer always does the full spread.
* Ranking: as engram/recall.py: blend a0 + spread_weight (a - a0), times confidence x
  retention (strength x exp(-age / 30 days), from its own copy of the memories'
  fields, taken with ``space.get``), the k best with ties by lower id, scoring the
  most active first and widening as engram does. An owner-side peer (threads,
  workers) records the access (last access time, access count) as the owner does;
  the process peer, like engram's attached readers, does not.
* Clients: "threads": client threads, each with its own peer state. "workers": a pool
  of 2 forked worker processes fed through a FIFO queue, with engram's "auto" routing
  (a lone caller runs in its own thread, callers beyond the first go to the pool);
  its mutable fields live in shared memory, as engram's do. "processes": forked
  client processes. BLAS runs one thread per client (OPENBLAS_NUM_THREADS=1 is set
  before numpy loads).
* Warm-up: 200 queries through the owner (engram) and the in-process peer before the
  rows, then 20 per client (outside the timing) at the start of every row, for both.

Checks and ratios. Before timing, the seed sets of 100 queries (engram: an attached
reader's ``recall(q, k=20, spread=False, budget_ms=None)``, which is the seed scan of
every row, not cut short by a budget) are compared with
the peer's. During the rows, every call's top 10 ids are kept: each engram row's
answers are compared query by query with the peer row of the same mode and client
count, as the top-10 overlap (|engram ∩ peer| / 10, mean over queries). Every engram
row also counts its fallbacks (similarity only: the spread was predicted not to fit
the budget) and partial recalls (a stage stopped early). "x peer P95" = peer P95 /
engram P95, printed only when the peer row has the same mode and clients, engram had
no fallback or partial recall in the row, and the overlap is at least 0.9; otherwise
"-" and the reason. The JSON rows hold ``speedup_vs`` only where the ratio is printed.

Also reported: the LatencyPredictor's per-request error distribution (sum of the
per-hop predictions against the time of those hops) over the 1-client engram row
(with more threads, waits for the GIL land inside the timed hops), and how many
results came from spreading. JSON: benches/results/recall-<UTC>.json and
recall-latest.json, or --json PATH.
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import mmap
import multiprocessing as mp
import sys
import threading
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sparse

import engram
from engram.config import RecallConfig
from engram.observe import hwcounters

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common
import spread as spread_bench

DIM = 768
K = 10
NOISE = 0.3
CLIENTS = (1, 2, 4)
WORKERS = 2
MODES = ("threads", "workers", "processes")
PEER = "numpy+scipy f16"
WARM_OWNER = 200          # warm-up queries through the owner / in-process peer before the rows
WARM_CLIENT = 20          # per client, at the start of every row, outside the timing
SEED_CHECK = 100          # queries whose seed sets are compared before timing
MIN_OVERLAP = 0.9         # mean top-10 overlap below this: the rows disagree, no ratio
SCAN_CHUNK = 128          # rows per f16 -> f32 conversion in the peer (768 x 128 x 4 B = 384 KiB)


def build(n: int, links_per_node: int = 5):
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((n, DIM), dtype=np.float32)
    offsets, targets, weights = spread_bench.make_graph(n, links_per_node * n)
    src = np.repeat(np.arange(n, dtype=np.int64), np.diff(offsets.astype(np.int64)))
    return vecs, src, targets.astype(np.int64), weights


def make_queries(vecs, count: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, vecs.shape[0], count)
    return pick, (vecs[pick] + NOISE * rng.standard_normal((count, DIM), dtype=np.float32)).astype(np.float32)


# ----------------------------------------------------------------- the peer pipeline

class PeerData:
    """The peer's own copy of the workload (read-only), plus the mutable access fields
    in anonymous shared memory (seen by forked workers, as engram's are)."""

    def __init__(self, vecs, src, dst, w, cfg: RecallConfig, confidence, strength, last_access_ns):
        n = vecs.shape[0]
        self.n = n
        self.rows16 = vecs.astype(np.float16)                 # what remember(tier="warm") stores
        self.norms = np.linalg.norm(self.rows16.astype(np.float64), axis=1).astype(np.float32)
        order = np.lexsort((dst, src))                       # CSR: by source, then target
        s, d, ww = src[order], dst[order], w[order].astype(np.float32)
        offsets = np.zeros(n + 1, np.int64)
        np.cumsum(np.bincount(s, minlength=n), out=offsets[1:])
        self.offsets, self.targets, self.weights = offsets, d.astype(np.int32), ww
        self.fan_weights = self._fan(cfg.fan, offsets, d, ww)
        self.csr = sparse.csr_array((self.fan_weights, self.targets, offsets), shape=(n, n))
        self.cfg = cfg
        p = cfg.spread
        self.max_depth = int(p.max_depth)
        self.decay, self.threshold = np.float32(p.decay), np.float32(p.threshold)
        self.cycle_penalty = np.float32(p.cycle_penalty)
        self.n_seeds = max(K, cfg.seed_factor * K)
        self.confidence = np.asarray(confidence, np.float32).copy()
        self.strength = np.asarray(strength, np.float32).copy()
        self._mm = mmap.mmap(-1, 16 * n)                      # MAP_SHARED | MAP_ANONYMOUS
        self.last_access_ns = np.frombuffer(self._mm, np.int64, n, 0)
        self.access_count = np.frombuffer(self._mm, np.int64, n, 8 * n)
        self.last_access_ns[:] = last_access_ns

    @staticmethod
    def _fan(mode, offsets, dst, w):
        """engram/fan.py's discount 1 / (1 + ln fan), computed here from the links."""
        n = offsets.shape[0] - 1
        disc = lambda f: 1.0 / (1.0 + np.log(np.maximum(f.astype(np.float64), 1.0)))
        out = w.astype(np.float64)
        if mode in ("source", "both"):
            out = out * np.repeat(disc(np.diff(offsets)), np.diff(offsets))
        if mode in ("target", "both"):
            out = out * disc(np.bincount(dst, minlength=n))[dst]
        return out.astype(np.float32)


class Peer:
    """One client's pipeline: scan f16 -> seeds -> spread -> rank (-> record the access).
    Returns (top-k ids, scores, hops, seed ids)."""

    def __init__(self, data: PeerData, touch: bool):
        self.d, self.touch = data, touch
        self.buf = np.empty((SCAN_CHUNK, DIM), np.float32)
        self.cos = np.empty(data.n, np.float32)
        self.act = np.zeros(data.n, np.float32)
        self.hop = np.full(data.n, -1, np.int16)

    def seeds(self, q):
        d, buf, cos = self.d, self.buf, self.cos
        for a in range(0, d.n, SCAN_CHUNK):
            b = min(a + SCAN_CHUNK, d.n)
            np.copyto(buf[:b - a], d.rows16[a:b])           # f16 -> f32, chunk by chunk
            np.dot(buf[:b - a], q, out=cos[a:b])
        cos /= d.norms * np.float32(np.linalg.norm(q))
        s = d.n_seeds
        part = np.argpartition(-cos, s - 1)[:s]
        order = np.lexsort((part, -cos[part]))               # best first, ties by lower id
        return part[order], cos[part[order]]

    def spread(self, seeds, act0):
        d, act, hop = self.d, self.act, self.hop
        act[seeds] = np.minimum(act0, np.float32(1))
        hop[seeds] = 0
        parts, frontier = [seeds], seeds
        for h in range(1, d.max_depth + 1):
            if frontier.size == 0:
                break
            fire = act[frontier] * d.decay                   # what each fires, as the hop begins
            sub = d.csr[frontier]                            # the frontier's out-edges (rows in order)
            c = np.repeat(fire, np.diff(sub.indptr)) * sub.data
            keep = c >= d.threshold
            v, c = sub.indices[keep], c[keep]
            if v.size == 0:
                break
            c[hop[v] >= 0] *= d.cycle_penalty                # touched in an earlier hop: fired already
            uv, inv = np.unique(v, return_inverse=True)
            echo = hop[uv] >= 0
            frontier = uv[~echo]
            hop[frontier] = h
            got = act[uv] + np.bincount(inv, weights=c).astype(np.float32)
            top = np.where(echo, np.minimum(fire.max(), np.float32(1)), np.float32(1))   # the echo ceiling
            act[uv] = np.maximum(act[uv], np.minimum(got, top))
            parts.append(frontier)
        nodes = np.concatenate(parts).astype(np.int64)
        a, hops = act[nodes], hop[nodes].astype(np.int8)
        act[nodes] = 0
        hop[nodes] = -1
        return nodes, a, hops

    def rank(self, ids, potential, now_ns):
        """engram/recall.py's rank: the most active first, widened while needed."""
        d, cfg = self.d, self.d.cfg
        n = ids.shape[0]
        m = min(n, max(8 * K, 64))
        while True:
            top_m = np.argpartition(-potential, m - 1)[:m] if m < n else np.arange(n)
            cand = ids[top_m]
            age = (np.maximum(now_ns - d.last_access_ns[cand], 0) / 1e9).astype(np.float32)
            ret = d.strength[cand] * np.exp(-age / np.float32(cfg.forget_tau_s))
            score = potential[top_m] * d.confidence[cand] * ret
            order = np.lexsort((cand, -score))[:K]
            if m == n or (order.shape[0] == K and score[order[-1]] > potential[top_m].min()):
                return top_m[order], score[order]
            m = min(n, m * 4)

    def __call__(self, q):
        cfg = self.d.cfg
        q = np.ascontiguousarray(q, np.float32)
        seeds, cos = self.seeds(q)
        z = np.float32(-cfg.sigmoid_steepness) * (cos - np.float32(cfg.sigmoid_midpoint))
        act0 = (np.float32(1) / (np.float32(1) + np.exp(z))).astype(np.float32)
        nodes, a, hops = self.spread(seeds, act0)
        a0 = np.zeros(nodes.shape[0], np.float32)
        a0[:seeds.shape[0]] = act0                            # the seeds come first, in order
        potential = a0 + np.float32(cfg.spread_weight) * (a - a0)
        top, score = self.rank(nodes, potential, time.time_ns())
        ids = nodes[top]
        if self.touch:
            self.record(ids)
        return ids, score, hops[top], seeds

    def record(self, ids):
        self.d.last_access_ns[ids] = time.time_ns()
        self.d.access_count[ids] += 1


def _peer_worker(data, requests, replies):
    peer = Peer(data, touch=False)                          # the client records the access
    while True:
        job = requests.get()
        if job is None:
            return
        cid, q = job
        ids, score, hops, _ = peer(q)
        replies[cid].send((ids, score, hops))


class PeerPool:
    """The peer's "workers" mode: WORKERS forked processes taking queries FIFO, with
    engram's "auto" routing (a lone caller runs in its own thread)."""

    def __init__(self, data: PeerData, clients: int):
        ctx = mp.get_context("fork")
        self.data = data
        self.requests = ctx.SimpleQueue()
        pipes = [ctx.Pipe(duplex=False) for _ in range(clients)]
        self.replies = [a for a, _ in pipes]
        self.procs = [ctx.Process(target=_peer_worker, args=(data, self.requests, [b for _, b in pipes]),
                                  daemon=True) for _ in range(WORKERS)]
        for p in self.procs:
            p.start()
        self.inflight = 0
        self.lock = threading.Lock()
        self.served_by_workers = 0

    def client(self, cid: int):
        local = Peer(self.data, touch=True)

        def call(q):
            with self.lock:
                busy = self.inflight
                self.inflight += 1
            try:
                if busy:
                    self.requests.put((cid, q))
                    ids, score, hops = self.replies[cid].recv()
                    local.record(ids)                         # the owner records the access
                    with self.lock:
                        self.served_by_workers += 1
                    return ids
                return local(q)[0]
            finally:
                with self.lock:
                    self.inflight -= 1
        return call

    def close(self):
        for _ in self.procs:
            self.requests.put(None)
        for p in self.procs:
            p.join(10)


# ----------------------------------------------------------------- clients
# A client function returns (ids, fallback, partial); a client runs WARM_CLIENT warm
# queries, waits at the barrier, then times its share of the queries.

def _engram_call(sp, budget_ms):
    def call(q):
        r = sp.recall(q, k=K, budget_ms=budget_ms)
        return r.ids, r.fallback, r.partial
    return call


def _peer_call(fn):
    def call(q):
        out = fn(q)
        return (out[0] if isinstance(out, tuple) else out), False, False
    return call


def _run_client(fn, queries, idx, warm, barrier):
    for q in warm:
        fn(q)
    barrier.wait()
    lat, res = [], []
    fb = part = 0
    for i in idx:
        t0 = time.perf_counter_ns()
        ids, f, p = fn(queries[i])
        lat.append(time.perf_counter_ns() - t0)
        res.append((i, np.asarray(ids[:K], np.int64)))
        fb += int(f)
        part += int(p)
    return lat, res, fb, part


def _client_thread(make_fn, queries, idx, warm, barrier, out, lock):
    got = _run_client(make_fn(), queries, idx, warm, barrier)
    with lock:
        out.append(got)


def run_threads(make_fn, queries, warm, clients: int):
    """clients threads sharing the queries round-robin: (latencies, answers, fallbacks, partials, wall s)."""
    out, lock, threads = [], threading.Lock(), []
    barrier = threading.Barrier(clients + 1)
    for c in range(clients):
        threads.append(threading.Thread(target=_client_thread, args=(
            lambda c=c: make_fn(c), queries, range(c, queries.shape[0], clients), warm[c::clients][:WARM_CLIENT], barrier,
            out, lock)))
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return _merge(out, time.perf_counter() - t0)


def _client_process(make_fn, queries, idx, warm, barrier, conn):
    conn.send(_run_client(make_fn(), queries, idx, warm, barrier))
    conn.close()


def _attached_fn(name, space, budget_ms):
    eng = engram.attach(name)                    # closed when the client process exits
    call = _engram_call(eng.space(space), budget_ms)
    call.engine = eng
    return call


def run_processes(make_fn, queries, warm, clients: int):
    """clients forked processes; make_fn runs in each (after the fork)."""
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(clients + 1)
    procs, pipes = [], []
    for c in range(clients):
        a, b = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_client_process, args=(make_fn, queries, list(range(c, queries.shape[0], clients)),
                                                      warm[c::clients][:WARM_CLIENT], barrier, b))
        p.start()
        procs.append(p)
        pipes.append(a)
    barrier.wait()
    t0 = time.perf_counter()
    out = [a.recv() for a in pipes]
    wall = time.perf_counter() - t0
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise SystemExit(f"a client process failed with exit code {p.exitcode}")
    return _merge(out, wall)


def _merge(parts, wall):
    lat = [x for p in parts for x in p[0]]
    answers = dict(x for p in parts for x in p[1])
    return lat, answers, sum(p[2] for p in parts), sum(p[3] for p in parts), wall


def summarize(lat_ns, wall_s) -> dict:
    a = np.asarray(lat_ns, np.float64) / 1e6
    return {"p50_ms": float(np.percentile(a, 50)), "p95_ms": float(np.percentile(a, 95)),
            "p99_ms": float(np.percentile(a, 99)), "p999_ms": float(np.percentile(a, 99.9)),
            "mean_ms": float(a.mean()), "recalls": int(a.size), "recalls_per_s": float(a.size / wall_s)}


def overlap(a: dict, b: dict) -> float:
    """Mean |top-k of a ∩ top-k of b| / k over the queries both answered."""
    common = sorted(set(a) & set(b))
    if not common:
        return float("nan")
    return float(np.mean([np.intersect1d(a[i], b[i]).size / K for i in common]))


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


def check_peer_data(sp, data: PeerData, rng) -> None:
    """The peer's copy is engram's data: rows (as widened by get) and links, on samples."""
    ids = np.sort(rng.choice(data.n, min(2000, data.n), replace=False))
    got = sp.get(ids)
    if not np.array_equal(got.vectors, data.rows16[ids].astype(np.float32)):
        raise SystemExit("the peer's f16 rows differ from what engram stores")
    for i in rng.choice(data.n, min(300, data.n), replace=False).tolist():
        t, w = sp.neighbors(i)
        a, b = data.offsets[i], data.offsets[i + 1]
        if not (np.array_equal(t, data.targets[a:b]) and np.array_equal(w, data.weights[a:b])):
            raise SystemExit(f"the peer's links of memory {i} differ from engram's")


def bench_size(n: int, recalls: int, rows_out: list, extra: dict, budget_ms):
    vecs, src, dst, w = build(n)
    t0 = time.perf_counter()
    eng, sp = make_engine(vecs, src, dst, w, 0)
    setup_s = time.perf_counter() - t0
    weng, wsp = make_engine(vecs, src, dst, w, WORKERS)
    pick, queries = make_queries(vecs, recalls)
    warm = make_queries(vecs, max(WARM_OWNER, WARM_CLIENT * max(CLIENTS)), seed=2)[1]
    fields = sp.get(np.arange(n))
    data = PeerData(vecs, src, dst, w, sp.configure_recall(), fields.confidence, fields.strength, fields.last_access_ns)
    del fields
    check_peer_data(sp, data, np.random.default_rng(3))
    peer0 = Peer(data, touch=True)
    for q in warm[:WARM_OWNER]:                  # warm the predictors, caches and the peer alike
        sp.recall(q, k=K, budget_ms=budget_ms)
        wsp.recall(q, k=K, budget_ms=budget_ms)
        peer0(q)

    # correctness on the way: the memory a query came from ranks first, unless the budget
    # cut the scan short (partial): then it may not have been scanned at all
    checked = [sp.recall(queries[i], k=K, budget_ms=budget_ms) for i in range(min(200, recalls))]
    wrong = sum(int(r.ids[0] != pick[i]) for i, r in enumerate(checked) if not r.partial)
    if wrong:
        raise SystemExit(f"CORRECTNESS FAILURE: {wrong} of {len(checked)} complete recalls did not rank "
                         f"their source memory first")
    # the seed sets: an attached reader's similarity-only recall of 2k is the seed scan
    with engram.attach(eng.name) as reader:
        rsp = reader.space("bench")
        seeds_equal = sum(int(np.array_equal(np.sort(rsp.recall(queries[i], k=data.n_seeds, spread=False,
                                                                budget_ms=None).ids),
                                             np.sort(peer0.seeds(queries[i])[0])))
                          for i in range(min(SEED_CHECK, recalls)))
    scan = scan_diagnostic(peer0, data, queries[:50])
    sample = [sp.recall(queries[i], k=K, budget_ms=budget_ms) for i in range(50)]
    spread_results = sum(int((r.hops > 0).sum()) for r in sample)
    fallbacks = sum(int(r.fallback) for r in sample)
    partials = sum(int(r.partial) for r in sample)

    label = f"{_common.human(n)} / {_common.human(int(src.shape[0]))}"
    prediction = None
    served = {}
    for clients in CLIENTS:
        sp.spreading_stats(reset=True)                 # prediction errors of this run only
        got = {}
        got["engram", "threads"] = run_threads(lambda c: _engram_call(sp, budget_ms), queries, warm, clients)
        if clients == 1:      # one client: no GIL waits inside the timed hops
            s = sp.spreading_stats()
            prediction = (s["prediction_error"], s["spread_estimate_error"])
        before = weng.worker_stats()["completed"]
        got["engram", "workers"] = run_threads(lambda c: _engram_call(wsp, budget_ms), queries, warm, clients)
        served["engram", clients] = weng.worker_stats()["completed"] - before
        got["engram", "processes"] = run_processes(lambda: _attached_fn(eng.name, "bench", budget_ms),
                                                   queries, warm, clients)
        got[PEER, "threads"] = run_threads(lambda c: _peer_call(Peer(data, touch=True)), queries, warm, clients)
        pool = PeerPool(data, clients)
        try:
            got[PEER, "workers"] = run_threads(lambda c: _peer_call(pool.client(c)), queries, warm, clients)
            served[PEER, clients] = pool.served_by_workers
        finally:
            pool.close()
        got[PEER, "processes"] = run_processes(lambda: _peer_call(Peer(data, touch=False)), queries, warm, clients)
        for (system, mode), (lat, answers, fb, part, wall) in got.items():
            row = {"config": label, "clients": clients, "mode": mode, "system": system, **summarize(lat, wall),
                   "fallbacks": fb, "partials": part}
            if mode == "workers":
                row["served_by_workers"] = served[system, clients]
            if system == "engram":
                row["top10_overlap_with_peer"] = overlap(answers, got[PEER, mode][1])
            rows_out.append(row)
    extra[label] = {"setup_s": setup_s, "budget_ms": budget_ms, "spread_results_in_50_recalls": spread_results,
                    "fallbacks_in_50_recalls": fallbacks, "partials_in_50_recalls": partials,
                    "peer_scan_ms": scan, "seed_sets_equal": seeds_equal, "seed_sets_checked": min(SEED_CHECK, recalls),
                    "prediction_error": prediction[0], "spread_estimate_error": prediction[1],
                    "batch_size": sp.spreading_stats()["batch_size"]}
    extra[label]["worker_stats"] = {k: v for k, v in weng.worker_stats().items() if k != "pids"}
    extra[label]["spreading_metrics"] = weng.spreading_metrics()
    supported, why = hwcounters.probe()
    extra[label]["hardware_counters"] = {"supported": supported, "reason": why}
    weng.close()
    eng.close()


def scan_diagnostic(peer: Peer, data: PeerData, queries) -> dict:
    """P50 ms of the peer's seed scan over the f16 rows, and (not used by any row: twice
    the bytes) of the same cosines over an f32 copy: what numpy's f16 cast costs."""
    rows32 = data.rows16.astype(np.float32)
    t16, t32 = [], []
    for q in queries:
        t0 = time.perf_counter_ns()
        peer.seeds(q)
        t1 = time.perf_counter_ns()
        cos = (rows32 @ q) / (data.norms * np.float32(np.linalg.norm(q)))
        np.argpartition(-cos, data.n_seeds - 1)[:data.n_seeds]
        t2 = time.perf_counter_ns()
        t16.append(t1 - t0)
        t32.append(t2 - t1)
    return {"f16_chunks_p50_ms": float(np.median(t16)) / 1e6, "f32_copy_p50_ms": float(np.median(t32)) / 1e6}


def judge(r: dict, peer) -> tuple:
    """(ratio or None, why not): a ratio only for equal work that gave the same answers."""
    if peer is None:
        return None, "no peer row of this mode"
    if r["fallbacks"] or r["partials"]:
        return None, f"engram: {r['fallbacks']} fallbacks, {r['partials']} partial (peer spreads in full)"
    ov = r.get("top10_overlap_with_peer")
    if ov is None or not ov >= MIN_OVERLAP:
        return None, f"MISMATCH: top-10 overlap {ov:.3f} < {MIN_OVERLAP}"
    return peer["p95_ms"] / r["p95_ms"], ""


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
    print(f"engram recall bench: recall(q, k=10) with spreading, against {PEER} doing the same work")
    for line in _common.header_lines(info):
        print(line)
    rows, extra = [], {}
    t0 = time.perf_counter()
    budget = None if a.budget_ms.lower() == "none" else float(a.budget_ms)
    for n in sizes:
        bench_size(n, recalls, rows, extra, budget)
    print()
    hdr = f"{'config':<15}{'clients':>7}  {'mode':<10}{'system':<16}{'P50 ms':>9}{'P95 ms':>9}{'P99 ms':>9}" \
          f"{'P99.9 ms':>10}{'recalls/s':>10}{'fb/part':>8}{'top10 ov':>9}{'x peer P95':>11}  note"
    print(hdr)
    print("-" * len(hdr))
    slug_peer = _common.slug(PEER)
    for r in rows:
        r["key"] = _common.make_key("recall", r["config"].replace(" / ", "-"),
                                    slug_peer if r["system"] == PEER else r["system"], r["mode"], f"{r['clients']}c")
        ratio, why = None, ""
        if r["system"] == "engram":
            peer = next((p for p in rows if p["config"] == r["config"] and p["clients"] == r["clients"]
                         and p["mode"] == r["mode"] and p["system"] == PEER), None)
            ratio, why = judge(r, peer)
            r["x_peer_p95"], r["no_ratio_because"] = ratio, why or None
            if ratio is not None:
                r["speedup_vs"] = {slug_peer: ratio}
        ov = r.get("top10_overlap_with_peer")
        print(f"{r['config']:<15}{r['clients']:>7}  {r['mode']:<10}{r['system']:<16}{r['p50_ms']:>9.3f}"
              f"{r['p95_ms']:>9.3f}{r['p99_ms']:>9.3f}{r['p999_ms']:>10.3f}{r['recalls_per_s']:>10.0f}"
              f"{str(r['fallbacks']) + '/' + str(r['partials']):>8}{'' if ov is None else f'{ov:.3f}':>9}"
              f"{'' if r['system'] == PEER else ('-' if ratio is None else f'{ratio:.2f}x'):>11}  {why}")
    print()
    for label, e in extra.items():
        pe = e["prediction_error"]
        print(f"{label}: seed sets equal to the peer's in {e['seed_sets_equal']} of {e['seed_sets_checked']} queries; "
              f"the peer's seed scan over the f16 rows takes {e['peer_scan_ms']['f16_chunks_p50_ms']:.2f} ms at P50 "
              f"(over an f32 copy, twice the bytes and not used: {e['peer_scan_ms']['f32_copy_p50_ms']:.2f} ms)")
        print(f"  "
              f"latency prediction error (1 client) over {pe.get('requests', 0)} requests: "
              f"P50 {100 * pe.get('p50', 0):.1f}%, P95 {100 * pe.get('p95', 0):.1f}%, "
              f"within 20%: {100 * pe.get('within_20pct', 0):.1f}% of requests; "
              f"budget {e['budget_ms']} ms: {e['spread_results_in_50_recalls']} of 500 results in 50 recalls came "
              f"from spreading, {e['fallbacks_in_50_recalls']} fallbacks, {e['partials_in_50_recalls']} partial; "
              f"batch size {e['batch_size']}")
        m = e["spreading_metrics"]
        print(f"  shared-memory metrics (engine with workers): cache miss rate {m['engram_spreading_cache_miss_rate']}"
              f"{'' if e['hardware_counters']['supported'] else ' (' + e['hardware_counters']['reason'] + ')'}, "
              f"pool hit rate {m.get('activation_pool_hit_rate', 0):.3f}, high water {m.get('pool_high_water_mark')}")
    doc = {"bench": "recall", "argv": sys.argv[1:], "k": K, "dim": DIM, "peer": PEER, "rows": rows,
           "spreading": extra, "machine": info}
    _common.finish("recall", doc, a.json, t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
