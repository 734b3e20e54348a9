"""Streaming from other processes through ``engram.connect`` beside the owner's own stream.

    python benches/connect.py                  # 10 s per point, 384-d
    python benches/connect.py --seconds 3 --dims 384 768 --producers 1 2

Each point opens a fresh ``engram.Engine(path=..., durability="group", workers=0)`` in a
new directory (closed, untimed, and deleted after). **owner**: one producer thread and one
waiter thread in the owner's process stream puts of ``--batch`` random f32 rows as fast as
the lane admits (a refused put sleeps its ``retry_after``, at most 50 ms, and is put
again); **connect xN**: N other processes do exactly the same through
``engram.connect(name).space(...).stream()``, each with its own channel (socket + ring).
achieved = acknowledged observations / (last ack - first put), summed over producers;
ack = put to ``wait`` returning (durable). The ratio row compares connect x1 with the
owner's own stream in the same run: the cost of the ring, the socket and the second
process. Results: tables on stdout, JSON in benches/results/connect-<UTC>.json and
connect-latest.json (or only --json PATH); keys ``connect/<who>/<dim>``.
"""
from __future__ import annotations

import argparse
import json
import queue
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import numpy as np

import engram
from engram.errors import OverloadError

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

ROOT = Path(__file__).resolve().parent.parent


def stream_for(st, seconds: float, dim: int, batch: int) -> dict:
    """Put as fast as admitted for ``seconds`` with a waiter behind; counts and ack latencies."""
    pool = [np.random.default_rng(i).standard_normal((batch, dim), dtype=np.float32) for i in range(8)]
    q, lat, out = queue.SimpleQueue(), [], {"acked": 0, "rejected_puts": 0, "first": 0.0, "last": 0.0}

    def waiter():
        while (item := q.get()) is not None:
            st.wait(item[0])
            t = time.perf_counter()
            lat.append(t - item[1])
            out["acked"] += batch
            out["last"] = t

    w = threading.Thread(target=waiter)
    w.start()
    out["first"] = t0 = time.perf_counter()
    i = 0
    while time.perf_counter() < t0 + seconds:
        tp = time.perf_counter()
        try:
            seqs = st.put(pool[i % 8])
        except OverloadError as e:
            out["rejected_puts"] += 1
            time.sleep(min(e.retry_after, 0.05))
            continue
        q.put((int(seqs[-1]), tp))
        i += 1
    q.put(None)
    w.join()
    out["lat"] = lat
    return out


PRODUCER = textwrap.dedent("""
    import json, sys, engram
    sys.path.insert(0, sys.argv[5])
    from connect import stream_for
    name, seconds, dim, batch = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    with engram.connect(name) as conn:
        st = conn.space("bench").stream()
        print("ready", flush=True)
        sys.stdin.readline()                      # start together
        r = stream_for(st, seconds, dim, batch)
    print(json.dumps(r), flush=True)
""")


def summarize(results: list, batch: int) -> dict:
    lat = [x for r in results for x in r["lat"]]
    acked = sum(r["acked"] for r in results)
    span = max(r["last"] for r in results) - min(r["first"] for r in results)
    pct = _common.percentiles(np.array(lat) * 1e3, (50, 99, 99.9)) if lat else {}
    return {"acked": acked, "achieved": acked / span if span > 0 else 0.0,
            "rejected_puts": sum(r["rejected_puts"] for r in results),
            **{f"ack_{k}_ms": v for k, v in pct.items()}}


def point(root: str, dim: int, producers: int, seconds: float, batch: int) -> dict:
    d = tempfile.mkdtemp(prefix="connect-", dir=root)
    eng = engram.Engine(path=d, dim=dim, durability="group", workers=0)
    try:
        eng.space("bench")
        if producers == 0:
            return summarize([stream_for(eng.space("bench").stream(), seconds, dim, batch)], batch)
        procs = [subprocess.Popen([sys.executable, "-c", PRODUCER, eng.name, str(seconds), str(dim), str(batch),
                                   str(Path(__file__).resolve().parent)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
                 for _ in range(producers)]
        for p in procs:
            assert p.stdout.readline().strip() == "ready", "a producer did not connect"
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        results = [json.loads(p.communicate(timeout=seconds + 120)[0]) for p in procs]
        return summarize(results, batch)
    finally:
        eng.close()
        shutil.rmtree(d, ignore_errors=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--dims", type=int, nargs="+", default=[384])
    ap.add_argument("--producers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--dir", default=None, help="where the engines' directories go (default: a temporary one)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    root = args.dir or tempfile.mkdtemp(prefix="bench-connect-")
    rows = []
    print(f"{'who':<12} {'dim':>4} {'achieved obs/s':>15} {'ack P50 ms':>11} {'ack P99 ms':>11} {'refused puts':>13}")
    for dim in args.dims:
        base = None
        for n in [0, *args.producers]:
            r = point(root, dim, n, args.seconds, args.batch)
            who = "owner" if n == 0 else f"connect x{n}"
            r.update({"key": _common.make_key("connect", who.replace(" ", ""), dim), "who": who, "dim": dim,
                      "producers": n, "batch": args.batch, "seconds": args.seconds})
            if n == 0:
                base = r["achieved"]
            elif n == 1 and base:
                r["vs_owner"] = r["achieved"] / base
            rows.append(r)
            print(f"{who:<12} {dim:>4} {r['achieved']:>15,.0f} {r.get('ack_p50_ms', 0):>11.1f} "
                  f"{r.get('ack_p99_ms', 0):>11.1f} {r['rejected_puts']:>13,}"
                  + (f"   x{r['vs_owner']:.2f} of the owner's stream" if "vs_owner" in r else ""))
    if not args.dir:
        shutil.rmtree(root, ignore_errors=True)
    _common.finish("connect", {"machine": _common.machine_info(), "rows": rows}, args.json, t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
