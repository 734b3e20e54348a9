"""The `engram` command line.

    engram info            backends, ISA variants, layout hash, live engines
    engram demo            build a memory of the Python stdlib and query it
    engram list | inspect | top | trace    look at running engines (docs/observability.md)
    engram cleanup         remove what dead engines left in shared memory
    engram --version
"""
from __future__ import annotations

import argparse
import platform
import sys

from engram.config import DEFAULT_DIM, INDEX_MIN_ROWS, MAX_DIM


def _integer(minimum: int, maximum: int | None = None):
    """An argparse type: an integer in [minimum, maximum], else a usage error that says so."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if v < minimum or (maximum is not None and v > maximum):
            bound = f"from {minimum} to {maximum:,}" if maximum is not None else f">= {minimum}"
            raise argparse.ArgumentTypeError(f"must be an integer {bound}, got {v}")
        return v
    return parse


def cmd_info(args) -> int:
    import numpy

    import engram
    from engram import kernels
    from engram.kernels import abi, native
    from engram.layout import LAYOUT_HASH, NODE_HOT_DTYPE
    from engram.store.shm import engines, pid_alive

    print(f"engram {engram.__version__}  (python {platform.python_version()}, numpy {numpy.__version__}, "
          f"{platform.machine()})")
    print(f"layout hash   0x{LAYOUT_HASH:016x}   kernel ABI 0x{abi.ABI_HASH:016x}   "
          f"node record {NODE_HOT_DTYPE.itemsize} B")
    print(f"CPU runs      {', '.join(kernels.cpu_isas())}   (ENGRAM_ISA forces one)")
    print(f"libraries     {native.lib_dir()}")
    from engram.observe import hwcounters
    from engram.recall.budget import topology
    ok, why = hwcounters.probe()
    topo = topology()
    print(f"topology      {topo.cores} cores, L1d {topo.l1d >> 10} KiB, L2 {topo.l2 >> 10} KiB, L3 {topo.l3 >> 20} MiB")
    print(f"hw counters   {'available (L1D and LLC misses)' if ok else 'not supported: ' + why}")
    try:
        import engram.kernels._cy.scan
        print("cython        engram.kernels._cy.scan loaded")
    except ImportError as e:
        print(f"cython        NOT loaded: {e}")
    print("backends:")
    for key, table in kernels.available().items():
        if isinstance(table, Exception):
            print(f"  {key:<14} unavailable: {table}")
        else:
            where = getattr(table, "path", "")
            print(f"  {key:<14} ok  {where}")
    from engram.errors import KernelError
    try:
        d = kernels.backend()
    except KernelError as e:
        print(f"default       none loads: {e}")
    else:
        print(f"default       {d.name}/{d.isa}   (ENGRAM_KERNELS picks another)")
    live = engines()
    print(f"engines       {len(live)} of this user in shared memory")
    for e in live:
        print(f"  {e}   {'running' if pid_alive(e.pid) else 'dead: `engram cleanup` removes what it left'}")
    return 0


def cmd_demo(args) -> int:
    from engram.demo import run as demo
    demo.run(limit=args.limit, queries=args.query or None, k=args.k, dim=args.dim, tier=args.tier,
             embedder=args.embedder)
    return 0


def cmd_list(args) -> int:
    from engram.observe.attach import tools as attach_tools
    print(attach_tools.format_list(attach_tools.list_engines()))
    return 0


def cmd_inspect(args) -> int:
    from engram.observe.attach import tools as attach_tools
    eng = attach_tools.resolve(args.engine)
    text = attach_tools.format_inspect(eng, args.space, args.node, args.pool)
    print(text)
    return 3 if "REFUSED" in text else 0


def cmd_top(args) -> int:
    from engram.observe.attach import tools as attach_tools
    if args.interval <= 0:
        raise SystemExit("engram top: --interval must be > 0")
    return attach_tools.run_top(attach_tools.resolve(args.engine), args.interval, args.iterations)


TRACE_USAGE = ("engram trace <engine|pid> [--kind K ...] [--space S] [--min-strength X] [--count N] [--seconds T]\n"
               "       engram trace collect <engine|pid> --out DIR [--otlp URL] [--loki URL] [--perfetto]")
TAIL_ONLY = ("kind", "space", "min_strength", "count", "seconds")
COLLECT_ONLY = ("out", "loki", "otlp", "perfetto")


def cmd_trace(args) -> int:
    from engram.observe.attach import tools as attach_tools
    from engram.observe.attach.tail import tail

    def fail(msg: str) -> SystemExit:       # a usage error: exit 2, as argparse's own
        print(f"usage: {TRACE_USAGE}\nengram trace: error: {msg}", file=sys.stderr)
        return SystemExit(2)

    if args.engine == "collect":           # `engram trace collect <engine> --out DIR`
        if not args.target or not args.out:
            raise fail("collect needs the engine and --out DIR")
        given = [f"--{o.replace('_', '-')}" for o in TAIL_ONLY if getattr(args, o) not in (None, [])]
        if given:
            raise fail(f"{', '.join(given)} {'filters' if len(given) == 1 else 'filter'} the live tail; "
                       "collect drains every event "
                       "(engram.TraceConfig(kinds=..., min_strength=...) filters where they are written)")
        eng = attach_tools.resolve(args.target)
        import signal

        from engram.observe.attach.collector import Collector
        formats = ("jsonl", "perfetto") if args.perfetto else ("jsonl",)
        c = Collector(str(eng), args.out, formats, loki_url=args.loki, otlp_url=args.otlp)
        for sig in (signal.SIGTERM, signal.SIGINT):     # stop after a last drain; the exporters finish sending
            signal.signal(sig, c.stop_on_signal)
        print(f"collecting the events of {eng} into {args.out}; stop with Ctrl-C or SIGTERM", flush=True)
        c.run()
        print(f"{c.summary_line()} (into {args.out})")
        return 0
    if args.target:
        raise fail(f"unexpected {args.target!r} after the engine")
    given = [f"--{o}" for o in COLLECT_ONLY if getattr(args, o)]
    if given:
        raise fail(f"{', '.join(given)} {'goes' if len(given) == 1 else 'go'} with "
                   f"`engram trace collect {args.engine} --out DIR`")
    eng = attach_tools.resolve(args.engine)
    return tail(eng, kinds=args.kind, space=args.space, min_strength=args.min_strength, count=args.count,
                seconds=args.seconds)


def cmd_cleanup(args) -> int:
    """Remove the shared-memory segments and semaphores of engines whose owner died."""
    from engram.errors import EngramError
    from engram.store import shm
    wanted = [shm.resolve(e) for e in args.engine] if args.engine else None
    running = [e for e in (wanted or shm.engines()) if shm.pid_alive(e.pid)]
    if wanted and running:
        raise EngramError("refused: " + "; ".join(f"engine {e} is running (pid {e.pid})" for e in running)
                          + ": close it (or end its process) first; cleanup removes only what dead engines left")
    left = shm.dead_engines(wanted) if args.dry_run else shm.remove_dead(wanted)
    verb = "would remove" if args.dry_run else "removed"
    for x in left:
        print(f"{verb} {x.engine} (pid {x.engine.pid}, exited): {len(x.segments)} segment"
              f"{'' if len(x.segments) == 1 else 's'}, {len(x.semaphores)} semaphore"
              f"{'' if len(x.semaphores) == 1 else 's'}")
        if args.verbose:
            for name in x.segments + x.semaphores:
                print(f"    {name}")
    for e in running:
        print(f"skipped {e} (pid {e.pid}, running)")
    if not left:
        print("nothing to clean: no engine of this user left segments behind")
    return 0


def cmd_recover(args) -> int:
    """Open an engine directory (recovering it, as any open does) and checkpoint it; with
    --truncate, first cut its log at the first damaged record, giving up what follows."""
    from pathlib import Path

    from engram import Engine
    from engram.errors import InvalidInputError
    from engram.store.snapshot import PathLock
    from engram.store.wal import truncate_damage
    path = Path(args.path)
    if not path.is_dir():
        raise InvalidInputError(f"{path} is not a directory (an engine's path)")
    if args.truncate:
        lock = PathLock(path)          # refused while an engine has the path open
        try:
            lost = truncate_damage(path / "wal")
        finally:
            lock.release()
        if lost.cut_file:
            print(f"cut {lost.cut_file} at LSN {lost.cut_lsn}: {lost.cut_bytes} bytes given up")
            for f in lost.lost_segments:
                print(f"moved aside: {f}")
            print(f"the log now ends at LSN {lost.next_lsn - 1}; everything from LSN {lost.cut_lsn} on is lost")
        else:
            print("the log has no damage: nothing cut")
    with Engine(path=path, workers=0) as eng:
        r = eng.recovery
        print(f"{path}: snapshot at LSN {r['snapshot_lsn']}, {r['replayed']} log records replayed "
              f"from {r['segments']} segments in {r['seconds']:.2f} s"
              + (f"; a torn tail of {r['cut_bytes']} bytes was cut" if r["cut_bytes"] else ""))
        for name in eng.spaces:
            print(f"  space {name}: {len(eng.space(name))} memories")
    return 0


class _Version(argparse.Action):
    """--version: the package version (imported only when asked)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, **kw):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kw)

    def __call__(self, parser, namespace, values, option_string=None):
        import numpy

        import engram
        print(f"engram {engram.__version__} (python {platform.python_version()}, numpy {numpy.__version__})")
        parser.exit()


