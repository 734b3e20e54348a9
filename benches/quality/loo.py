"""Choosing recall's defaults by leaving one graph out (issue 18), from a quality run's JSON.

    python -m benches.quality.loo benches/quality/results/quality-4graphs.json
    python -m benches.quality.loo benches/quality/results/weights.json "source spread_weight=0.9 decay=1.0"

For each graph held out: the method (of every spreading and PPR variant the run measured)
whose worst gain over similarity alone, across the other graphs and both tasks, is the
largest, among those that keep MRR within 0.02 of similarity's there; then what that
choice gains on the held-out graph, and its MRR there. Gains are relative recall@10:
R(method) / R(similarity) - 1. Also the defaults against the issue's targets on every
graph: +60% (assoc), +25% (hubs removed), at least PPR's gain - 0.02 on both, P95 <= 1 ms
(or another method of the run against them, named after the JSON).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

TASKS = ("assoc", "assoc-hubfree")
NOT_CANDIDATES = {"similarity", "popularity"}
TARGETS = {"assoc": 0.60, "assoc-hubfree": 0.25}
PPR_MARGIN, P95_MS = 0.02, 1.0
MRR_LOSS = 0.02          # a candidate may not cost more MRR than this, on any graph it is chosen on


def gains(doc: dict) -> dict:
    """graph -> method -> task -> gain over similarity alone (methods that ran), and under
    "mrr-" + task, its MRR minus similarity's."""
    out = {}
    for graph, res in doc["graphs"].items():
        sim = res["methods"]["similarity"]
        out[graph] = {m: {**{t: r[t]["recall@10"] / sim[t]["recall@10"] - 1 for t in TASKS},
                          **{f"mrr-{t}": r[t]["mrr"] - sim[t]["mrr"] for t in TASKS}}
                      for m, r in res["methods"].items() if r.get("available") and m not in NOT_CANDIDATES}
    return out


def worst(g: dict, method: str, graphs: list) -> float:
    """The method's worst gain on ``graphs``; -inf where it costs more than MRR_LOSS of
    similarity's MRR (it would find associations by pushing the answer itself down)."""
    if any(g[x][method][f"mrr-{t}"] < -MRR_LOSS for x in graphs for t in TASKS):
        return float("-inf")
    return min(g[x][method][t] for x in graphs for t in TASKS)


def leave_one_out(g: dict) -> list:
    rows = []
    names = sorted(g)
    if len(names) < 2:               # nothing to choose on
        return rows
    methods = sorted(set.intersection(*(set(g[x]) for x in names)))
    for held in names:
        train = [x for x in names if x != held]
        best = max(methods, key=lambda m: (worst(g, m, train), m == "default"))
        rows.append({"held_out": held, "chosen": best, "train_worst": worst(g, best, train),
                     "held_mrr": min(g[held][best][f"mrr-{t}"] for t in TASKS),
                     **{f"held_{t}": g[held][best][t] for t in TASKS},
                     **{f"default_{t}": g[held]["default"][t] for t in TASKS}})
    return rows


def targets(doc: dict, g: dict, method: str = "default") -> list:
    """Each graph's verdict on the issue's targets for ``method`` (the defaults unless named):
    "yes", or "no: " and what it misses. A run without a latency budget has no P95; then
    the 1 ms target is "not measured" (and the quality targets alone decide)."""
    rows = []
    for graph, res in doc["graphs"].items():
        d, p = g[graph][method], g[graph].get("ppr")
        p95 = res["methods"][method]["assoc"].get("p95_ms")
        missed = [f"+{TARGETS[t]:.0%} ({t})" for t in TASKS if d[t] < TARGETS[t]]
        missed += [f"PPR - {PPR_MARGIN} ({t})" for t in TASKS if p is not None and d[t] < p[t] - PPR_MARGIN]
        if res["data"]["nodes"] <= 30_000 and p95 is not None and p95 > P95_MS:
            missed.append(f"P95 {P95_MS:g} ms")
        rows.append({"graph": graph, "memories": res["data"]["nodes"], **{f"default_{t}": d[t] for t in TASKS},
                     **{f"ppr_{t}": None if p is None else p[t] for t in TASKS}, "p95_ms": p95,
                     "mrr": min(d[f"mrr-{t}"] for t in TASKS),
                     "meets": not missed, "verdict": "yes" if not missed else "no: " + ", ".join(missed)})
    return rows


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    doc = json.loads(Path(argv[0]).read_text())
    method = argv[1] if len(argv) > 1 else "default"
    g = gains(doc)
    print("| held out | chosen on the others | its worst gain there | on the held-out: assoc | hubs removed | "
          "MRR vs similarity | the defaults there: assoc | hubs removed |\n|---|---|---|---|---|---|---|---|")
    for r in leave_one_out(g):
        print(f"| {r['held_out']} | {r['chosen']} | {r['train_worst']:+.1%} | {r['held_assoc']:+.1%} | "
              f"{r['held_assoc-hubfree']:+.1%} | {r['held_mrr']:+.3f} | {r['default_assoc']:+.1%} | "
              f"{r['default_assoc-hubfree']:+.1%} |")
    print(f"\n{method}:\n\n| graph | memories | assoc | hubs removed | MRR vs similarity | PPR: assoc | hubs removed "
          "| P95 ms | targets met |\n|---|---|---|---|---|---|---|---|---|")
    for r in targets(doc, g, method):
        ppr = [("-" if r[f"ppr_{t}"] is None else f"{r[f'ppr_{t}']:+.1%}") for t in TASKS]
        p95 = "not measured" if r["p95_ms"] is None else f"{r['p95_ms']:.3f}"
        print(f"| {r['graph']} | {r['memories']:,} | {r['default_assoc']:+.1%} | {r['default_assoc-hubfree']:+.1%} | "
              f"{r['mrr']:+.3f} | {ppr[0]} | {ppr[1]} | {p95} | {r['verdict']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
