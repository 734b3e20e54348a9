"""Profiling harness: recall through the public API on a 10K-memory space, stage by stage.

Run from the repository root (engram installed, e.g. ``pip install -e .``):

    python benches/profile_harness.py             # 10K memories, 50K links, 1,000 recalls
    python benches/profile_harness.py --quick     # the same space, 300 recalls: a smoke test (< ~15 s)
    python benches/profile_harness.py --profile   # + where the time goes: py-spy (else cProfile), top 15 by self time
    python benches/profile_harness.py --memories 100K --links 500K --recalls 2000
    python benches/profile_harness.py --json out.json

The workload (the "profiling harness" of the kernels plan: 10K nodes, 50K edges,
1,000 queries). ``engram.Engine(dim=768, workers=0)``, one space; 10K memories
remembered in the warm tier (768-d, stored as f16) with short text content, from
``np.random.default_rng(0)`` standard-normal vectors; 50K random directed associations
(distinct (src, dst) pairs, no self-links, weights uniform in [0.1, 1)) added with
``space.link`` and merged with ``space.compact()``. Then 1,000 recalls, one query
each: ``space.recall(q, k=10)``. Each query is a stored memory's vector plus noise
(0.3 x standard normal per dimension), so the memory it came from must rank first:
the harness checks that (a correctness check on the way) and aborts otherwise.

Measured per recall: the engine's own stage timings (``res.timings``: validate_ms,
scan_ms, total_ms, and any stage a later engine adds), ``rest_ms`` = total_ms minus the
named stages (building the result: content, confidence, access update), and
``call_ms`` = wall time around the call as the caller sees it. Reported: P50 / P95 /
P99 / mean / max in milliseconds, and each stage's share of the total P50. GC stays
enabled (what an application sees). A ``kernel`` diagnostic row is the scan alone
through the public kernel API (``engram.kernels.backend().cosine_topk(q, rows, 10)`` over
a plain f16 copy of the same vectors): the floor under scan_ms.

``recall`` runs the whole pipeline (engram/recall/pipeline.py): the similarity scan for 2k
seeds, spreading over the 50K links within the default 10 ms budget, ranking. The
performance target for recall + spread on this workload is P95 <= 1 ms
(/work/shared/performance.md).

--profile: after the timed run, the recalls run again (3 passes over the queries by
default, ``--profile-passes``) while ``py-spy record --native --rate 1000 --format raw``
samples this process (attached with ``--pid``; py-spy must be installed: ``pip install
py-spy``). Only samples whose stack passes through ``recall`` count; the harness prints the
top 15 functions by self time (samples where the function is the innermost frame;
native frames included, so the C kernel shows by name) and the share of all recall
samples. If py-spy is missing or cannot attach (no ptrace permission in a container,
say), it falls back to cProfile and says so: cProfile only sees Python-level calls (the
kernel appears as the Cython ``__call__`` that wraps it) and its overhead inflates the
Python parts.

Results: a table on stdout and JSON in benches/results/profile-<UTC time>.json and
profile-latest.json (or only --json PATH); one row per stage with the key
``profile/recall/<memories>-f16-<links>-links/<stage>``.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

import engram
import engram.kernels as ek

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

DIM = 768
K = 10
NOISE = 0.3
TOP = 15
RECALL_FRAME = re.compile(r"^(?:[\w.<>]+\.)?recall \(")     # py-spy: "SpaceView.recall (engram/engine.py:154)"


def random_links(n: int, m: int, rng):
    """m distinct (src, dst) pairs over n nodes without self-links, weights U[0.1, 1)."""
    if m > n * (n - 1):
        raise SystemExit(f"--links {m} is more than the {n * (n - 1)} possible pairs")
    keys = np.empty(0, np.int64)
    while keys.size < m:
        need = int((m - keys.size) * 1.05) + 100
        u, v = rng.integers(0, n, need), rng.integers(0, n, need)
        keys = np.unique(np.concatenate([keys, (u * n + v)[u != v]]))
    keys = rng.permutation(keys)[:m]
    return keys // n, keys % n, rng.uniform(0.1, 1.0, m).astype(np.float32)


def stats_ms(values) -> dict:
    a = np.asarray(values, dtype=np.float64)
    return {"p50_ms": float(np.percentile(a, 50)), "p95_ms": float(np.percentile(a, 95)),
            "p99_ms": float(np.percentile(a, 99)), "mean_ms": float(a.mean()), "max_ms": float(a.max()),
            "min_ms": float(a.min())}


def run_recalls(space, queries, expect, passes: int = 1):
    """recall every query (passes times); returns {stage: [ms, ...]} incl. call_ms and rest_ms."""
    stages: dict = {}
    for _ in range(passes):
        for i in range(queries.shape[0]):
            t0 = time.perf_counter_ns()
            res = space.recall(queries[i], k=K)
            call = (time.perf_counter_ns() - t0) / 1e6
            if expect is not None and (len(res) == 0 or int(res.ids[0]) != int(expect[i])):
                sys.exit(f"\nCORRECTNESS FAILURE: recall {i} should rank memory {int(expect[i])} first "
                         f"(its query is that memory plus noise), got {res.ids[:3].tolist()}")
            t = res.timings
            for name, v in t.items():
                stages.setdefault(name, []).append(float(v))
            named = sum(float(v) for name, v in t.items() if name != "total_ms")
            if "total_ms" in t:
                stages.setdefault("rest_ms", []).append(float(t["total_ms"]) - named)
            stages.setdefault("call_ms", []).append(call)
    return stages


# ----------------------------------------------------------------- profilers

def _frame_name(frame: str) -> str:
    """'func (file.py:123)' -> 'func (file.py)'; native frames unchanged."""
    return re.sub(r":\d+\)$", ")", frame.strip())


def profile_pyspy(space, queries, passes: int, rate: int):
    """Sample this process with py-spy while recalling: (top rows, info) or raise RuntimeError."""
    exe = shutil.which("py-spy")
    if exe is None:
        raise RuntimeError("py-spy is not installed (pip install py-spy)")
    out = Path(tempfile.mkdtemp(prefix="engram-pyspy-")) / "stacks.txt"
    cmd = [exe, "record", "--pid", str(os.getpid()), "--rate", str(rate), "--native", "--format", "raw",
           "--output", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # py-spy prints "Sampling process ..." once it is attached
    t_end = time.time() + 10
    first = ""
    while time.time() < t_end and proc.poll() is None:
        first = proc.stdout.readline()
        if "Sampling" in first or "rror" in first:
            break
    if proc.poll() is not None or "Sampling" not in first:
        rest = proc.communicate(timeout=10)[0] if proc.poll() is not None else ""
        if proc.poll() is None:
            proc.kill()
        raise RuntimeError(f"py-spy could not attach: {(first + rest).strip()[:400]}")
    time.sleep(0.2)
    t0 = time.perf_counter()
    run_recalls(space, queries, None, passes)
    wall = time.perf_counter() - t0
    proc.send_signal(signal.SIGINT)
    try:
        tail = proc.communicate(timeout=30)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        raise RuntimeError("py-spy did not stop") from None
    if not out.exists():
        raise RuntimeError(f"py-spy wrote no samples: {tail.strip()[:400]}")
    self_t, total = Counter(), 0
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        if not any(RECALL_FRAME.match(f) for f in frames):
            continue
        c = int(count)
        total += c
        self_t[_frame_name(frames[-1])] += c
    shutil.rmtree(out.parent, ignore_errors=True)
    if total == 0:
        raise RuntimeError("py-spy saw no samples inside recall")
    top = [{"function": f, "self_samples": c, "self_pct": 100.0 * c / total} for f, c in self_t.most_common(TOP)]
    return top, {"tool": "py-spy", "command": " ".join(cmd[:1] + cmd[1:3] + ["<pid>"] + cmd[4:-2]),
                 "recall_samples": total, "rate_hz": rate, "wall_s": wall, "recalls": passes * queries.shape[0]}


def profile_cprofile(space, queries, passes: int):
    pr = cProfile.Profile()
    t0 = time.perf_counter()
    pr.enable()
    run_recalls(space, queries, None, passes)
    pr.disable()
    wall = time.perf_counter() - t0
    st = pstats.Stats(pr, stream=io.StringIO())
    total = sum(v[2] for v in st.stats.values())      # total self time of every function
    rows = sorted(st.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:TOP]
    top = []
    for (file, line, func), (cc, nc, tt, ct, _callers) in rows:
        where = f"{Path(file).name}:{line}" if file not in ("~", "") else "builtin"
        top.append({"function": f"{func} ({where})", "calls": nc, "self_s": tt, "cum_s": ct,
                    "self_pct": 100.0 * tt / total if total else 0.0})
    return top, {"tool": "cProfile", "total_self_s": total, "wall_s": wall, "recalls": passes * queries.shape[0]}


# ----------------------------------------------------------------- main

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="See the module docstring (benches/profile_harness.py) for the workload.")
    ap.add_argument("--quick", action="store_true", help="300 recalls instead of 1,000 (same space)")
    ap.add_argument("--memories", type=_common.parse_count, default=10_000, metavar="N", help="memories (default 10K)")
    ap.add_argument("--links", type=_common.parse_count, default=50_000, metavar="M", help="associations (default 50K)")
    ap.add_argument("--recalls", type=_common.parse_count, default=None, metavar="R",
                    help="timed recalls (default 1,000; 300 with --quick)")
    ap.add_argument("--profile", action="store_true",
                    help="then profile the recalls with py-spy (else cProfile): top 15 functions by self time")
    ap.add_argument("--profiler", choices=("auto", "py-spy", "cprofile"), default="auto",
                    help="with --profile: force one profiler (default auto: py-spy, else cProfile)")
    ap.add_argument("--profile-passes", type=int, default=3, metavar="P",
                    help="with --profile: passes over the queries while sampling (default 3)")
    ap.add_argument("--rate", type=int, default=1000, help="py-spy samples per second (default 1000)")
    ap.add_argument("--json", type=Path, metavar="PATH",
                    help="write the JSON here instead of benches/results/profile-<time>.json and profile-latest.json")
    args = ap.parse_args(argv)
    n, m = args.memories, args.links
    recalls = args.recalls or (300 if args.quick else 1000)
    wall0 = time.perf_counter()

    kern = ek.backend()
    info = _common.machine_info(kernels=f"{kern.name}/{kern.isa}", py_spy=_pyspy_version())
    workload = f"{_common.human(n)}-f16-{_common.human(m)}-links"
    print(f"engram profile harness: {n:,} memories ({DIM}-d, warm tier f16), {m:,} links, {recalls:,} recalls "
          f"(k={K}) through Engine(dim={DIM}, workers=0).space(...).recall")
    for line in _common.header_lines(info):
        print(line)
    print(f"  kernels: {kern.name}/{kern.isa} (engram.kernels.backend(); ENGRAM_KERNELS / ENGRAM_ISA choose another)")

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n, DIM), dtype=np.float32)
    src, dst, w = random_links(n, m, rng)
    qrng = np.random.default_rng(1)
    expect = qrng.integers(0, n, recalls)
    queries = vectors[expect] + NOISE * qrng.standard_normal((recalls, DIM), dtype=np.float32)

    setup = {}
    with engram.Engine(dim=DIM, workers=0) as eng:
        space = eng.space("bench")
        t = time.perf_counter()
        ids = space.remember(vectors, content=[f"memory {i}" for i in range(n)], tier="warm")
        setup["remember_ms"] = (time.perf_counter() - t) * 1e3
        t = time.perf_counter()
        space.link(ids[src], ids[dst], w)
        setup["link_ms"] = (time.perf_counter() - t) * 1e3
        t = time.perf_counter()
        live = space.compact()
        setup["compact_ms"] = (time.perf_counter() - t) * 1e3
        st = space.stats()
        print(f"  setup: remember {setup['remember_ms']:.0f} ms, link {setup['link_ms']:.0f} ms, "
              f"compact {setup['compact_ms']:.0f} ms; {st['memories']:,} memories, {live:,} live links "
              f"({st['csr_edges']:,} in the CSR), warm rows {st['warm_rows']:,}")

        # warm up (first calls fault in pages, build caches), then the timed run
        run_recalls(space, queries[:min(20, recalls)], expect[:min(20, recalls)])
        probe = space.recall(queries[0], k=K)
        spreads = bool((probe.origin != "seed").any())
        stages = run_recalls(space, queries, expect)
        print(f"  {recalls:,} recalls checked: each ranks its source memory first; recall "
              + ("returned spread results too" if spreads else "returned similarity results only (no spreading yet)"))

        # the floor: the kernel alone over a plain f16 copy of the same rows, public kernel API
        rows16 = vectors.astype(np.float16)
        kt = []
        for i in range(recalls):
            t0 = time.perf_counter_ns()
            kern.cosine_topk(queries[i], rows16, K)
            kt.append((time.perf_counter_ns() - t0) / 1e6)

        order = [s for s in stages if s not in ("total_ms", "rest_ms", "call_ms")] + ["rest_ms", "total_ms", "call_ms"]
        order = [s for s in order if s in stages]
        total_p50 = float(np.percentile(stages["total_ms"], 50)) if "total_ms" in stages else None
        print()
        hdr = f"{'stage':<12} {'P50 ms':>9} {'P95 ms':>9} {'P99 ms':>9} {'mean ms':>9} {'max ms':>9} {'% of total P50':>15}"
        print(hdr)
        print("-" * len(hdr))
        rows = []
        for name in order + ["kernel"]:
            vals = kt if name == "kernel" else stages[name]
            s = stats_ms(vals)
            share = 100 * s["p50_ms"] / total_p50 if total_p50 else None
            kind = "diagnostic" if name == "kernel" else "stage"
            row = {"key": _common.make_key("profile", "recall", workload, name), "stage": name, "kind": kind,
                   "samples": len(vals), **s, "share_of_total_p50_pct": share}
            if name == "kernel":
                row["call"] = f"engram.kernels.backend().cosine_topk(q, rows_f16 ({n}, {DIM}), {K})"
            rows.append(row)
            label = "kernel*" if name == "kernel" else name
            shtxt = f"{share:>14.0f}%" if share is not None and name not in ("total_ms", "call_ms") else f"{'':>15}"
            print(f"{label:<12} {s['p50_ms']:>9.3f} {s['p95_ms']:>9.3f} {s['p99_ms']:>9.3f} {s['mean_ms']:>9.3f} "
                  f"{s['max_ms']:>9.3f} {shtxt}")
        print("  rest_ms = total_ms - named stages; call_ms = wall time around recall(); kernel* = diagnostic: "
              "the scan alone via the public kernel API")
        print(f"  target (performance.md, recall + spread on this workload): P95 <= 1 ms; "
              f"here total P95 {stats_ms(stages['total_ms'])['p95_ms']:.3f} ms")

        prof = None
        if args.profile:
            print()
            prof = run_profile(args, space, queries)
    info["loadavg_at_end"] = _common.loadavg()

    wall = time.perf_counter() - wall0
    doc = {"bench": "profile", "quick": args.quick, "argv": sys.argv[1:], "wall_seconds": wall, "machine": info,
           "workload": {"memories": n, "dim": DIM, "tier": "warm (f16)", "links": m, "live_links": live,
                        "recalls": recalls, "k": K, "query": f"stored vector + {NOISE} x N(0,1) noise",
                        "recall_spreads": spreads, "engine": f"engram.Engine(dim={DIM}, workers=0)"},
           "setup": setup, "rows": rows, "profile": prof}
    outs = _common.write_results("profile", doc, args.json)
    print(f"\nwall time {wall:.1f} s; JSON: {', '.join(str(p) for p in outs)}")
    return 0


def _pyspy_version():
    exe = shutil.which("py-spy")
    if not exe:
        return None
    try:
        return subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def run_profile(args, space, queries) -> dict:
    passes = max(1, args.profile_passes)
    top, meta, fallback = None, None, None
    if args.profiler in ("auto", "py-spy"):
        try:
            top, meta = profile_pyspy(space, queries, passes, args.rate)
        except RuntimeError as e:
            if args.profiler == "py-spy":
                sys.exit(f"py-spy failed: {e}")
            fallback = str(e)
            print(f"py-spy unavailable here ({e}): falling back to cProfile, which sees only Python-level calls")
    if top is None:
        top, meta = profile_cprofile(space, queries, passes)
    meta["fallback_reason"] = fallback
    per = 1e3 * meta["wall_s"] / meta["recalls"]
    print(f"where the time goes in recall: {meta['tool']}, {meta['recalls']:,} recalls ({per:.2f} ms each under the profiler)"
          + (f", {meta['recall_samples']:,} samples at {meta['rate_hz']} Hz inside recall (native frames included)"
             if meta["tool"] == "py-spy" else f", {meta['total_self_s']:.2f} s of self time (profiler overhead included)"))
    print(f"top {TOP} functions by self time:")
    if meta["tool"] == "py-spy":
        print(f"  {'self %':>7} {'samples':>8}  function")
        for r in top:
            print(f"  {r['self_pct']:>6.1f}% {r['self_samples']:>8}  {r['function']}")
    else:
        print(f"  {'self %':>7} {'self s':>8} {'cum s':>8} {'calls':>8}  function")
        for r in top:
            print(f"  {r['self_pct']:>6.1f}% {r['self_s']:>8.3f} {r['cum_s']:>8.3f} {r['calls']:>8}  {r['function']}")
    return {**meta, "top": top}


if __name__ == "__main__":
    sys.exit(main())
