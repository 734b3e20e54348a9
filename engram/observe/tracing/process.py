"""Starting and stopping the collector process."""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from engram.errors import EngramError


def start_collector(engine, cfg) -> subprocess.Popen:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[3])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    p = subprocess.Popen([sys.executable, "-m", "engram.observe.attach.collector", str(engine), str(cfg.collect_to),
                          "--formats", ",".join(cfg.formats),
                          *(["--loki", cfg.loki_url] if cfg.loki_url else []),
                          *(["--otlp", cfg.otlp_url] if cfg.otlp_url else []),
                          "--export-policy", json.dumps(dataclasses.asdict(cfg.export))],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         env=env, text=True)
    line = p.stdout.readline().strip()
    if line != "ready":
        p.kill()
        raise EngramError(f"the trace collector did not start: {line or 'no output'}")
    return p


def stop_collector(p: subprocess.Popen, timeout: float = 60.0) -> str:
    """SIGTERM: it drains every ring once more, writes its files and exits."""
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
    if p.returncode:
        logging.getLogger("engram.tracing").warning(
            "engram: the trace collector exited with %s (its error is on stderr): %s", p.returncode, out.strip())
    return out or ""
