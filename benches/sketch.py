"""The index's 4-bit sketch (engram/recall/sketch.py): its scan against the exact scan it
replaces and against faiss's 4-bit scalar quantizer, on the data where the audit picks it.

    python benches/sketch.py                       # WordNet 10K/30K x 384, clustered 30K x 384 and x 768
    python benches/sketch.py --quick               # 10K only, 100 queries
    python benches/sketch.py --json out.json
    python benches/sketch.py --engine 100K         # also: recall in an engine on 100K x 384 noise, before and
                                                   # after the audit finds it hard and the sketch is written

What is measured, per data set (queries: scale.py's, 500 or --queries):

* engram sketch: ``sketch.quantize_query(q)`` and ``kern.sketch_topk`` for the
  nearest 64 (``ann.wanted(10)``), the candidates recall takes; the c backend's best
  ISA. recall@10: the exact top 10 of those candidates (re-scored in f32, as recall
  re-scores them from the stored rows) against the exact top 10 of all rows.
* exact f16 scan: ``cosine_topk(q, rows_f16, 10)``, what the audit falls back to
  without a sketch (warm rows are f16): the reference each row's ratio is against.
* faiss peer (when it imports), one thread: ``IndexScalarQuantizer(d, QT_4bit,
  METRIC_INNER_PRODUCT)`` trained on the normalised rows (4 bits a dimension with
  per-dimension ranges), searched for the same 64 candidates and re-scored the same
  way; its build (train + add) is not in the search times.

With ``--engine N``: an ``engram.Engine(dim=384, workers=0)`` holding N ``standard_normal``
rows (hot tier) with 5 random links each; queries are stored rows plus noise (0.5). Once
the index is built and the audit has chosen how to search it, recall with spreading (k
10, the default 10 ms budget) is timed over 500 queries; then recalls go on until the
keeper has written the sketch the audit's verdict (``hard``) allows and the audit has
chosen it, and the same 500 are timed again; the audit's own recall@10 and ms per choice
come with each row.

Times are per query over all queries (P50 / P95, microseconds); the data are in
scale.py (``clustered``: cluster centres plus noise; ``wordnet``: WordNet 3.0 synsets
embedded by the demo's hashed TF-IDF, queries a synset's lemma names). JSON in
benches/results/sketch-<UTC>.json and sketch-latest.json.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import finish, header_lines, machine_info, parse_count, percentiles
from scale import clustered, wordnet
from scan import load_faiss

import engram.kernels as ek
from engram.recall import ann, sketch

K = 10


def unit(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(n > 0, n, 1.0)).astype(np.float32)


def recall_at_k(x: np.ndarray, q: np.ndarray, cand: np.ndarray, truth: np.ndarray) -> float:
    """Share of the exact top K found by re-scoring ``cand`` exactly (as recall does)."""
    cand = cand[cand >= 0]
    top = cand[np.argsort(-(x[cand] @ q), kind="stable")[:K]]
    return len(set(top.tolist()) & set(truth.tolist())) / K


def per_query(fn, queries) -> tuple[dict, list]:
    """fn(i) for every query (after 20 warm-up calls): (P50/P95 in us, the results)."""
    for i in range(min(20, len(queries))):
        fn(i)
    times, out = [], []
    for i in range(len(queries)):
        t0 = time.perf_counter_ns()
        got = fn(i)
        times.append((time.perf_counter_ns() - t0) / 1e3)
        out.append(got)
    return {f"{k}_us": round(v, 1) for k, v in percentiles(times, (50, 95)).items()}, out


def measure(name: str, x: np.ndarray, q: np.ndarray, faiss) -> list:
    n, d = x.shape
    xu, qu = unit(x), unit(q)
    truth = np.argsort(-(qu @ xu.T), axis=1, kind="stable")[:, :K]
    kern = ek.backend()
    want = ann.wanted(K)
    packed, scale = sketch.quantize(xu)
    qq = [sketch.quantize_query(v) for v in qu]
    rows16 = xu.astype(np.float16)
    rows = []

    def row(config, times, found, bytes_per_row, **extra):
        r = {"key": f"sketch/{name}/{n}/{config}", "data": name, "n": n, "dim": d, "config": config, **times,
             "bytes_per_row": bytes_per_row, **extra}
        if found is not None:
            r["recall_at_10"] = round(float(np.mean(found)), 4)
        rows.append(r)
        return r

    t, res = per_query(lambda i: kern.cosine_topk(qu[i], rows16, K)[0], qu)
    exact = row("exact f16 scan", t, [len(set(r.tolist()) & set(truth[i].tolist())) / K for i, r in enumerate(res)],
                2 * d)
    t, res = per_query(lambda i: kern.sketch_topk(sketch.quantize_query(qu[i]), packed, scale, want)[0], qu)
    mine = row("engram 4-bit sketch", t, [recall_at_k(xu, qu[i], c, truth[i]) for i, c in enumerate(res)],
               packed.shape[1] + 4, candidates=want, kernels=f"{kern.name}/{kern.isa}")
    t, res = per_query(lambda i: kern.sketch_topk(qq[i], packed, scale, want)[0], qu)
    row("engram 4-bit sketch, kernel alone", t, None, packed.shape[1] + 4)
    if faiss is not None:
        t0 = time.perf_counter()
        index = faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_4bit, faiss.METRIC_INNER_PRODUCT)
        index.train(xu)
        index.add(xu)
        build_ms = (time.perf_counter() - t0) * 1e3
        t, res = per_query(lambda i: index.search(qu[i:i + 1], want)[1][0], qu)
        peer = row("faiss SQ 4-bit", t, [recall_at_k(xu, qu[i], c, truth[i]) for i, c in enumerate(res)],
                   index.sa_code_size(), candidates=want, build_ms=round(build_ms, 1))
        mine["x_faiss_p50"] = round(peer["p50_us"] / mine["p50_us"], 2)
    mine["x_exact_p50"] = round(exact["p50_us"] / mine["p50_us"], 2)
    for r in rows:
        print(f"  {r['config']:<36} P50 {r['p50_us']:8.1f} us  P95 {r['p95_us']:8.1f} us  "
              f"recall@10 {r.get('recall_at_10', float('nan')):.3f}  {r['bytes_per_row']} B/row")
    print(f"  sketch vs exact f16: {mine['x_exact_p50']}x" +
          (f"; vs faiss SQ 4-bit: {mine['x_faiss_p50']}x" if "x_faiss_p50" in mine else "; no faiss peer"))
    return rows


def engine_rows(n: int, d: int = 384, wait_s: float = 600.0) -> list:
    """Recall in an engine on ``n`` x ``d`` noise before and after its hard sketch (module doc)."""
    import engram
    from engram.recall.ann import AnnState
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, d)).astype(np.float32)
    src = np.repeat(np.arange(n), 5)
    dst = rng.integers(0, n, src.shape[0])
    w = rng.uniform(0.1, 1.0, src.shape[0]).astype(np.float32)
    qs = x[rng.integers(0, n, 2000)] + rng.standard_normal((2000, d)).astype(np.float32) * 0.5
    rows, at = [], [0]

    def serve(until):                      # recalls of every query in turn, as a served space gets
        end = time.monotonic() + wait_s
        while not until():
            if time.monotonic() > end:
                raise RuntimeError(f"waited {wait_s:.0f} s in vain; audit: {eng._life.indexer.stats()}")
            for q in qs[at[0] % 2000:at[0] % 2000 + 64]:
                sp.recall(q, k=K)
            at[0] += 64

    def timed(stage: str):
        audit = eng._life.indexer.stats()["noise"]["audit"]       # what the timed recalls search with
        ix = sp.stats()["index"]
        lat, searched = [], {}
        for q in qs[:500]:
            t0 = time.perf_counter_ns()
            sp.recall(q, k=K, budget_ms=10.0)
            lat.append((time.perf_counter_ns() - t0) / 1e3)
            b = sp.stats()["index"]["breadth"]         # (the keeper may change it meanwhile: counted)
            searched[b] = searched.get(b, 0) + 1
        r = {"key": f"sketch/engine-noise/{n}/{stage}", "data": "noise", "n": n, "dim": d, "config": stage,
             **{f"{k}_us": round(v, 1) for k, v in percentiles(lat, (50, 95)).items()},
             "breadth": ix["breadth"], "searched": searched, "sketch_rows": ix["sketch"], "audit": audit}
        print(f"  {stage:<24} recall with spreading P50 {r['p50_us'] / 1e3:5.2f} ms  P95 {r['p95_us'] / 1e3:5.2f} ms"
              f"  searched by {searched} (audited recall@10 {audit['recall_at_10'].get(ix['breadth'])})")
        rows.append(r)

    t0 = time.monotonic()
    with engram.Engine(dim=d, workers=0) as eng:
        sp = eng.space("noise")
        for a in range(0, n, 10_000):
            sp.remember(x[a:a + 10_000])
        sp.link(src, dst, w)
        sp.compact()
        if not eng.wait_for_index(wait_s):
            raise RuntimeError("the index was not built in time")
        serve(lambda: sp.stats()["index"]["breadth"] is not None)
        timed("audit's first choice")
        serve(lambda: AnnState.read(sp._store.dir).sketch > 0 and sp.stats()["index"]["breadth"] == "sketch")
        timed("after the hard sketch")
    rows[-1]["seconds"] = round(time.monotonic() - t0, 1)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--quick", action="store_true", help="10K only, 100 queries")
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--no-faiss", action="store_true", help="leave the faiss peer out")
    ap.add_argument("--engine", type=parse_count, metavar="N", help="also recall in an engine on N x 384 noise")
    ap.add_argument("--json", type=Path, metavar="PATH")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    faiss, faiss_why = load_faiss(not a.no_faiss)
    sets = ([("wordnet", 10_000, 384)] if a.quick else
            [("wordnet", 10_000, 384), ("wordnet", 30_000, 384), ("clustered", 30_000, 384),
             ("clustered", 30_000, 768)])
    nq = 100 if a.quick else a.queries
    info = machine_info(faiss=getattr(faiss, "__version__", None))
    print("sketch scan vs exact scan vs faiss SQ 4-bit")
    print("\n".join(header_lines(info)))
    if faiss is None:
        print(f"  no faiss peer: {faiss_why}")
    rows = []
    for name, n, d in sets:
        x, q, _ = wordnet(d, limit=n) if name == "wordnet" else clustered(n, d)
        print(f"\n{name}: {x.shape[0]:,} x {d}, {min(nq, q.shape[0])} queries")
        rows += measure(name, x, q[:nq], faiss)
    if a.engine:
        print(f"\nengine: {a.engine:,} x 384 noise, 5 links each")
        rows += engine_rows(a.engine)
    finish("sketch", {"machine": info, "rows": rows}, a.json, t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
