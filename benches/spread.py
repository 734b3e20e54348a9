"""4-hop spreading activation over a CSR graph: engram's kernels against scipy, numpy and networkx peers.

Run from the repository root (engram installed, e.g. ``pip install -e .``):

    python benches/spread.py                 # 10K nodes / 50K edges and 1M / 5M, warm and cold (a few minutes)
    python benches/spread.py --quick         # 10K only, fewer repeats: a smoke test (< ~30 s)
    python benches/spread.py --json out.json # write the JSON there instead of benches/results/
    python benches/spread.py --flush-mib 64  # size of the cache-flush buffer for the "cold" rows

What is spread. Every spread uses engram's rules (csrc/kernels/spread.c): max_depth 4,
decay 0.7, threshold 0.01 (per contribution), cycle_penalty 0.5, seed activation 1,
activation clamped to 1; a node fires once, in the hop after its first touch. Seeds:
10 and 20 distinct nodes per spread (performance.md quotes 20), a fresh seed set for
every spread, drawn from ``np.random.default_rng([1, n_nodes, n_seeds])`` (the same
sequence of seed sets for every row of a config).

Graphs. Random simple directed graphs: 10K nodes / 50K edges, and 1M nodes / 5M edges
(not with --quick). Edges are uniform random (source, target) pairs without self-loops or
duplicate pairs, drawn from ``np.random.default_rng(0)`` (so out- and in-degrees are
about Poisson(5)); CSR rows are sorted by target id; weights are uniform in [0.1, 1)
(``rng.uniform(0.1, 1.0)``, stored as f32). Offsets u64, targets u32, weights f32: the
kernels' native dtypes, so the public API copies nothing. With these weights a 4-hop
spread reaches far: at 10K a 20-seed spread touches about 6K of the 10K nodes. Each row
therefore also reports the touched nodes and the edges examined (the out-edges of every
node that fired, i.e. touched at hops 0..3, including those whose contribution fell
below the threshold), and the P50 time per touched node and per examined edge.

engram rows, for every backend and ISA variant that loads (``engram.kernels.available()``):

* ``api``: ``table.spread(offsets, targets, weights, seeds)``, the public validating
  call. It re-validates the WHOLE CSR on every call (``as_csr``: offsets start at 0,
  never decrease (an ``np.diff`` over n+1 entries), targets < n (a max over m), weights
  finite and >= 0 (two passes over m)), so its cost grows with the graph, not with the
  spread: at 1M / 5M that is milliseconds.
* ``internal``: ``table._spread(g, seeds_u32, seed_act_f32, SpreadParams(...))`` with
  ``g = as_csr(offsets, targets, weights)`` validated once, outside the timing: what
  the engine calls. For the c backend's best ISA also ``internal pf0`` and ``internal
  pf16`` (prefetch_distance 0 and 16; both other paths use the default 8).
* Diagnostics for the c backend's best ISA (not engram API, not checked): ``kernel only``
  is the Cython call into ``eg_spread`` alone (scratch.take + kernel; the results stay in
  the scratch, so the gap to ``internal`` is the cost of copying them out), and, at 10K,
  ``same seeds`` is the internal path with the SAME seed set every call: the CPU's branch
  predictors learn that one spread's branch pattern, so this is what a naive benchmark
  would report, not what varied queries get.
* ``api`` and ``internal`` include engram's Python side: the per-thread scratch, and copying the result
  out (nodes -> int64, activations, hops).
* The C library exports one ``eg_spread`` for all its ISA variants (the work is
  latency-bound, not SIMD), so the c/<isa> rows run the same machine code: their spread
  shows the run's noise. The zig variants are compiled per ISA (-mcpu).
* ``numpy`` is engram's float64 oracle (pure Python loops): timed at 10K only, with few
  repeats.

Peers, measured in the same run (single-threaded, like engram):

* ``scipy dense`` (NOT the same algorithm, results NOT bit-identical): one SpMV per hop
  with the transposed CSR, ``x = min(AT @ x * decay, 1)``, entries below the threshold
  zeroed (on a node's summed input, not per edge), ``act = min(act + x, 1)``, then
  ``flatnonzero(act)``. Dense f32 vectors over all n nodes; no cycle rule (every node
  that received input re-fires next hop), so it touches different nodes with different
  activations. Same purpose, different algorithm: its cost is ~max_depth * (n + m).
* ``scipy spvec``: the same math as ``scipy dense`` with a sparse frontier: per hop the
  frontier is a 1 x n ``csr_array`` times the (untransposed) CSR, so its cost follows the
  frontier, not n. Checked against ``scipy dense`` (same nodes, activations within 1e-5).
* ``numpy frontier``: a faithful, per-hop vectorised numpy version of engram's rules
  (gather the frontier's out-edges with ``np.repeat``, per-edge threshold, cycle penalty
  for nodes touched in an earlier hop, ``np.unique`` for first-touch order and per-node
  sums, clamp). Checked like the engram backends: must equal the oracle.
* ``networkx`` (10K only): the same rules written the way a networkx user would: BFS by
  hop over ``G.successors(u)`` with ``G[u][v]["weight"]`` on a ``nx.DiGraph`` built
  from the same edges in CSR order. Checked against the oracle too.

Method. Each row is warmed up, then timed spread by spread (``perf_counter_ns`` around
one call; GC disabled), over 1,000 spreads at 10K for the fast rows (300 with --quick),
fewer for slow ones (see the "reps" column). Reported: P50 / P95 / P99 in microseconds;
speed-up = the peer's P50 / this row's P50 (> 1 means faster than the peer), against
scipy dense, scipy spvec and networkx. At 1M there is a warm variant (spreads back to
back, different seeds each time; note the 1M CSR + state is ~64 MB, and on a machine
with a large L3 much of it stays cached) and a "cold" variant: before every timed spread
(outside the timing) a buffer of max(64 MiB, 2 x L3) (or --flush-mib) is read and
written (``np.add(buf, 1, out=buf)``), which evicts the graph, engram's node state and
the interpreter's hot data from L1/L2/L3 and the TLBs. At 1M the public API validates
the full 5M-edge graph per call, so its warm/cold distinction is moot.

Correctness, before timing: on a few seed sets per config, every engram backend through
both paths (and the c prefetch variants), ``numpy frontier`` and ``networkx`` must equal
engram's float64 oracle (``engram.kernels.reference.spread``): the same nodes in the
same first-touch order, the same hops, activations within 1e-5. A mismatch aborts.

Every JSON row has a stable ``key`` ("spread/<graph>/k<seeds>/<warm|cold>/<row>/<path>",
e.g. "spread/10K/k20/warm/c-avx512/internal"), the same in every run.

Results go to stdout (a table) and to JSON: benches/results/spread-<UTC time>.json and
benches/results/spread-latest.json (or only --json PATH), holding the machine, the
graphs and every row. The machine is shared and noisy: compare ratios inside one run.
"""
from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