DEFAULT_DATA = "./engram-data"


def _daemon_options(p) -> None:
    p.add_argument("--data", default=DEFAULT_DATA, help=f"data directory: the engine, its log, daemon.json and "
                                                       f"daemon.log (default {DEFAULT_DATA})")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; anything else "
                                                       "needs an API key)")
    p.add_argument("--port", type=_integer(0, 65535), default=7432, help="port (default 7432; 0: any free one)")
    p.add_argument("--api-key-file", default=None, help="API keys, one per line (or sha256:<hex>); also "
                                                        "ENGRAM_API_KEY")
    p.add_argument("--workers", type=_integer(0), default=None, help="recall worker processes (default: CPUs)")
    p.add_argument("--threads", type=_integer(1, 256), default=8, help="threads running engine calls (default 8)")
    p.add_argument("--embedder", choices=("default", "none"), default="none",
                   help="default: the text extra's model encodes content-only requests (docs/embedding.md)")
    p.add_argument("--dim", type=_integer(1, MAX_DIM), default=None,
                   help=f"embedding dimension of a new data directory (default {DEFAULT_DIM}; an existing one "
                        "keeps its own)")
    p.add_argument("--durability", choices=("group", "always", "none"), default=None,
                   help="when a write is acknowledged (default group: docs/durability/wal-format.md)")
    p.add_argument("--max-body-mb", type=float, default=64.0, help="largest request body (default 64 MiB)")
    p.add_argument("--max-connections", type=_integer(1), default=4096,
                   help="connections served at once; more get 503 (default 4096)")
    p.add_argument("--log-segment-mb", type=float, default=None, help="size of each log segment (default 64)")
    p.add_argument("--header-timeout", type=float, default=10.0, help="seconds headers may take (default 10)")
    p.add_argument("--body-timeout", type=float, default=60.0, help="seconds a body may take (default 60)")
    p.add_argument("--trace-dir", default=None,
                   help="trace the engine: the collector writes trace.jsonl and trace.perfetto.json here "
                        "(default DATA/traces with --otlp or --loki)")
    p.add_argument("--otlp", default=None, metavar="URL", help="also export OTLP/HTTP spans to this base URL")
    p.add_argument("--loki", default=None, metavar="URL", help="also push trace events to Loki at this base URL")
    p.add_argument("--lane", action="append", default=[], metavar="LANE=N",
                   help="an ingest lane's capacity in observations, e.g. normal=10000 (repeatable)")
    p.add_argument("--index-min-rows", type=_integer(0), default=INDEX_MIN_ROWS,
                   help=f"index spaces this large (default {INDEX_MIN_ROWS:,}; 0: never)")
    p.add_argument("--cold-after-s", type=float, default=None, metavar="S", help="move memories not recalled "
                   "for S seconds to the cold tier, recalled ones back (default: off; docs/scale.md, Tiers)")
    p.add_argument("--protect-metrics", dest="open_metrics", action="store_false",
                   help="require the API key for /health and /metrics too (default: they are open)")


