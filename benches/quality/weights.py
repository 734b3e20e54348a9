"""spread_weight under the default source fan, against PPR, with no latency budget (so a
loaded machine cannot cut spreads short): the evidence for the next default (issue 18).

    python -m benches.quality.weights [--out PATH]

Four graphs (stdlib, manual pages, their paragraphs, WordNet-30K), 500 queries each; per
method the gain in recall@10 over similarity alone (both tasks) and the MRR.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benches.quality import graphs, harness

GRAPHS = (("stdlib", None), ("manpages", None), ("paragraphs", 20_000), ("wordnet", 30_000))
METHODS = [harness.Method("similarity", {}, spread=False), harness.Method("default", {}),
           *(harness.Method(f"source spread_weight={w}", {"spread_weight": w}) for w in (0.9, 1.0)),
           harness.Method("ppr", {"mode": "ppr"})]
TASKS = ("assoc", "assoc-hubfree")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=None, help="JSON path")
    args = ap.parse_args(argv)
    out = {}
    print("| graph | method | gain: assoc | hubs removed | MRR |\n|---|---|---|---|---|")
    for name, limit in GRAPHS:
        p = harness.prepare(graphs.build(name, limit), 500, 0)
        res = {m.name: harness.run_method(p, m, budget_ms=None) for m in METHODS}
        sim = res["similarity"]
        out[name] = {}
        for m, r in res.items():
            gain = {t: r[t]["recall@10"] / sim[t]["recall@10"] - 1 for t in TASKS}
            out[name][m] = {**gain, "mrr": r["assoc"]["mrr"]}
            print(f"| {name} | {m} | {gain['assoc']:+.1%} | {gain['assoc-hubfree']:+.1%} | {r['assoc']['mrr']:.3f} |",
                  flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