import engram.kernels as ek
from engram.kernels.checks import as_csr
from engram.kernels.reference import spread as oracle_spread
from engram.kernels.spreadrun import SpreadParams

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

MAX_DEPTH, DECAY, THRESHOLD, CYCLE_PENALTY = 4, 0.7, 0.01, 0.5
W_LO, W_HI = 0.1, 1.0
GRAPHS = (("10K", 10_000, 50_000), ("1M", 1_000_000, 5_000_000))
SEED_COUNTS = (10, 20)
GRAPH_SEED = 0
SEEDS_SEED = 1
ATOL = 1e-5
HERE = Path(__file__).resolve().parent
PEER_COLS = ("scipy dense", "scipy spvec", "networkx")


# ----------------------------------------------------------------- graph and seeds

def make_graph(n: int, m: int, seed: int = GRAPH_SEED):
    """A random simple digraph as CSR: m distinct (u, v) pairs, u != v, rows sorted by v; weights U[0.1, 1)."""
    rng = np.random.default_rng(seed)
    keys = np.empty(0, np.int64)
    while keys.size < m:
        need = int((m - keys.size) * 1.01) + 1000
        u = rng.integers(0, n, need, dtype=np.int64)
        v = rng.integers(0, n, need, dtype=np.int64)
        keys = np.unique(np.concatenate([keys, (u * n + v)[u != v]]))
    if keys.size > m:                                  # drop the few extra pairs at random
        keys = np.delete(keys, rng.choice(keys.size, keys.size - m, replace=False))
    u, v = keys // n, keys % n
    offsets = np.zeros(n + 1, np.uint64)
    np.cumsum(np.bincount(u, minlength=n), out=offsets[1:])
    weights = rng.uniform(W_LO, W_HI, m).astype(np.float32)
    return offsets, v.astype(np.uint32), weights


def make_seed_sets(n: int, k: int, count: int):
    rng = np.random.default_rng([SEEDS_SEED, n, k])
    return [np.sort(rng.choice(n, k, replace=False)).astype(np.int64) for _ in range(count)]


