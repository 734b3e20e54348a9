"""`python -m engram.workers.main <engine> <worker id>`: a recall worker process.

A module of its own (not imported by the package), so the worker starts in a
clean interpreter without re-running the owner's __main__ as multiprocessing's
spawn would.
"""
import sys

from engram.workers.supervisor import worker_main

if __name__ == "__main__":
    worker_main(sys.argv[1], int(sys.argv[2]))
