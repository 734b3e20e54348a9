"""A worker process with a fault injected by a test (production code has no test hooks):

    python -m faulty_worker <fault> <engine> <worker id>

faults (several joined by ","):
    exit-at-start           exit with code 3 before attaching
    hold-until:<path>       hold each request until <path> exists (60 s at most)
    wait-takers:<s>         as a spread's owner, wait up to this long for idle workers to take
                            the batches it offered before it fires its own share
    exit-in-batch:<path>    the first taker that creates <path> dies holding its batch
    stall-in-batch:<path>   the first taker that creates <path> holds its batch 3 s
Tests point engram.workers.supervisor.WORKER_PROGRAM at this module (PYTHONPATH has tests/e2e).
"""
import os
import sys
import time

from engram.kernels.spreadrun import SpreadRun
from engram.recall import pipeline
from engram.workers import main as worker_main
from engram.workers import stealing
from engram.workers.board import TAKEN


def _first(path: str) -> bool:
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


def inject(fault: str, patch=setattr) -> None:
    """Apply one fault to this process; ``patch(obj, name, value)`` (a test passes
    monkeypatch.setattr, so the fault is undone after it)."""
    kind, _, arg = fault.partition(":")
    if kind == "exit-at-start":
        os._exit(3)
    elif kind == "hold-until":           # after the worker has marked the slot with its pid
        recall = pipeline.recall

        def held(*a, **kw):
            deadline = time.monotonic() + 60
            while not os.path.exists(arg) and time.monotonic() < deadline:
                time.sleep(0.005)
            return recall(*a, **kw)
        patch(pipeline, "recall", held)
    elif kind == "wait-takers":
        fire_part, hop = SpreadRun.fire_part, stealing.HopSplitter.hop

        def hop_waiting(self, run, *a, **kw):
            run._board = self.hops       # so the owner's share below can see its offers
            return hop(self, run, *a, **kw)

        def fire_part_waiting(self, lo, hi):
            board = getattr(self, "_board", None)
            deadline = time.monotonic() + float(arg)
            mine = os.getpid()
            while board is not None and time.monotonic() < deadline:
                offered = (board.slots["owner_pid"] == mine) & (board.slots["state"] == stealing.READY)
                if not offered.any():
                    break
                time.sleep(0.0005)
            fire_part(self, lo, hi)
        patch(stealing.HopSplitter, "hop", hop_waiting)
        patch(SpreadRun, "fire_part", fire_part_waiting)
    elif kind in ("exit-in-batch", "stall-in-batch"):
        serve_batch = stealing.serve_batch

        def faulty(hops, j, reader_of, sems):
            if (hops.state(j) & 0xFF) == TAKEN and _first(arg):
                if kind == "exit-in-batch":
                    os._exit(4)
                time.sleep(3.0)
            serve_batch(hops, j, reader_of, sems)
        patch(stealing, "serve_batch", faulty)
    else:
        raise SystemExit(f"faulty_worker: unknown fault {fault!r}")


if __name__ == "__main__":
    for f in sys.argv[1].split(","):
        inject(f)
    worker_main.main(sys.argv[1:])
