"""A real Prometheus (the Debian package) scrapes a daemon's /metrics and answers queries
about what the engine did. Skipped, saying why, only where prometheus is not installed
(.ci/run installs it)."""
from __future__ import annotations

import shutil
import socket
import subprocess
import time

import httpx
import numpy as np
import pytest

import engram

from .conftest import DIM

PROMETHEUS = shutil.which("prometheus")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(PROMETHEUS is None, reason="prometheus is not installed (apt-get install prometheus); "
                                               ".ci/run installs it")
def test_prometheus_scrapes_the_daemon(daemon, tmp_path):
    with engram.Client(daemon.url) as c:
        mem = c.space("scraped")
        mem.remember(np.eye(DIM)[:5])
        for i in range(3):
            mem.recall(np.eye(DIM)[i])
    target = daemon.url.removeprefix("http://")
    (tmp_path / "prometheus.yml").write_text(f"""
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: engram
    metrics_path: /metrics
    static_configs:
      - targets: ["{target}"]
""")
    port = free_port()
    prom = subprocess.Popen([PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        api = f"http://127.0.0.1:{port}/api/v1"
        deadline, got = time.monotonic() + 60, {}
        while time.monotonic() < deadline:
            try:
                q = httpx.get(f"{api}/query", params={"query": 'engram_recalls_total{space="scraped"}'}).json()
                got = {r["metric"]["job"]: float(r["value"][1]) for r in q["data"]["result"]}
                if got:
                    break
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            time.sleep(0.5)
        assert got == {"engram": 3.0}, got
        targets = httpx.get(f"{api}/targets").json()["data"]["activeTargets"]
        assert [t["health"] for t in targets] == ["up"], targets
        mem_q = httpx.get(f"{api}/query", params={"query": 'engram_memories{space="scraped"}'}).json()
        assert float(mem_q["data"]["result"][0]["value"][1]) == 5
    finally:
        prom.terminate()
        prom.wait(30)
