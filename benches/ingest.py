"""Durable streaming ingest: achieved rate, acknowledgement latency, CPU, rejections, the
bare append + fdatasync limit, recall during ingest, overload and memory per observation.

Run from the repository root (engram built in place, e.g. ``python setup.py build_ext --inplace``):

    python benches/ingest.py                 # 10 s per point (about 7 min)
    python benches/ingest.py --quick         # 2.5 s per point, smaller memory run (about 2 min)
    python benches/ingest.py --parts ramp bare   # only some parts
    python benches/ingest.py --dir /mnt/ssd  # where the engines' logs go (default: a temporary directory)
    python benches/ingest.py --json out.json # write the JSON there only

Every point opens a fresh ``engram.Engine(path=..., durability="group", workers=0)`` in a
new directory under ``--dir``, streams into one space, closes it (untimed) and deletes
the directory. A **producer** thread per stream puts batches (``st.put(V, tier=...)``,
random f32 vectors from a pool of 16 batches); a **waiter** thread per stream calls
``st.wait(seqs[-1])`` for every accepted batch, in put order: ack latency = time from
the put to that wait returning (applied and fdatasync'ed). Paced producers put at
``target`` observations/s (on schedule; a put that finds the lane full waits the
``retry_after`` it is given and tries the same batch again, counting the rejection);
``max`` points put as fast as they can with the same retry rule. **achieved** =
acknowledged observations / (last ack - first put); CPU % = process user + system time /
wall time (200% = both cores of this machine).

Parts (``--parts``): ``ramp`` (targets 10K/50K/100K/200K + max at dim 384 and 768,
batch 500, 1 stream, hot tier); ``steady`` (per dim: ``--warmup`` seconds of unpaced
ingest into one engine, untimed, so checkpoints have let log segments go and the log
writes into recycled files, then its max point); ``bare`` (the limit: os.pwrite +
os.fdatasync of one batch's log record size, n*dim*4 + 48 bytes, per group, in the same
directory, right after the ramp's max point and the steady point of the same dim, in
three ways (BARE_MODES): over a 1 GiB file whose blocks were written beforehand (as the
log in recycled segments), into fresh preallocated 64 MiB files (as the log in new
segments), and appending to a plain file; engram's max as a percentage of each); ``pages``
(CPU per 4 KB page of writing 768 KB batches into a /dev/shm file, over pages written
before and into new ones, ``--pages-gib`` of them: what the ingest worker pays for every
table page it fills, which the bare loops never pay); ``sweep`` (max rate with
ingest_workers 1 vs 2 (2 streams), put batch 10..1000, normal-lane capacity 1K..100K);
``checkpoint`` (max rate with the default checkpoint_mb=256 and with checkpoints off for the run);
``recall`` (20K memories + 100K links preloaded, 10 recalls/s with spreading, alone and
while ingesting at 25K, 50K, min(100K, 90% of the measured max) and 150K); ``overload`` (150% of the
measured max, rejected batches dropped, then flush: len(space) must equal the accepted
count); ``memory`` (768-d, tier warm: RSS and /dev/shm per observation, at 1M observations
by default: a smaller count scaled up would miss a table growth step near 1M).

Results: tables on stdout and JSON in benches/results/ingest-<UTC time>.json and
ingest-latest.json (or only --json PATH); keys like ``ingest/ramp/384/100K``.
"""
from __future__ import annotations

import argparse
import os
import queue
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

import engram
from engram.errors import OverloadError
from engram.store.wal import format as wal_format

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

RECORD_HEADER = 48
TARGETS = (10_000, 50_000, 100_000, 200_000)


def pcts(lat_s) -> dict:
    if not lat_s:
        return {"p50_ms": None, "p99_ms": None, "p999_ms": None}
    a = np.asarray(lat_s) * 1e3
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
            "p999_ms": float(np.percentile(a, 99.9))}


def rss() -> dict:
    out = {}
    with open("/proc/self/status") as f:
        for ln in f:
            if ln.startswith(("VmRSS", "RssAnon", "RssFile", "RssShmem")):
                k, v = ln.split(":")
                out[k] = int(v.split()[0]) * 1024
    return out


