"""Space.stream's put returns before the batch is applied: what it queued must not change
when the producer refills its buffer (the usual way to produce: one array, filled again)."""
from __future__ import annotations

import numpy as np
import pytest

import engram


@pytest.mark.parametrize("tier", ["hot", "warm"])
def test_a_producer_may_refill_its_buffer_as_soon_as_put_returns(tmp_path, tier):
    with engram.Engine(path=tmp_path / "db", dim=8, workers=0) as eng:
        st = eng.space("refill").stream()
        buf = np.empty((200, 8), np.float32)
        for k in range(40):
            buf[:] = 1.0 + k
            st.put(buf, content=[f"batch {k}"] * 200, tier=tier)
            buf[:] = -1.0                      # refilled before the worker applies the batch
        st.flush()
        got = eng.space("refill").get(np.arange(0, 8000, 200))
        assert got.content == [f"batch {k}" for k in range(40)]
        assert got.vectors[:, 0].tolist() == [1.0 + k for k in range(40)]
    with engram.Engine(path=tmp_path / "db", workers=0) as eng:     # and so did the log
        assert eng.space("refill").get(np.arange(0, 8000, 200)).vectors[:, 0].tolist() == [1.0 + k for k in range(40)]


def test_a_full_lane_refuses_a_put_before_checking_or_copying_it(tmp_path):
    """Under overload a refused put costs the producer next to nothing: it is refused before
    its batch is checked or copied (tracemalloc sees numpy's allocations), and the batch
    the lane took is applied whole once the ingest worker can go on."""
    import tracemalloc
    n, dim = 200_000, 32                                     # 25.6 MB a batch
    with engram.Engine(path=tmp_path / "db", dim=dim, workers=0, lanes={"normal": n}) as eng:
        sp = eng.space("lanes")
        st = sp.stream()
        v = np.random.default_rng(3).standard_normal((n, dim)).astype(np.float32)
        lock = sp._lock                          # held: the ingest worker waits to apply
        lock.acquire()
        try:
            st.put(v)                            # the lane is full until it is applied
            tracemalloc.start()
            try:
                with pytest.raises(engram.errors.OverloadError, match="lane is full"):
                    st.put(v)
                with pytest.raises(engram.errors.OverloadError, match="lane is full"):
                    st.put(np.full((10, dim), np.nan, np.float32))      # refused before it is looked at
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            assert peak < 1 << 20, f"a refused put allocated {peak} bytes"
        finally:
            lock.release()
        st.flush()
        assert len(sp) == n and np.array_equal(sp.get(np.arange(0, n, 9973)).vectors, v[::9973])
        with pytest.raises(engram.errors.NonFiniteError):       # with room, the check speaks
            st.put(np.full((10, dim), np.nan, np.float32))
