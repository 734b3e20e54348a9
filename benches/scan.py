"""Exact top-10 scan ("recall by similarity"): engram's kernels against a numpy peer.

Run from the repository root (engram installed, e.g. ``pip install -e .``):

    python benches/scan.py                    # N = 10K and 100K, f32 and f16
    python benches/scan.py --quick            # 10K only, few repeats: a smoke test (< ~20 s)
    python benches/scan.py --sizes 10K 100K 1M
    python benches/scan.py --bandwidth 15.2   # compare against another read bandwidth (GB/s)
    python benches/scan.py --json out.json    # write the JSON there instead of benches/results/

What is measured. For every N, row dtype (f32, f16) and metric, one 768-d f32
query is scanned against N rows for its exact top 10:

* engram: ``engram.kernels.backend(name, isa=...).cosine_topk(q, rows, 10)``
  (the public, validating path) for every backend and ISA variant that loads on
  this machine (``engram.kernels.available()``); ``dot_topk`` for the c backend's
  best ISA. The kernels compute the row norms on the fly, in the same pass.
  The "numpy" backend is engram's float64 oracle (slow on purpose); it runs
  only for N <= --oracle-max (default 10K).
* the numpy peer, measured in the same run: ``s = rows @ q``, then
  ``np.argpartition(-s, 10)[:10]`` and a sort of those 10. For cosine the peer
  gets precomputed f32 row norms (its best case: ``s = (rows @ q) / norms``,
  with the query normalised in the timed call). For f16 rows the peer does what
  a numpy user does: ``rows @ q`` with the f32 query, so numpy converts the rows
  to an f32 temporary and then calls BLAS (numpy's native f16 path,
  ``rows @ q.astype(f16)``, is about 2x slower still, and rounds scores to f16).
  The peer runs twice when the BLAS thread count can be set at run time: as
  installed ("numpy peer", BLAS's default threads) and with 1 BLAS thread
  ("numpy peer 1T"), since engram's kernels use one thread.

Method. Rows are generated once per size and dtype with
``np.random.default_rng(0).standard_normal`` (in f32 chunks, f16 rows are those
values rounded), into a 64-byte-aligned buffer; the query comes from
``default_rng(1)``. Each config is warmed up, then timed until it has at least
5 repeats (3 with --quick) and ~0.3 s (0.03 s with --quick), at most 1000
repeats. Reported: best and median ms; effective GB/s = row bytes / best time;
that as a % of the single-thread read bandwidth (default 16.9 GB/s, measured
on this machine kind: /work/shared/performance.md); and speed-up =
peer best / this best (> 1 means faster than the peer).

Correctness is checked on the way: every backend's top-10 ids must equal the
peer's, up to the order of near-ties (rank by rank, the exact float64 scores of
the two ids must agree to 1e-5 of the top score). A mismatch aborts the run.

Reading it. Configs marked "*" are smaller than the L3, and repeated scans may
keep them there, so their GB/s can exceed DRAM bandwidth: a % above 100 there
means "cache-resident", not a broken measurement. On a shared VM the usable L3
can be far smaller than the size the CPU reports; only configs much larger
than the L3 surely show the streaming limit. The machine is shared and noisy: compare
ratios inside one run, not absolute numbers across runs.

Results go to stdout (a table) and to JSON: benches/results/scan-<UTC time>.json
and benches/results/scan-latest.json (or only --json PATH), holding the machine
(CPU, cores, ISAs, L3, BLAS, numpy version, date) and every row.
"""
from __future__ import annotations

import argparse
import ctypes
import datetime as dt
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import engram
import engram.kernels as ek

DIM = 768
K = 10
DEFAULT_BANDWIDTH = 16.9          # GB/s, 1 thread, performance.md
DEFAULT_SIZES = (10_000, 100_000)
CHUNK_ROWS = 16_384               # rows generated per chunk (48 MiB of f32)
MAX_REPEATS = 1000
REL_TOL = 1e-5                    # near-tie tolerance, relative to the top exact score
HERE = Path(__file__).resolve().parent


