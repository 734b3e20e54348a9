"""The API's own cost: Space.spread and recall through the public API, beside the bare C kernels.

    python benches/api_cost.py                    # spread at 10K / 50K and 1M / 5M, recall at 10K (about 3 min)
    python benches/api_cost.py --sizes 10K        # spread at 10K only (and the recall part)
    python benches/api_cost.py --no-recall        # the spread part only
    python benches/api_cost.py --quick            # 10K only, fewer repeats: a smoke test
    ENGRAM_ISA=avx2 python benches/api_cost.py    # the engine and the bare kernels on the AVX2 variants

Part 1, spreading. An engine built with the public API (``engram.Engine(dim=8)``: the
vectors play no part in spreading, and 8 dimensions keep the 1M-node build small):
N memories (``space.remember``), a random graph of 5N links (benches/spread.py's
make_graph: distinct pairs, no self-links, weights U[0.1, 1)) added with
``space.link`` and ``space.compact()``, and ``space.configure_recall(fan="none")`` so
that the engine spreads over the plain weights. Every spread starts from 10 random
distinct memories (activation 1), a fresh set per call, the same sets for both rows;
4 hops, decay 0.7, threshold 0.01, cycle penalty 0.5, prefetch distance 8 (the
space's recall settings, read back with ``configure_recall()``).

* ``Space.spread``: ``space.spread(seed_ids)``, which returns every memory touched,
  most active first (int64 ids, f32 activations).
* ``bare eg_spread``, the peer: the C library's ``eg_spread`` (the library engram loads,
  ``engram.kernels.backend("c").path``; prototype EG_SPREAD_ARGS in
  csrc/include/engram.h) called through ctypes with cached integer addresses, over
  this bench's own CSR arrays (u64 offsets, u32 targets, f32 weights) rebuilt from the
  links it inserted (sorted by source then target, the last write of a pair wins, as
  the engine compacts), with one reused state buffer (engram.layout.SPREAD_STATE_DTYPE,
  8 bytes per node) whose epoch is bumped per call as the engine does. The timed call
  is: copy the seeds into a buffer, call the kernel. Its results stay in the buffers.
* ``bare + results``: the same, then what the API has to return: the touched ids as
  int64, their activations, sorted most active first (ties by id). A diagnostic: the
  share of the gap that returning a sorted answer costs at the least.

Check, before timing, on 20 seed sets: the peer's touched nodes must equal
Space.spread's (as sets) and their activations must agree within 1e-6 once sorted by
id; the ratio (Space.spread / bare eg_spread, at P50 and at P95; goal <= 2x) is printed
only when they do.

Part 2, recall (skipped with --no-recall): ``engram.Engine(dim=768, workers=0)``,
10K memories in the warm tier (f16), 50K random links, compacted, the default recall
settings (fan "source"); queries are stored memories plus 0.3 x noise; ``recall(q,
k=10)`` timed with ``budget_ms=None`` and with the default budget (10 ms). Reported:
P50 / P95 / P99, the fallbacks and partial recalls, and the goal P95 <= 1 ms. The peer
is the bare kernels recall runs on: ``eg_cosine_topk_f16_<isa>`` (the variant the
engine uses) for the 20 seeds, their logistic activations, then ``eg_spread`` over the
fan-discounted weights (w / (1 + ln out-degree), computed here), with no ranking; it
is checked to find the same seeds as an attached reader's ``recall(q, k=20,
spread=False)`` and to touch the same memories as ``Space.spread`` from those seeds.
"x bare" = the API's time / the bare kernels' time (what the API adds on top), printed
only when the checks passed and none of the row's recalls fell back or was partial
(those did less work than the bare kernels).

Method: both sides get the same warm-up (200 calls each) and are timed call by call
(perf_counter_ns, GC off) in alternating blocks (API, bare, API, bare; 4 rounds for
recall), so that drift on a shared machine hits both. Percentiles in microseconds (spread) or milliseconds
(recall). JSON: benches/results/api_cost-<UTC>.json and api_cost-latest.json (or
--json PATH); keys such as ``api_cost/spread/10K-50K/space-spread`` and
``api_cost/recall/10K-50K/c-avx512/budget-none``.
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import ctypes
import gc
import sys
import time
from pathlib import Path

import numpy as np

import engram
import engram.kernels as ek
from engram.layout import SPREAD_STATE_DTYPE

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common
import spread as spread_bench

SEEDS = 10
LINKS_PER_NODE = 5
SPREAD_DIM = 8
RECALL_N, RECALL_DIM, K, NOISE = 10_000, 768, 10, 0.3
WARMUP = 200
CHECKS = 20
ATOL = 1e-6
GOAL_RATIO = 2.0
GOAL_RECALL_P95_MS = 1.0
EPOCH_MAX = 0xFFFFFF

c_u64, c_u32, c_f32, c_i64, c_p = ctypes.c_uint64, ctypes.c_uint32, ctypes.c_float, ctypes.c_int64, ctypes.c_void_p


# ----------------------------------------------------------------- the bare kernels

def load_c():
    """The C library engram loads, and its ISA variant in use by the engine's default backend."""
    table = ek.backend("c")
    lib = ctypes.CDLL(table.path)
    spread = lib.eg_spread
    spread.restype = c_i64
    spread.argtypes = [c_p, c_p, c_p, c_u64, c_p, c_p, c_u64, c_u32, c_f32, c_f32, c_f32, c_u32, c_u32,
                       c_p, c_p, c_p, c_u64]
    return lib, spread, table