def _settings(args):
    from pathlib import Path

    from engram.daemon.service import Settings
    return Settings(data=Path(args.data), host=args.host, port=args.port, api_key_file=args.api_key_file,
                    workers=args.workers, threads=args.threads, dim=args.dim, durability=args.durability,
                    embedder=None if args.embedder == "none" else args.embedder,
                    max_body_mb=args.max_body_mb, max_connections=args.max_connections,
                    open_metrics=args.open_metrics, log_segment_mb=args.log_segment_mb, lanes=_lanes(args.lane),
                    header_timeout=args.header_timeout, body_timeout=args.body_timeout, trace_dir=args.trace_dir,
                    otlp_url=args.otlp, loki_url=args.loki, index_min_rows=args.index_min_rows or None,
                    cold_after_s=args.cold_after_s)


def _lanes(given: list) -> dict | None:
    out = {}
    for item in given:
        lane, _, cap = item.partition("=")
        if not cap.isdigit():
            raise SystemExit(f"engram: error: --lane takes LANE=N (e.g. normal=10000), got {item!r}")
        out[lane] = int(cap)
    return out or None


def cmd_serve(args) -> int:
    import logging

    from engram.daemon.service import serve
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return serve(_settings(args))


def cmd_daemon_start(args) -> int:
    from engram.daemon.service import start
    return start(_settings(args))


def cmd_daemon_stop(args) -> int:
    from engram.daemon.service import stop
    return stop(args.data)


def cmd_daemon_status(args) -> int:
    from engram.daemon.service import status
    return status(args.data)


