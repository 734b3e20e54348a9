"""Running the daemon: ``engram serve`` (foreground) and ``engram daemon start | stop |
status`` (docs/operations/daemon.md).

The daemon is an ordinary owner, ``Engine(path=DATA)``, behind uvicorn. It writes
DATA/daemon.json (pid, url, engine name) once it serves, logs to DATA/daemon.log
when started in the background, and on SIGTERM or SIGINT stops taking requests,
finishes the ones in flight, then closes the engine (lanes drained, log flushed,
checkpoint, workers stopped, segments removed) and exits 0.
"""
from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path

import uvicorn

from engram.config import INDEX_MIN_ROWS, TieringConfig
from engram.daemon.api import Service, create_app
from engram.daemon.guard import OPEN_PATHS, Guard, load_keys
from engram.daemon.protocol import BODY_TIMEOUT_S, HEADER_TIMEOUT_S, guarded
from engram.engine import Engine
from engram.errors import InvalidInputError
from engram.observe.tracing import TraceConfig
from engram.threads import name_current

log = logging.getLogger("engram.daemon")
STATE = "daemon.json"
LOG = "daemon.log"
DEFAULT_PORT = 7432


@dataclass
class Settings:
    data: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    api_key_file: str | None = None
    workers: int | None = None
    threads: int = 8
    dim: int | None = None
    embedder: str | None = None               # "default": content-only requests (docs/embedding.md)
    durability: str | None = None
    max_body_mb: float = 64.0
    max_connections: int = 4096
    open_metrics: bool = True
    log_segment_mb: float | None = None
    lanes: dict | None = None                 # ingest lane capacities (Engine(lanes=...))
    header_timeout: float = HEADER_TIMEOUT_S
    trace_dir: str | None = None              # the collector writes trace files here (tracing on)
    otlp_url: str | None = None               # ... and exports OTLP/HTTP spans
    loki_url: str | None = None               # ... and pushes to Loki
    body_timeout: float = BODY_TIMEOUT_S
    index_min_rows: int | None = INDEX_MIN_ROWS     # Engine(index_min_rows=...): None, never
    cold_after_s: float | None = None         # Engine(tiering=TieringConfig(cold_after_s=...)): None, off

    def url(self, port: int | None = None) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port if port is None else port}"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(s: Settings) -> int:
    """Run the daemon in this process until SIGTERM / SIGINT; 0 after a clean stop."""
    keys = load_keys(s.api_key_file, os.environ.get("ENGRAM_API_KEY"))
    if not is_loopback(s.host) and not keys:
        raise InvalidInputError(f"refusing to listen on {s.host} without an API key: give --api-key-file or "
                                "ENGRAM_API_KEY (keys are needed whenever the daemon is reachable from outside "
                                "this machine)")
    stop = {"server": None, "signal": None}
    name_current("engram-daemon")     # the event loop's thread, which is the process's name in `ps`

    def on_signal(sig, _frame):        # installed before the Engine, which then leaves SIGTERM to us
        stop["signal"] = sig
        if stop["server"] is not None:
            stop["server"].should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    trace = None
    if s.trace_dir or s.otlp_url or s.loki_url:
        trace = TraceConfig(collect_to=str(s.trace_dir or Path(s.data) / "traces"), otlp_url=s.otlp_url,
                            loki_url=s.loki_url)
    tiering = None
    if s.cold_after_s is not None:
        base = TieringConfig()
        tiering = replace(base, cold_after_s=s.cold_after_s,
                          warm_after_access_s=min(base.warm_after_access_s, s.cold_after_s / 10))
    eng = Engine(path=s.data, dim=s.dim, workers=s.workers, durability=s.durability, embedder=s.embedder,
                 log_segment_mb=s.log_segment_mb, lanes=s.lanes, trace=trace, index_min_rows=s.index_min_rows,
                 tiering=tiering)
    state = Path(s.data) / STATE
    service = None
    try:
        service = Service(eng, threads=s.threads)
        app = Guard(create_app(service), keys, int(s.max_body_mb * (1 << 20)), OPEN_PATHS if s.open_metrics
                    else ("/health/alive",))
        config = uvicorn.Config(app, host=s.host, port=s.port, lifespan="off", access_log=False,
                                http=guarded(s.header_timeout, s.body_timeout),
                                server_header=False, timeout_keep_alive=5, limit_concurrency=s.max_connections,
                                timeout_graceful_shutdown=30, ws_max_size=64 << 20, log_level="warning")
        server = _Server(config)
        stop["server"] = server
        if stop["signal"] is not None:
            return 0

        async def main():
            task = asyncio.create_task(server.serve())
            while not server.started and not task.done():
                await asyncio.sleep(0.02)
            if server.started:
                port = server.servers[0].sockets[0].getsockname()[1]
                _write_state(state, {"pid": os.getpid(), "url": s.url(port), "engine": eng.name,
                                     "data": str(Path(s.data).resolve()), "started": time.time(),
                                     "auth": bool(keys)})
                log.warning("engram daemon %s serving %s (data %s)", eng.name, s.url(port), s.data)
                # Everything made so far (modules, the app and its models, the engine) lives as
                # long as the process: out of the collector's sight, a full collection scans only
                # what serving made since. Unfrozen, one took 67-80 ms here, every ~10 s at
                # 500 recalls/s, all of it on the event loop (docs/operations/http.md).
                gc.freeze()
            await task
        _event_loop_run(main())
        return 0 if server.started else 1
    finally:
        state.unlink(missing_ok=True)
        if service is not None:
            service.close()
        eng.close()
        log.warning("engram daemon stopped")