# ----------------------------------------------------------------- peers

def scipy_dense_fn(offsets, targets, weights):
    import scipy.sparse as sp
    n = offsets.shape[0] - 1
    at = sp.csr_array((weights, targets, offsets), shape=(n, n)).T.tocsr()   # AT[v, u] = w(u -> v)
    decay, thr = np.float32(DECAY), np.float32(THRESHOLD)

    def run(seeds, seed_act):
        x = np.zeros(n, np.float32)
        np.add.at(x, seeds, seed_act)
        np.minimum(x, 1, out=x)
        act = x.copy()
        for _ in range(MAX_DEPTH):
            x = at @ x
            x *= decay
            x[x < thr] = 0
            np.minimum(x, 1, out=x)
            act += x
        np.minimum(act, 1, out=act)
        nodes = np.flatnonzero(act)
        return nodes, act[nodes]
    return run


def scipy_spvec_fn(offsets, targets, weights):
    """The dense peer's math with a sparse frontier: (1 x n csr) @ A per hop."""
    import scipy.sparse as sp
    n = offsets.shape[0] - 1
    a = sp.csr_array((weights, targets, offsets), shape=(n, n))
    deg = np.diff(offsets.astype(np.int64))
    act = np.zeros(n, np.float32)
    decay, thr = np.float32(DECAY), np.float32(THRESHOLD)

    def run(seeds, seed_act, stats=None):
        idx, inv = np.unique(seeds, return_inverse=True)
        vals = np.minimum(np.bincount(inv, weights=seed_act).astype(np.float32), 1)
        touched = [idx]
        act[idx] = vals
        for _ in range(MAX_DEPTH):
            if idx.size == 0:
                break
            if stats is not None:
                stats["edges"] += int(deg[idx].sum())
            x = sp.csr_array((vals, idx, np.array([0, idx.size])), shape=(1, n))
            y = x @ a
            d = y.data * decay
            keep = d >= thr
            idx, vals = y.indices[keep], np.minimum(d[keep], 1)
            act[idx] += vals
            touched.append(idx)
        nodes = np.unique(np.concatenate(touched))
        out = np.minimum(act[nodes], 1)
        act[nodes] = 0
        return nodes, out
    return run


def numpy_frontier_fn(offsets, targets, weights):
    """engram's rules, vectorised per hop (float64 like the oracle; state reset per touched node)."""
    n = offsets.shape[0] - 1
    off = offsets.astype(np.int64)
    w64 = weights.astype(np.float64)
    act = np.zeros(n, np.float64)
    hop_of = np.full(n, -1, np.int16)

    def run(seeds, seed_act):
        s_uniq, s_first, s_inv = np.unique(seeds, return_index=True, return_inverse=True)
        sums = np.bincount(s_inv, weights=seed_act)
        order = np.argsort(s_first, kind="stable")
        frontier = s_uniq[order]
        act[frontier] = np.minimum(sums[order], 1.0)
        hop_of[frontier] = 0
        parts = [frontier]
        for hop in range(1, MAX_DEPTH + 1):
            if frontier.size == 0:
                break
            fire = act[frontier] * DECAY                  # what each fires: its act as the hop begins
            starts = off[frontier]
            lens = off[frontier + 1] - starts
            total = int(lens.sum())
            if total == 0:
                break
            ends = np.cumsum(lens)
            eidx = np.arange(total) + np.repeat(starts - (ends - lens), lens)
            c = np.repeat(fire, lens) * w64[eidx]
            keep = c >= THRESHOLD
            v = targets[eidx[keep]].astype(np.int64)
            c = c[keep]
            if v.size == 0:
                frontier = v
                break
            old = hop_of[v] >= 0                           # touched in an earlier hop: fired or firing
            c[old] *= CYCLE_PENALTY
            uv, first, inv = np.unique(v, return_index=True, return_inverse=True)
            new = hop_of[uv] < 0
            frontier = uv[new][np.argsort(first[new], kind="stable")]
            hop_of[frontier] = hop
            act[uv] = np.minimum(act[uv] + np.bincount(inv, weights=c), 1.0)
            parts.append(frontier)
        nodes = np.concatenate(parts)
        out_act, out_hop = act[nodes], hop_of[nodes].astype(np.uint8)
        act[nodes] = 0.0
        hop_of[nodes] = -1
        return nodes, out_act, out_hop
    return run


