"""Helpers shared by the newer benches (stream.py, profile_harness.py) and tools/regress.py.

Not a bench. Conventions every bench follows (see benches/README.md):

* JSON in ``benches/results/<bench>-<UTC stamp>.json`` and ``<bench>-latest.json``
  (or only ``--json PATH``), holding ``machine`` and ``rows``.
* Every row has a stable ``key`` ("<bench>/<what>/<size>/.../<backend>"): the same
  measurement gets the same key in every run, so tools/regress.py can follow it.
  Numeric fields of a row become metrics named ``<key>/<field>``
  (nested dicts: ``<key>/<field>/<subkey>``).
"""
from __future__ import annotations

import datetime as dt
import gc
import json
import os
import platform
import re
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def slug(text) -> str:
    """A key component: '/' and whitespace become '-', nothing else changes."""
    return re.sub(r"[\s/]+", "-", str(text).strip())


def make_key(*parts) -> str:
    return "/".join(slug(p) for p in parts if p not in (None, ""))


def parse_count(text: str) -> int:
    """argparse type for counts: 10000, 10K, 1.5M."""
    import argparse
    t = text.strip().upper().replace("_", "")
    mult = {"K": 1_000, "M": 1_000_000}.get(t[-1:], 1)
    try:
        return int(float(t[:-1]) * mult) if mult > 1 else int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a count: {text!r} (use e.g. 10000, 10K, 1M)") from None


def human(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1_000 and n % 1_000 == 0:
        return f"{n // 1_000}K"
    return str(n)


def human_bytes(n: int) -> str:
    for unit, size in (("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return f"{n}B"


def loadavg():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _cache_bytes(level: int):
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    try:
        for idx in sorted(base.glob("index*")):
            if (idx / "level").read_text().strip() == str(level) and \
                    (idx / "type").read_text().strip() in ("Unified", "Data"):
                txt = (idx / "size").read_text().strip()
                return int(txt[:-1]) * {"K": 1024, "M": 1024 ** 2}[txt[-1]] if txt[-1] in "KM" else int(txt)
    except (OSError, ValueError, KeyError):
        pass
    return None


def _version(mod: str):
    try:
        from importlib.metadata import version
        return version(mod)
    except Exception:
        return None


def machine_info(**extra) -> dict:
    """CPU, cores, caches, ISAs, versions, git commit, date and load average."""
    import engram
    import engram.kernels as ek
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "?")
    except OSError:
        pass
    commit = None
    try:
        commit = subprocess.run(["git", "-C", str(HERE.parent), "describe", "--always", "--dirty"],
                                capture_output=True, text=True, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    info = {
        "cpu_model": cpu,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "l2_bytes": _cache_bytes(2),
        "l3_bytes": _cache_bytes(3),
        "cpu_isas": list(ek.cpu_isas()),
        "numpy": np.__version__,
        "numba": _version("numba"),
        "python": platform.python_version(),
        "engram": getattr(engram, "__version__", None),
        "git": commit,
        "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "loadavg_at_start": loadavg(),
    }
    info.update(extra)
    return info


def machine_summary(m: dict) -> str:
    """One line naming the machine kind (what a baseline is only valid on)."""
    l3 = m.get("l3_bytes")
    return (f"{m.get('cpu_model', '?')}; {m.get('cores', '?')} cores; "
            f"ISAs {'/'.join(m.get('cpu_isas') or ['?'])}; L3 {l3 // 2 ** 20 if l3 else '?'} MiB")


def header_lines(info: dict) -> list:
    lines = [f"  cpu: {machine_summary(info)}",
             f"  numpy {info['numpy']}; engram {info['engram']} ({info['git']}); python {info['python']}"]
    la = info.get("loadavg_at_start")
    if la:
        warn = "  <- other work is running: expect noise" if la[0] > 0.5 * (info.get("cores") or 1) else ""
        lines.append(f"  load average at start: {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}{warn}")
    return lines


def timeit(fn, min_repeats: int = 5, target_s: float = 0.3, max_repeats: int = 1000, warmup: int = 2):
    """Time fn() call by call (GC off) until >= min_repeats and ~target_s: (best_s, median_s, reps, all_s)."""
    for _ in range(warmup):
        fn()
    times = []
    gc_was = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        while len(times) < max_repeats and (len(times) < min_repeats or time.perf_counter() - start < target_s):
            t0 = time.perf_counter_ns()
            fn()
            times.append(time.perf_counter_ns() - t0)
    finally:
        if gc_was:
            gc.enable()
    s = [t / 1e9 for t in times]
    return min(s), statistics.median(s), len(s), s


def percentiles(values, ps=(50, 95, 99)) -> dict:
    a = np.asarray(values, dtype=np.float64)
    return {f"p{p}": float(np.percentile(a, p)) for p in ps}


def write_results(bench: str, doc: dict, json_path=None) -> list:
    """Write doc to results/<bench>-<UTC>.json and <bench>-latest.json (or only json_path)."""
    if json_path:
        outs = [Path(json_path)]
    else:
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        outs = [RESULTS / f"{bench}-{stamp}.json", RESULTS / f"{bench}-latest.json"]
    doc.setdefault("machine", {})["loadavg_at_end"] = loadavg()
    for p in outs:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(doc, indent=1) + "\n")
    return outs


def finish(bench: str, doc: dict, json_path, t0: float) -> list:
    """Stamp the wall time, write the results, and say where they went."""
    doc["wall_seconds"] = time.perf_counter() - t0
    outs = write_results(bench, doc, json_path)
    print(f"\nwall time {doc['wall_seconds']:.1f} s; JSON: {', '.join(map(str, outs))}")
    return outs


def settle_index(space, queries, k: int = 10, timeout: float = 300.0) -> None:
    """With an approximate index, recall ``queries`` until the owner's audit of the index
    has chosen its search breadth (engram/recall/audit.py), as in a space that has served
    for a while; call it after ``Engine.wait_for_index()``. Without an index: nothing."""
    if space.stats()["index"]["generation"] == 0:
        return
    end, at = time.monotonic() + timeout, 0
    while space.stats()["index"]["breadth"] is None:
        if time.monotonic() > end:
            raise RuntimeError(f"the index audit chose no breadth within {timeout:.0f} s")
        # every query in turn, not the same 64 again: the audit samples what it is offered,
        # and a handful of queries an HNSW breadth happens to answer well once made it choose
        # a breadth with recall@10 ~0.92 on the paragraphs (their R@10 0.360 against 0.385)
        for i in range(at, at + 64):
            space.recall(queries[i % len(queries)], k=k)
        at += 64