# ----------------------------------------------------------------- helpers

def parse_size(text: str) -> int:
    t = text.strip().upper().replace("_", "")
    mult = {"K": 1_000, "M": 1_000_000}.get(t[-1:], 1)
    try:
        n = int(float(t[:-1]) * mult) if mult > 1 else int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (use e.g. 10000, 10K, 1M)")
    if n < K:
        raise argparse.ArgumentTypeError(f"size {n} is below k={K}")
    return n


def human(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1_000 and n % 1_000 == 0:
        return f"{n // 1_000}K"
    return str(n)


def aligned_empty(shape, dtype, align: int = 64) -> np.ndarray:
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    buf = np.empty(nbytes + align, np.uint8)
    off = (-buf.ctypes.data) % align
    out = buf[off:off + nbytes].view(dtype).reshape(shape)
    assert out.ctypes.data % align == 0
    return out


def make_rows(n: int, dtype) -> np.ndarray:
    """n x DIM standard-normal rows from default_rng(0), generated in f32 chunks (no f64 temporaries)."""
    rows = aligned_empty((n, DIM), dtype)
    rng = np.random.default_rng(0)
    for start in range(0, n, CHUNK_ROWS):
        m = min(CHUNK_ROWS, n - start)
        rows[start:start + m] = rng.standard_normal((m, DIM), dtype=np.float32)
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


def check_topk(metric, rows, q, got_ids, peer_ids, what: str):
    """Abort unless got_ids equals peer_ids up to the order of near-ties."""
    got_ids, peer_ids = np.asarray(got_ids), np.asarray(peer_ids)
    if got_ids.shape == peer_ids.shape and np.array_equal(got_ids, peer_ids):
        return "exact"
    if got_ids.shape != peer_ids.shape:
        sys.exit(f"\nCORRECTNESS FAILURE in {what}: returned {got_ids.shape[0]} results, the peer {peer_ids.shape[0]}")
    sg, sp = exact_scores(metric, rows, q, got_ids), exact_scores(metric, rows, q, peer_ids)
    tol = REL_TOL * max(abs(sp[0]), 1e-12)
    if np.all(np.abs(sg - sp) <= tol):
        return "tie-order"
    sys.exit(
        f"\nCORRECTNESS FAILURE in {what}: top-{K} ids differ from the numpy peer's beyond tie order.\n"
        f"  backend ids: {got_ids.tolist()}\n  peer ids:    {peer_ids.tolist()}\n"
        f"  exact scores of backend ids: {np.array2string(sg, precision=7)}\n"
        f"  exact scores of peer ids:    {np.array2string(sp, precision=7)}\n"
        f"  (tolerance {tol:.3g})")


def timeit(fn, min_repeats: int, target_s: float, warmup: int = 2):
    for _ in range(warmup):
        fn()
    times = []
    gc_was = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        while len(times) < MAX_REPEATS and (len(times) < min_repeats or time.perf_counter() - start < target_s):
            t0 = time.perf_counter_ns()
            fn()
            times.append(time.perf_counter_ns() - t0)
    finally:
        if gc_was:
            gc.enable()
    return min(times) / 1e6, statistics.median(times) / 1e6, len(times)


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
        for path in sorted(libs):
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

def machine_info(blas: Blas) -> dict:
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "?")
    except OSError:
        pass
    l3 = None
    try:
        txt = Path("/sys/devices/system/cpu/cpu0/cache/index3/size").read_text().strip()
        l3 = int(txt[:-1]) * {"K": 1024, "M": 1024 ** 2}[txt[-1]] if txt[-1] in "KM" else int(txt)
    except (OSError, ValueError, KeyError):
        pass
    commit = None
    try:
        commit = subprocess.run(["git", "-C", str(HERE.parent), "describe", "--always", "--dirty"],
                                capture_output=True, text=True, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "cpu_model": cpu,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "l3_bytes": l3,
        "cpu_isas": list(ek.cpu_isas()),
        "numpy": np.__version__,
        "blas": blas.name,
        "blas_default_threads": blas.threads(),
        "python": platform.python_version(),
        "engram": getattr(engram, "__version__", None),
        "git": commit,
        "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


# ----------------------------------------------------------------- the bench

def peer_fn(metric, rows, q, norms):
    """What a numpy user writes: matvec (+ precomputed norms for cosine), argpartition, sort the 10."""
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
    ap.add_argument("--json", type=Path, metavar="PATH",
                    help="write the JSON here instead of benches/results/scan-<time>.json and scan-latest.json")
    args = ap.parse_args(argv)

    sizes = sorted(set(args.sizes or ((10_000,) if args.quick else DEFAULT_SIZES)))
    min_rep, target_s = (3, 0.03) if args.quick else (5, 0.3)
    bw = args.bandwidth
    wall0 = time.perf_counter()

    blas = Blas()
    info = machine_info(blas)
    default_threads = blas.threads()
    peers = [("numpy peer", None)]
    if blas.controllable and default_threads and default_threads > 1:
        peers.append(("numpy peer 1T", 1))

    backends, skipped = {}, {}
    for key, tab in ek.available().items():
        (backends if not isinstance(tab, Exception) else skipped)[key] = tab
    c_best = f"c/{ek.cpu_isas()[0]}"

    print(f"engram scan bench: exact top-{K}, {DIM}-d, 1 query, sizes {', '.join(human(n) for n in sizes)}")
    print(f"  cpu: {info['cpu_model']}; {info['cores']} cores; ISAs {', '.join(info['cpu_isas'])}; "
          f"L3 {info['l3_bytes'] // 2**20 if info['l3_bytes'] else '?'} MiB")
    print(f"  numpy {info['numpy']}, BLAS {info['blas'] or 'unknown'} with {default_threads or '?'} threads by default; "
          f"engram {info['engram']} ({info['git']})")
    print(f"  backends: {', '.join(backends)}" + (f"; not loaded: {', '.join(f'{k} ({v})' for k, v in skipped.items())}" if skipped else ""))
    print(f"  numpy peer: f32 rows `rows @ q`; f16 rows `rows @ q` with the f32 query (numpy converts the rows to\n"
          f"    an f32 temporary, then BLAS); then argpartition + sort of 10. Cosine: the peer gets PRECOMPUTED row\n"
          f"    norms (its best case); engram's kernels compute norms on the fly.")
    if len(peers) > 1:
        print(f"    'numpy peer' uses BLAS's default {default_threads} threads; 'numpy peer 1T' one thread, like engram.")
    elif not blas.controllable:
        print("    (BLAS thread count not controllable here: the peer runs with BLAS's default threads only)")
    print(f"  % bw: effective GB/s (row bytes / best) over {bw} GB/s single-thread read bandwidth"
          f"{' (--bandwidth)' if bw != DEFAULT_BANDWIDTH else ' (performance.md)'}")
    print(f"  repeats: >= {min_rep} and ~{target_s} s per config; '*' = rows smaller than L3 (may be cache-resident: % can pass 100)\n")

    peer_cols = [p[0] for p in peers]
    hdr = (f"{'config':<20} {'backend':<15} {'best ms':>9} {'median ms':>10} {'GB/s':>7} {'% bw':>6} "
           + " ".join(f"{'x ' + ('peer' if t is None else 'peer1T'):>8}" for _, t in peers) + f" {'reps':>5}  check")
    print(hdr)
    print("-" * len(hdr))

    results = []
    q = np.random.default_rng(1).standard_normal(DIM, dtype=np.float32)
    for n in sizes:
        for dtype in (np.float32, np.float16):
            tname = "f32" if dtype == np.float32 else "f16"
            rows = make_rows(n, dtype)
            norms = row_norms(rows)
            nbytes = rows.nbytes
            in_l3 = bool(info["l3_bytes"] and nbytes <= info["l3_bytes"])
            for metric in ("cosine", "dot"):
                config = f"{metric} {human(n)} {tname}" + ("*" if in_l3 else "")
                peer_best = {}
                peer_ids = None
                jobs = []
                for pname, threads in peers:
                    jobs.append(("peer", pname, threads, None))
                for key, tab in backends.items():
                    if metric == "dot" and key != c_best:
                        continue
                    if key == "numpy" and n > args.oracle_max:
                        continue
                    jobs.append(("engram", key, None, tab))
                for kind, name, threads, tab in jobs:
                    if kind == "peer":
                        if threads is not None:
                            blas.set_threads(threads)
                        try:
                            fn = peer_fn(metric, rows, q, norms)
                            ids = fn()
                            if peer_ids is None:
                                peer_ids = ids
                                check = "reference"
                            else:
                                check = check_topk(metric, rows, q, ids, peer_ids, f"{config} {name}")
                            best, med, reps = timeit(fn, min_rep, target_s)
                        finally:
                            if threads is not None:
                                blas.set_threads(default_threads)
                        peer_best[name] = best
                        call = ("(rows @ (q/|q|)) / norms" if metric == "cosine" else "rows @ q") + \
                               (" [f16 rows -> f32 temp]" if tname == "f16" else "") + " + argpartition + sort10"
                        label, extra = name, {"peer_call": call, "blas_threads": threads or default_threads,
                                              "precomputed_norms": metric == "cosine"}
                    else:
                        bname, _, isa = name.partition("/")
                        table = ek.backend(bname, isa=isa or None)     # the public path
                        f = table.cosine_topk if metric == "cosine" else table.dot_topk
                        fn = (lambda f=f: f(q, rows, K))
                        ids, _scores = fn()
                        check = check_topk(metric, rows, q, ids, peer_ids, f"{config} {name}")
                        best, med, reps = timeit(fn, min_rep, target_s)
                        label, extra = name, {"backend": bname, "isa": table.isa,
                                              "call": f"engram.kernels.backend({bname!r}{', isa=' + repr(isa) if isa else ''}).{metric}_topk(q, rows, {K})"}
                    gbs = nbytes / (best / 1e3) / 1e9
                    ratios = {p: peer_best[p] / best for p in peer_cols if p in peer_best}
                    row = {"config": config.rstrip("*"), "metric": metric, "n": n, "dim": DIM, "dtype": tname, "k": K,
                           "rows_bytes": nbytes, "fits_l3": in_l3, "kind": kind, "name": label,
                           "best_ms": best, "median_ms": med, "repeats": reps, "gb_s": gbs,
                           "pct_bandwidth": 100 * gbs / bw, "speedup_vs": ratios, "check": check, **extra}
                    results.append(row)
                    rcols = " ".join(f"{ratios[p]:>8.2f}" if p in ratios else f"{'-':>8}" for p in peer_cols)
                    print(f"{config:<20} {label:<15} {best:>9.3f} {med:>10.3f} {gbs:>7.1f} {100 * gbs / bw:>5.0f}% "
                          f"{rcols} {reps:>5}  {check}", flush=True)
                print()
            del rows, norms
            gc.collect()

    wall = time.perf_counter() - wall0
    doc = {"bench": "scan", "k": K, "dim": DIM, "sizes": sizes, "quick": args.quick,
           "bandwidth_gb_s": bw, "bandwidth_source": "--bandwidth" if bw != DEFAULT_BANDWIDTH else "performance.md",
           "min_repeats": min_rep, "target_seconds": target_s, "argv": sys.argv[1:], "wall_seconds": wall,
           "machine": info, "skipped_backends": {k: str(v) for k, v in skipped.items()},
           "peer": {"f32": "rows @ q", "f16": "rows @ q with f32 q (numpy converts rows to an f32 temporary)",
                    "cosine": "precomputed f32 row norms (best case for the peer)",
                    "select": "np.argpartition(-s, 10)[:10] then argsort of those 10"},
           "rows": results}
    if args.json:
        outs = [args.json]
    else:
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        outs = [HERE / "results" / f"scan-{stamp}.json", HERE / "results" / "scan-latest.json"]
    for p in outs:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wall time {wall:.1f} s; JSON: {', '.join(str(p) for p in outs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
