"""The daemon over HTTP beside the same engine in-process, in one run.

    python benches/daemon.py                        # 60 s per row (about 20 minutes)
    python benches/daemon.py --seconds 10 --sizes 10K    # shorter

Setup: ``engram serve --workers 0 --threads 8`` on loopback (durability group, its own
directory) and, in this process, ``engram.Engine(path=..., workers=0)``; both get the same
N random 384-d memories (hot tier) and 5 random links each (weights 0.1..1). Queries are
stored vectors plus noise. Before the first row both sides' approximate index is built
(from 10,000 memories) and its audit has chosen how to search it (``settle``).

**recall rows**: open-loop load at a fixed rate (requests are sent on schedule whatever
the earlier ones are doing, so a slow server cannot slow the generator: latency counts
from the scheduled send); POST /api/v1/memories/recall with k=10, spreading, default
budget, from 32 keep-alive connections of a minimal asyncio HTTP/1.1 client (a request
due while all 32 are busy is counted as an error). The in-process reference calls ``Space.recall`` from one thread on
the same schedule. P50 / P99 / P99.9 and errors; "saturation" = the highest rate whose
achieved rate is within 5% of the target. The client runs on the same 2 cores as the
server: its CPU is part of the cost, so each row also gives the CPU a request cost the
client (this process, on uvloop when installed) and the server (all its threads, from
/proc); an in-process row's CPU is this process's (its log writer included).

**ingest rows**: binary batches (1,000 rows, f32) POSTed back to back by 2 client
threads for the row's duration, against ``Space.remember`` of the same batches from 2
threads in-process (group commit); observations/s acknowledged (durable) and the ratio.

Results: tables on stdout, JSON in benches/results/daemon-<UTC>.json and daemon-latest.json
(or --json PATH); keys ``http/recall/<N>/<rate>/<http|inproc>``, ``http/ingest/<http|inproc>``.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

import engram
from engram.recall.ann import BREADTH_GAUGE

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

ROOT = Path(__file__).resolve().parent.parent
DIM = 384
BATCH = "application/vnd.engram.batch"
try:                                  # the client's loop costs less on uvloop (as the server's does)
    from uvloop import run as run_loop
except ImportError:
    run_loop = asyncio.run


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) the process ``pid`` has used."""
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def start_daemon(data: Path, workers: int = 0) -> tuple:
    p = subprocess.Popen([sys.executable, "-m", "engram.cli", "serve", "--data", str(data), "--port", "0",
                          "--workers", str(workers), "--threads", "8", "--dim", str(DIM)], cwd=ROOT,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            st = json.loads((data / "daemon.json").read_text())
            if st["pid"] == p.pid:
                return p, st["url"]
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.1)
    p.kill()
    raise RuntimeError("the daemon did not start")


def binary(rows: np.ndarray) -> bytes:
    head = json.dumps({"count": rows.shape[0], "dtype": "f32"}).encode()
    return struct.pack("<I", len(head)) + head + rows.astype("<f4").tobytes()


def load(n: int, url: str, mem, rng) -> np.ndarray:
    """The same memories and links into the daemon and the in-process space."""
    vecs = rng.standard_normal((n, DIM), dtype=np.float32)
    src = np.repeat(np.arange(n), 5)
    dst = rng.integers(0, n, src.shape[0])
    keep = src != dst
    src, dst = src[keep], dst[keep]
    w = rng.uniform(0.1, 1.0, src.shape[0]).round(3)
    with httpx.Client(base_url=url, timeout=120) as h:
        for lo in range(0, n, 10_000):
            h.post("/api/v1/memories/batch", content=binary(vecs[lo:lo + 10_000]),
                   headers={"Content-Type": BATCH}).raise_for_status()
            mem.remember(vecs[lo:lo + 10_000])
        for lo in range(0, src.shape[0], 10_000):
            sl = slice(lo, lo + 10_000)
            h.post("/api/v1/patterns/associate", json={"source_memory": src[sl].tolist(),
                                                       "target_memory": dst[sl].tolist(),
                                                       "strength": w[sl].tolist()}).raise_for_status()
            mem.link(src[sl], dst[sl], w[sl])
    return vecs


#: engram_index_breadth's values for the scans (docs/observability.md), to their names
GAUGE_NAMES = {float(v): name for name, v in BREADTH_GAUGE.items()}
STEADY_S = 5.0          # settle: the index's state unchanged this long


