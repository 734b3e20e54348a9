"""Candidate defaults with no latency budget (so a loaded machine cannot cut spreads short):
the evidence leave-one-out chooses from (issue 18).

    python -m benches.quality.weights [--jobs 2] [--out PATH]
    python -m benches.quality.loo PATH           # the leave-one-graph-out choice from it

Four graphs (stdlib, manual pages, their paragraphs, WordNet-30K), 500 queries each. The
candidates are the spreading rules already in RecallConfig: spread_weight (how much of what
spreading adds counts) x decay (how much activation crosses each hop) under the default
source fan (each at most 0.9, see below), two fans that also see the target's in-degree, and
PPR beside them. Prints the gain in recall@10 over
similarity alone (both tasks) and the MRR per method; the JSON has run.py's shape (graphs ->
data, methods), so loo.py reads it.
"""
from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benches._common import machine_info
from benches.quality import graphs, harness

GRAPHS = (("stdlib", None), ("manpages", None), ("paragraphs", 20_000), ("wordnet", 30_000))
# both factors stop at 0.9: a direct match above spread_weight keeps its place (docs/recall.md),
# and an echo stays below decay x what fired (csrc/kernels/spread.c); at 1 either guarantee is gone
WEIGHTS, DECAYS = (0.75, 0.85, 0.9), (0.7, 0.8, 0.9)
METHODS = [harness.Method("similarity", {}, spread=False), harness.Method("default", {}),
           *(harness.Method(f"source spread_weight={w} decay={d}", {"spread_weight": w, "decay": d})
             for w in WEIGHTS for d in DECAYS),
           *(harness.Method(f"{f} spread_weight=0.9 decay=0.9", {"fan": f, "spread_weight": 0.9, "decay": 0.9})
             for f in ("target", "both")),
           harness.Method("ppr", {"mode": "ppr"})]
TASKS = ("assoc", "assoc-hubfree")


def evaluate(graph: tuple) -> tuple:
    name, limit = graph
    g = graphs.build(name, limit)
    p = harness.prepare(g, 500, 0)
    methods = {m.name: harness.run_method(p, m, budget_ms=None) for m in METHODS}
    for r in methods.values():            # timed without the bench lock, two graphs at once: not latency
        for key in ("p50_ms", "p95_ms"):
            r["assoc"].pop(key, None)
    return name, {"data": {**g.counts(), "queries": len(p.queries), "limit": limit}, "methods": methods}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=None, help="JSON path")
    ap.add_argument("--jobs", type=int, default=1, help="graphs evaluated at once (processes)")
    args = ap.parse_args(argv)
    with ProcessPoolExecutor(args.jobs) as pool:
        done = dict(pool.map(evaluate, GRAPHS))
    doc = {"machine": machine_info(), "budget_ms": None, "graphs": {n: done[n] for n, _ in GRAPHS}}
    print("| graph | method | gain: assoc | hubs removed | MRR |\n|---|---|---|---|---|")
    for name, res in doc["graphs"].items():
        sim = res["methods"]["similarity"]
        for m, r in res["methods"].items():
            gain = [r[t]["recall@10"] / sim[t]["recall@10"] - 1 for t in TASKS]
            print(f"| {name} | {m} | {gain[0]:+.1%} | {gain[1]:+.1%} | {r['assoc']['mrr']:.3f} |")
    if args.out:
        Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
