"""Work stealing of hop batches (engram/workers/stealing.py): recall through 2 workers with
split hops against the same workers running every hop as one kernel call.

    python benches/steal.py              # 500K memories x 16 links, depth 4 (big hops), and 10K x 5
    python benches/steal.py --quick      # 200K x 16, fewer recalls: a smoke test
    python benches/steal.py --json out.json

Graph: N memories (32-d, warm tier), each linked to `degree` random others
(weights uniform in [0.3, 1)); recall k=10 with seeds 2k, threshold 0 and
max_depth 4, no budget, so the last hop fires most of the graph's edges. One
client at a time, so one worker spreads and the other is idle: the case
stealing is for; and again with routing="auto", where the lone caller
recalls in its own process and both idle workers take batches. Rounds alternate `steal_min_edges` between the default and 0
(off) in the same engine, so both see the same machine state; results must be
the same ids in both modes.

Part 1 times one big hop in a single process, whole (eg_spread_hop) and in
the pieces a split hop is made of: half fired in place (eg_spread_fire), half
gathered (eg_spread_gather, what a taker does), and the gathered sums merged
(eg_spread_merge). The owner's critical path is about max(fire, gather) +
merge, which bounds what 2 cores can gain.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import finish, header_lines, human, machine_info, make_key, parse_count, percentiles

import engram
from engram import kernels
from engram.kernels.spreadrun import CsrGraph
from engram.workers.stealing import MIN_EDGES

DIM = 32


def graph(n: int, degree: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    src = np.repeat(np.arange(n), degree)
    dst = rng.integers(0, n, n * degree)
    keep = src != dst
    return src[keep], dst[keep], rng.uniform(0.3, 1.0, int(keep.sum())).astype(np.float32)


def hop_pieces(n: int, degree: int, reps: int) -> dict:
    """Part 1: one big hop, whole and in pieces, in this process (C kernels)."""
    k = kernels.backend("c")
    src, dst, w = graph(n, degree)
    offsets = np.zeros(n + 1, np.uint64)
    offsets[1:] = np.cumsum(np.bincount(src, minlength=n))
    g = CsrGraph(offsets, dst.astype(np.uint32), w)
    seeds = np.random.default_rng(2).integers(0, n, 20)

    def at_last_hop():
        run = k.spread_run(g, seeds, np.full(seeds.size, 0.9, np.float32), threshold=0.0)
        for _ in range(3):
            run.step()
        return run

    t = {"whole": [], "fire_half": [], "gather_half": [], "merge_half": []}
    acc = np.full(n, -1.0, np.float32)
    v, s = np.empty(dst.size, np.uint32), np.empty(dst.size, np.float32)
    for _ in range(reps):
        with at_last_hop() as run:
            frontier = run.frontier
            t0 = time.perf_counter_ns()
            run.step()
            t["whole"].append(time.perf_counter_ns() - t0)
        with at_last_hop() as run:
            nodes, fire = run.begin_split()
            h = nodes.size // 2
            t0 = time.perf_counter_ns()
            run.fire_part(0, h)
            t1 = time.perf_counter_ns()
            got = run.gather(np.ascontiguousarray(nodes[h:]), np.ascontiguousarray(fire[h:]), acc, v, s)
            t2 = time.perf_counter_ns()
            run.merge(v[:got], s[:got])
            t3 = time.perf_counter_ns()
            t["fire_half"].append(t1 - t0)
            t["gather_half"].append(t2 - t1)
            t["merge_half"].append(t3 - t2)
    ms = {name: float(np.median(x)) / 1e6 for name, x in t.items()}
    bound = ms["whole"] / (max(ms["fire_half"], ms["gather_half"]) + ms["merge_half"])
    return {"key": make_key("steal", "hop-pieces", f"{human(n)}x{degree}", "c"), "frontier": int(frontier),
            **{f"{name}_ms": v_ for name, v_ in ms.items()}, "two_core_bound": bound}


def recall_rounds(n: int, degree: int, recalls: int, rounds: int, say, routing: str = "workers") -> dict:
    """Part 2: recall with 2 workers, stealing on and off, alternating rounds. routing
    "workers": a worker spreads and the other may take batches; "auto": the lone caller
    recalls in its own process and both idle workers may take batches."""
    src, dst, w = graph(n, degree)
    rng = np.random.default_rng(3)
    vecs = rng.standard_normal((n, DIM)).astype(np.float32)
    queries = rng.standard_normal((recalls, DIM)).astype(np.float32)
    total = {"steal": [], "off": []}
    spread = {"steal": [], "off": []}
    ids = {}
    with engram.Engine(dim=DIM, workers=2, routing=routing) as eng:
        mem = eng.space("steal-bench")
        mem.remember(vecs, tier="warm")
        mem.link(src, dst, w)
        mem.compact()
        mem.configure_recall(threshold=0.0, max_depth=4)
        eng.start_workers()
        for q in queries[:5]:                       # warm the workers' views and models
            mem.recall(q, k=10, budget_ms=None)
        for r in range(rounds):
            for mode, min_edges in (("steal", MIN_EDGES), ("off", 0)) if r % 2 == 0 else \
                    (("off", 0), ("steal", MIN_EDGES)):
                eng.configure_workers(steal_min_edges=min_edges)
                got = []
                for q in queries:
                    t0 = time.perf_counter_ns()
                    res = mem.recall(q, k=10, budget_ms=None)
                    total[mode].append((time.perf_counter_ns() - t0) / 1e6)
                    spread[mode].append(res.timings["spread_ms"])
                    got.append(res.ids.tolist())
                ids.setdefault(mode, got)
        stats = eng.worker_stats()["hop_batches"]
    if ids["steal"] != ids["off"]:
        raise SystemExit("stealing changed the answers: a bug")
    where = "in-worker" if routing == "workers" else "in-caller"
    row = {"key": make_key("steal", "recall", f"{human(n)}x{degree}", f"workers2-clients1-{where}"),
           "memories": n, "links": int(src.size), "recalls_per_mode": len(total["steal"]), "hop_batches": stats}
    for mode in total:
        row[mode] = {"total_ms": percentiles(total[mode]), "spread_ms": percentiles(spread[mode])}
    row["spread_p50_speedup"] = row["off"]["spread_ms"]["p50"] / row["steal"]["spread_ms"]["p50"]
    row["total_p50_speedup"] = row["off"]["total_ms"]["p50"] / row["steal"]["total_ms"]["p50"]
    say(f"  {human(n)} x {degree}, spread {where}: spread P50 steal {row['steal']['spread_ms']['p50']:.2f} ms, "
        f"off {row['off']['spread_ms']['p50']:.2f} ms ({row['spread_p50_speedup']:.2f}x); total P50 "
        f"{row['steal']['total_ms']['p50']:.2f} vs {row['off']['total_ms']['p50']:.2f} ms "
        f"({row['total_p50_speedup']:.2f}x); batches {stats}")
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller graph, fewer recalls")
    ap.add_argument("--n", type=parse_count, default=None, help="memories of the big graph (default 500K)")
    ap.add_argument("--degree", type=int, default=16)
    ap.add_argument("--json", default=None, help="write the JSON here instead of benches/results/")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    n = a.n or (200_000 if a.quick else 500_000)
    info = machine_info(bench="steal")
    print("work stealing of hop batches (2 workers, 1 client)")
    print("\n".join(header_lines(info)))
    rows = []
    pieces = hop_pieces(n, a.degree, 3 if a.quick else 7)
    print(f"  one hop from a {pieces['frontier']}-node frontier: whole {pieces['whole_ms']:.2f} ms; half fired "
          f"{pieces['fire_half_ms']:.2f}, half gathered {pieces['gather_half_ms']:.2f}, merged "
          f"{pieces['merge_half_ms']:.2f} ms: 2 cores gain at most {pieces['two_core_bound']:.2f}x")
    rows.append(pieces)
    recalls, rounds = (10, 2) if a.quick else (30, 4)
    rows.append(recall_rounds(n, a.degree, recalls, rounds, print))
    rows.append(recall_rounds(n, a.degree, recalls, rounds, print, routing="auto"))
    rows.append(recall_rounds(10_000, 5, recalls * 2, rounds, print))     # small hops: never split
    return 0 if finish("steal", {"machine": info, "rows": rows}, a.json, t0) else 1


if __name__ == "__main__":
    sys.exit(main())
