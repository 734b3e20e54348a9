"""A real daemon for the HTTP tests: ``engram serve`` in its own process on an ephemeral
loopback port, found through the daemon.json it writes once it serves."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DIM = 8


class Daemon:
    """``prelude``: Python run in the daemon's process before it serves (a fault a test injects)."""

    def __init__(self, data: Path, *args, env=None, prelude=None):
        self.data = data
        self.args = ["--data", str(data), "--port", "0", "--workers", "0", "--dim", str(DIM),
                     "--log-segment-mb", "1", *map(str, args)]
        run = ["-m", "engram.cli"] if prelude is None else \
            ["-c", f"{prelude}\nimport sys\nfrom engram.cli import main\nsys.exit(main(sys.argv[1:]))"]
        self.proc = subprocess.Popen([sys.executable, *run, "serve", *self.args],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                                     env={**os.environ, **(env or {})})
        deadline = time.monotonic() + 60
        state = data / "daemon.json"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"engram serve exited {self.proc.returncode}: {self.proc.stdout.read()}")
            try:
                st = json.loads(state.read_text())
                if st["pid"] == self.proc.pid:
                    self.url, self.engine = st["url"], st["engine"]
                    return
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.05)
        self.proc.kill()
        raise RuntimeError("engram serve did not start within 60 s")

    def stop(self, sig=signal.SIGTERM, timeout=60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def output(self) -> str:
        return self.proc.stdout.read() if self.proc.stdout else ""


@pytest.fixture
def daemon(tmp_path):
    d = Daemon(tmp_path / "data")
    yield d
    d.stop()


@pytest.fixture
def start_daemon(tmp_path):
    started = []

    def start(*args, data=None, env=None, prelude=None):
        d = Daemon(data or tmp_path / f"data{len(started)}", *args, env=env, prelude=prelude)
        started.append(d)
        return d
    yield start
    for d in started:
        if d.proc.poll() is None:
            d.stop()
