"""What recall by text adds to recall: the one query's encoding (docs/embedding.md).

    flock /tmp/engram-bench.lock python benches/text_recall.py [--limit N] [--threads 2]

The demo's memory of the standard library (its associations included), embedded by the
default model (vectors cached as the demo caches them: the first run encodes ~7,000
docstrings, minutes on 2 cores). Each question of benches/data/text_pairs.json and of the
demo is asked three ways, in turn: recall(text=q) with spreading; recall(vector) with the
same question encoded beforehand; and the encoding alone. P50/P95 of each, and JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=int, default=None, help="at most this many stdlib memories (default: all)")
    ap.add_argument("--threads", type=int, default=2, help="model threads (OMP_NUM_THREADS; default 2)")
    ap.add_argument("--rounds", type=int, default=3, help="times each question is asked (default 3)")
    ap.add_argument("--json", default=None, help="write JSON here (default benches/results/)")
    args = ap.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import engram
    from benches._common import finish, machine_info, percentiles
    from engram.demo import corpus
    from engram.demo.cache import Cached
    from engram.demo.run import QUERIES
    from engram.text import resolve
    t_start = time.perf_counter()
    pairs = json.loads((HERE / "data" / "text_pairs.json").read_text())
    questions = list(QUERIES) + [p[0] for task in ("paraphrase", "qa") for p in pairs[task]]
    c = corpus.build(limit=args.limit)
    model = Cached(resolve("default").model)
    with engram.Engine(embedder=model, workers=0) as eng:
        mem = eng.space("stdlib")
        t0 = time.perf_counter()
        mem.remember(texts=c.embed_texts, content=c.texts, progress=True)
        print(f"{len(c):,} memories embedded in {time.perf_counter() - t0:.1f} s ({model.hits:,} cached)")
        if model.hits < len(c):
            model.save()
        src, dst, w = (np.array(x) for x in zip(*c.links))
        mem.link(src, dst, w.astype(np.float32))
        mem.compact()
        vectors = eng.embedder.encode(questions, query=True)
        by_text, by_vector, encode = [], [], []
        for _ in range(args.rounds):
            for q, v in zip(questions, vectors):
                t = time.perf_counter_ns()
                mem.recall(text=q, k=10)
                t1 = time.perf_counter_ns()
                mem.recall(v, k=10)
                t2 = time.perf_counter_ns()
                eng.embedder.encode([q], query=True)
                t3 = time.perf_counter_ns()
                by_text.append((t1 - t) / 1e6)
                by_vector.append((t2 - t1) / 1e6)
                encode.append((t3 - t2) / 1e6)
    rows = []
    for what, values in (("recall(text=q)", by_text), ("recall(vector)", by_vector), ("encode(q) alone", encode)):
        p = percentiles(values)
        rows.append({"key": f"text_recall/{len(c)}/{what}", "what": what, "memories": len(c), "n": len(values),
                     **{f"{k}_ms": v for k, v in p.items()}})
        print(f"{what:<18} P50 {p['p50']:8.2f} ms   P95 {p['p95']:8.2f} ms   ({len(values)} recalls of {len(c):,})")
    finish("text_recall", {"machine": machine_info(threads=args.threads, embedder=str(eng.embedder.identity)),
                           "rows": rows}, args.json, t_start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
