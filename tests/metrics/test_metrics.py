"""Metrics in shared memory: a real Prometheus scrape over HTTP, exact totals from
16 threads in 4 processes, a dead process's counts kept, bounded labels, and
recorders that are no-ops when metrics are off."""
import multiprocessing as mp
import os
import subprocess
import sys
import textwrap
import threading
import urllib.request

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

import engram
from engram.observe import metrics
from engram.observe.metrics import definitions as d
from engram.observe.metrics.segment import MetricsSegment
from engram.store.shm.names import EngineName

DIM = 8


def scrape(url):
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def sample(fams, family, name, **labels):
    for s in fams[family].samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    raise KeyError((family, name, labels))


def test_prometheus_scrape_reports_what_the_engine_did():
    rng = np.random.default_rng(0)
    with engram.Engine(dim=DIM, workers=0) as eng:
        mem = eng.space("scraped")
        v = rng.standard_normal((50, DIM))
        ids = mem.remember(v)
        mem.link(ids[:-1], ids[1:], 0.5)
        mem.forget(ids[:3])
        for i in range(10, 30):
            mem.recall(v[i], k=5)
        srv = engram.serve_metrics(eng)
        try:
            f = scrape(srv.url)
        finally:
            srv.close()
    assert sample(f, "engram_recalls", "engram_recalls_total", space="scraped") == 20
    assert sample(f, "engram_remembered", "engram_remembered_total", space="scraped") == 50
    assert sample(f, "engram_remember_latency_seconds", "engram_remember_latency_seconds_count", space="scraped") == 1
    assert sample(f, "engram_links", "engram_links_total", space="scraped") == 49
    assert sample(f, "engram_forgotten", "engram_forgotten_total", space="scraped") == 3
    assert sample(f, "engram_memories", "engram_memories", space="scraped") == 47
    assert sample(f, "engram_recall_latency_seconds", "engram_recall_latency_seconds_count", space="scraped") == 20
    total = sample(f, "engram_recall_latency_seconds", "engram_recall_latency_seconds_sum", space="scraped")
    assert 0 < total < 20 * 1.0
    buckets = [s for s in f["engram_recall_latency_seconds"].samples
               if s.name.endswith("_bucket") and s.labels["space"] == "scraped"]
    counts = [s.value for s in buckets]
    assert counts == sorted(counts) and counts[-1] == 20 and buckets[-1].labels["le"] == "+Inf"
    assert sample(f, "engram_spread_hops", "engram_spread_hops_total", space="scraped") > 0