def shm_bytes(name: str) -> dict:
    size = blocks = files = 0
    for e in os.scandir("/dev/shm"):
        if name in e.name:
            st = e.stat()
            size, blocks, files = size + st.st_size, blocks + st.st_blocks * 512, files + 1
    return {"size": size, "allocated": blocks, "files": files}


class Run:
    """One engine in a fresh directory, its streams, producers, waiters and an optional recall thread."""

    def __init__(self, root, dim, streams=1, ingest_workers=1, capacity=50_000, ingest_batch=500,
                 checkpoint_mb=256.0):
        self.dir = tempfile.mkdtemp(prefix="ingest-", dir=root)
        self.eng = engram.Engine(path=self.dir, dim=dim, durability="group", workers=0,
                                 ingest_workers=ingest_workers, lanes={"normal": capacity},
                                 ingest_batch=ingest_batch, checkpoint_mb=checkpoint_mb)
        self.dim = dim
        self.mem = self.eng.space("bench")
        self.streams = [self.mem.stream(lane="normal") for _ in range(streams)]

    def close(self) -> float:
        t0 = time.perf_counter()
        self.eng.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        return time.perf_counter() - t0

    def ingest(self, seconds, target=None, batch=500, tier="hot", retry=True, recall_queries=None):
        """Stream for ``seconds``; target None = as fast as possible. Returns a row (dict)."""
        rng = np.random.default_rng(len(self.mem))
        pool = [rng.standard_normal((batch, self.dim), dtype=np.float32) for _ in range(16)]
        ns = len(self.streams)
        lock = threading.Lock()
        tot = {"accepted": 0, "rejected": 0, "rejected_puts": 0, "acked": 0}
        lat, last_ack, recall_lat, recall_flags = [], [0.0], [], [0, 0]
        stop = threading.Event()

        def producer(st, q, k):
            interval = batch * ns / target if target else 0.0
            nxt = t0 + k * interval / ns
            i = 0
            while True:
                now = time.perf_counter()
                if now >= t_end:
                    break
                if target:
                    if nxt > now:
                        time.sleep(nxt - now)
                    elif now - nxt > 1.0:        # more than 1 s behind: do not burst to catch up
                        nxt = now
                    nxt += interval
                while True:
                    tp = time.perf_counter()
                    try:
                        seqs = st.put(pool[i % 16], tier=tier)
                    except OverloadError as e:
                        with lock:
                            tot["rejected"] += batch
                            tot["rejected_puts"] += 1
                        if not retry:
                            break
                        time.sleep(min(e.retry_after, 0.05))
                        if time.perf_counter() >= t_end:
                            break
                        continue
                    q.put((int(seqs[-1]), tp))
                    with lock:
                        tot["accepted"] += batch
                    break
                i += 1
            q.put(None)

        def waiter(st, q):
            while (item := q.get()) is not None:
                seq, tp = item
                st.wait(seq)
                t = time.perf_counter()
                with lock:
                    lat.append(t - tp)
                    tot["acked"] += batch
                    last_ack[0] = max(last_ack[0], t)

        def recaller():
            nxt = time.perf_counter()
            qi = 0
            while not stop.is_set():
                nxt += 0.1
                q = recall_queries[qi % len(recall_queries)]
                qi += 1
                t = time.perf_counter()
                res = self.mem.recall(q, k=10)
                recall_lat.append(time.perf_counter() - t)
                recall_flags[0] += bool(res.fallback)
                recall_flags[1] += bool(res.partial)
                time.sleep(max(nxt - time.perf_counter(), 0))

        cpu0 = os.times()
        t0 = time.perf_counter()
        t_end = t0 + seconds
        workers = []
        for k, st in enumerate(self.streams if batch > 0 else []):
            q = queue.SimpleQueue()
            workers += [threading.Thread(target=producer, args=(st, q, k)),
                        threading.Thread(target=waiter, args=(st, q))]
        rec = threading.Thread(target=recaller) if recall_queries is not None else None
        for t in workers + ([rec] if rec else []):
            t.start()
        for t in workers:
            t.join()
        if rec:
            time.sleep(max(t_end - time.perf_counter(), 0))
            stop.set()
            rec.join()
        wall = time.perf_counter() - t0
        cpu1 = os.times()
        cpu = (cpu1.user - cpu0.user + cpu1.system - cpu0.system) / wall * 100
        span = (last_ack[0] - t0) if last_ack[0] else wall
        row = {"dim": self.dim, "batch": batch, "streams": ns, "tier": tier, "seconds": seconds,
               "target": target, "accepted": tot["accepted"], "acked": tot["acked"],
               "rejected": tot["rejected"], "rejected_puts": tot["rejected_puts"],
               "achieved": tot["acked"] / span if tot["acked"] else 0.0,
               "drain_s": max(span - seconds, 0.0), "cpu_pct": cpu, "acks": len(lat),
               **{f"ack_{k}": v for k, v in pcts(lat).items()}}
        if recall_queries is not None:
            row.update({f"recall_{k}": v for k, v in pcts(recall_lat).items()})
            row.update({"recalls": len(recall_lat), "recall_fallbacks": recall_flags[0],
                        "recall_partial": recall_flags[1]})
        st = self.eng.ingest_stats()
        row["engine"] = {k: st.get(k) for k in ("applied", "batches", "rejected", "stolen", "rate")}
        return row