def settle(url: str, eng, mem, qs, timeout: float = 300.0) -> dict:
    """Both sides' approximate index built and its audit's choice made (engram/recall/audit.py),
    as in a server that has served for a while: otherwise a row's first seconds measure the
    index before its audit. The daemon's choice is read from its Prometheus gauge, and awaited
    until it is the in-process one (the same data and queries: unless the timeout passes
    first). Returns each side's choice ({} without an index)."""
    if not eng.wait_for_index(timeout):
        raise RuntimeError(f"the in-process index was not built within {timeout:.0f} s")
    _common.settle_index(mem, qs, k=10, timeout=timeout)
    if mem.stats()["index"]["generation"] == 0:        # below the index's size: nothing to settle
        return {}
    # then until nothing changes for STEADY_S: the keeper may have more to do once the audit
    # has judged the data (a hard space's larger sketch, engram/recall/sketch.py), and the
    # audit then judges that too
    end, at, last, since = time.monotonic() + timeout, 0, None, time.monotonic()
    while time.monotonic() - since < STEADY_S and time.monotonic() < end:
        for i in range(at, at + 64):
            mem.recall(qs[i % len(qs)], k=10)
        at += 64
        now = (mem.stats()["index"]["breadth"], eng.wait_for_index(0.1))
        if now != last or not now[1]:
            last, since = now, time.monotonic()
    inproc = mem.stats()["index"]["breadth"]
    want = BREADTH_GAUGE.get(inproc, inproc)
    with httpx.Client(base_url=url, timeout=60) as h:
        while True:       # the daemon's audit, on the same data and queries, until it chose as this one
            text = h.get("/metrics/prometheus").text
            gauge = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                     if line.startswith('engram_index_breadth{') and 'space="default"' in line]
            if gauge and (gauge[0] == want or (gauge[0] != 0 and time.monotonic() > end)):
                return {"inproc": inproc, "http": GAUGE_NAMES.get(gauge[0], int(gauge[0]))}
            if time.monotonic() > end:
                raise RuntimeError(f"the daemon's index audit chose nothing within {timeout:.0f} s")
            for i in range(at, at + 64):
                h.post("/api/v1/memories/recall", json={"embedding": qs[i % len(qs)].tolist(), "max_results": 10,
                                                        "include_metadata": False}).raise_for_status()
            at += 64


def queries(vecs, rng, count=512) -> np.ndarray:
    pick = vecs[rng.integers(0, vecs.shape[0], count)]
    return (pick + 0.3 * rng.standard_normal(pick.shape)).astype(np.float32)


class Conn:
    """One keep-alive HTTP/1.1 connection speaking just enough HTTP for this bench: the
    generator must cost far less than the server it measures (httpx costs ~1 ms a request)."""

    def __init__(self, reader, writer):
        self.r, self.w = reader, writer

    async def post(self, request: bytes) -> int:
        self.w.write(request)
        head = await self.r.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await self.r.readexactly(length)
        return status