def csr_from_links(n: int, src, dst, w):
    """CSR of the links as the engine compacts them: by source then target, last write wins."""
    key = (src.astype(np.uint64) << np.uint64(32)) | dst.astype(np.uint64)
    uniq, first = np.unique(key[::-1], return_index=True)
    pick = (key.shape[0] - 1) - first
    s, d, ww = src[pick], dst[pick], w[pick]
    offsets = np.zeros(n + 1, np.uint64)
    np.cumsum(np.bincount(s, minlength=n), out=offsets[1:])
    return offsets, np.ascontiguousarray(d, np.uint32), np.ascontiguousarray(ww, np.float32)


class BareSpread:
    """eg_spread over one CSR, through ctypes with cached addresses and one reused state."""

    def __init__(self, fn, offsets, targets, weights, params, max_seeds: int = 64):
        self.fn = fn
        self.keep = (offsets, targets, weights)
        self.n = offsets.shape[0] - 1
        self.state = np.zeros(self.n, SPREAD_STATE_DTYPE)
        self.nodes = np.empty(self.n, np.uint32)
        self.fire = np.empty(self.n, np.float32)
        self.seeds = np.empty(max_seeds, np.uint32)
        self.act = np.ones(max_seeds, np.float32)
        self.epoch = 0
        self.p = (int(params.max_depth), float(params.decay), float(params.threshold), float(params.cycle_penalty),
                  int(params.prefetch_distance))
        a = lambda x: x.ctypes.data
        self.addr = (a(offsets), a(targets), a(weights), self.n, a(self.seeds), a(self.act))
        self.out = (a(self.state), a(self.nodes), a(self.fire), self.n)

    def __call__(self, seeds, act=None) -> int:
        k = seeds.shape[0]
        self.seeds[:k] = seeds
        if act is not None:
            self.act[:k] = act
        self.epoch += 1
        if self.epoch > EPOCH_MAX:                # marks of old epochs could alias: start clean
            self.state["mark"] = 0
            self.epoch = 1
        o, t, w, n, s, sa = self.addr
        depth, decay, thr, pen, pf = self.p
        st, nodes, fire, cap = self.out
        got = self.fn(o, t, w, n, s, sa, k, depth, decay, thr, pen, pf, self.epoch, st, nodes, fire, cap)
        if got < 0:
            raise SystemExit(f"eg_spread returned error {got}")
        if act is not None:
            self.act[:k] = 1.0
        return got

    def result(self, got: int):
        """(int64 ids, f32 activations), most active first, ties by id: what Space.spread returns."""
        nodes = self.nodes[:got].astype(np.int64)
        act = self.fire[:got].copy()
        order = np.lexsort((nodes, -act))
        return nodes[order], act[order]