BARE_MODES = {
    "written": "one 1 GiB file whose blocks were written (and synced) before the clock starts, "
               "overwritten round and round: what the log does in recycled segments",
    "fresh": "a new posix_fallocate'd 64 MiB file whenever one is full: what the log does in new segments",
    "append": "one plain file grown by every write (no preallocation): append + fdatasync as such",
}


def bare_loop(root, payload: int, seconds: float, mode: str = "written") -> dict:
    """os.pwrite + os.fdatasync of ``payload`` bytes per group, ``mode`` one of BARE_MODES."""
    size = (64 << 20) if mode == "fresh" else (1 << 30)
    path = os.path.join(root, "bare.log")
    buf = np.random.default_rng(0).integers(0, 256, payload, dtype=np.uint8).tobytes()

    def made():
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        if mode == "fresh":
            os.posix_fallocate(fd, 0, size)
        elif mode == "written":             # untimed: every block written once, then out of the cache
            chunk = bytes(16 << 20)
            for at in range(0, size, len(chunk)):
                os.pwrite(fd, chunk, at)
            os.fsync(fd)
            os.posix_fadvise(fd, 0, size, os.POSIX_FADV_DONTNEED)
        os.fsync(fd)
        return fd

    fd = made()
    try:
        pos, groups, lat = 0, 0, []
        cpu0 = time.thread_time()
        t0 = time.perf_counter()
        while (t := time.perf_counter()) - t0 < seconds:
            if pos + payload > size:
                if mode == "fresh":
                    os.close(fd)
                    os.unlink(path)
                    fd = made()
                pos = 0
            os.pwrite(fd, buf, pos)
            os.fdatasync(fd)
            lat.append(time.perf_counter() - t)
            pos += payload
            groups += 1
        wall = time.perf_counter() - t0
        cpu = time.thread_time() - cpu0
    finally:
        os.close(fd)
        os.unlink(path)
    return {"payload_bytes": payload, "groups": groups, "groups_s": groups / wall, "mode": mode,
            "mb_s": groups * payload / wall / 1e6, "cpu_pct": 100 * cpu / wall, **{f"sync_{k}": v for k, v in pcts(lat).items()}}


