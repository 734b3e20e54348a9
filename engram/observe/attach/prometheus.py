"""Prometheus exposition: a prometheus_client custom collector that reads an
engine's metrics segments (read-only) and sums the per-process slots at scrape
time, and a small HTTP server for it (the daemon reuses the collector)."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, HTTPServer

from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import choose_encoder

from engram.layout import schema
from engram.observe.attach.tools import board, pool_stats
from engram.observe.metrics import definitions as d
from engram.observe.metrics.segment import MetricsSegment
from engram.observe.metrics.spreading import summary
from engram.store.shm.names import resolve
from engram.threads import named_thread

C = schema.CONSTANTS


class EngramCollector:
    """Reads one engine's metrics; every scrape sums the slots anew."""

    def __init__(self, engine):
        self.engine = resolve(engine)
        self.seg = MetricsSegment.attach(self.engine)

    def _board(self):
        return board(self.engine)

    def _pool(self):
        return pool_stats(self.engine)

    def _spreading_summary(self):
        return summary(self.seg)

    def collect(self):
        bounds = d.bucket_bounds_seconds()
        totals = self.seg.totals()
        for m in d.METRICS:
            values = totals[m.name]
            labels = ["space"] if m.per_space else []
            if m.types:
                family = CounterMetricFamily if m.kind == "counter" else GaugeMetricFamily
                fam = family(m.name, m.help, labels=labels + [m.label])
                for space, by_type in values.items():
                    for t, v in by_type.items():
                        fam.add_metric(([space] if m.per_space else []) + [t], v)
            elif m.kind == "counter":
                fam = CounterMetricFamily(m.name, m.help, labels=labels)
                for space, v in values.items():
                    fam.add_metric([space] if m.per_space else [], v)
            elif m.kind == "gauge":
                fam = GaugeMetricFamily(m.name, m.help, labels=labels)
                for space, v in values.items():
                    fam.add_metric([space] if m.per_space else [], v)
            else:
                fam = HistogramMetricFamily(m.name, m.help, labels=labels)
                for space, (buckets, count, sum_ns) in values.items():
                    cum, pairs = 0, []
                    for le, b in zip(bounds, buckets[:-1]):
                        cum += int(b)
                        pairs.append((repr(le), cum))
                    pairs.append(("+Inf", count))
                    fam.add_metric([space] if m.per_space else [], pairs, sum_value=sum_ns / 1e9)
            yield fam
        pool = self._pool()
        if pool is not None:
            for name, help_, value in (
                    ("engram_spreading_pool_utilization", "Activation records held / pool capacity.",
                     pool["in_use"] / pool["capacity"]),
                    ("engram_activation_pool_hit_rate", "Acquisitions served by recycled records.", pool["hit_rate"]),
                    ("engram_activation_pool_high_water", "Most activation records held at once.", pool["high_water"]),
                    ("engram_activation_pool_in_use", "Activation records held now.", pool["in_use"])):
                yield GaugeMetricFamily(name, help_, value=value)
            yield CounterMetricFamily("engram_activation_pool_allocations", "Records taken fresh (never used before).",
                                      value=pool["allocations"])
        board = self._board()
        if board is not None:
            h, slots = board
            yield GaugeMetricFamily("engram_worker_queue_waiting", "Recall requests waiting for a worker.",
                                    value=int((slots["state"] == C["TASK_READY"]).sum()))
            yield GaugeMetricFamily("engram_worker_queue_running", "Recall requests a worker is running.",
                                    value=int((slots["state"] == C["TASK_TAKEN"]).sum()))
            yield GaugeMetricFamily("engram_workers_ready", "Worker processes taking requests.",
                                    value=int(h["ready"][0]))
            for name, field, help_ in (("engram_worker_requests", "completed", "Requests workers answered."),
                                       ("engram_worker_failures", "failed", "Requests that failed in a worker."),
                                       ("engram_worker_retries", "retried", "Requests retried after a worker died."),
                                       ("engram_worker_restarts", "restarts", "Workers replaced after dying.")):
                yield CounterMetricFamily(name, help_, value=int(h[field][0]))
        s = self._spreading_summary()
        if s is not None:
            err = s["engram_spreading_latency_prediction_error"]
            yield GaugeMetricFamily("engram_spreading_latency_prediction_error",
                                    "Mean relative error of the spreading latency predictor.",
                                    value=err if err is not None else float("nan"))
            rate = s["engram_spreading_cache_miss_rate"]
            yield GaugeMetricFamily("engram_spreading_cache_miss_rate",
                                    "L1D misses per read over sampled spreads (NaN: no hardware counters here).",
                                    value=rate if isinstance(rate, float) else float("nan"))


class _Scrape(BaseHTTPRequestHandler):
    timeout = 5.0                    # a client that sends nothing gives its slot back after this

    def do_GET(self):
        if self.path.split("?")[0] not in ("/", "/metrics"):
            self.send_error(404, "only /metrics is served here")
            return
        encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
        body = encoder(self.server.registry)
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class _BoundedServer(HTTPServer):
    """At most ``workers`` threads, and ``queue`` connections waiting for one; a connection
    beyond that is closed at once (prometheus_client's server starts a thread for each:
    2,000 half-open connections made 2,002 threads)."""
    request_queue_size = 128        # the listen backlog: 5 made each connection in a burst wait seconds

    def __init__(self, addr, registry, workers: int = 4, queue: int = 64):
        super().__init__(addr, _Scrape)
        self.registry, self.dropped = registry, 0
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="engram-metrics")
        self._slots = threading.BoundedSemaphore(workers + queue)

    def process_request(self, request, client_address):
        if not self._slots.acquire(blocking=False):
            self.dropped += 1
            self.shutdown_request(request)
            return
        self._pool.submit(self._handle, request, client_address)

    def _handle(self, request, client_address):
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            self._slots.release()

    def server_close(self):
        super().server_close()
        self._pool.shutdown(wait=False, cancel_futures=True)


class MetricsServer:
    def __init__(self, server: _BoundedServer):
        self._server = server
        self._thread = named_thread(server.serve_forever, "engram-metrics-accept")
        self._thread.start()
        self.port = server.server_port
        self.url = f"http://{server.server_address[0]}:{self.port}/metrics"

    @property
    def dropped(self) -> int:
        """Connections closed unserved because every slot was taken."""
        return self._server.dropped

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def serve(engine, port: int = 0, addr: str = "127.0.0.1") -> MetricsServer:
    name = engine.name if hasattr(engine, "name") else engine
    reg = CollectorRegistry(auto_describe=False)
    reg.register(EngramCollector(name))
    return MetricsServer(_BoundedServer((addr, port), reg))