def _hammer(name, n, threads, q):
    try:
        seg = MetricsSegment.attach(EngineName.parse(name), writable=True)
        slot = seg.claim(metrics.ROLE_OTHER)
        rec = metrics.recorder(seg, slot, "stress")
        def work():
            inc, obs = rec.recalls_total.inc, rec.recall_latency_seconds.observe_ns
            for i in range(n):
                inc()
            for i in range(n // 10):
                obs(1000 + i)
        ts = [threading.Thread(target=work) for _ in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        q.put("ok")
    except BaseException as e:
        q.put(repr(e))


def test_sixteen_threads_in_four_processes_give_exact_totals():
    n = 200_000 if os.environ.get("CI") else 1_000_000
    with engram.Engine(dim=DIM, workers=0) as eng:
        eng.space("stress")
        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        ps = [ctx.Process(target=_hammer, args=(eng.name, n, 4, q)) for _ in range(4)]
        for p in ps:
            p.start()
        got = [q.get(timeout=600) for _ in ps]
        for p in ps:
            p.join(60)
        assert got == ["ok"] * 4, got
        t = eng._metrics_seg.totals()
        assert t["engram_recalls_total"]["stress"] == 16 * n
        buckets, count, sum_ns = t["engram_recall_latency_seconds"]["stress"]
        m = n // 10
        assert count == 16 * m and int(buckets.sum()) == 16 * m
        assert sum_ns == 16 * sum(1000 + i for i in range(m))          # exact: fixed point


def test_a_dead_process_counts_are_kept():
    with engram.Engine(dim=DIM, workers=0) as eng:
        eng.space("stress")
        code = textwrap.dedent(f"""
            import os
            from engram.observe import metrics
            from engram.observe.metrics.segment import MetricsSegment
            from engram.store.shm.names import EngineName
            seg = MetricsSegment.attach(EngineName.parse({eng.name!r}), writable=True)
            rec = metrics.recorder(seg, seg.claim(metrics.ROLE_OTHER), "stress")
            rec.links_total.inc(777)
            os._exit(0)
        """)
        subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
        assert eng._metrics_seg.totals()["engram_links_total"]["stress"] == 777


def test_more_short_lived_processes_than_slots_adopt_dead_ones_and_keep_their_counts():
    """Each process claims a slot, counts and exits, twice as many times as there are
    slots: the later ones adopt dead processes' slots with their counts, so the total is
    exact and a process still finds a slot (before, the 65th claim failed)."""
    with engram.Engine(dim=DIM, workers=0) as eng:
        eng.space("stress")
        seg = eng._metrics_seg
        n = 2 * seg.n_slots
        code = textwrap.dedent(f"""
            import os, sys
            from engram.observe import metrics
            from engram.observe.metrics.segment import MetricsSegment
            from engram.store.shm.names import EngineName
            seg = MetricsSegment.attach(EngineName.parse({eng.name!r}), writable=True)
            for k in range({n}):
                if os.fork() == 0:      # a short-lived process of its own each time
                    rec = metrics.recorder(seg, seg.claim(metrics.ROLE_OTHER), "stress")
                    rec.links_total.inc(k + 1)
                    os._exit(0)
                _, status = os.wait()
                if status:
                    sys.exit(f"claim {{k}} failed")
        """)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert seg.totals()["engram_links_total"]["stress"] == n * (n + 1) // 2


def test_memory_spaces_past_the_cap_fold_into_other():
    rng = np.random.default_rng(1)
    with engram.Engine(dim=DIM, workers=0) as eng:
        for i in range(d.MAX_SPACES + 4):
            eng.space(f"space-{i:02d}").remember(rng.standard_normal((2, DIM)))
        t = eng._metrics_seg.totals()["engram_remembered_total"]
        assert len(t) == d.MAX_SPACES                       # 15 named + "other"
        assert t["other"] == 2 * 5                          # the 5 spaces past the cap share it
        assert t["space-00"] == 2 and "space-18" not in t


def test_metrics_off_binds_noops_and_records_nothing():
    code = textwrap.dedent("""
        import numpy as np, engram
        from engram.observe import metrics
        with engram.Engine(dim=8, workers=0) as eng:
            mem = eng.space("quiet")
            assert mem._rec.recalls_total is metrics.NOOP
            mem.remember(np.ones((3, 8)))
            mem.recall(np.ones(8))
            t = eng._metrics_seg.totals()
            assert "quiet" not in eng._metrics_seg.label_names()      # no label was even assigned
            assert all(v == 0 for m in ("engram_remembered_total", "engram_recalls_total")
                       for v in t[m].values())
        print("quiet ok")
    """)
    env = dict(os.environ, ENGRAM_METRICS="0")
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "quiet ok" in p.stdout, p.stderr


def test_a_metrics_segment_from_other_definitions_is_refused():
    name = EngineName.new()
    seg = MetricsSegment.create(name, slots=2)
    try:
        seg.header["schema_hash"] = 12345
        with pytest.raises(engram.errors.EngramError, match="metric definitions differ"):
            MetricsSegment.attach(name)
    finally:
        seg.seg.unlink(seg.seg.name)


def test_cognitive_events_carry_a_type_label_and_pool_figures_are_exported():
    rng = np.random.default_rng(3)
    with engram.Engine(dim=DIM, workers=1, routing="workers") as eng:
        mem = eng.space("typed")
        v = rng.standard_normal((30, DIM))
        mem.remember(v)
        mem._rec.priming_total["semantic"].inc(3)
        mem._rec.priming_total["repetition"].inc()
        mem._rec.interference_total["fan"].inc(2)
        eng.start_workers()
        for i in range(5):
            mem.recall(v[i], k=3)
        srv = engram.serve_metrics(eng.name)               # by name, as another process would
        try:
            f = scrape(srv.url)
        finally:
            srv.close()
    assert sample(f, "engram_priming", "engram_priming_total", space="typed", type="semantic") == 3
    assert sample(f, "engram_priming", "engram_priming_total", space="typed", type="repetition") == 1
    assert sample(f, "engram_priming", "engram_priming_total", space="typed", type="associative") == 0
    assert sample(f, "engram_interference", "engram_interference_total", space="typed", type="fan") == 2
    assert sample(f, "engram_activation_pool_high_water", "engram_activation_pool_high_water") >= 3
    assert 0 <= sample(f, "engram_spreading_pool_utilization", "engram_spreading_pool_utilization") <= 1
    assert sample(f, "engram_activation_pool_allocations", "engram_activation_pool_allocations_total") >= 3
    assert sample(f, "engram_worker_requests", "engram_worker_requests_total") == 5
    assert sample(f, "engram_workers_ready", "engram_workers_ready") == 1
    assert sample(f, "engram_worker_queue_waiting", "engram_worker_queue_waiting") == 0


def test_the_metrics_server_stays_bounded_under_half_open_connections():
    """2,000 connections that never send a request once made 2,002 threads; now the server
    has a fixed pool, closes what it cannot queue, and scrapes again once they are gone."""
    import socket
    import threading
    import time
    with engram.Engine(dim=DIM, workers=0) as eng:
        eng.space("half-open").remember(np.ones((2, DIM)))
        srv = engram.serve_metrics(eng)
        try:
            before = threading.active_count()
            host, port = "127.0.0.1", srv.port
            conns = [socket.create_connection((host, port)) for _ in range(2000)]
            time.sleep(0.5)
            assert threading.active_count() <= before + 4, threading.active_count() - before
            assert srv.dropped > 1000
            for s in conns:
                s.close()
            deadline = time.monotonic() + 30
            while True:                # the pool's slots free within the handlers' 5 s timeout
                try:
                    f = scrape(srv.url)
                    break
                except OSError:
                    assert time.monotonic() < deadline
                    time.sleep(0.2)
            assert sample(f, "engram_memories", "engram_memories", space="half-open") == 2
        finally:
            srv.close()