def page_cost(gib: float, chunk_mib: int = 512) -> dict:
    """CPU per 4 KB page of putting 768 KB batches into a /dev/shm file (``os.pwrite``, as the
    ingest worker writes table rows): over pages written once already, and into new pages,
    chunk by chunk, for ``gib`` GiB. Under a hypervisor that backs guest memory lazily (and
    takes freed memory back) the first chunks reuse recently freed memory and the later ones
    show what never-used memory costs; on a machine whose memory is backed the two agree."""
    batch = 768 << 10
    per_chunk = (chunk_mib << 20) // batch
    pages = per_chunk * batch / 4096
    buf = np.random.default_rng(0).integers(0, 256, batch, dtype=np.uint8).tobytes()
    fd, path = tempfile.mkstemp(prefix="engram-pages-", dir="/dev/shm")
    try:
        def chunk(first: int) -> float:
            t = time.thread_time()
            for i in range(first, first + per_chunk):
                os.pwrite(fd, buf, i * batch)
            return (time.thread_time() - t) / pages * 1e6
        new = [chunk(k * per_chunk) for k in range(max(int(gib * 1024 / chunk_mib), 2))]
        written = chunk(0)
    finally:
        os.close(fd)
        os.unlink(path)
    return {"chunk_mib": chunk_mib, "written_us_page": written, "new_us_page_by_chunk": new,
            "new_us_page_first": new[0], "new_us_page_last": new[-1], "new_us_page_max": max(new)}


def show(row: dict, label: str) -> None:
    f = (lambda v, spec: format(v, spec) if v is not None else "-")
    tgt = _common.human(row["target"]) if row.get("target") else "max"
    print(f"{label:<28} {tgt:>6} {row['achieved'] / 1e3:>9.1f}K {f(row['ack_p50_ms'], '8.1f')} "
          f"{f(row['ack_p99_ms'], '8.1f')} {f(row['ack_p999_ms'], '8.1f')} {row['cpu_pct']:>6.0f}% "
          f"{row['rejected']:>10,} {row['drain_s']:>6.2f}"
          + (f"  recall P50 {row['recall_p50_ms']:.2f} P99 {row['recall_p99_ms']:.2f} ms "
             f"(fb {row['recall_fallbacks']}, part {row['recall_partial']})" if "recall_p50_ms" in row else ""),
          flush=True)