class BareRecall:
    """The kernels under recall: f16 cosine top-20 (the engine's ISA variant), logistic
    activations, eg_spread over fan-discounted weights. No ranking, no result building."""

    def __init__(self, lib, spread_fn, isa, rows16, norms, offsets, targets, fan_w, params, cfg):
        fn = getattr(lib, f"eg_cosine_topk_f16_{isa}")
        fn.restype = c_i64
        fn.argtypes = [c_p, c_p, c_u64, c_u64, c_u64, c_p, c_p, c_u64, c_p, c_p]
        self.topk = fn
        self.keep = (rows16, norms)
        self.k = max(K, cfg.seed_factor * K)
        self.q = np.empty(rows16.shape[1], np.float32)
        self.idx = np.empty(self.k, np.int64)
        self.score = np.empty(self.k, np.float32)
        self.args = (self.q.ctypes.data, rows16.ctypes.data, rows16.shape[0], rows16.shape[1], rows16.strides[0],
                     None, norms.ctypes.data, self.k, self.idx.ctypes.data, self.score.ctypes.data)
        self.spread = BareSpread(spread_fn, offsets, targets, fan_w, params, self.k)
        self.steep, self.mid = np.float32(cfg.sigmoid_steepness), np.float32(cfg.sigmoid_midpoint)

    def seeds(self, q):
        self.q[:] = q
        got = self.topk(*self.args)
        if got < 0:
            raise SystemExit(f"eg_cosine_topk_f16 returned error {got}")
        return self.idx[:got], self.score[:got]

    def __call__(self, q) -> int:
        ids, cos = self.seeds(q)
        act0 = np.float32(1) / (np.float32(1) + np.exp(-self.steep * (cos - self.mid)))
        return self.spread(ids, act0)


# ----------------------------------------------------------------- timing

def time_calls(fn, args) -> list:
    """ns per call of fn(a) for a in args, GC off."""
    out = []
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for a in args:
            t0 = time.perf_counter_ns()
            fn(a)
            out.append(time.perf_counter_ns() - t0)
    finally:
        if gc_was:
            gc.enable()
    return out


def alternate(fns: dict, args: list, warm: list, blocks: int = 2) -> dict:
    """Warm every fn on `warm`, then time them in alternating blocks over the same args."""
    for fn in fns.values():
        for a in warm:
            fn(a)
    times = {name: [] for name in fns}
    for b in range(blocks):
        part = args[b::blocks]
        for name, fn in fns.items():
            times[name] += time_calls(fn, part)
    return times


def stats(ns: list, unit: float) -> dict:
    a = np.asarray(ns, np.float64) / unit
    return {"p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)),
            "p99": float(np.percentile(a, 99)), "mean": float(a.mean()), "calls": int(a.size)}


# ----------------------------------------------------------------- part 1: spreading

