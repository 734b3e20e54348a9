"""The `engram` command line.

    engram info            backends, ISA variants, layout hash, live engines
    engram demo            build a memory of the Python stdlib and query it
"""
from __future__ import annotations

import argparse
import platform
import sys

from engram.config import DEFAULT_DIM, MAX_DIM


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
    from engram.kernels import native
    from engram.layout import ABI_VERSION, LAYOUT_HASH, NODE_HOT_DTYPE
    from engram.store.shm import engines, pid_alive

    print(f"engram {engram.__version__}  (python {platform.python_version()}, numpy {numpy.__version__}, "
          f"{platform.machine()})")
    print(f"layout hash   0x{LAYOUT_HASH:016x}   kernel ABI {ABI_VERSION}   node record {NODE_HOT_DTYPE.itemsize} B")
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
        print(f"  {e}   {'running' if pid_alive(e.pid) else 'dead (cleaned at next start)'}")
    return 0


def cmd_demo(args) -> int:
    from engram.demo import run as demo
    demo.run(limit=args.limit, queries=args.query or None, k=args.k, dim=args.dim, tier=args.tier)
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


def cmd_trace(args) -> int:
    from engram.observe.attach import tools as attach_tools
    from engram.observe.attach.tail import tail
    if args.engine == "collect":           # `engram trace collect <engine> --out DIR`
        if not args.target or not (args.collect or args.out):
            raise SystemExit("usage: engram trace collect <engine> --out DIR")
        args.engine, args.collect = args.target, args.collect or args.out
    eng = attach_tools.resolve(args.engine)
    if args.collect:
        import signal

        from engram.observe.attach.collector import Collector
        c = Collector(str(eng), args.collect, args.formats.split(","))
        signal.signal(signal.SIGTERM, lambda *_: c.stop.set())
        try:
            n = c.run()
        except KeyboardInterrupt:
            c.stop.set()
            n = c.run()
        print(f"collected {n} events into {args.collect} ({c.lost} lost to full rings)")
        return 0
    return tail(eng, kinds=args.kind, space=args.space, min_strength=args.min_strength, count=args.count,
                seconds=args.seconds)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="engram", description="engram: a cognitive memory engine in shared memory")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("info", help="show kernel backends, ISA variants, layout hash and live engines")
    p.set_defaults(fn=cmd_info)
    p = sub.add_parser("demo", help="build a memory of the Python standard library and recall from it")
    p.add_argument("--limit", type=_integer(1), default=None, help="at most this many memories (default: all)")
    p.add_argument("--query", action="append", help="a question to ask (repeatable); default: a built-in set")
    p.add_argument("-k", type=_integer(1), default=5, help="results per query (default 5)")
    p.add_argument("--dim", type=_integer(1, MAX_DIM), default=DEFAULT_DIM,
                   help=f"embedding dimension (default {DEFAULT_DIM})")
    p.add_argument("--tier", choices=("hot", "warm"), default="hot", help="store f32 (hot) or f16 (warm)")
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
    p = sub.add_parser("trace", help="tail a running engine's trace events live; `trace collect <engine> --out DIR` "
                                      "drains them to files")
    p.add_argument("engine", help="engine name or owner pid (or `collect`, then the engine)")
    p.add_argument("target", nargs="?", help=argparse.SUPPRESS)
    p.add_argument("--out", metavar="DIR", help="with `collect`: where the files go")
    p.add_argument("--kind", action="append", help="only these event kinds (repeatable)")
    p.add_argument("--space", default=None, help="only this memory space")
    p.add_argument("--min-strength", type=float, default=None, help="only events at least this strong")
    p.add_argument("--count", type=int, default=None, help="stop after this many events")
    p.add_argument("--seconds", type=float, default=None, help="stop after this long")
    p.add_argument("--collect", metavar="DIR", help="drain every ring into DIR (trace.jsonl, trace.perfetto.json)")
    p.add_argument("--formats", default="jsonl,perfetto", help="with --collect (default jsonl,perfetto)")
    p.set_defaults(fn=cmd_trace)
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
