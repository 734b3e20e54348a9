"""Prometheus exposition: a prometheus_client custom collector that reads an
engine's metrics segments (read-only) and sums the per-process slots at scrape
time, and a small HTTP server for it (the daemon reuses the collector)."""
from __future__ import annotations

from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import start_http_server

from engram.layout import schema
from engram.observe.attach.tools import board, pool_stats
from engram.observe.metrics import definitions as d
from engram.observe.metrics.segment import MetricsSegment
from engram.observe.metrics.spreading import summary
from engram.store.shm.names import resolve

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
                fam = CounterMetricFamily(m.name, m.help, labels=labels + ["type"])
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


class MetricsServer:
    def __init__(self, server, thread):
        self._server, self._thread = server, thread
        self.port = server.server_port
        self.url = f"http://{server.server_address[0]}:{self.port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def serve(engine, port: int = 0, addr: str = "127.0.0.1") -> MetricsServer:
    name = engine.name if hasattr(engine, "name") else engine
    reg = CollectorRegistry(auto_describe=False)
    reg.register(EngramCollector(name))
    server, thread = start_http_server(port, addr=addr, registry=reg)
    return MetricsServer(server, thread)