def _event_loop_run(coro):
    """Run ``coro`` on uvloop when it is installed (uvicorn[standard] brings it), else on
    asyncio's loop. uvicorn picks uvloop only when it makes the loop itself; serving inside
    our own asyncio.run got the plain loop, which costs ~0.1 ms more a request."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


class _Server(uvicorn.Server):
    """uvicorn's Server, with our own signal handling: uvicorn's would re-raise SIGTERM after
    the graceful stop, and the process would then end by the signal instead of exit 0."""

    def capture_signals(self):
        return contextlib.nullcontext()


def _write_state(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(state, f)
    os.replace(tmp, path)


def read_state(data) -> dict | None:
    """The running daemon's state file, or None (none, or its process is gone)."""
    try:
        raw = (Path(data) / STATE).read_text()
        st = json.loads(raw)
        pid = int(st["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return st


def _get(url: str, timeout: float = 2.0):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, OSError):
        return None, b""


def serve_args(s: Settings) -> list:
    args = ["--data", str(s.data), "--host", s.host, "--port", str(s.port), "--threads", str(s.threads),
            "--max-body-mb", str(s.max_body_mb), "--max-connections", str(s.max_connections),
            "--header-timeout", str(s.header_timeout), "--body-timeout", str(s.body_timeout)]
    for flag, v in (("--api-key-file", s.api_key_file), ("--workers", s.workers), ("--dim", s.dim),
                    ("--embedder", s.embedder),
                    ("--durability", s.durability), ("--log-segment-mb", s.log_segment_mb),
                    ("--trace-dir", s.trace_dir), ("--otlp", s.otlp_url), ("--loki", s.loki_url)):
        if v is not None:
            args += [flag, str(v)]
    if not s.open_metrics:
        args.append("--protect-metrics")
    for lane, cap in (s.lanes or {}).items():
        args += ["--lane", f"{lane}={cap}"]
    return args


def start(s: Settings, timeout: float = 60.0, out=print) -> int:
    """Start ``engram serve`` in the background; return once it answers /health/alive."""
    data = Path(s.data)
    data.mkdir(parents=True, exist_ok=True)
    running = read_state(data)
    if running is not None:
        out(f"engram daemon already running: pid {running['pid']}, {running['url']}")
        return 1
    (data / STATE).unlink(missing_ok=True)
    with open(data / LOG, "ab") as logf:
        os.chmod(data / LOG, 0o600)
        p = subprocess.Popen([sys.executable, "-m", "engram.cli", "serve", *serve_args(s)],
                             stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if p.poll() is not None:
            out(f"engram daemon failed to start (exit {p.returncode}); the end of {data / LOG}:")
            out(_tail(data / LOG))
            return 1
        st = read_state(data)
        if st is not None and st.get("pid") == p.pid and _get(st["url"] + "/health/alive")[0] == 200:
            out(f"engram daemon running: pid {p.pid}, {st['url']}, engine {st['engine']}, data {st['data']}")
            return 0
        time.sleep(0.1)
    p.terminate()
    out(f"engram daemon did not answer within {timeout:.0f} s; stopped it. The end of {data / LOG}:")
    out(_tail(data / LOG))
    return 1


def stop(data, timeout: float = 120.0, out=print) -> int:
    """SIGTERM the daemon of ``data`` and wait until it has exited (it drains and saves first)."""
    st = read_state(data)
    if st is None:
        (Path(data) / STATE).unlink(missing_ok=True)
        out(f"no engram daemon is running for {data}")
        return 0
    pid = int(st["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            out(f"engram daemon stopped (pid {pid})")
            return 0
        time.sleep(0.1)
    out(f"engram daemon (pid {pid}) has not exited after {timeout:.0f} s; it may still be saving. "
        f"See {Path(data) / LOG}")
    return 1


def status(data, out=print) -> int:
    """0 and the daemon's health if it runs; 3 (the LSB code for "not running") if not."""
    st = read_state(data)
    if st is None:
        out(f"engram daemon: not running (data {data})")
        return 3
    code, body = _get(st["url"] + "/health")
    try:
        health = json.loads(body) if body else {}
    except ValueError:
        health = {}
    out(f"engram daemon: running, pid {st['pid']}, {st['url']}, engine {st['engine']}, data {st['data']}, "
        f"health {health.get('status', f'unreachable (HTTP {code})')}")
    return 0 if code == 200 else 1


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"

