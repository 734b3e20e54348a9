"""Exact top-10 scan ("recall by similarity"): engram's kernels against numpy and faiss peers.

Run from the repository root (engram installed, e.g. ``pip install -e .``):

    python benches/scan.py                    # N = 10K and 100K; f32, f16 and int8 rows; 1 and 16 queries
    python benches/scan.py --quick            # 10K only, few repeats: a smoke test (< ~30 s)
    python benches/scan.py --sizes 10K 100K 1M
    python benches/scan.py --bandwidth 15.2   # compare against another read bandwidth (GB/s)
    python benches/scan.py --batch 0          # no batch (M:N) rows; --batch 32 for 32 queries
    python benches/scan.py --no-faiss         # leave the faiss peer out even when it imports
    python benches/scan.py --json out.json    # write the JSON there instead of benches/results/

What is measured. For every N, row dtype (f32, f16, int8) and metric, one 768-d f32
query is scanned against N rows for its exact top 10:

* engram: ``engram.kernels.backend(name, isa=...).cosine_topk(q, rows, 10)``
  (the public, validating path) for every backend and ISA variant that loads on
  this machine (``engram.kernels.available()``); ``dot_topk`` and int8 rows for the
  c backend's best ISA. The kernels compute the row norms on the fly, in the same pass.
  The "numpy" backend is engram's float64 oracle (slow on purpose); it runs
  only for N <= --oracle-max (default 10K).
* batch (M:N): a (16, 768) query batch (``default_rng(2)``) through the same
  public call, for the c backend's best ISA: the native kernel reads each row once
  (per L2 block) for all 16 queries. Configs "... x16"; their times are per batch.
* the numpy peer, measured in the same run: ``s = rows @ q``, then
  ``np.argpartition(-s, 10)[:10]`` and a sort of those 10. For cosine the peer
  gets precomputed f32 row norms (its best case: ``s = (rows @ q) / norms``,
  with the query normalised in the timed call). For f16 and int8 rows the peer does
  what a numpy user does: ``rows @ q`` with the f32 query, so numpy converts the rows
  to an f32 temporary and then calls BLAS (numpy's native f16 path,
  ``rows @ q.astype(f16)``, is about 2x slower still, and rounds scores to f16).
  The batch peer is ``rows @ Q.T`` (one GEMM) and a column-wise argpartition.
  The peer runs twice when the BLAS thread count can be set at run time: as
  installed ("numpy peer", BLAS's default threads) and with 1 BLAS thread
  ("numpy peer 1T"), since engram's kernels use one thread.
* the faiss peer (when ``faiss`` imports; ``pip install faiss-cpu``), one OpenMP
  thread (``faiss.omp_set_num_threads(1)``): f32 rows in ``IndexFlatIP``; f16 rows in
  ``IndexScalarQuantizer(d, QT_fp16, METRIC_INNER_PRODUCT)`` (what performance.md
  measured). For cosine faiss gets PRE-NORMALISED rows (normalised in f32 at build
  time, then stored as f32 or re-rounded to fp16) and a normalised query: its best
  case, since inner product over unit vectors is cosine and it needs no norms at
  search time. No faiss peer for int8 rows: ``QT_8bit_direct_signed`` stores them
  exactly, but (faiss 1.15, d = 768) its distance computer rounds the f32 QUERY to
  integers too, so its top 10 is not the exact one (the scores come back as whole
  numbers); exact int8 search in faiss means widening the rows to f32, which is
  the f32 config. faiss copies the rows into its own
  index: the build (normalising + ``index.add``) is timed once and shown in the
  "build ms" column, NOT in the search times. ``index.search(q[None], 10)`` is the
  timed call (for the batch, ``index.search(Q, 10)``; faiss scans query by query below
  its BLAS threshold).

Method. Rows are generated once per size and dtype with
``np.random.default_rng(0).standard_normal`` (in f32 chunks, f16 rows are those
values rounded; int8 rows are ``clip(rint(32 x), -127, 127)``), into a 64-byte-aligned
buffer; the query comes from ``default_rng(1)``. Each config is warmed up, then timed
until it has at least 5 repeats (3 with --quick) and ~0.3 s (0.03 s with --quick), at
most 1000 repeats. Reported: best and median ms; effective GB/s = row bytes / best time;
that as a % of the single-thread read bandwidth (default 16.9 GB/s, measured
on this machine kind: /work/shared/performance.md); and speed-up =
peer best / this best (> 1 means faster than the peer), one column per peer.

Correctness is checked on the way: every backend's top-10 ids must equal the
peer's, up to the order of near-ties (rank by rank, the exact float64 scores of
the two ids must agree to 1e-5 of the top score). faiss's f16 cosine index holds the
normalised rows re-rounded to fp16, so its scores move by ~1e-4: it is checked to
1e-3 of the top score ("fp16-requant" when it needs that). A mismatch aborts the run.

Reading it. Configs marked "*" are smaller than the L3, and repeated scans may
keep them there, so their GB/s can exceed DRAM bandwidth: a % above 100 there
means "cache-resident", not a broken measurement. On a shared VM the usable L3
can be far smaller than the size the CPU reports; only configs much larger
than the L3 surely show the streaming limit. The machine is shared and noisy: compare
ratios inside one run, not absolute numbers across runs.

Results go to stdout (a table) and to JSON: benches/results/scan-<UTC time>.json
and benches/results/scan-latest.json (or only --json PATH), holding the machine
(CPU, cores, ISAs, L3, BLAS, numpy and faiss versions, load average, date) and every
row. Every row has a stable "key" (``scan/<metric>/<N>/<dtype>[/x16]/<backend>``, e.g.
``scan/cosine/100K/f16/c-avx512``) that tools/regress.py follows across runs.
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import sys
import time
from pathlib import Path

import numpy as np

import engram.kernels as ek

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

DIM = 768
K = 10
DEFAULT_BANDWIDTH = 16.9          # GB/s, 1 thread, performance.md
DEFAULT_SIZES = (10_000, 100_000)
DEFAULT_BATCH = 16                # queries in the M:N batch rows
I8_SCALE = 32.0                   # int8 rows: clip(rint(32 * N(0, 1)), -127, 127)
FAISS_F16_TOL = 1e-3              # faiss f16 cosine: rows re-rounded to fp16 after normalising
CHUNK_ROWS = 16_384               # rows generated per chunk (48 MiB of f32)
MAX_REPEATS = 1000
REL_TOL = 1e-5                    # near-tie tolerance, relative to the top exact score
HERE = Path(__file__).resolve().parent


# ----------------------------------------------------------------- helpers

def parse_size(text: str) -> int:
    n = _common.parse_count(text)
    if n < K:
        raise argparse.ArgumentTypeError(f"size {n} is below k={K}")
    return n


human = _common.human


def aligned_empty(shape, dtype, align: int = 64) -> np.ndarray:
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    buf = np.empty(nbytes + align, np.uint8)
    off = (-buf.ctypes.data) % align
    out = buf[off:off + nbytes].view(dtype).reshape(shape)
    assert out.ctypes.data % align == 0
    return out


def make_rows(n: int, dtype) -> np.ndarray:
    """n x DIM standard-normal rows from default_rng(0), generated in f32 chunks (no f64 temporaries).

    int8 rows are the same values times I8_SCALE, rounded and clipped to [-127, 127].
    """
    rows = aligned_empty((n, DIM), dtype)
    rng = np.random.default_rng(0)
    for start in range(0, n, CHUNK_ROWS):
        m = min(CHUNK_ROWS, n - start)
        x = rng.standard_normal((m, DIM), dtype=np.float32)
        if rows.dtype == np.int8:
            x = np.clip(np.rint(x * I8_SCALE), -127, 127)
        rows[start:start + m] = x
    return rows


def row_norms(rows: np.ndarray) -> np.ndarray:
    """f32 row norms, computed in chunks (the peer's precomputed best case)."""
    out = np.empty(rows.shape[0], np.float32)
    for start in range(0, rows.shape[0], CHUNK_ROWS):
        c = rows[start:start + CHUNK_ROWS].astype(np.float32, copy=False)
        out[start:start + c.shape[0]] = np.sqrt(np.einsum("ij,ij->i", c, c))
    return out


def exact_scores(metric: str, rows: np.ndarray, q: np.ndarray, ids) -> np.ndarray:
    r = rows[np.asarray(ids, np.int64)].astype(np.float64)
    q64 = q.astype(np.float64)
    s = r @ q64
    if metric == "cosine":
        s = s / (np.linalg.norm(r, axis=1) * np.linalg.norm(q64))
    return s


def check_topk(metric, rows, q, got_ids, peer_ids, what: str, rel_tol: float = REL_TOL, loose_label: str = "tie-order"):
    """Abort unless got_ids equals peer_ids up to the order of near-ties.

    A 2-D q (a batch) checks query by query and returns the worst label.
    """
    got_ids, peer_ids = np.asarray(got_ids), np.asarray(peer_ids)
    if np.ndim(q) == 2:
        if got_ids.shape != peer_ids.shape:
            sys.exit(f"\nCORRECTNESS FAILURE in {what}: result shape {got_ids.shape}, the peer's {peer_ids.shape}")
        labels = [check_topk(metric, rows, q[j], got_ids[j], peer_ids[j], f"{what} query {j}", rel_tol, loose_label)
                  for j in range(q.shape[0])]
        order = ["exact", "tie-order", loose_label]
        return max(labels, key=order.index)
    if got_ids.shape == peer_ids.shape and np.array_equal(got_ids, peer_ids):
        return "exact"
    if got_ids.shape != peer_ids.shape:
        sys.exit(f"\nCORRECTNESS FAILURE in {what}: returned {got_ids.shape[0]} results, the peer {peer_ids.shape[0]}")
    sg, sp = exact_scores(metric, rows, q, got_ids), exact_scores(metric, rows, q, peer_ids)
    tol = REL_TOL * max(abs(sp[0]), 1e-12)
    if np.all(np.abs(sg - sp) <= tol):
        return "tie-order"
    tol = rel_tol * max(abs(sp[0]), 1e-12)
    if rel_tol > REL_TOL and np.all(np.abs(sg - sp) <= tol):
        return loose_label
    sys.exit(
        f"\nCORRECTNESS FAILURE in {what}: top-{K} ids differ from the numpy peer's beyond tie order.\n"
        f"  backend ids: {got_ids.tolist()}\n  peer ids:    {peer_ids.tolist()}\n"
        f"  exact scores of backend ids: {np.array2string(sg, precision=7)}\n"
        f"  exact scores of peer ids:    {np.array2string(sp, precision=7)}\n"
        f"  (tolerance {tol:.3g})")


def timeit(fn, min_repeats: int, target_s: float, warmup: int = 2):
    """(best ms, median ms, repeats): _common.timeit in milliseconds, capped at MAX_REPEATS."""
    best, med, reps, _ = _common.timeit(fn, min_repeats, target_s, MAX_REPEATS, warmup)
    return best * 1e3, med * 1e3, reps


# ----------------------------------------------------------------- BLAS threads

class Blas:
    """Get/set the BLAS thread count of the OpenBLAS numpy loaded (threadpoolctl's job, done by hand)."""

    def __init__(self):
        self.name, self._get, self._set = None, None, None
        try:
            with open("/proc/self/maps") as f:
                libs = {line.split()[-1] for line in f if "openblas" in line.lower() and ".so" in line}
        except OSError:
            libs = set()
        # numpy's own OpenBLAS first: other packages (faiss) may load another one
        for path in sorted(libs, key=lambda p: ("numpy" not in p, p)):
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            for pre in ("scipy_openblas", "openblas"):
                for suf in ("64_", "_64_", ""):
                    g, s = getattr(lib, f"{pre}_get_num_threads{suf}", None), getattr(lib, f"{pre}_set_num_threads{suf}", None)
                    if g is not None and s is not None:
                        g.restype, g.argtypes, s.restype, s.argtypes = ctypes.c_int, [], None, [ctypes.c_int]
                        self.name, self._get, self._set = Path(path).name, g, s
                        return

    @property
    def controllable(self) -> bool:
        return self._get is not None

    def threads(self):
        return self._get() if self._get else None

    def set_threads(self, n: int):
        if self._set:
            self._set(int(n))


# ----------------------------------------------------------------- machine

def machine_info(blas: Blas, faiss_mod) -> dict:
    extra = {"blas": blas.name, "blas_default_threads": blas.threads(),
             "faiss": getattr(faiss_mod, "__version__", None) if faiss_mod else None}
    if faiss_mod is not None:
        try:
            extra["faiss_simd"] = faiss_mod.SIMDConfig.get_level_name()
        except Exception:
            extra["faiss_simd"] = faiss_mod.get_compile_options()
    return _common.machine_info(**extra)


def load_faiss(enabled: bool):
    """(faiss module or None, why not)."""
    if not enabled:
        return None, "--no-faiss"
    try:
        import faiss
    except Exception as e:  # ImportError, or a broken wheel
        return None, f"not importable ({type(e).__name__}: {e}); pip install faiss-cpu"
    faiss.omp_set_num_threads(1)
    return faiss, None


# ----------------------------------------------------------------- the bench

def _select(s):
    """Top-K of a score vector (n,) or, column by column, a score matrix (n, m): ids (K,) or (m, K)."""
    if s.ndim == 1:
        top = np.argpartition(-s, K)[:K]
        return top[np.argsort(-s[top], kind="stable")]
    top = np.argpartition(-s, K, axis=0)[:K]
    order = np.argsort(-np.take_along_axis(s, top, 0), axis=0, kind="stable")
    return np.take_along_axis(top, order, 0).T


def peer_fn(metric, rows, q, norms):
    """What a numpy user writes: matvec (+ precomputed norms for cosine), argpartition, sort the 10.

    A 2-D q (a batch) is one GEMM, ``rows @ Q.T``, and a column-wise selection.
    """
    if q.ndim == 2:
        if metric == "cosine":
            def fn():
                qn = q / np.linalg.norm(q, axis=1, keepdims=True)
                return _select((rows @ qn.T) / norms[:, None])
        else:
            def fn():
                return _select(rows @ q.T)
        return fn
    if metric == "cosine":
        def fn():
            s = (rows @ (q / np.linalg.norm(q))) / norms
            top = np.argpartition(-s, K)[:K]
            return top[np.argsort(-s[top], kind="stable")]
    else:
        def fn():
            s = rows @ q
            top = np.argpartition(-s, K)[:K]
            return top[np.argsort(-s[top], kind="stable")]
    return fn


def faiss_index(faiss, metric, rows, norms):
    """(index, build seconds, description) of faiss's index for these rows, or (None, 0, why not)."""
    tname = {np.dtype(np.float32): "f32", np.dtype(np.float16): "f16", np.dtype(np.int8): "i8"}[rows.dtype]
    if tname == "i8":
        # QT_8bit_direct_signed stores int8 rows exactly, but its distance computer quantizes the
        # f32 QUERY to integers too, so its top-10 is not the exact one (checked: wrong ids). A faiss
        # user would have to widen the rows to f32 (IndexFlatIP, 4x the bytes: the f32 rows above).
        return None, 0.0, "none for int8 rows (QT_8bit_direct_signed quantizes the query too: not exact)"
    t0 = time.perf_counter()
    if tname == "f32":
        index, desc = faiss.IndexFlatIP(DIM), "IndexFlatIP"
    elif tname == "f16":
        index, desc = faiss.IndexScalarQuantizer(DIM, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT), \
            "IndexScalarQuantizer(QT_fp16, METRIC_INNER_PRODUCT)"
    if not index.is_trained:
        index.train(rows[:min(rows.shape[0], 1000)].astype(np.float32))
    for start in range(0, rows.shape[0], CHUNK_ROWS):
        c = rows[start:start + CHUNK_ROWS].astype(np.float32, copy=False)
        if metric == "cosine":
            c = c / norms[start:start + c.shape[0], None]
        index.add(np.ascontiguousarray(c, dtype=np.float32))
    if metric == "cosine":
        desc += " on pre-normalised rows"
    return index, time.perf_counter() - t0, desc


def faiss_fn(index, metric, q):
    if q.ndim == 2:
        if metric == "cosine":
            return lambda: index.search(np.ascontiguousarray(q / np.linalg.norm(q, axis=1, keepdims=True)), K)[1]
        return lambda: index.search(q, K)[1]
    if metric == "cosine":
        return lambda: index.search((q / np.linalg.norm(q))[None, :], K)[1][0]
    return lambda: index.search(q[None, :], K)[1][0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="See the module docstring (benches/scan.py) for the method.")
    ap.add_argument("--quick", action="store_true", help="10K only, few repeats (smoke test)")
    ap.add_argument("--sizes", nargs="+", type=parse_size, metavar="N",
                    help="row counts to scan, e.g. --sizes 10K 100K 1M (default: 10K 100K)")
    ap.add_argument("--bandwidth", type=float, default=DEFAULT_BANDWIDTH,
                    help=f"single-thread read bandwidth in GB/s for the %% column (default {DEFAULT_BANDWIDTH})")
    ap.add_argument("--oracle-max", type=parse_size, default=10_000,
                    help="run engram's float64 'numpy' oracle backend only for N <= this (default 10K)")
    ap.add_argument("--batch", type=int, default=DEFAULT_BATCH, metavar="M",
                    help=f"queries in the batch (M:N) configs (default {DEFAULT_BATCH}; 0: no batch configs)")
    ap.add_argument("--no-faiss", action="store_true", help="leave the faiss peer out")
    ap.add_argument("--json", type=Path, metavar="PATH",
                    help="write the JSON here instead of benches/results/scan-<time>.json and scan-latest.json")
    args = ap.parse_args(argv)

    sizes = sorted(set(args.sizes or ((10_000,) if args.quick else DEFAULT_SIZES)))
    min_rep, target_s = (3, 0.03) if args.quick else (5, 0.3)
    bw = args.bandwidth
    wall0 = time.perf_counter()

    blas = Blas()                     # before faiss loads its own OpenBLAS
    faiss, faiss_why = load_faiss(not args.no_faiss)
    info = machine_info(blas, faiss)
    default_threads = blas.threads()
    peers = [("numpy peer", None)]
    if blas.controllable and default_threads and default_threads > 1:
        peers.append(("numpy peer 1T", 1))
    peer_cols = [p[0] for p in peers] + (["faiss"] if faiss else [])
    col_title = {"numpy peer": "x peer", "numpy peer 1T": "x peer1T", "faiss": "x faiss"}

    backends, skipped = {}, {}
    for key, tab in ek.available().items():
        (backends if not isinstance(tab, Exception) else skipped)[key] = tab
    c_best = f"c/{ek.cpu_isas()[0]}"
    rng_q = np.random.default_rng(1)
    q = rng_q.standard_normal(DIM, dtype=np.float32)
    qs = np.random.default_rng(2).standard_normal((args.batch, DIM), dtype=np.float32) if args.batch > 0 else None

    print(f"engram scan bench: exact top-{K}, {DIM}-d, 1 query" + (f" and batches of {args.batch}" if qs is not None else "")
          + f", sizes {', '.join(human(n) for n in sizes)}")
    for line in _common.header_lines(info):
        print(line)
    print(f"  BLAS {info['blas'] or 'unknown'} with {default_threads or '?'} threads by default")
    print(f"  backends: {', '.join(backends)}" + (f"; not loaded: {', '.join(f'{k} ({v})' for k, v in skipped.items())}" if skipped else ""))
    print(f"  int8 rows and x{args.batch} batches: {c_best} only (the c backend's best ISA), and dot_topk" if qs is not None
          else f"  int8 rows and dot_topk: {c_best} only (the c backend's best ISA)")
    print("  numpy peer: f32 rows `rows @ q`; f16/int8 rows `rows @ q` with the f32 query (numpy converts the rows to\n"
          "    an f32 temporary, then BLAS); then argpartition + sort of 10. Cosine: the peer gets PRECOMPUTED row\n"
          "    norms (its best case; 'build ms' = computing them); engram's kernels compute norms on the fly.")
    if len(peers) > 1:
        print(f"    'numpy peer' uses BLAS's default {default_threads} threads; 'numpy peer 1T' one thread, like engram.")
    elif not blas.controllable:
        print("    (BLAS thread count not controllable here: the peer runs with BLAS's default threads only)")
    if faiss:
        print(f"  faiss {info['faiss']} ({info.get('faiss_simd')}), 1 thread: f32 IndexFlatIP, f16 IndexScalarQuantizer QT_fp16,\n"
              "    METRIC_INNER_PRODUCT; none for int8 (QT_8bit_direct_signed rounds the query to integers: not exact).\n"
              "    Cosine: faiss gets PRE-NORMALISED rows and query (its best case).\n"
              "    'build ms' = normalising + index.add, excluded from the search times.")
    else:
        print(f"  faiss peer: skipped ({faiss_why})")
    print(f"  % bw: effective GB/s (row bytes / best) over {bw} GB/s single-thread read bandwidth"
          f"{' (--bandwidth)' if bw != DEFAULT_BANDWIDTH else ' (performance.md)'}")
    print(f"  repeats: >= {min_rep} and ~{target_s} s per config; '*' = rows smaller than L3 (may be cache-resident: % can pass 100)\n")

    hdr = (f"{'config':<22} {'backend':<15} {'build ms':>9} {'best ms':>9} {'median ms':>10} {'GB/s':>7} {'% bw':>6} "
           + " ".join(f"{col_title[c]:>8}" for c in peer_cols) + f" {'reps':>5}  check")
    print(hdr)
    print("-" * len(hdr))

    results, notes = [], []
    single_best = {}                       # (metric, n, dtype, backend) -> best ms, for the per-query note
    dtypes = ((np.float32, "f32"), (np.float16, "f16"), (np.int8, "i8"))
    for n in sizes:
        for dtype, tname in dtypes:
            rows = make_rows(n, dtype)
            t0 = time.perf_counter()
            norms = row_norms(rows)
            norm_ms = (time.perf_counter() - t0) * 1e3
            nbytes = rows.nbytes
            in_l3 = bool(info["l3_bytes"] and nbytes <= info["l3_bytes"])
            for metric in ("cosine", "dot"):
                findex, fbuild_s, fdesc = (faiss_index(faiss, metric, rows, norms) if faiss else (None, 0.0, faiss_why))
                for nq in ((1, args.batch) if qs is not None else (1,)):
                    query = q if nq == 1 else qs
                    batch_tag = f"x{nq}" if nq > 1 else None
                    config = f"{metric} {human(n)} {tname}" + (f" x{nq}" if nq > 1 else "") + ("*" if in_l3 else "")
                    peer_best, peer_ids = {}, None
                    jobs = [("peer", pname, threads) for pname, threads in peers]
                    if findex is not None:
                        jobs.append(("faiss", "faiss", None))
                    for key in backends:
                        if (metric == "dot" or tname == "i8" or nq > 1) and key != c_best:
                            continue
                        if key == "numpy" and n > args.oracle_max:
                            continue
                        jobs.append(("engram", key, None))
                        if metric == "cosine" and key == c_best:    # with the row norms the engine stores
                            jobs.append(("engram", key + "+norms", "norms"))
                    for kind, name, threads in jobs:
                        build_ms = None
                        if kind == "peer":
                            if threads is not None:
                                blas.set_threads(threads)
                            try:
                                fn = peer_fn(metric, rows, query, norms)
                                ids = fn()
                                if peer_ids is None:
                                    peer_ids, check = ids, "reference"
                                else:
                                    check = check_topk(metric, rows, query, ids, peer_ids, f"{config} {name}")
                                best, med, reps = timeit(fn, min_rep, target_s)
                            finally:
                                if threads is not None:
                                    blas.set_threads(default_threads)
                            peer_best[name] = best
                            build_ms = norm_ms if metric == "cosine" else None
                            call = (("(rows @ (Q/|Q|).T) / norms[:, None]" if nq > 1 else "(rows @ (q/|q|)) / norms")
                                    if metric == "cosine" else ("rows @ Q.T" if nq > 1 else "rows @ q")) + \
                                   (f" [{tname} rows -> f32 temp]" if tname != "f32" else "") + " + argpartition + sort10"
                            extra = {"peer_call": call, "blas_threads": threads or default_threads,
                                     "precomputed_norms": metric == "cosine"}
                        elif kind == "faiss":
                            fn = faiss_fn(findex, metric, query)
                            ids = fn()
                            loose = tname == "f16" and metric == "cosine"
                            check = check_topk(metric, rows, query, ids, peer_ids, f"{config} faiss",
                                               FAISS_F16_TOL if loose else REL_TOL, "fp16-requant")
                            best, med, reps = timeit(fn, min_rep, target_s)
                            peer_best[name] = best
                            build_ms = fbuild_s * 1e3
                            extra = {"peer_call": f"faiss {fdesc}: index.search({'Q' if nq > 1 else 'q[None]'}, {K})"
                                                  + (" with the normalised query" if metric == "cosine" else ""),
                                     "faiss_threads": 1,
                                     "build": "normalise rows in f32 + index.add" if metric == "cosine" else "index.add"}
                        else:
                            bname, _, isa = name.split("+")[0].partition("/")
                            table = ek.backend(bname, isa=isa or None)     # the public path
                            f = table.cosine_topk if metric == "cosine" else table.dot_topk
                            given = {"norms": norms.astype(np.float32)} if threads == "norms" else {}
                            fn = (lambda f=f, query=query, rows=rows, given=given: f(query, rows, K, **given))
                            ids, _scores = fn()
                            check = check_topk(metric, rows, query, ids, peer_ids, f"{config} {name}")
                            best, med, reps = timeit(fn, min_rep, target_s)
                            qarg = "Q" if nq > 1 else "q"
                            extra = {"backend": bname, "isa": table.isa,
                                     "call": f"engram.kernels.backend({bname!r}{', isa=' + repr(isa) if isa else ''}).{metric}_topk({qarg}, rows, {K}"
                                             + (", norms=norms)" if given else ")")}
                            if nq == 1:
                                single_best[metric, n, tname, name] = best
                        gbs = nbytes / (best / 1e3) / 1e9
                        ratios = {p: peer_best[p] / best for p in peer_cols if p in peer_best}
                        row = {"key": _common.make_key("scan", metric, human(n), tname, batch_tag, name),
                               "config": config.rstrip("*"), "metric": metric, "n": n, "dim": DIM, "dtype": tname,
                               "k": K, "nq": nq, "rows_bytes": nbytes, "fits_l3": in_l3,
                               "kind": "peer" if kind == "faiss" else kind, "name": name,
                               "best_ms": best, "median_ms": med, "per_query_ms": best / nq, "repeats": reps,
                               "gb_s": gbs, "pct_bandwidth": 100 * gbs / bw, "speedup_vs": ratios, "check": check,
                               "build_ms": build_ms, **extra}
                        results.append(row)
                        rcols = " ".join(f"{ratios[p]:>8.2f}" if p in ratios else f"{'-':>8}" for p in peer_cols)
                        bcol = f"{build_ms:>9.1f}" if build_ms is not None else f"{'-':>9}"
                        print(f"{config:<22} {name:<15} {bcol} {best:>9.3f} {med:>10.3f} {gbs:>7.1f} {100 * gbs / bw:>5.0f}% "
                              f"{rcols} {reps:>5}  {check}", flush=True)
                        if kind == "engram" and nq > 1 and (metric, n, tname, name) in single_best:
                            one = single_best[metric, n, tname, name]
                            notes.append(f"{config.rstrip('*'):<22} {name}: {best / nq:.3f} ms per query in the batch vs "
                                         f"{one:.3f} ms for one query alone ({one / (best / nq):.1f}x)")
                    print()
                del findex
            del rows, norms
            gc.collect()
    if notes:
        print("batch (M:N) per query:")
        for line in notes:
            print("  " + line)
        print()

    wall = time.perf_counter() - wall0
    doc = {"bench": "scan", "k": K, "dim": DIM, "sizes": sizes, "quick": args.quick, "batch": args.batch,
           "bandwidth_gb_s": bw, "bandwidth_source": "--bandwidth" if bw != DEFAULT_BANDWIDTH else "performance.md",
           "min_repeats": min_rep, "target_seconds": target_s, "argv": sys.argv[1:], "wall_seconds": wall,
           "machine": info, "skipped_backends": {k: str(v) for k, v in skipped.items()},
           "peer": {"f32": "rows @ q", "f16": "rows @ q with f32 q (numpy converts rows to an f32 temporary)",
                    "i8": "rows @ q with f32 q (numpy converts rows to an f32 temporary)",
                    "cosine": "precomputed f32 row norms (best case for the peer)",
                    "select": "np.argpartition(-s, 10)[:10] then argsort of those 10",
                    "batch": "rows @ Q.T (one GEMM), column-wise argpartition",
                    "faiss": ("1 thread; f32 IndexFlatIP, f16 IndexScalarQuantizer QT_fp16, none for int8 "
                              "(QT_8bit_direct_signed quantizes the query: not exact); METRIC_INNER_PRODUCT; cosine on pre-normalised rows and query; "
                              "build time excluded from search") if faiss else f"skipped: {faiss_why}"},
           "rows": results}
    outs = _common.write_results("scan", doc, args.json)
    print(f"wall time {wall:.1f} s; JSON: {', '.join(str(p) for p in outs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