def networkx_graph(offsets, targets, weights):
    import networkx as nx
    n = offsets.shape[0] - 1
    src = np.repeat(np.arange(n), np.diff(offsets.astype(np.int64)))
    g = nx.DiGraph()
    g.add_nodes_from(range(n))
    g.add_weighted_edges_from(zip(src.tolist(), targets.tolist(), weights.astype(np.float64).tolist()))
    return g


def networkx_spread(G, seeds, seed_act, max_depth=MAX_DEPTH, decay=DECAY, threshold=THRESHOLD,
                    cycle_penalty=CYCLE_PENALTY):
    """engram's spreading rules, the way a networkx user writes them.

    A peer, not a copy of the oracle by accident: it is timed as what a networkx
    user would write (dicts and G.successors), so it keeps its own loop on purpose;
    check_against_oracle holds it to engram.kernels.reference.spread."""
    act, hop_of = {}, {}
    frontier = []
    for s, a in zip(seeds, seed_act):
        if s not in act:
            act[s], hop_of[s] = 0.0, 0
            frontier.append(s)
        act[s] = min(1.0, act[s] + a)
    order = list(frontier)
    for hop in range(1, max_depth + 1):
        if not frontier:
            break
        fire = [(u, act[u]) for u in frontier]
        frontier = []
        for u, a_u in fire:
            for v in G.successors(u):
                c = a_u * decay * G[u][v]["weight"]
                if c < threshold:
                    continue
                if v not in act:
                    act[v], hop_of[v] = 0.0, hop
                    frontier.append(v)
                elif hop_of[v] < hop:
                    c *= cycle_penalty
                act[v] = min(1.0, act[v] + c)
        order.extend(frontier)
    return order, [act[v] for v in order], [hop_of[v] for v in order]


# ----------------------------------------------------------------- checks

def check_against_oracle(what, got, ref):
    """Abort unless got == the oracle: same nodes in order, same hops, activations within ATOL."""
    g_nodes, g_act = np.asarray(got[0], np.int64), np.asarray(got[1], np.float64)
    r_nodes, r_act, r_hop = ref
    if g_nodes.shape != r_nodes.shape or not np.array_equal(g_nodes, r_nodes):
        diff = np.flatnonzero(g_nodes[:min(g_nodes.size, r_nodes.size)] != r_nodes[:min(g_nodes.size, r_nodes.size)])
        first = int(diff[0]) if diff.size else min(g_nodes.size, r_nodes.size)
        sys.exit(f"\nCORRECTNESS FAILURE in {what}: {g_nodes.size} nodes touched, the oracle {r_nodes.size}; "
                 f"first difference at position {first}")
    if len(got) > 2 and got[2] is not None and not np.array_equal(np.asarray(got[2], np.int64), r_hop.astype(np.int64)):
        sys.exit(f"\nCORRECTNESS FAILURE in {what}: hops differ from the oracle's")
    err = float(np.max(np.abs(g_act - r_act))) if r_act.size else 0.0
    if not err <= ATOL:
        sys.exit(f"\nCORRECTNESS FAILURE in {what}: activation differs from the oracle by {err:.3g} (> {ATOL})")
    return err


# ----------------------------------------------------------------- timing