async def http_rate(url: str, qs: np.ndarray, rate: float, seconds: float, conns: int = 32,
                    server_pid: int | None = None) -> dict:
    host, port = url.removeprefix("http://").split(":")
    reqs = []
    for q in qs:
        body = json.dumps({"embedding": q.tolist(), "max_results": 10, "include_metadata": False}).encode()
        reqs.append(b"POST /api/v1/memories/recall HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (host.encode(), len(body), body))
    free: asyncio.Queue = asyncio.Queue()
    for _ in range(conns):
        free.put_nowait(Conn(*await asyncio.open_connection(host, int(port))))
    lat, errors = [], 0
    cpu0, srv0 = time.process_time(), None if server_pid is None else cpu_s(server_pid)

    async def one(c, i, t_sched):
        nonlocal errors
        try:
            if await c.post(reqs[i % len(reqs)]) == 200:
                lat.append(time.perf_counter() - t_sched)
            else:
                errors += 1
            free.put_nowait(c)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            errors += 1
            free.put_nowait(Conn(*await asyncio.open_connection(host, int(port))))
    t0 = time.perf_counter()
    n = int(rate * seconds)
    tasks = []
    for i in range(n):
        t_sched = t0 + i / rate
        delay = t_sched - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if free.empty():
            errors += 1              # every connection busy: the server is not keeping up
            continue
        tasks.append(asyncio.create_task(one(free.get_nowait(), i, t_sched)))
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - t0
    done = max(len(lat), 1)
    cpu = {"client_cpu_ms": (time.process_time() - cpu0) / done * 1e3}
    if server_pid is not None:
        cpu["server_cpu_ms"] = (cpu_s(server_pid) - srv0) / done * 1e3
    while not free.empty():
        free.get_nowait().w.close()
    return {"sent": n, "ok": len(lat), "errors": errors, "achieved": len(lat) / wall, **cpu,
            **{f"{k}_ms": v * 1e3 for k, v in _common.percentiles(lat or [0], (50, 99, 99.9)).items()}}


def inproc_rate(mem, qs, rate: float, seconds: float) -> dict:
    lat, fallbacks = [], 0
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    n = int(rate * seconds)
    for i in range(n):
        t_sched = t0 + i / rate
        delay = t_sched - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        res = mem.recall(qs[i % len(qs)], k=10)
        fallbacks += bool(res.fallback)
        lat.append(time.perf_counter() - t_sched)
    wall = time.perf_counter() - t0
    return {"sent": n, "ok": n, "errors": 0, "achieved": n / wall, "fallbacks": fallbacks,
            "cpu_ms": (time.process_time() - cpu0) / n * 1e3,
            **{f"{k}_ms": v * 1e3 for k, v in _common.percentiles(lat, (50, 99, 99.9)).items()}}


def ingest(send, seconds: float, threads: int = 2) -> float:
    """Observations/s acknowledged by ``send(rows)`` from ``threads`` threads, back to back."""
    rng = np.random.default_rng(9)
    pool = [rng.standard_normal((1000, DIM), dtype=np.float32) for _ in range(4)]
    done = [0] * threads
    t_end = time.perf_counter() + seconds

    def run(k):
        i = 0
        while time.perf_counter() < t_end:
            send(pool[i % 4])
            done[k] += 1000
            i += 1
    t0 = time.perf_counter()
    ts = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return sum(done) / (time.perf_counter() - t0)


def cpu_text(row: dict) -> str:
    """"server + client" for an HTTP row, the process's for an in-process one."""
    if "cpu_ms" in row:
        return f"{row['cpu_ms']:.2f}"
    return f"{row.get('server_cpu_ms', float('nan')):.2f} + {row['client_cpu_ms']:.2f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--sizes", type=_common.parse_count, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--rates", type=float, nargs="+", default=[100, 250, 500, 1000, 1500])
    ap.add_argument("--server-workers", type=int, default=0, metavar="N",
                    help="the daemon's recall worker processes (default 0: recalls in its own threads)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    rows = []
    rng = np.random.default_rng(7)
    print(f"{'row':<34} {'achieved/s':>10} {'P50 ms':>8} {'P99 ms':>8} {'P99.9 ms':>9} {'errors':>7} "
          f"{'CPU ms/req':>16}")
    for n in args.sizes:
        root = Path(tempfile.mkdtemp(prefix="bench-http-"))
        daemon, url = start_daemon(root / "daemon", args.server_workers)
        eng = engram.Engine(path=root / "inproc", dim=DIM, workers=0)
        try:
            mem = eng.space("default")
            vecs = load(n, url, mem, rng)
            qs = queries(vecs, rng)
            chosen = settle(url, eng, mem, qs)
            if chosen:
                print(f"index {_common.human(n)}: the audits chose {chosen['inproc']} in-process, "
                      f"{chosen['http']} in the daemon")
                rows.append({"key": _common.make_key("http", "index", _common.human(n)), "n": n, **chosen})
            for q in qs[:50]:           # warm both
                mem.recall(q, k=10)
            run_loop(http_rate(url, qs[:50], 50, 1))
            for rate in args.rates:
                for who, fn in (("inproc", lambda: inproc_rate(mem, qs, rate, args.seconds)),
                                ("http", lambda: run_loop(http_rate(url, qs, rate, args.seconds,
                                                                    server_pid=daemon.pid)))):
                    r = fn()
                    r.update({"key": _common.make_key("http", "recall", _common.human(n), int(rate), who),
                              "n": n, "rate": rate, "who": who, "seconds": args.seconds})
                    rows.append(r)
                    print(f"{f'recall {_common.human(n)} @{int(rate)}/s {who}':<34} {r['achieved']:>10,.0f} "
                          f"{r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['p99.9_ms']:>9.2f} {r['errors']:>7} "
                          f"{cpu_text(r):>16}")
            if n == args.sizes[0]:
                with httpx.Client(base_url=url, timeout=60) as h:
                    def post(rows_):
                        h.post("/api/v1/memories/batch", content=binary(rows_),
                               headers={"Content-Type": BATCH}).raise_for_status()
                    ing_http = ingest(post, min(args.seconds, 20))
                ing_local = ingest(lambda rows_: mem.remember(rows_), min(args.seconds, 20))
                for who, v in (("http", ing_http), ("inproc", ing_local)):
                    rows.append({"key": _common.make_key("http", "ingest", who), "who": who, "achieved": v,
                                 "batch": 1000, "threads": 2, **({"vs_inproc": v / ing_local} if who == "http"
                                                                 else {})})
                print(f"ingest binary batches over HTTP: {ing_http:,.0f} obs/s; in-process remember: "
                      f"{ing_local:,.0f} obs/s; ratio {ing_http / ing_local:.2f}")
        finally:
            eng.close()
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(120)
            shutil.rmtree(root, ignore_errors=True)
    _common.finish("daemon", {"machine": _common.machine_info(), "rows": rows}, args.json, t_start)
    return 0


if __name__ == "__main__":
    sys.exit(main())



