"""Does a slow or dead trace consumer slow recall down? Recall latency with tracing exported
to a healthy OTLP receiver, to a port nobody listens on, and to one that takes 2 s per
request, beside tracing off, in the same run.

    python benches/trace_export.py            # 3,000 recalls with spreading per case
    python benches/trace_export.py --quick

The collector is a process of its own and exports from its own threads through a bounded
queue (engram/observe/attach/delivery.py), so recall should not see the consumer at all:
the ratios to the "healthy" case should be about 1. Also reported: what each sink
delivered and dropped, and the collector's peak queued bytes (bounded).

JSON: benches/results/trace_export-<UTC>.json and trace_export-latest.json (or --json).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import finish, header_lines, machine_info, percentiles

DIM, MEMORIES = 64, 2000


def receiver(delay_s: float):
    """A local OTLP/HTTP endpoint that answers 200 after ``delay_s``; (server, url)."""
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            time.sleep(delay_s)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}"


def dead_url() -> str:
    srv, url = receiver(0)
    srv.shutdown()
    srv.server_close()
    return url


def run_case(name: str, url, recalls: int) -> dict:
    import engram
    from engram.observe.tracing import TraceConfig

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as out:
        trace = None if name == "off" else TraceConfig(collect_to=out, otlp_url=url)
        with engram.Engine(dim=DIM, workers=0, trace=trace) as eng:
            mem = eng.space("bench")
            v = rng.standard_normal((MEMORIES, DIM)).astype(np.float32)
            ids = mem.remember(v)
            mem.link(ids[:-1], ids[1:], 0.5)
            mem.link(ids[1:], ids[:-1], 0.4)
            for i in range(200):       # warm-up
                mem.recall(v[i], k=10)
            lat = []
            for i in range(recalls):
                t = time.perf_counter_ns()
                mem.recall(v[i % MEMORIES], k=10)
                lat.append((time.perf_counter_ns() - t) / 1e6)
        summary = json.loads((Path(out) / "summary.json").read_text()) if trace is not None else {}
    p = percentiles(lat, (50, 95, 99))
    row = {"case": name, "recall_ms": {k: round(v, 4) for k, v in p.items()}}
    if summary:
        otlp = summary["sinks"]["otlp"]
        row.update(events=summary["events"], lost_in_rings=summary["lost_in_rings"], delivered=otlp["delivered"],
                   dropped=otlp["dropped"], peak_queued_bytes=otlp.get("peak_queued_bytes"))
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recalls", type=int, default=3000)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json")
    args = ap.parse_args()
    recalls = 500 if args.quick else args.recalls
    t0 = time.perf_counter()
    info = machine_info()
    print("\n".join(header_lines(info)))
    healthy, healthy_url = receiver(0)
    slow, slow_url = receiver(2.0)
    rows = []
    try:
        for name, url in (("off", None), ("healthy", healthy_url), ("dead", dead_url()), ("slow 2 s", slow_url)):
            row = run_case(name, url, recalls)
            rows.append(row)
            print(f"  {name:9s} recall P50 / P95 / P99 {row['recall_ms']['p50']:.3f} / {row['recall_ms']['p95']:.3f}"
                  f" / {row['recall_ms']['p99']:.3f} ms; delivered {row.get('delivered', '-')}, dropped "
                  f"{row.get('dropped', '-')} of {row.get('events', '-')} events", flush=True)
    finally:
        healthy.shutdown()
        slow.shutdown()
    base = next(r for r in rows if r["case"] == "healthy")["recall_ms"]
    for r in rows:
        r["ratio_to_healthy"] = {k: round(r["recall_ms"][k] / base[k], 3) for k in base}
    finish("trace_export", {"bench": "trace_export", "machine": info, "recalls": recalls, "rows": rows}, args.json, t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
