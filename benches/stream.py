"""Streaming kernels: decay curves and CRC32C, engram's backends against numpy and the CRC32C packages.

Run from the repository root (engram installed, e.g. ``pip install -e .``):

    python benches/stream.py                 # decay over 1M pairs; crc32c 1 KiB, 64 KiB, 16 MiB, 256 B records
    python benches/stream.py --quick         # fewer repeats: a smoke test (< ~20 s)
    python benches/stream.py --n 10M         # decay over 10M pairs instead of 1M
    python benches/stream.py --json out.json # write the JSON there instead of benches/results/

Decay. ``out = strength * curve(age)`` over N = 1M (strength, age) pairs, float32:
strength uniform in [0, 1), age uniform in [0, 365) (days), from
``np.random.default_rng(0)``. Curves and parameters:

* exponential, tau = 30:                        s * exp(-age / 30)
* power, beta = 0.5:                            s * (1 + age) ** -0.5
* two_component, tau_fast = 1, tau_slow = 30, weight = 0.6:
                                                s * (0.6 exp(-age) + 0.4 exp(-age / 30))

engram rows, for every backend and ISA variant that loads (``engram.kernels.available()``):
``api`` is ``table.decay(strength, age, curve, **params)``, the public call, which
validates its input (finite, age >= 0: three passes over the data) before the kernel;
``internal`` is ``table._decay(s32, a32, kind, params)``, what the engine calls on data
it validated when it was stored. The ``numpy`` backend (engram's float64 oracle) runs
``api`` only.

Peers, measured in the same run, single-threaded: ``numpy f32`` is the same formula in
float32 numpy ufuncs writing into preallocated buffers (``out=``; its best case: no
temporaries), e.g. ``np.multiply(age, -1/tau, out=t); np.exp(t, out=t);
np.multiply(s, t, out=out)``; power is ``np.power(1 + age, -beta)``. ``numpy f64`` is
the same on float64 copies of the inputs (made outside the timing), output float64.
numpy's exp/log use its own SIMD code (SVML on AVX-512 machines), so numpy f32 is a
strong peer.

Correctness, before timing: every row's output must equal the float64 formula within
1e-5 relative (abs diff <= 1e-5 |ref| + 1e-30). A mismatch aborts the run.

CRC32C. Random bytes (``default_rng(0)``) in buffers of 1 KiB, 64 KiB and 16 MiB,
checksummed in one call each: GB/s = bytes / best time. And ``records``: 10,000
separate 256-byte ``bytes`` objects, one call each in a Python ``for`` loop, as a
write-ahead log checksums each record as it is written: reported as ns per call
(loop included; the ``python loop + len()`` row is the floor of such a loop: the
same loop calling ``len``). engram rows: ``api`` is ``table.crc32c(data)``, the
public call; ``internal`` is ``table._crc32c(data, 0)``. The ``numpy`` backend (a
byte-at-a-time Python oracle) runs only for buffers <= 64 KiB.

Peers: the ``crc32c`` PyPI package (``crc32c.crc32c(data)``, SSE4.2 hardware path when
``crc32c.hardware_based``) and ``google-crc32c`` (``google_crc32c.value(data)``, its C
extension when ``google_crc32c.implementation == "c"``), each when importable.
Correctness: every backend, both paths and both packages must return the same CRC on
every buffer and record (and the RFC 3720 check value on b"123456789").

Method. Each row is warmed up, then timed call by call (``perf_counter_ns``, GC off)
until it has >= 5 repeats (3 with --quick) and ~0.3 s (0.05 s with --quick), at most
2000 repeats; reported: best and median; rates and speed-ups use the best (speed-up =
peer best / this best, > 1 means faster than the peer). The machine is shared and
noisy: compare ratios inside one run.

Results: a table on stdout and JSON in benches/results/stream-<UTC time>.json and
stream-latest.json (or only --json PATH). Every row has a stable "key", e.g.
``stream/decay/exponential/1M/c-avx512/internal``, ``stream/crc32c/64KiB/crc32c-pkg``,
``stream/crc32c/records-256B/c-avx512/api``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

import engram.kernels as ek
from engram.kernels import reference
from engram.kernels.checks import decay_params

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

DEFAULT_N = 1_000_000
AGE_MAX = 365.0
CURVES = {
    "exponential": {"tau": 30.0},
    "power": {"beta": 0.5},
    "two_component": {"tau_fast": 1.0, "tau_slow": 30.0, "weight": 0.6},
}
DECAY_REL_TOL = 1e-5
CRC_SIZES = (1024, 64 * 1024, 16 * 1024 * 1024)
ORACLE_CRC_MAX = 64 * 1024
N_RECORDS = 10_000
RECORD_BYTES = 256
MAX_REPEATS = 2000


# ----------------------------------------------------------------- peers

def numpy_decay_fn(curve: str, params: dict, s, a):
    """The formula in numpy ufuncs with preallocated buffers (dtype of s and a)."""
    dt = s.dtype.type
    t = np.empty_like(s)
    u = np.empty_like(s)
    out = np.empty_like(s)
    if curve == "exponential":
        c = dt(-1.0 / params["tau"])

        def fn():
            np.multiply(a, c, out=t)
            np.exp(t, out=t)
            return np.multiply(s, t, out=out)
    elif curve == "power":
        e = dt(-params["beta"])

        def fn():
            np.add(a, dt(1.0), out=t)
            np.power(t, e, out=t)
            return np.multiply(s, t, out=out)
    else:
        cf, cs = dt(-1.0 / params["tau_fast"]), dt(-1.0 / params["tau_slow"])
        w, w1 = dt(params["weight"]), dt(1.0 - params["weight"])

        def fn():
            np.multiply(a, cf, out=t)
            np.exp(t, out=t)
            np.multiply(a, cs, out=u)
            np.exp(u, out=u)
            np.multiply(t, w, out=t)
            np.multiply(u, w1, out=u)
            np.add(t, u, out=t)
            return np.multiply(s, t, out=out)
    return fn


def crc_peers():
    """[(name, fn, note)] of the CRC32C packages that import, and [(name, why not)]."""
    found, missing = [], []
    try:
        import crc32c
        hw = getattr(crc32c, "hardware_based", None)
        found.append(("crc32c pkg", crc32c.crc32c,
                      f"crc32c {_common._version('crc32c')}, {'hardware (SSE4.2)' if hw else 'software'}"))
    except ImportError as e:
        missing.append(("crc32c pkg", f"not importable ({e}); pip install crc32c"))
    try:
        import google_crc32c
        found.append(("google-crc32c", google_crc32c.value,
                      f"google-crc32c {_common._version('google-crc32c')}, implementation {google_crc32c.implementation!r}"))
    except ImportError as e:
        missing.append(("google-crc32c", f"not importable ({e}); pip install google-crc32c"))
    return found, missing


# ----------------------------------------------------------------- checks

def check_decay(got, ref, what: str) -> float:
    got = np.asarray(got, dtype=np.float64)
    err = np.abs(got - ref)
    bad = err > DECAY_REL_TOL * np.abs(ref) + 1e-30
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        sys.exit(f"\nCORRECTNESS FAILURE in {what}: {int(bad.sum())} of {ref.size} values differ from the float64 "
                 f"formula by more than {DECAY_REL_TOL:g} relative; first at [{i}]: got {got[i]!r}, want {ref[i]!r}")
    nz = ref != 0
    return float((err[nz] / np.abs(ref[nz])).max()) if nz.any() else 0.0


# ----------------------------------------------------------------- output

class Table:
    def __init__(self, unit: str, peer_cols, col_titles):
        self.unit, self.peer_cols, self.col_titles = unit, peer_cols, col_titles
        self.hdr = (f"{'config':<26} {'row':<24} {'best':>10} {'median':>10} {unit:>9} "
                    + " ".join(f"{col_titles[c]:>9}" for c in peer_cols) + f" {'reps':>5}  check")

    def header(self):
        print(self.hdr)
        print("-" * len(self.hdr))

    def line(self, config, name, best_txt, med_txt, rate_txt, ratios, reps, check):
        rcols = " ".join(f"{ratios[p]:>9.2f}" if p in ratios else f"{'-':>9}" for p in self.peer_cols)
        print(f"{config:<26} {name:<24} {best_txt:>10} {med_txt:>10} {rate_txt:>9} {rcols} {reps:>5}  {check}",
              flush=True)


def fmt_time(seconds: float) -> str:
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3f} ms"
    if seconds >= 1e-6:
        return f"{seconds * 1e6:.2f} us"
    return f"{seconds * 1e9:.1f} ns"


# ----------------------------------------------------------------- main

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="See the module docstring (benches/stream.py) for the method.")
    ap.add_argument("--quick", action="store_true", help="fewer repeats (smoke test)")
    ap.add_argument("--n", type=_common.parse_count, default=DEFAULT_N, metavar="N",
                    help="(strength, age) pairs for decay (default 1M)")
    ap.add_argument("--json", type=Path, metavar="PATH",
                    help="write the JSON here instead of benches/results/stream-<time>.json and stream-latest.json")
    args = ap.parse_args(argv)
    min_rep, target_s = (3, 0.05) if args.quick else (5, 0.3)
    wall0 = time.perf_counter()

    peers_crc, missing_crc = crc_peers()
    info = _common.machine_info(**{p: _common._version(p) for p in ("crc32c", "google-crc32c")})
    backends, skipped = {}, {}
    for key, tab in ek.available().items():
        (backends if not isinstance(tab, Exception) else skipped)[key] = tab

    print(f"engram stream bench: decay over {_common.human(args.n)} pairs (3 curves); crc32c over "
          f"{', '.join(_common.human_bytes(b) for b in CRC_SIZES)} and {N_RECORDS:,} records of {RECORD_BYTES} B")
    for line in _common.header_lines(info):
        print(line)
    print(f"  backends: {', '.join(backends)}" + (f"; not loaded: {', '.join(f'{k} ({v})' for k, v in skipped.items())}" if skipped else ""))
    print(f"  repeats: >= {min_rep} and ~{target_s} s per row; rates and speed-ups from the best time\n")

    results = []

    def record(row):
        results.append(row)
        return row

    def run(fn):
        best, med, reps, _ = _common.timeit(fn, min_rep, target_s, MAX_REPEATS)
        return best, med, reps

    # ------------------------------------------------------------- decay
    n = args.n
    rng = np.random.default_rng(0)
    strength = rng.uniform(0.0, 1.0, n).astype(np.float32)
    age = rng.uniform(0.0, AGE_MAX, n).astype(np.float32)
    s64, a64 = strength.astype(np.float64), age.astype(np.float64)
    dpeers = ["numpy f32", "numpy f64"]
    dtab = Table("M elem/s", dpeers, {"numpy f32": "x np f32", "numpy f64": "x np f64"})
    print(f"decay: out = strength * curve(age), {_common.human(n)} float32 pairs; strength U[0,1), age U[0,{AGE_MAX:g}); "
          f"check: within {DECAY_REL_TOL:g} relative of the float64 formula")
    print("  numpy f32 / f64: the same formula in numpy ufuncs into preallocated buffers (its best case)")
    print("  api = table.decay(...) (validates: finite, age >= 0); internal = table._decay(...) (what the engine calls)\n")
    dtab.header()
    for curve, params in CURVES.items():
        kind, p = decay_params(curve, params)
        ref = reference.decay(strength, age, kind, p)
        config = f"{curve} {_common.human(n)}"
        peer_best = {}
        jobs = [("peer", "numpy f32", numpy_decay_fn(curve, params, strength, age), None),
                ("peer", "numpy f64", numpy_decay_fn(curve, params, s64, a64), None)]
        for key, tab in backends.items():
            jobs.append(("engram", key, lambda tab=tab: tab.decay(strength, age, curve, **params), "api"))
            if key != "numpy":
                jobs.append(("engram", key, lambda tab=tab: tab._decay(strength, age, kind, p), "internal"))
        for kind_, name, fn, path in jobs:
            err = check_decay(fn(), ref, f"decay {config} {name} {path or ''}")
            best, med, reps = run(fn)
            if kind_ == "peer":
                peer_best[name] = best
            ratios = {q: peer_best[q] / best for q in dpeers if q in peer_best}
            label = f"{name} {path}" if path else name
            row = record({"key": _common.make_key("stream", "decay", curve, _common.human(n), name, path),
                          "op": "decay", "config": config, "curve": curve, "params": params, "n": n,
                          "kind": kind_, "name": name, "path": path,
                          "best_ms": best * 1e3, "median_ms": med * 1e3, "repeats": reps,
                          "melem_s": n / best / 1e6, "ns_per_elem": best / n * 1e9,
                          "speedup_vs": ratios, "max_rel_err": err, "check": f"max rel err {err:.1e}"})
            dtab.line(config, label, fmt_time(best), fmt_time(med), f"{row['melem_s']:.0f}", ratios, reps, row["check"])
        print()

    # ------------------------------------------------------------- crc32c
    cpeers = [pname for pname, _, _ in peers_crc]
    ctitles = {"crc32c pkg": "x crc32c", "google-crc32c": "x google"}
    print("crc32c: " + "; ".join(f"{pname}: {note}" for pname, _, note in peers_crc)
          + ("; " if peers_crc and missing_crc else "") + "; ".join(f"{m}: skipped, {why}" for m, why in missing_crc))
    print("  api = table.crc32c(data); internal = table._crc32c(data, 0); check: every row equal (the RFC 3720 check\n"
          "  value on b'123456789' first)\n")
    check_value = 0xE3069283
    for key, tab in backends.items():
        got = tab.crc32c(b"123456789")
        if got != check_value:
            sys.exit(f"\nCORRECTNESS FAILURE: {key} crc32c(b'123456789') = {got:#010x}, want {check_value:#010x}")
    for pname, fn, _ in peers_crc:
        if fn(b"123456789") != check_value:
            sys.exit(f"\nCORRECTNESS FAILURE: {pname}(b'123456789') = {fn(b'123456789'):#010x}")

    ctab = Table("GB/s", cpeers, ctitles)
    ctab.header()
    crng = np.random.default_rng(0)
    for size in CRC_SIZES:
        buf = crng.integers(0, 256, size, dtype=np.uint8).tobytes()
        config = f"buffer {_common.human_bytes(size)}"
        want = None
        peer_best = {}
        jobs = [("peer", pname, (lambda fn=fn: fn(buf)), None) for pname, fn, _ in peers_crc]
        for key, tab in backends.items():
            if key == "numpy" and size > ORACLE_CRC_MAX:
                continue
            jobs.append(("engram", key, lambda tab=tab: tab.crc32c(buf), "api"))
            if key != "numpy":
                jobs.append(("engram", key, lambda tab=tab: tab._crc32c(buf, 0), "internal"))
        for kind_, name, fn, path in jobs:
            got = fn()
            if want is None:
                want, check = got, "reference"
            elif got != want:
                sys.exit(f"\nCORRECTNESS FAILURE in crc32c {config} {name} {path or ''}: {got:#010x}, want {want:#010x}")
            else:
                check = "equal"
            oracle = name == "numpy"          # a Python byte loop: few repeats
            best, med, reps, _ = _common.timeit(fn, 3 if oracle else min_rep, 0.05 if oracle else target_s,
                                                MAX_REPEATS, warmup=1 if oracle else 2)
            if kind_ == "peer":
                peer_best[name] = best
            ratios = {q: peer_best[q] / best for q in cpeers if q in peer_best}
            label = f"{name} {path}" if path else name
            row = record({"key": _common.make_key("stream", "crc32c", _common.human_bytes(size), name, path),
                          "op": "crc32c", "config": config, "bytes": size, "kind": kind_, "name": name, "path": path,
                          "best_us": best * 1e6, "median_us": med * 1e6, "repeats": reps,
                          "gb_s": size / best / 1e9, "speedup_vs": ratios, "crc": f"{got:#010x}", "check": check})
            ctab.line(config, label, fmt_time(best), fmt_time(med), f"{row['gb_s']:.2f}", ratios, reps, check)
        print()

    # records: one call per 256-byte record, in a Python loop
    rtab = Table("ns/call", cpeers, ctitles)
    print(f"crc32c records: {N_RECORDS:,} separate {RECORD_BYTES}-byte bytes objects, one call each in a Python for-loop "
          f"(a WAL's pattern); time per call, loop included")
    rtab.header()
    raw = crng.integers(0, 256, N_RECORDS * RECORD_BYTES, dtype=np.uint8).tobytes()
    recs = [raw[i:i + RECORD_BYTES] for i in range(0, len(raw), RECORD_BYTES)]
    config = f"records {RECORD_BYTES}B x{N_RECORDS // 1000}K"
    want = None

    def loop_of(f):
        def fn():
            for r in recs:
                f(r)
        return fn

    def crcs_of(f):
        return [f(r) for r in recs]

    jobs = [("diagnostic", "python loop + len()", len, None)]
    jobs += [("peer", pname, fn, None) for pname, fn, _ in peers_crc]
    for key, tab in backends.items():
        if key == "numpy":
            continue
        jobs.append(("engram", key, tab.crc32c, "api"))
        jobs.append(("engram", key, lambda r, tab=tab: tab._crc32c(r, 0), "internal"))
    peer_best = {}
    for kind_, name, f, path in jobs:
        if kind_ == "diagnostic":
            check = "-"
        else:
            got = crcs_of(f)
            if want is None:
                want, check = got, "reference"
            elif got != want:
                bad = next(i for i, (x, y) in enumerate(zip(got, want)) if x != y)
                sys.exit(f"\nCORRECTNESS FAILURE in crc32c {config} {name} {path or ''}: record {bad}: "
                         f"{got[bad]:#010x}, want {want[bad]:#010x}")
            else:
                check = "equal"
        best, med, reps = run(loop_of(f))
        per_call = best / N_RECORDS
        if kind_ == "peer":
            peer_best[name] = per_call
        ratios = {q: peer_best[q] / per_call for q in cpeers if q in peer_best} if kind_ != "diagnostic" else {}
        label = f"{name} {path}" if path else name
        row = record({"key": _common.make_key("stream", "crc32c", f"records-{RECORD_BYTES}B", name, path),
                      "op": "crc32c-records", "config": config, "bytes": RECORD_BYTES, "records": N_RECORDS,
                      "kind": kind_, "name": name, "path": path,
                      "ns_per_call": per_call * 1e9, "median_ns_per_call": med / N_RECORDS * 1e9,
                      "loop_best_ms": best * 1e3, "repeats": reps,
                      "gb_s": RECORD_BYTES / per_call / 1e9, "speedup_vs": ratios, "check": check})
        rtab.line(config, label, f"{per_call * 1e9:.1f} ns", f"{med / N_RECORDS * 1e9:.1f} ns", f"{per_call * 1e9:.1f}",
                  ratios, reps, check)
    print()

    wall = time.perf_counter() - wall0
    doc = {"bench": "stream", "quick": args.quick, "argv": sys.argv[1:], "wall_seconds": wall,
           "min_repeats": min_rep, "target_seconds": target_s, "machine": info,
           "skipped_backends": {k: str(v) for k, v in skipped.items()},
           "decay": {"n": n, "strength": "U[0,1) f32", "age": f"U[0,{AGE_MAX:g}) f32", "curves": CURVES,
                     "rel_tol": DECAY_REL_TOL,
                     "peers": "numpy ufuncs into preallocated buffers, f32 and f64 (inputs converted outside timing)"},
           "crc32c": {"sizes": list(CRC_SIZES), "records": N_RECORDS, "record_bytes": RECORD_BYTES,
                      "peers": {pname: note for pname, _, note in peers_crc},
                      "missing_peers": dict(missing_crc)},
           "rows": results}
    outs = _common.write_results("stream", doc, args.json)
    print(f"wall time {wall:.1f} s; JSON: {', '.join(str(p) for p in outs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
