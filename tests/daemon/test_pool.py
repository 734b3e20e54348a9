"""The daemon's pool: an engine call that raises reaches its request, and the thread goes
on serving (a pool whose threads died with the first error hung every later request)."""
from __future__ import annotations

import asyncio

import pytest

from engram.daemon.pool import Pool


def test_errors_reach_the_caller_and_the_threads_go_on():
    pool = Pool(2, "test-pool")

    async def call(fn, *args):
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        pool.submit(loop, fut, fn, args)
        return await asyncio.wait_for(fut, 30)

    def fail():
        raise KeyError("no such memory")

    async def main():
        for _ in range(5):                       # more errors than threads
            with pytest.raises(KeyError):
                await call(fail)
        return await asyncio.gather(*(call(pow, i, 2) for i in range(10)))
    try:
        assert asyncio.run(main()) == [i * i for i in range(10)]
    finally:
        pool.shutdown()