class Flusher:
    """Evicts the caches by reading and writing a buffer larger than them (outside the timing)."""

    def __init__(self, nbytes: int):
        self.nbytes = nbytes
        self.buf = np.ones(nbytes // 8, np.int64)

    def __call__(self):
        np.add(self.buf, 1, out=self.buf)


def measure(fn, reps: int, warmup: int, flush=None):
    """Time fn(i) for i = warmup .. warmup+reps-1 (each a different seed set), one call at a time."""
    for i in range(warmup):
        fn(i)
    times = np.empty(reps, np.int64)
    counts = np.empty(reps, np.int64)
    gc_was = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for j in range(reps):
            if flush is not None:
                flush()
            t0 = time.perf_counter_ns()
            r = fn(warmup + j)
            times[j] = time.perf_counter_ns() - t0
            counts[j] = len(r[0])
    finally:
        if gc_was:
            gc.enable()
    us = times / 1e3
    return {"p50_us": float(np.percentile(us, 50)), "p95_us": float(np.percentile(us, 95)),
            "p99_us": float(np.percentile(us, 99)), "mean_us": float(us.mean()), "min_us": float(us.min()),
            "reps": reps, "warmup": warmup, "touched_mean": float(counts.mean())}


# ----------------------------------------------------------------- machine

def machine_info() -> dict:
    return _common.machine_info(scipy=_common._version("scipy"), networkx=_common._version("networkx"))


# ----------------------------------------------------------------- the bench

human = _common.human


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="See the module docstring (benches/spread.py) for the method.")
    ap.add_argument("--quick", action="store_true", help="10K graph only, fewer repeats (smoke test)")
    ap.add_argument("--json", type=Path, metavar="PATH",
                    help="write the JSON here instead of benches/results/spread-<time>.json and spread-latest.json")
    ap.add_argument("--flush-mib", type=int, default=None,
                    help="cache-flush buffer for the cold rows, MiB (default max(64, 2 x L3))")
    args = ap.parse_args(argv)
    wall0 = time.perf_counter()
    quick = args.quick

    info = machine_info()
    flush_bytes = (args.flush_mib * 2 ** 20 if args.flush_mib
                   else max(64 * 2 ** 20, 2 * (info["l3_bytes"] or 0)))
    # repeats: (fast rows, api at 1M, dense/spvec/frontier peers, networkx, oracle, cold)
    reps = {"fast": 300 if quick else 1000, "api_1m": 100, "peer": 100 if quick else 1000, "peer_1m": 200,
            "dense_1m": 30, "networkx": 20 if quick else 200, "oracle": 3 if quick else 20, "cold": 40}
    warm_n = {"fast": 20, "peer": 3, "slow": 1}
    graphs = GRAPHS[:1] if quick else GRAPHS

    backends, skipped = {}, {}
    for key, tab in ek.available().items():
        (backends if not isinstance(tab, Exception) else skipped)[key] = tab
    c_best = next((k for k in backends if k.startswith("c/")), None)
    try:
        import scipy  # noqa: F401
        have_scipy = True
    except ImportError:
        have_scipy = False
    try:
        import networkx  # noqa: F401
        have_nx = True
    except ImportError:
        have_nx = False

    print(f"engram spread bench: {MAX_DEPTH} hops, decay {DECAY}, threshold {THRESHOLD}, cycle_penalty {CYCLE_PENALTY}; "
          f"seeds {'/'.join(map(str, SEED_COUNTS))}; graphs {', '.join(f'{h} nodes/{human(m)} edges' for h, _, m in graphs)}")
    print(f"  cpu: {info['cpu_model']}; {info['cores']} cores; ISAs {', '.join(info['cpu_isas'])}; "
          f"L2 {(info['l2_bytes'] or 0) // 2**20} MiB, L3 {(info['l3_bytes'] or 0) // 2**20} MiB")
    print(f"  numpy {info['numpy']}, scipy {info['scipy']}, networkx {info['networkx']}, numba {info['numba']}; "
          f"engram {info['engram']} ({info['git']})")
    print(f"  backends: {', '.join(backends)}" + (f"; not loaded: {', '.join(f'{k} ({v})' for k, v in skipped.items())}" if skipped else ""))
    print("  api = table.spread(offsets, targets, weights, seeds): validates the WHOLE CSR every call (O(n+m));\n"
          "  internal = table._spread(g, seeds, seed_act, SpreadParams) on a pre-validated graph (what the engine calls).\n"
          "  scipy dense / spvec: NOT engram's rules (threshold on node sums, no cycle rule): different touched sets,\n"
          "  not bit-identical. numpy frontier and networkx follow engram's rules and are checked against the oracle.")
    print(f"  weights U[{W_LO}, {W_HI}) f32; random simple digraph (no self-loops or duplicate edges), seed {GRAPH_SEED}; "
          f"cold = {flush_bytes // 2**20} MiB buffer read+written before each timed spread")
    print("  x peer = peer P50 / row P50 (> 1: faster); ns/node, ns/edge = P50 / touched nodes, / edges examined")
    load = info["loadavg_at_start"]
    if load and load[0] > 0.5:
        print(f"  WARNING: load average {load[0]:.2f} at start: other processes share the {info['cores']} cores; "
              "expect inflated P95/P99 (scheduler slices of ~4 ms)")
    print()

    hdr = (f"{'config':<18} {'row':<15} {'path':<13} {'P50 us':>9} {'P95 us':>9} {'P99 us':>9} {'touched':>8} "
           f"{'ns/node':>8} {'ns/edge':>8} {'x dense':>8} {'x spvec':>8} {'x nx':>8} {'reps':>5}")
    print(hdr)
    print("-" * len(hdr))

    results, graph_docs, checks = [], [], []
    p = SpreadParams(MAX_DEPTH, DECAY, THRESHOLD, CYCLE_PENALTY).check()
    for gname, n, m in graphs:
        t0 = time.perf_counter()
        offsets, targets, weights = make_graph(n, m)
        g = as_csr(offsets, targets, weights)
        deg = np.diff(offsets.astype(np.int64))
        gen_s = time.perf_counter() - t0
        graph_docs.append({"name": gname, "n_nodes": n, "n_edges": m, "seed": GRAPH_SEED,
                           "edges": "uniform random (u, v), u != v, no duplicates; rows sorted by target",
                           "weights": f"uniform [{W_LO}, {W_HI}) f32",
                           "out_degree": {"min": int(deg.min()), "mean": float(deg.mean()), "max": int(deg.max())},
                           "csr_bytes": int(offsets.nbytes + targets.nbytes + weights.nbytes),
                           "state_bytes": 8 * n, "generate_seconds": gen_s})
        big = n > 100_000
        peers = {}
        if have_scipy:
            peers["scipy dense"] = scipy_dense_fn(offsets, targets, weights)
            peers["scipy spvec"] = scipy_spvec_fn(offsets, targets, weights)
        peers["numpy frontier"] = numpy_frontier_fn(offsets, targets, weights)
        nxg = networkx_graph(offsets, targets, weights) if (have_nx and not big) else None
        flusher = Flusher(flush_bytes) if big else None
        c_tab = backends[c_best] if c_best else None

        for k in SEED_COUNTS:
            n_sets = max(reps["fast"], reps["peer"]) + 50
            sets = make_seed_sets(n, k, n_sets)
            sets32 = [s.astype(np.uint32) for s in sets]
            ones = np.ones(k, np.float32)

            # --- correctness against the float64 oracle
            n_check = 3 if big else 5
            t_check = time.perf_counter()
            max_err = 0.0
            for i in range(n_check):
                ref = oracle_spread(offsets, targets, weights, sets32[i], ones, MAX_DEPTH, DECAY, THRESHOLD, CYCLE_PENALTY)
                for key, tab in backends.items():
                    if key == "numpy" and big:
                        continue
                    max_err = max(max_err, check_against_oracle(f"{gname} k={k} {key} api", tab.spread(offsets, targets, weights, sets[i]), ref))
                    max_err = max(max_err, check_against_oracle(f"{gname} k={k} {key} internal", tab._spread(g, sets32[i], ones, p), ref))
                if c_tab is not None:
                    for pf in (0, 16):
                        got = c_tab._spread(g, sets32[i], ones, SpreadParams(MAX_DEPTH, DECAY, THRESHOLD, CYCLE_PENALTY, pf))
                        max_err = max(max_err, check_against_oracle(f"{gname} k={k} {c_best} pf{pf}", got, ref))
                check_against_oracle(f"{gname} k={k} numpy frontier", peers["numpy frontier"](sets[i], ones.astype(np.float64)), ref)
                if nxg is not None:
                    check_against_oracle(f"{gname} k={k} networkx", networkx_spread(nxg, sets[i].tolist(), [1.0] * k), ref)
                if have_scipy:
                    dn, da = peers["scipy dense"](sets[i], ones)
                    sn, sa = peers["scipy spvec"](sets[i], ones)
                    if not (np.array_equal(dn, sn) and np.allclose(da, sa, rtol=0, atol=ATOL)):
                        sys.exit(f"\nCHECK FAILURE {gname} k={k}: scipy spvec differs from scipy dense "
                                 f"({dn.size} vs {sn.size} nodes)")
            checks.append({"graph": gname, "seeds": k, "seed_sets_checked": n_check, "max_abs_err_engram": max_err,
                           "seconds": time.perf_counter() - t_check})

            # --- per-seed-set work of engram's rules: touched nodes, edges examined (from the c backend)
            work_nodes = np.empty(n_sets, np.int64)
            work_edges = np.empty(n_sets, np.int64)
            ref_tab = c_tab or backends.get("numba") or backends["numpy"]
            for i in range(n_sets):
                nodes, _a, hops = ref_tab._spread(g, sets32[i], ones, p)
                work_nodes[i] = nodes.size
                work_edges[i] = int(deg[nodes[hops < MAX_DEPTH]].sum())

            def spvec_edges(lo, hi):
                total = 0
                for i in range(lo, hi):
                    st = {"edges": 0}
                    peers["scipy spvec"](sets[i], ones, stats=st)
                    total += st["edges"]
                return total / max(hi - lo, 1)

            # --- the rows: (cache, label, path, kind, fn, reps, warmup, call)
            jobs = []
            for cache in (("warm", "cold") if big else ("warm",)):
                cold = cache == "cold"
                rp = lambda key: reps["cold"] if cold else reps[key]
                if have_scipy:
                    jobs.append((cache, "scipy dense", "SpMV/hop", "peer",
                                 lambda i, f=peers["scipy dense"]: f(sets[i], ones),
                                 rp("dense_1m" if big else "peer"), warm_n["peer"],
                                 "x = min(decay * (AT @ x), 1); x[x < thr] = 0; act = min(act + x, 1)"))
                    jobs.append((cache, "scipy spvec", "spvec@A/hop", "peer",
                                 lambda i, f=peers["scipy spvec"]: f(sets[i], ones),
                                 rp("peer_1m" if big else "peer"), warm_n["peer"],
                                 "frontier as 1 x n csr_array @ A per hop, same math as scipy dense"))
                jobs.append((cache, "numpy frontier", "vectorised", "peer",
                             lambda i, f=peers["numpy frontier"]: f(sets[i], ones),
                             rp("peer_1m" if big else "peer"), warm_n["peer"],
                             "engram's rules vectorised per hop (np.repeat gather, np.unique, bincount)"))
                if nxg is not None:
                    ones_list = [1.0] * k
                    jobs.append((cache, "networkx", "BFS", "peer",
                                 lambda i: networkx_spread(nxg, sets[i].tolist(), ones_list),
                                 rp("networkx"), warm_n["slow"],
                                 "BFS by hop over G.successors(u), G[u][v]['weight']"))
                for key, tab in backends.items():
                    if key == "numpy":
                        if big or cold:
                            continue
                        jobs.append((cache, key, "api", "oracle",
                                     lambda i, t=tab: t.spread(offsets, targets, weights, sets[i]),
                                     reps["oracle"], warm_n["slow"], "engram.kernels.backend('numpy').spread(...)"))
                        continue
                    bname, _, isa = key.partition("/")
                    call_tab = f"engram.kernels.backend({bname!r}{', isa=' + repr(isa) if isa else ''})"
                    if not cold or key == c_best:
                        jobs.append((cache, key, "api", "engram",
                                     lambda i, t=tab: t.spread(offsets, targets, weights, sets[i]),
                                     rp("api_1m" if big else "fast"), warm_n["fast"] if not big else 3,
                                     f"{call_tab}.spread(offsets, targets, weights, seeds)"))
                    jobs.append((cache, key, "internal", "engram",
                                 lambda i, t=tab: t._spread(g, sets32[i], ones, p),
                                 rp("fast"), warm_n["fast"],
                                 f"{call_tab}._spread(g, seeds_u32, ones_f32, SpreadParams(4, 0.7, 0.01, 0.5))"))
                    if key == c_best:
                        for pf in (0, 16):
                            pp = SpreadParams(MAX_DEPTH, DECAY, THRESHOLD, CYCLE_PENALTY, pf)
                            jobs.append((cache, key, f"internal pf{pf}", "engram",
                                         lambda i, t=tab, pp=pp: t._spread(g, sets32[i], ones, pp),
                                         rp("fast"), warm_n["fast"],
                                         f"{call_tab}._spread(..., SpreadParams(..., prefetch_distance={pf}))"))
                        # diagnostics: where the internal path's time goes, and what a naive bench would see
                        raw = getattr(tab, "_spread_fn", None)
                        if raw is not None:
                            def kernel_only(i, t=tab, raw=raw):
                                sc = t._scratch.take(n)
                                got = raw(g[0], g[1], g[2], sets32[i], ones, MAX_DEPTH, DECAY, THRESHOLD, CYCLE_PENALTY,
                                          8, sc.epoch, sc.state, sc.nodes, sc.fire)
                                return (sc.nodes[:got],)
                            jobs.append((cache, key, "kernel only", "diagnostic", kernel_only, rp("fast"), warm_n["fast"],
                                         "the Cython kernel call alone (scratch.take + eg_spread), results left in the scratch"))
                        if not big:
                            jobs.append((cache, key, "same seeds", "diagnostic",
                                         lambda i, t=tab: t._spread(g, sets32[0], ones, p), rp("fast"), warm_n["fast"],
                                         "internal path with the SAME seed set every call (not representative)"))

            peer_p50 = {}
            for cache, label, path, kind, fn, nrep, nwarm, call in jobs:
                config = f"{gname} k={k}" + (" cold" if cache == "cold" else "")
                st = measure(fn, nrep, nwarm, flusher if cache == "cold" else None)
                lo, hi = nwarm, nwarm + nrep
                faithful = label not in ("scipy dense", "scipy spvec")
                if path == "same seeds":
                    nodes_mean, edges_mean = float(work_nodes[0]), float(work_edges[0])
                elif faithful:
                    nodes_mean, edges_mean = float(work_nodes[lo:hi].mean()), float(work_edges[lo:hi].mean())
                elif label == "scipy dense":
                    nodes_mean, edges_mean = st["touched_mean"], float(MAX_DEPTH * m)
                else:
                    nodes_mean = st["touched_mean"]
                    edges_mean = spvec_edges(lo, min(hi, lo + 50))
                if kind == "peer":
                    peer_p50[(cache, label)] = st["p50_us"]
                ratios = {pc: peer_p50[(cache, pc)] / st["p50_us"] for pc in PEER_COLS + ("numpy frontier",)
                          if (cache, pc) in peer_p50 and pc != label}
                key = "/".join(re.sub(r"[\s/]+", "-", str(x).strip())
                               for x in ("spread", gname, f"k{k}", cache, label, path))
                row = {"key": key, "config": config, "graph": gname, "n_nodes": n, "n_edges": m, "seeds": k, "cache": cache,
                       "name": label, "path": path, "kind": kind, "call": call, "same_rules_as_engram": faithful,
                       **st, "touched_nodes_mean": nodes_mean, "edges_examined_mean": edges_mean,
                       "ns_per_touched_node": 1e3 * st["p50_us"] / max(nodes_mean, 1),
                       "ns_per_edge_examined": 1e3 * st["p50_us"] / max(edges_mean, 1),
                       "speedup_vs": ratios,
                       "check": ("oracle" if kind == "oracle" else "not checked (diagnostic)" if kind == "diagnostic"
                                 else "= oracle" if faithful else "not comparable (other rules)")}
                results.append(row)
                rc = " ".join(f"{ratios[pc]:>8.2f}" if pc in ratios else f"{'-':>8}" for pc in PEER_COLS)
                print(f"{config:<18} {label:<15} {path:<13} {st['p50_us']:>9.1f} {st['p95_us']:>9.1f} {st['p99_us']:>9.1f} "
                      f"{nodes_mean:>8.0f} {row['ns_per_touched_node']:>8.1f} {row['ns_per_edge_examined']:>8.1f} "
                      f"{rc} {nrep:>5}", flush=True)
            print()
        peers = nxg = flusher = None   # free the big graph copies before the next size
        gc.collect()

    wall = time.perf_counter() - wall0
    info["loadavg_at_end"] = _common.loadavg()
    doc = {"bench": "spread", "quick": quick, "argv": sys.argv[1:], "wall_seconds": wall,
           "params": {"max_depth": MAX_DEPTH, "decay": DECAY, "threshold": THRESHOLD, "cycle_penalty": CYCLE_PENALTY,
                      "seed_act": 1.0, "seed_counts": list(SEED_COUNTS), "seeds_rng": f"default_rng([{SEEDS_SEED}, n, k])"},
           "graphs": graph_docs, "repeats": reps, "flush_bytes": flush_bytes,
           "flush_method": "np.add(buf, 1, out=buf) on an int64 buffer before each timed cold spread, untimed",
           "machine": info, "skipped_backends": {k: str(v) for k, v in skipped.items()},
           "correctness": {"tolerance": ATOL, "rule": "same nodes in first-touch order, same hops, |act - oracle| <= tol",
                           "checks": checks},
           "peers": {"scipy dense": "one SpMV per hop with the transposed CSR; threshold on node sums; no cycle rule",
                     "scipy spvec": "same math as scipy dense, frontier as a 1 x n sparse row times A",
                     "numpy frontier": "engram's rules vectorised per hop; checked equal to the oracle",
                     "networkx": "engram's rules, BFS over G.successors with G[u][v]['weight']; checked equal to the oracle"},
           "rows": results}
    if args.json:
        outs = [args.json]
    else:
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        outs = [HERE / "results" / f"spread-{stamp}.json", HERE / "results" / "spread-latest.json"]
    for path in outs:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=1) + "\n")
    checked = ", ".join("{} k={} ({} sets)".format(c["graph"], c["seeds"], c["seed_sets_checked"]) for c in checks)
    print(f"correctness: every engram backend and path equals the oracle on {checked}; "
          f"max |act err| {max(c['max_abs_err_engram'] for c in checks):.2g}")
    print(f"wall time {wall:.1f} s; JSON: {', '.join(str(x) for x in outs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