def spread_part(n: int, calls: int, spread_fn, rows: list, notes: list) -> None:
    m = LINKS_PER_NODE * n
    label = f"{_common.human(n)} / {_common.human(m)}"
    t0 = time.perf_counter()
    offsets0, targets0, weights0 = spread_bench.make_graph(n, m)
    src = np.repeat(np.arange(n, dtype=np.int64), np.diff(offsets0.astype(np.int64)))
    dst = targets0.astype(np.int64)
    perm = np.random.default_rng(5).permutation(m)            # links arrive in no particular order
    src, dst, w = src[perm], dst[perm], weights0[perm]
    eng = engram.Engine(dim=SPREAD_DIM, workers=0)
    try:
        sp = eng.space("api_cost")
        vecs = np.random.default_rng(4).standard_normal((n, SPREAD_DIM), dtype=np.float32)
        for a in range(0, n, 200_000):
            sp.remember(vecs[a:a + 200_000])
        sp.link(src, dst, w)
        sp.compact()
        params = sp.configure_recall(fan="none").spread
        build_s = time.perf_counter() - t0
        offsets, targets, weights = csr_from_links(n, src, dst, w)
        bare = BareSpread(spread_fn, offsets, targets, weights, params, SEEDS)

        rng = np.random.default_rng([7, n])
        sets = [rng.choice(n, SEEDS, replace=False).astype(np.int64) for _ in range(calls + WARMUP + CHECKS)]
        check, warm, timed = sets[:CHECKS], sets[CHECKS:CHECKS + WARMUP], sets[CHECKS + WARMUP:]

        agree, touched, worst = 0, [], 0.0
        for s in check:
            ids, act = sp.spread(s)
            got = bare(s)
            bn, ba = bare.nodes[:got].astype(np.int64), bare.fire[:got]
            o1, o2 = np.argsort(ids), np.argsort(bn)
            same = ids.shape[0] == bn.shape[0] and np.array_equal(ids[o1], bn[o2])
            err = float(np.abs(act[o1] - ba[o2]).max()) if same else float("inf")
            worst = max(worst, err)
            agree += int(same and err <= ATOL)
            touched.append(ids.shape[0])
        ok = agree == len(check)

        fns = {"Space.spread": lambda s: sp.spread(s), "bare eg_spread": bare,
               "bare + results": lambda s: bare.result(bare(s))}
        t = alternate(fns, timed, warm)
    finally:
        eng.close()
    res = {name: stats(v, 1e3) for name, v in t.items()}
    api, base = res["Space.spread"], res["bare eg_spread"]
    ratio50, ratio95 = api["p50"] / base["p50"], api["p95"] / base["p95"]
    check_txt = f"{agree}/{len(check)} equal (max |act diff| {worst:.1e})"
    for name, r in res.items():
        row = {"part": "spread", "config": label, "nodes": n, "links": m, "row": name, "unit": "us",
               "p50_us": r["p50"], "p95_us": r["p95"], "p99_us": r["p99"], "mean_us": r["mean"], "calls": r["calls"],
               "touched_mean": float(np.mean(touched)), "check": check_txt, "check_ok": ok,
               "key": _common.make_key("api_cost", "spread", label.replace(" / ", "-"), name.lower().replace(".", "-")
                                       .replace(" + ", "-plus-"))}
        if name == "Space.spread":
            row["build_s"] = build_s
            if ok:
                row["x_bare_p50"], row["x_bare_p95"] = ratio50, ratio95
                row["goal_met"] = ratio50 <= GOAL_RATIO and ratio95 <= GOAL_RATIO
        rows.append(row)
    if not ok:
        notes.append(f"spread {label}: MISMATCH between Space.spread and the bare kernel ({check_txt}): no ratio")


# ----------------------------------------------------------------- part 2: recall

