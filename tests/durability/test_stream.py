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
