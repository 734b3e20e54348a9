"""Hardware cache counters: real counts where the machine allows them, and an
explicit "not supported" with the kernel's reason where it does not."""
import numpy as np

from engram.observe import hwcounters


def test_counters_measure_or_say_why_not():
    supported, reason = hwcounters.probe()
    cc = hwcounters.CacheCounters()
    assert cc.supported == supported
    with cc:
        a = np.random.default_rng(0).random(4_000_000)     # 32 MB: misses L1 for sure
        float(a.sum())
    r = cc.result()
    assert r["supported"] == supported
    if supported:
        assert r["l1d_reads"] > 1_000_000 and r["l1d_misses"] > 10_000
        assert 0.0 < r["l1d_miss_rate"] < 1.0
    else:
        assert "perf_event_open" in r["reason"] and "perf_event_open" in reason
        assert not any(k.endswith("_rate") for k in r)          # never a made-up number