def cmd_daemon_keygen(args) -> int:
    from engram.daemon.guard import new_key
    key, line = new_key()
    print(f"key (give it to clients; it is not stored): {key}\nline for --api-key-file: {line}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="engram", description="engram: a cognitive memory engine in shared memory")
    ap.add_argument("--version", action=_Version, help="show the version and exit")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("info", help="show kernel backends, ISA variants, layout hash and live engines")
    p.set_defaults(fn=cmd_info)
    p = sub.add_parser("demo", help="build a memory of the Python standard library and recall from it")
    from engram.demo import add_arguments as demo_arguments
    demo_arguments(p, _integer)
    p.set_defaults(fn=cmd_demo)
    p = sub.add_parser("list", help="the running engines this user can attach to")
    p.set_defaults(fn=cmd_list)
    p = sub.add_parser("inspect", help="a running engine's segments (with layout checks), node records, pool")
    p.add_argument("engine", help="engine name (eg.<uid>.<pid>.<token>) or owner pid")
    p.add_argument("--space", default=None, help="memory space for --node (default 'default')")
    p.add_argument("--node", type=int, action="append", help="show this node's record and edges (repeatable)")
    p.add_argument("--pool", action="store_true", help="show the activation record pool's counters")
    p.set_defaults(fn=cmd_inspect)
    p = sub.add_parser("top", help="live view of a running engine: memories, recalls/s, latency, pool, workers")
    p.add_argument("engine", help="engine name or owner pid")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes (default 1)")
    p.add_argument("--iterations", type=int, default=None, help="stop after this many refreshes")
    p.set_defaults(fn=cmd_top)
    p = sub.add_parser("trace", usage=TRACE_USAGE,
                       help="tail a running engine's trace events live; `trace collect <engine> --out DIR` "
                            "drains them to files")
    p.add_argument("engine", help="engine name or owner pid to tail; or `collect`, then the engine")
    p.add_argument("target", nargs="?", help=argparse.SUPPRESS)
    p.add_argument("--kind", action="append", help="only these event kinds (repeatable)")
    p.add_argument("--space", default=None, help="only this memory space")
    p.add_argument("--min-strength", type=float, default=None, help="only events at least this strong")
    p.add_argument("--count", type=_integer(1), default=None, help="stop after this many events")
    p.add_argument("--seconds", type=float, default=None, help="stop after this long")
    p.add_argument("--out", metavar="DIR", help="collect: where the files go (trace.jsonl, summary.json)")
    p.add_argument("--otlp", metavar="URL", help="collect: also export OTLP/HTTP spans to this base URL")
    p.add_argument("--loki", metavar="URL", help="collect: also push to Loki at this base URL")
    p.add_argument("--perfetto", action="store_true", help="collect: also write trace.perfetto.json")
    p.set_defaults(fn=cmd_trace)
    p = sub.add_parser("cleanup", help="remove the shared-memory segments of engines whose process died "
                                        "(every Engine start does it too); running engines are never touched")
    p.add_argument("engine", nargs="*", help="only these engines (name or owner pid); default: every dead one")
    p.add_argument("--dry-run", action="store_true", help="say what would be removed, remove nothing")
    p.add_argument("-v", "--verbose", action="store_true", help="name every segment and semaphore")
    p.set_defaults(fn=cmd_cleanup)
    p = sub.add_parser("recover", help="open an engine directory after a crash and checkpoint it; --truncate "
                                        "cuts a damaged log at the first bad record (losing what follows)")
    p.add_argument("path", help="the engine's directory (Engine(path=...))")
    p.add_argument("--truncate", action="store_true",
                   help="accept losing every log record from the first damaged one on (WALError's way out)")
    p.set_defaults(fn=cmd_recover)
    p = sub.add_parser("serve", help="run the HTTP daemon in the foreground (for systemd and containers)")
    _daemon_options(p)
    p.set_defaults(fn=cmd_serve)
    p = sub.add_parser("daemon", help="the HTTP daemon in the background: start | stop | status | keygen")
    dsub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    q = dsub.add_parser("start", help="start it in the background; returns once it answers")
    _daemon_options(q)
    q.set_defaults(fn=cmd_daemon_start)
    for name, fn, text in (("stop", cmd_daemon_stop, "SIGTERM it and wait: it drains, saves and exits"),
                           ("status", cmd_daemon_status, "is it running, where, and its health (exit 3: not running)")):
        q = dsub.add_parser(name, help=text)
        q.add_argument("--data", default=DEFAULT_DATA, help=f"its data directory (default {DEFAULT_DATA})")
        q.set_defaults(fn=fn)
    q = dsub.add_parser("keygen", help="print a new API key, and the line to put in --api-key-file (hashed)")
    q.set_defaults(fn=cmd_daemon_keygen)
    args = ap.parse_args(argv)
    if not getattr(args, "fn", None):
        ap.print_help()
        return 2
    try:
        return args.fn(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:          # e.g. `engram info | head`: the reader left
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as e:
        from engram.errors import EngramError
        if isinstance(e, EngramError):
            print(f"engram: error: {e}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
