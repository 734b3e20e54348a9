"""The daemon's thread pools: engine calls run in a few threads, never on the event loop.

A request's coroutine queues (loop, future, fn, args); a pool thread runs ``fn(*args)`` and
settles the asyncio future from its thread. Lighter than concurrent.futures'
ThreadPoolExecutor, whose submit also builds a Future (with its own Condition) and a work
item that nobody here waits on, and checks its thread count each time.
"""
from __future__ import annotations

import queue

from engram.threads import named_thread


def _set(fut, result, exc) -> None:
    if not fut.cancelled():              # the request went away meanwhile
        fut.set_result(result) if exc is None else fut.set_exception(exc)


def _run(loop, fut, fn, args) -> None:
    try:
        result = fn(*args)
    except BaseException as e:                   # every exception goes to the awaiting request
        loop.call_soon_threadsafe(_set, fut, None, e)
    else:
        loop.call_soon_threadsafe(_set, fut, result, None)


class Pool:
    """``threads`` threads named ``name_<i>``, started at once."""

    def __init__(self, threads: int, name: str):
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._threads = [named_thread(self._work, f"{name}_{i}")
                         for i in range(threads)]
        for t in self._threads:
            t.start()

    def submit(self, loop, fut, fn, args) -> None:
        """Run ``fn(*args)`` in a pool thread; its result or exception goes to ``fut``."""
        self._q.put((loop, fut, fn, args))

    def _work(self) -> None:
        get = self._q.get
        while (item := get()) is not None:
            _run(*item)
            del item                             # hold nothing of a finished request while idle

    def shutdown(self) -> None:
        """Finish what is queued, then stop every thread."""
        for _ in self._threads:
            self._q.put(None)
        for t in self._threads:
            t.join()