def recall_part(recalls: int, spread_fn, lib, rows: list, notes: list) -> None:
    n, m = RECALL_N, LINKS_PER_NODE * RECALL_N
    label = f"{_common.human(n)} / {_common.human(m)}"
    kern = ek.backend()
    isa_tag = f"{kern.name}-{kern.isa}"
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((n, RECALL_DIM), dtype=np.float32)
    offsets0, targets0, weights0 = spread_bench.make_graph(n, m)
    src = np.repeat(np.arange(n, dtype=np.int64), np.diff(offsets0.astype(np.int64)))
    dst = targets0.astype(np.int64)
    qrng = np.random.default_rng(1)
    pick = qrng.integers(0, n, recalls + WARMUP)
    queries = (vecs[pick] + NOISE * qrng.standard_normal((pick.shape[0], RECALL_DIM), dtype=np.float32))
    warm, timed = list(queries[:WARMUP]), list(queries[WARMUP:])

    eng = engram.Engine(dim=RECALL_DIM, workers=0)
    try:
        sp = eng.space("api_cost")
        sp.remember(vecs, tier="warm")
        sp.link(src, dst, weights0)
        sp.compact()
        cfg = sp.configure_recall()
        # the bare kernels' own copy of the data: f16 rows and norms as remember stores them,
        # the CSR from the links, the fan discount of engram/fan.py for cfg.fan ("source")
        rows16 = np.ascontiguousarray(vecs.astype(np.float16))
        norms = np.linalg.norm(rows16.astype(np.float64), axis=1).astype(np.float32)
        offsets, targets, weights = csr_from_links(n, src, dst, weights0)
        if cfg.fan != "source":
            raise SystemExit(f"this bench mirrors fan='source'; the default is now {cfg.fan!r}")
        deg = np.diff(offsets.astype(np.int64))
        fan_w = (weights.astype(np.float64) * np.repeat(1.0 / (1.0 + np.log(np.maximum(deg, 1))), deg)) \
            .astype(np.float32)
        if kern.name != "c":
            notes.append(f"recall: the engine runs the {kern.name} backend; the bare peer is the C library")
        bare = BareRecall(lib, spread_fn, kern.isa if kern.name == "c" else ek.backend("c").isa, rows16, norms,
                          offsets, targets, fan_w, cfg.spread, cfg)

        # check: same seeds as the seed scan (an attached reader: readers record no access),
        # the same memories touched as Space.spread from those seeds
        seeds_ok = spread_ok = 0
        with engram.attach(eng.name) as reader:
            rsp = reader.space("api_cost")
            for q in timed[:CHECKS]:
                ids, cos = bare.seeds(q)
                ids, cos = ids.copy(), cos.copy()
                seeds_ok += int(np.array_equal(np.sort(rsp.recall(q, k=bare.k, spread=False, budget_ms=None).ids), np.sort(ids)))
                act0 = (1.0 / (1.0 + np.exp(-bare.steep * (cos - bare.mid)))).astype(np.float32)
                got = bare.spread(ids, act0)
                bn, ba = bare.spread.nodes[:got].astype(np.int64), bare.spread.fire[:got]
                en, ea = sp.spread(dict(zip(ids.tolist(), act0.tolist())))
                o1, o2 = np.argsort(en), np.argsort(bn)
                spread_ok += int(en.shape[0] == bn.shape[0] and np.array_equal(en[o1], bn[o2])
                                 and float(np.abs(ea[o1] - ba[o2]).max()) <= ATOL)
        ok = seeds_ok == CHECKS and spread_ok == CHECKS
        check_txt = f"seeds {seeds_ok}/{CHECKS}, spread {spread_ok}/{CHECKS} equal"

        flags = {"budget-none": [0, 0], "budget-default": [0, 0]}

        def api(budget):
            key = "budget-none" if budget is None else "budget-default"

            def call(q):
                r = sp.recall(q, k=K, budget_ms=None) if budget is None else sp.recall(q, k=K)
                flags[key][0] += int(r.fallback)
                flags[key][1] += int(r.partial)
            return call
        fns = {"recall budget_ms=None": api(None), "recall budget_ms=default": api("default"),
               "bare kernels (scan + spread)": bare}
        for fn in fns.values():
            for q in warm:
                fn(q)
        for v in flags.values():                 # count the timed calls only
            v[:] = [0, 0]
        t = alternate(fns, timed, [], blocks=4)
    finally:
        eng.close()
    base = stats(t["bare kernels (scan + spread)"], 1e6)
    for name in fns:
        r = stats(t[name], 1e6)
        row = {"part": "recall", "config": f"{label} x {RECALL_DIM} f16", "row": name, "unit": "ms", "isa": isa_tag,
               "p50_ms": r["p50"], "p95_ms": r["p95"], "p99_ms": r["p99"], "mean_ms": r["mean"], "calls": r["calls"],
               "check": check_txt, "check_ok": ok,
               "key": _common.make_key("api_cost", "recall", label.replace(" / ", "-"), isa_tag,
                                       "bare" if name.startswith("bare") else
                                       ("budget-none" if "None" in name else "budget-default"))}
        if not name.startswith("bare"):
            fb, part = flags["budget-none" if "None" in name else "budget-default"]
            row.update({"fallbacks": fb, "partials": part, "goal_met": r["p95"] <= GOAL_RECALL_P95_MS})
            if ok and not fb and not part:      # a fallback or partial recall did less work than the bare kernels
                row["x_bare_p50"], row["x_bare_p95"] = r["p50"] / base["p50"], r["p95"] / base["p95"]
        rows.append(row)
    if not ok:
        notes.append(f"recall: MISMATCH between the engine and the bare kernels ({check_txt}): no ratio")