def plot(rows, path: Path) -> None:
    """Achieved ingest rate (x) against recall P99 and P50 (y), from the recall part's rows."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    pts = sorted(((r["achieved"] / 1e3, r["recall_p50_ms"], r["recall_p99_ms"], r.get("target") or 0)
                  for r in rows if r.get("key", "").startswith("ingest/recall/") and r.get("recall_p99_ms")),
                 key=lambda p: p[3])        # in the order of the offered rate (an overloaded point achieves less)
    if not pts:
        print("no recall rows: no plot")
        return
    x, p50, p99, tg = zip(*pts)
    fig, ax = plt.subplots(figsize=(6.4, 4))
    ax.plot(x, p99, "o-", label="recall P99")
    ax.plot(x, p50, "s--", label="recall P50")
    for xi, yi, t in zip(x, p99, tg):
        ax.annotate(f"target {t / 1e3:.0f}K" if t else "no ingest", (xi, yi), textcoords="offset points",
                    xytext=(4, 6), fontsize=8)
    ax.axhline(20, color="grey", lw=0.8, ls=":", label="target P99 20 ms")
    ax.set_xlabel("achieved durable ingest (K observations/s, 384-d, group commit)")
    ax.set_yscale("log")
    ax.set_ylabel("recall latency (ms, log scale)")
    ax.set_title("Recall (k=10, spreading, 20K memories) at 10/s during ingest", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"plot: {path}")


HEAD = (f"{'point':<28} {'target':>6} {'achieved':>10} {'ack P50':>8} {'ack P99':>8} {'P99.9':>8} "
        f"{'CPU':>7} {'rejected':>10} {'drain':>6}\n" + "-" * 104)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="See the module docstring (benches/ingest.py) for the method.")
    parts_all = ["ramp", "steady", "bare", "pages", "sweep", "checkpoint", "recall", "overload", "memory"]
    ap.add_argument("--quick", action="store_true", help="2.5 s per point, 50K observations for memory")
    ap.add_argument("--seconds", type=float, help="seconds per point (default 10; 2.5 with --quick)")
    ap.add_argument("--parts", nargs="+", choices=parts_all, default=parts_all)
    ap.add_argument("--dims", type=int, nargs="+", default=[384, 768])
    ap.add_argument("--warmup", type=float, default=20.0, help="seconds of unpaced ingest before the steady point")
    ap.add_argument("--pages-gib", type=float, default=6.0,
                    help="GiB of new /dev/shm pages the pages part writes (it must outrun recently freed memory)")
    ap.add_argument("--memory-n", type=_common.parse_count, help="observations for the memory part (1M; 50K quick)")
    ap.add_argument("--dir", help="where the engines' directories go (default: the system temporary directory)")
    ap.add_argument("--json", type=Path, metavar="PATH")
    ap.add_argument("--plot", type=Path, metavar="PNG", help="also draw achieved ingest rate vs recall P99 (matplotlib)")
    args = ap.parse_args(argv)
    secs = args.seconds or (2.5 if args.quick else 10.0)
    mem_n = args.memory_n or (50_000 if args.quick else 1_000_000)
    root = tempfile.mkdtemp(prefix="engram-ingest-", dir=args.dir)
    wall0 = time.perf_counter()
    info = _common.machine_info(dir=root)
    print(f"engram ingest bench: durability 'group', {secs:g} s per point, dirs under {root}")
    for line in _common.header_lines(info):
        print(line)
    rows = []

    def point(key, label, row, **extra):
        row.update({"key": key, **extra})
        rows.append(row)
        show(row, label)
        return row

    def one(key, label, dim, seconds=secs, close=True, run_kw=None, **kw):
        r = Run(root, dim, **(run_kw or {}))
        row = r.ingest(seconds, **kw)
        row["close_s"] = r.close() if close else None
        return point(key, label, row, **(run_kw or {}))

    maxrate, steadyrate = {}, {}

    def bare(dim):
        for mode in BARE_MODES:
            b = bare_loop(root, 500 * dim * 4 + RECORD_HEADER, min(secs, 5.0), mode)
            b["obs_s"] = b["groups_s"] * 500
            b["key"] = _common.make_key("ingest", "bare" if mode == "written" else f"bare-{mode}", dim, "b500")
            b["dim"] = dim
            if dim in maxrate:
                b["engram_max_obs_s"] = maxrate[dim]
                b["engram_pct_of_bare"] = 100 * maxrate[dim] / b["obs_s"]
            if dim in steadyrate:
                b["engram_steady_obs_s"] = steadyrate[dim]
                b["engram_steady_pct_of_bare"] = 100 * steadyrate[dim] / b["obs_s"]
            rows.append(b)
            print(f"  bare {mode} {dim}-d: {b['payload_bytes']:,} "
                  f"B/group: {b['groups_s']:.0f} groups/s = {b['obs_s'] / 1e3:.0f}K obs/s ({b['mb_s']:.0f} MB/s), "
                  f"CPU {b['cpu_pct']:.0f}%, sync P50 {b['sync_p50_ms']:.2f} ms, P99 {b['sync_p99_ms']:.2f} ms"
                  + (f"; engram max = {b['engram_pct_of_bare']:.0f}% of it" if "engram_pct_of_bare" in b else "")
                  + (f"; engram steady = {b['engram_steady_pct_of_bare']:.0f}% of it"
                     if "engram_steady_pct_of_bare" in b else ""),
                  flush=True)

    def steady(dim):
        r = Run(root, dim)
        r.ingest(args.warmup)
        row = r.ingest(secs)
        segs = [p for p in Path(r.dir, "wal").iterdir() if p.suffix == ".wal"]
        flags = []
        for p in segs:
            with open(p, "rb") as f:
                flags.append(wal_format.parse_segment_header(f.read(wal_format.SEGMENT_HEADER_SIZE))[3])
        row["log"] = {"segments": len(segs), "recycled_segments": sum(bool(x & wal_format.RECYCLED_FILE) for x in flags)}
        row["close_s"] = r.close()
        steadyrate[dim] = row["achieved"]
        point(_common.make_key("ingest", "steady", dim, "max"), f"steady {dim}-d", row, warmup_s=args.warmup)
        print(f"  log: {row['log']['segments']} segments, {row['log']['recycled_segments']} of them in recycled files")

    try:
        if "ramp" in args.parts:
            print("\nramp: 1 stream, batch 500, tier hot, lane capacity 50K, ingest_workers 1"
                  + ("; the bare loop right after each dim's max point" if "bare" in args.parts else "")
                  + f"\n{HEAD}")
            for dim in args.dims:
                for tgt in (*TARGETS, None):
                    row = one(_common.make_key("ingest", "ramp", dim, _common.human(tgt) if tgt else "max"),
                              f"ramp {dim}-d", dim, target=tgt)
                    if tgt is None:
                        maxrate[dim] = row["achieved"]
                if "steady" in args.parts:
                    steady(dim)
                if "bare" in args.parts:    # next to the point it is compared with: the disk is shared
                    bare(dim)
        elif "steady" in args.parts or "bare" in args.parts:
            print(f"\nsteady: {args.warmup:g} s of unpaced ingest first (checkpoints let segments go, and the log "
                  f"reuses them), then the max point; then the bare loops\n{HEAD}")
            for dim in args.dims:
                if "steady" in args.parts:
                    steady(dim)
                if "bare" in args.parts:
                    bare(dim)
        if "pages" in args.parts:
            pc = page_cost(args.pages_gib)
            row = {"key": _common.make_key("ingest", "pages", "shm"), **pc}
            for dim in args.dims:       # a hot row is dim x 4 bytes; the worker writes each once
                row[f"table_us_obs_{dim}"] = pc["new_us_page_max"] * dim * 4 / 4096
                if dim in steadyrate:
                    row[f"table_cpu_share_at_steady_{dim}"] = row[f"table_us_obs_{dim}"] * steadyrate[dim] / 1e6
            rows.append(row)
            print(f"\npages: CPU per 4 KB page of pwrite into /dev/shm, 768 KB batches, {args.pages_gib:g} GiB: "
                  f"pages written before {pc['written_us_page']:.2f} us; new pages, by {pc['chunk_mib']} MiB: "
                  + " ".join(f"{x:.1f}" for x in pc["new_us_page_by_chunk"]) + " us")
            for dim in args.dims:
                print(f"  {dim}-d: new table pages cost {row[f'table_us_obs_{dim}']:.2f} us of the ingest worker "
                      f"per observation at the dearest"
                      + (f"; at the steady rate that is {100 * row[f'table_cpu_share_at_steady_{dim}']:.0f}% of a vCPU"
                         if dim in steadyrate else ""))
        if "sweep" in args.parts:
            print(f"\nsweeps at 384-d, max rate (unpaced, retry on overload), tier hot\n{HEAD}")
            for w in (1, 2):
                one(_common.make_key("ingest", "sweep", "workers", w), f"ingest_workers {w}, 2 streams", 384,
                    run_kw={"ingest_workers": w, "streams": 2})
            for b in (10, 50, 100, 500, 1000):
                one(_common.make_key("ingest", "sweep", "batch", b), f"put batch {b}", 384, batch=b,
                    run_kw={"ingest_batch": max(b, 500)})
            for cap in (1_000, 10_000, 100_000):
                one(_common.make_key("ingest", "sweep", "capacity", _common.human(cap)),
                    f"lane capacity {_common.human(cap)}", 384, run_kw={"capacity": cap})
        if "checkpoint" in args.parts:
            print(f"\ncheckpoints: max rate at 384-d, checkpoint_mb 256 (default) vs 100000 (none in the run)\n{HEAD}")
            for mb in (256, 100_000):
                one(_common.make_key("ingest", "checkpoint", mb), f"checkpoint_mb {mb}", 384,
                    run_kw={"checkpoint_mb": float(mb)})
        base = maxrate.get(384)
        if "recall" in args.parts:
            tgt = int(min(100_000, 0.9 * base)) if base else 100_000
            print(f"\nrecall: 20K memories (384-d, warm) + 100K links, 10 recalls/s (k=10, spreading, budget 10 ms); "
                  f"ingest targets 25K, 50K, {tgt / 1e3:.0f}K, 150K\n{HEAD}")
            r = Run(root, 384)
            rng = np.random.default_rng(1)
            pre = rng.standard_normal((20_000, 384), dtype=np.float32)
            ids = r.mem.remember(pre, tier="warm")
            src, dst = rng.integers(0, 20_000, 100_000), rng.integers(0, 20_000, 100_000)
            keep = src != dst
            r.mem.link(ids[src[keep]], ids[dst[keep]], rng.uniform(0.1, 1.0, int(keep.sum())))
            r.mem.compact()
            qs = [pre[i] + 0.1 * rng.standard_normal(384, dtype=np.float32) for i in rng.integers(0, 20_000, 200)]
            point(_common.make_key("ingest", "recall", "idle"), "recall, no ingest", r.ingest(secs, batch=0,
                                                                                          recall_queries=qs))
            for t in sorted({25_000, 50_000, tgt, 150_000}):
                point(_common.make_key("ingest", "recall", "during", _common.human(t) if t % 1000 == 0 else t),
                      "recall during ingest", r.ingest(secs, target=t, recall_queries=qs))
            r.close()
        if "overload" in args.parts:
            tgt = int(1.5 * base) if base else 150_000
            print(f"\noverload: paced at 150% of the measured max ({tgt / 1e3:.0f}K/s), rejected batches dropped\n{HEAD}")
            r = Run(root, 384)
            row = r.ingest(secs, target=tgt, retry=False)
            r.streams[0].flush()
            row["stored"] = len(r.mem)
            row["lost"] = row["accepted"] - row["stored"]
            row["rejected_fraction"] = row["rejected"] / max(row["accepted"] + row["rejected"], 1)
            row["close_s"] = r.close()
            point(_common.make_key("ingest", "overload", "150pct"), "overload 150%", row)
            print(f"  rejected {100 * row['rejected_fraction']:.1f}% of offered; accepted {row['accepted']:,}, "
                  f"stored after flush {row['stored']:,}: {'nothing lost' if row['lost'] == 0 else 'LOST ' + str(row['lost'])}")
        if "memory" in args.parts:
            print(f"\nmemory: {_common.human(mem_n)} observations, 768-d, tier warm, streamed in batches of 500")
            rng = np.random.default_rng(2)
            blk = [rng.standard_normal((500, 768), dtype=np.float32) for _ in range(16)]
            before = rss()          # after the bench's own input (16 batches, 23 MiB): not the engine's
            r = Run(root, 768)
            shm0 = shm_bytes(r.eng.name)
            st = r.streams[0]
            for i in range(mem_n // 500):
                while True:
                    try:
                        st.put(blk[i % 16], tier="warm")
                        break
                    except OverloadError as e:
                        time.sleep(min(e.retry_after, 0.05))
            st.flush()
            after, shm1 = rss(), shm_bytes(r.eng.name)
            n = len(r.mem)
            anon = after["RssAnon"] - before["RssAnon"]
            shm = shm1["allocated"] - shm0["allocated"]
            per_m = (anon + shm) / n * 1e6
            row = {"key": _common.make_key("ingest", "memory", "768", "warm"), "n": n, "rss_before": before,
                   "rss_after": after, "shm_before": shm0, "shm_after": shm1, "rss_anon_delta": anon,
                   "shm_delta": shm, "bytes_per_obs": (anon + shm) / n, "gb_per_1m": per_m / 1e9,
                   "vector_bytes_per_obs": 768 * 2}
            r.close()
            rows.append(row)
            print(f"  {n:,} stored: RssAnon +{anon / 2**20:.0f} MiB, /dev/shm +{shm / 2**20:.0f} MiB "
                  f"({shm1['files']} files), VmRSS +{(after['VmRSS'] - before['VmRSS']) / 2**20:.0f} MiB; "
                  f"{(anon + shm) / n:.0f} B per observation (f16 vector alone {768 * 2} B) "
                  f"= {per_m / 1e9:.2f} GB per 1M (target <= 1.7)")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    doc = {"bench": "ingest", "quick": args.quick, "argv": sys.argv[1:], "seconds_per_point": secs,
           "machine": info, "rows": rows}
    _common.finish("ingest", doc, args.json, wall0)
    if args.plot:
        plot(rows, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
