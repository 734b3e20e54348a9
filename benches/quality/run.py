"""Recall quality on real association graphs: recall@10, MRR and latency per method.

    python -m benches.quality.run                           # stdlib (all) + wordnet (30K synsets)
    python -m benches.quality.run --graphs stdlib --queries 200
    python -m benches.quality.run --limit 0                 # every synset of WordNet too (117K)
    python -m benches.quality.run --no-sweep --out q.json   # skip the spread_weight sweep
    python -m benches.quality.run --methods default,ppr     # only these (and similarity, the baseline)
    python -m benches.quality.run --table q.json            # the tables of an earlier run

Progress goes to stderr; a markdown table per graph to stdout; JSON (machine, data
counts, per graph x task x method: recall@10, MRR, P50/P95 ms) to --out, by default
benches/results/quality-<UTC>.json and quality-latest.json. See docs/recall-quality.md.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

if __package__ in (None, ""):        # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benches._common import machine_info, write_results
from benches.quality import graphs, harness, tasks

DEFAULT_LIMITS = {"stdlib": None, "wordnet": 30_000, "manpages": None, "paragraphs": 20_000}    # wordnet at 30K: the latency target's size
TARGET_GAIN = 0.25           # issue 8 item 8: default >= 1.25 x similarity's recall@10
TARGET_P95_MS = 1.0          # ... with P95 under 1 ms at 30K memories


def say(*a):
    print(*a, file=sys.stderr, flush=True)


def evaluate(name: str, limit, n_queries: int, seed: int, methods: list) -> dict:
    t0 = time.perf_counter()
    g = graphs.build(name, limit)
    say(f"{name}: {len(g):,} memories, {g.src.shape[0]:,} associations ({time.perf_counter() - t0:.1f} s)")
    p = harness.prepare(g, n_queries, seed)
    free = sum(1 for q in p.queries if q.relevant_hubfree)
    say(f"{name}: {len(p.queries)} queries ({free} with a hub-free task), {len(p.hub_set)} hubs "
        f"(degree >= {p.hub_min_degree})")
    out = {"data": {**g.counts(), "hubs": len(p.hub_set), "hub_min_degree": p.hub_min_degree,
                    "queries": len(p.queries), "queries_hubfree": free, "limit": limit, "seed": seed,
                    "dim": harness.DIM, "tier": harness.TIER},
           "examples": [{"memory": g.names[q.memory], "query": q.text, "relevant": len(q.relevant)}
                        for q in p.queries[:3]],
           "methods": {}}
    for m in methods:
        t = time.perf_counter()
        r = out["methods"][m.name] = harness.run_method(p, m)
        if r["available"]:
            a, h = r["assoc"], r["assoc-hubfree"]
            lat = f"  P50 {a['p50_ms']:.3f} P95 {a['p95_ms']:.3f} ms" if "p50_ms" in a else ""
            if r.get("index", {}).get("generation"):
                lat += f" (index: {r['index']['breadth']})"
            say(f"  {m.name:<28} R@10 {a['recall@10']:.3f} MRR {a['mrr']:.3f} | hub-free R@10 "
                f"{h['recall@10']:.3f} MRR {h['mrr']:.3f}{lat}  ({time.perf_counter() - t:.1f} s)")
        else:
            say(f"  {m.name:<28} not available: {r['reason'][:90]}")
    out["verdict"] = verdict(out)
    return out


def gain(res: dict, method: str, task: str):
    """Relative recall@10 of a method over similarity only on a task (None if unavailable)."""
    m, s = res["methods"].get(method), res["methods"]["similarity"]
    if not m or not m["available"]:
        return None
    return m[task]["recall@10"] / max(s[task]["recall@10"], 1e-12) - 1.0


def verdict(res: dict) -> dict:
    d = res["methods"]["default"]
    return {"gain_full": gain(res, "default", "assoc"), "gain_hubfree": gain(res, "default", "assoc-hubfree"),
            "p95_ms": d["assoc"]["p95_ms"], "memories": res["data"]["nodes"],
            "meets_gain": all(gain(res, "default", t) >= TARGET_GAIN for t in ("assoc", "assoc-hubfree")),
            "meets_p95": d["assoc"]["p95_ms"] < TARGET_P95_MS}


def table(name: str, res: dict) -> str:
    d = res["data"]
    lines = [f"### {name}: {d['nodes']:,} memories, {d['edges']:,} associations, {d['queries']} queries "
             f"({d['queries_hubfree']} hub-free), {d['hubs']} hubs (degree >= {d['hub_min_degree']})", "",
             "| method | R@10 | MRR | vs sim | hub-free R@10 | MRR | vs sim | own first | hub first "
             "| hubs in top 10 | spread in top 10 | P50 ms | P95 ms |", "|" + " --- |" * 13]
    for name_, r in res["methods"].items():
        if not r["available"]:
            lines.append(f"| {name_} | not available |" + " |" * 12)
            continue
        a, h = r["assoc"], r["assoc-hubfree"]
        rel = [gain(res, name_, t) for t in ("assoc", "assoc-hubfree")]
        extra = [f"{a[k]:.{digits}f}" if k in a else "-"
                 for k, digits in (("hubs_at_10", 2), ("spread_at_10", 2), ("p50_ms", 3), ("p95_ms", 3))]
        firsts = [f"{a[k]:.0%}" if k in a else "-" for k in ("self_first", "hub_first")]
        lines.append(f"| {name_} | {a['recall@10']:.3f} | {a['mrr']:.3f} | {rel[0]:+.1%} | {h['recall@10']:.3f} "
                     f"| {h['mrr']:.3f} | {rel[1]:+.1%} | " + " | ".join(firsts + extra) + " |")
    return "\n".join(lines)


def report(doc: dict) -> None:
    for name, res in doc["graphs"].items():
        v = res["verdict"]
        print(table(name, res) + "\n")
        print(f"default vs similarity: {v['gain_full']:+.1%} full, {v['gain_hubfree']:+.1%} hub-free "
              f"(target +{TARGET_GAIN:.0%}: {'met' if v['meets_gain'] else 'MISSED'}); P95 {v['p95_ms']:.3f} ms "
              f"at {v['memories']:,} memories (target < {TARGET_P95_MS} ms: "
              f"{'met' if v['meets_p95'] else 'MISSED'})\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--graphs", default="stdlib,wordnet", help="comma-separated: stdlib, wordnet, manpages, paragraphs")
    ap.add_argument("--queries", type=int, default=500, help="queries per graph (default 500)")
    ap.add_argument("--limit", type=int, default=None,
                    help="memories per graph, 0 = all (default: stdlib all, wordnet 30000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-sweep", action="store_true", help="skip the spread_weight sweep")
    ap.add_argument("--methods", default=None,
                    help="comma-separated method names to run (default: all; similarity always runs)")
    ap.add_argument("--out", help="JSON path (default benches/results/quality-<UTC>.json and -latest)")
    ap.add_argument("--table", metavar="JSON", help="only print the tables of an earlier run's JSON")
    args = ap.parse_args(argv)
    if args.table:
        report(json.loads(Path(args.table).read_text()))
        return 0
    names = [n.strip() for n in args.graphs.split(",") if n.strip()]
    unknown = set(names) - set(graphs.BUILDERS)
    if unknown:
        ap.error(f"unknown graphs {sorted(unknown)}; known: {sorted(graphs.BUILDERS)}")
    t0 = time.perf_counter()
    doc = {"machine": machine_info(), "k": tasks.K, "hub_fraction": tasks.HUB_FRACTION,
           "target": {"gain": TARGET_GAIN, "p95_ms": TARGET_P95_MS}, "graphs": {}}
    ms = harness.methods(sweep=not args.no_sweep)
    if args.methods:
        keep = {m.strip() for m in args.methods.split(",")} | {"similarity"}
        ms = [m for m in ms if m.name in keep]
    for name in names:
        limit = DEFAULT_LIMITS[name] if args.limit is None else (args.limit or None)
        doc["graphs"][name] = evaluate(name, limit, args.queries, args.seed, ms)
    doc["wall_seconds"] = time.perf_counter() - t0
    report(doc)
    outs = write_results("quality", doc, args.out)
    say(f"wall time {doc['wall_seconds']:.0f} s; JSON: {', '.join(map(str, outs))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
