"""The Zig kernel arena: per-thread scratch with a configurable size and
overflow strategy, exercised through real kernels from 32+ threads."""
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import engram.kernels
from engram.errors import InvalidInputError, KernelError

ZIG = {k: t for k, t in engram.kernels.available().items() if k.startswith("zig/") and not isinstance(t, Exception)}
pytestmark = pytest.mark.skipif(not ZIG, reason="the Zig library is not built (ENGRAM_BUILD_ZIG=0)")
MiB = 1 << 20


@pytest.fixture(params=sorted(ZIG))
def zig(request):
    t = ZIG[request.param]
    t.arena.configure(1, "fallback")
    t.arena.reset_stats()
    yield t
    t.arena.configure(1, "fallback")     # leave the defaults for other tests in this process


def test_other_backends_have_no_arena():
    assert engram.kernels.backend("c").arena is None
    assert engram.kernels.backend("numpy").arena is None


def test_defaults_and_configuration(zig):
    st = zig.arena.stats()
    assert st["bytes"] == MiB and st["overflow"] == "fallback"
    zig.arena.configure(100, "error")
    assert zig.arena.stats()["bytes"] == 100 * MiB and zig.arena.stats()["overflow"] == "error"
    for bad in ({"size_mb": 0}, {"size_mb": 101}, {"size_mb": 1.5}, {"size_mb": True}, {"overflow": "ignore"}):
        with pytest.raises(InvalidInputError):
            zig.arena.configure(**{"size_mb": 2, "overflow": "error", **bad})
    assert zig.arena.stats()["bytes"] == 100 * MiB      # a rejected call changed nothing


def test_fits_then_overflows_by_strategy(zig):
    zig.arena.configure(2, "error")
    assert zig.arena.probe(2 * MiB - 64)
    assert not zig.arena.probe(2 * MiB + 1)
    st = zig.arena.stats()
    assert st["overflows"] == 1 and st["fallbacks"] == 0 and st["high_water"] >= 2 * MiB - 64
    zig.arena.configure(2, "fallback")
    assert zig.arena.probe(5 * MiB)                     # served by the page allocator
    st = zig.arena.stats()
    assert st["overflows"] == 2 and st["fallbacks"] == 1


def test_panic_strategy_aborts_the_process():
    key = sorted(ZIG)[0]
    code = textwrap.dedent(f"""
        import engram.kernels
        t = engram.kernels.backend("zig", isa={key.split('/')[1]!r})
        t.arena.configure(1, "panic")
        assert t.arena.probe(1000)
        print("fits", flush=True)
        t.arena.probe(2 << 20)
        print("survived", flush=True)
    """)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.stdout.splitlines() == ["fits"]
    assert p.returncode != 0


def test_batch_topk_from_32_threads_uses_the_arena(zig):
    """64 queries need 64 heaps: more than the stack holds, so they come from the arena."""
    rng = np.random.default_rng(3)
    rows = rng.standard_normal((2000, 48)).astype(np.float32)
    batches = [rng.standard_normal((64, 48)).astype(np.float32) for _ in range(32)]
    want = [np.stack([zig.cosine_topk(q, rows, 5)[0] for q in b]) for b in batches]
    zig.arena.reset_stats()
    before_threads = zig.arena.stats()["threads"]
    errors = []

    def work(i):
        try:
            for _ in range(20):
                idx, _ = zig.cosine_topk(batches[i], rows, 5)
                if not np.array_equal(idx, want[i]):
                    errors.append(i)
        except Exception as e:
            errors.append(repr(e))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    st = zig.arena.stats()
    assert st["overflows"] == 0 and st["fallbacks"] == 0
    assert st["allocations"] == 32 * 20 * 2                 # heaps and query norms per call
    assert 0 < st["high_water"] <= MiB
    assert st["threads"] - before_threads >= 32 - 1         # one region per new thread


def test_error_strategy_fails_the_kernel_cleanly(zig):
    zig.arena.configure(1, "error")
    rows = np.ones((10, 4), np.float32)
    too_many = np.ones((40000, 4), np.float32)     # 40,000 heaps of 32 bytes + norms > 1 MiB
    with pytest.raises(KernelError, match="-3"):
        zig.cosine_topk(too_many, rows, 2)
    zig.arena.configure(1, "fallback")
    idx, _ = zig.cosine_topk(too_many, rows, 2)
    assert idx.shape == (40000, 2)