# ----------------------------------------------------------------- main

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog="See the module docstring.")
    ap.add_argument("--sizes", nargs="+", default=["10K", "1M"], help="node counts of the spread part (links: 5 per node)")
    ap.add_argument("--spreads", type=int, default=2000, help="timed spreads per row (default 2,000)")
    ap.add_argument("--recalls", type=int, default=2000, help="timed recalls per row (default 2,000)")
    ap.add_argument("--no-recall", action="store_true", help="skip the recall part")
    ap.add_argument("--quick", action="store_true", help="10K only, 300 spreads and 300 recalls")
    ap.add_argument("--json", help="write the JSON here only")
    a = ap.parse_args(argv)
    sizes = [10_000] if a.quick else [_common.parse_count(s) for s in a.sizes]
    spreads = 300 if a.quick else a.spreads
    recalls = 300 if a.quick else a.recalls
    lib, spread_fn, ctable = load_c()
    kern = ek.backend()
    info = _common.machine_info(engine_kernels=f"{kern.name}/{kern.isa}", bare_library=str(ctable.path))
    print("engram API cost: Space.spread and recall through the public API, beside the bare C kernels")
    for line in _common.header_lines(info):
        print(line)
    print(f"  engine kernels: {kern.name}/{kern.isa} (ENGRAM_ISA={os.environ.get('ENGRAM_ISA', 'unset')}); "
          f"bare library: {ctable.path}")
    rows, notes = [], []
    t0 = time.perf_counter()
    for n in sizes:
        spread_part(n, spreads, spread_fn, rows, notes)
    if not a.no_recall:
        recall_part(recalls, spread_fn, lib, rows, notes)

    print()
    hdr = f"{'config':<24}{'row':<30}{'P50':>9}{'P95':>9}{'P99':>9}{'touched':>9}{'x bare P50':>11}{'x bare P95':>11}" \
          f"  goal"
    print("Spreading: 10 seeds, 4 hops, fan='none' (microseconds; goal: Space.spread <= 2x the bare kernel)")
    print(hdr)
    print("-" * len(hdr))
    for r in (r for r in rows if r["part"] == "spread"):
        api = r["row"] == "Space.spread"
        x50 = f"{r['x_bare_p50']:.2f}x" if "x_bare_p50" in r else ("-" if api else "")
        x95 = f"{r['x_bare_p95']:.2f}x" if "x_bare_p95" in r else ("-" if api else "")
        goal = ("met" if r["goal_met"] else "NOT met") if "goal_met" in r else ("no ratio: " + r["check"] if api else "")
        print(f"{r['config']:<24}{r['row']:<30}{r['p50_us']:>9.1f}{r['p95_us']:>9.1f}{r['p99_us']:>9.1f}"
              f"{r['touched_mean']:>9.0f}{x50:>11}{x95:>11}  {goal}")
    for label in dict.fromkeys(r["config"] for r in rows if r["part"] == "spread"):
        r = next(r for r in rows if r["part"] == "spread" and r["config"] == label)
        print(f"  {label}: check {r['check']}")
    rec = [r for r in rows if r["part"] == "recall"]
    if rec:
        print()
        print(f"Recall k=10 with spreading (milliseconds; engine kernels {rec[0]['isa']}; goal: P95 <= 1 ms)")
        hdr = f"{'config':<24}{'row':<30}{'P50':>9}{'P95':>9}{'P99':>9}{'fb/part':>9}{'x bare P50':>11}" \
              f"{'x bare P95':>11}  goal"
        print(hdr)
        print("-" * len(hdr))
        for r in rec:
            fp = f"{r['fallbacks']}/{r['partials']}" if "fallbacks" in r else ""
            x50 = f"{r['x_bare_p50']:.2f}x" if "x_bare_p50" in r else ("" if r["row"].startswith("bare") else "-")
            x95 = f"{r['x_bare_p95']:.2f}x" if "x_bare_p95" in r else ("" if r["row"].startswith("bare") else "-")
            goal = ("met" if r["goal_met"] else "NOT met") if "goal_met" in r else ""
            print(f"{r['config']:<24}{r['row']:<30}{r['p50_ms']:>9.3f}{r['p95_ms']:>9.3f}{r['p99_ms']:>9.3f}"
                  f"{fp:>9}{x50:>11}{x95:>11}  {goal}")
        print(f"  check: {rec[0]['check']}")
    for note in notes:
        print(f"NOTE: {note}")
    doc = {"bench": "api_cost", "argv": sys.argv[1:], "seeds": SEEDS, "rows": rows, "notes": notes, "machine": info}
    _common.finish("api_cost", doc, a.json, t0)
    return 1 if notes and any("MISMATCH" in x for x in notes) else 0


if __name__ == "__main__":
    sys.exit(main())
