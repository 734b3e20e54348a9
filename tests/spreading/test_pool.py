"""ActivationRecordPool: the shared lock-free freelist from several real processes,
accounting, the per-process cache in front of the shared stack, bad input, reset."""
import multiprocessing as mp
import os

import numpy as np
import pytest

from engram.errors import InvalidInputError
from engram.store.shm.names import EngineName
from engram.workers.pool import ActivationRecordPool, PoolExhaustedError


@pytest.fixture
def pool():
    name = EngineName.new()
    p = ActivationRecordPool.create(name, capacity=4096, cache_size=64)
    yield p
    p.close(unlink=True)


def test_acquire_release_and_counts(pool):
    a = pool.acquire(100)
    assert a.dtype == np.uint32 and len(set(a.tolist())) == 100
    assert (pool.records["flags"][a] & 1).all()
    s = pool.stats()
    assert s["in_use"] == 100 and s["high_water"] == 100 and s["allocations"] == 100 and s["reused"] == 0
    pool.release(a)
    s = pool.stats()
    assert s["in_use"] == 0 and s["released"] == 100 and s["high_water"] == 100
    b = pool.acquire(100)                  # comes back from the cache and freelist: no allocation
    assert set(b.tolist()) == set(a.tolist())
    assert pool.stats()["allocations"] == 100 and pool.stats()["reused"] == 100
    pool.release(b)


def _shared_stack_share(pool, rounds=5000) -> float:
    """Exchanges on the shared stack (its head's tag counts every pop and chain push) per
    record acquired or released, for spreads that each take 1..24 records while up to
    three earlier results are still held, released oldest first."""
    rng = np.random.default_rng(0)
    tag = lambda: int(pool.header["head"][0]) >> 32
    before, start, held = pool.stats(), tag(), []
    for _ in range(rounds):
        held.append(pool.acquire(int(rng.integers(1, 25))))
        if len(held) > int(rng.integers(0, 4)):
            pool.release(held.pop(0))
    for idx in held:
        pool.release(idx)
    s = pool.stats()
    assert s["in_use"] == 0 and s["acquired"] == s["released"]
    return (tag() - start) / (s["acquired"] - before["acquired"] + s["released"] - before["released"])


def test_the_local_cache_serves_most_traffic_without_touching_the_shared_stack(pool):
    """Any freelist reuses records, so the hit rate and the allocations say little. What
    this pool adds is a per-process cache in front of the shared stack, refilled and
    spilled half its capacity at a time: with a cache of 64, under 10% of the records
    moved cost an exchange on the shared stack (measured 6%); with a cache of one
    record, the same traffic costs ~92%, for the same hit rate."""
    share = _shared_stack_share(pool)
    assert share < 0.1, share
    single = ActivationRecordPool.create(EngineName.new(), capacity=4096, cache_size=1)
    try:
        without = _shared_stack_share(single)
        assert not without < 0.1, without                     # the same check fails without the cache
        assert single.stats()["hit_rate"] == pool.stats()["hit_rate"] > 0.99
        assert single.stats()["allocations"] == pool.stats()["allocations"]
    finally:
        single.close(unlink=True)


def _on_shared_stack(pool) -> list:
    out, i = [], int(pool.header["head"][0]) & 0xFFFFFFFF
    while i != 0xFFFFFFFF:
        out.append(i)
        i = int(pool.records["next"][i])
    return out


def test_a_full_cache_spills_half_of_itself_to_the_shared_stack_in_one_exchange(pool):
    a = pool.acquire(200)                        # never-used records: the shared stack is not touched
    tag = lambda: int(pool.header["head"][0]) >> 32
    start = tag()
    pool.release(a)                              # 64 fill the cache; then 32 at a time go back as one chain
    assert tag() - start == 5
    spilled = _on_shared_stack(pool)
    assert len(spilled) == 5 * 32 and set(spilled) <= set(a.tolist())
    kept = pool.acquire(40)                      # the other 40 come from the cache, without an exchange
    assert tag() - start == 5 and set(kept.tolist()) == set(a.tolist()) - set(spilled)
    pool.release(kept)


def test_soak_100k_spreads_returns_to_its_starting_use(pool):
    rng = np.random.default_rng(1)
    start = pool.stats()["in_use"]
    sizes = rng.integers(1, 40, 100_000)
    for n in sizes:
        pool.release(pool.acquire(int(n)))
    s = pool.stats()
    assert s["in_use"] == start and s["acquired"] == s["released"] == int(sizes.sum())
    assert s["allocations"] <= 64 + 40           # the working set, never the traffic


def test_bad_releases_change_nothing(pool):
    a = pool.acquire(10)
    before = pool.stats()
    with pytest.raises(InvalidInputError, match="twice"):
        pool.release([a[0], a[0]])
    with pytest.raises(InvalidInputError, match="not held"):
        pool.release([a[1], 4000])
    with pytest.raises(InvalidInputError, match=r"\[0, 4096\)"):
        pool.release([-1])
    with pytest.raises(InvalidInputError):
        pool.release(np.array([0.5]))
    assert pool.stats() == before and (pool.records["flags"][a] & 1).all()
    pool.release(a)
    with pytest.raises(InvalidInputError, match="not held"):
        pool.release(a[:1])


def test_exhaustion_is_all_or_nothing(pool):
    a = pool.acquire(4000)
    with pytest.raises(PoolExhaustedError, match="exhausted"):
        pool.acquire(200)
    assert pool.stats()["in_use"] == 4000
    pool.release(a)


def test_reset_only_when_idle(pool):
    a = pool.acquire(5)
    with pytest.raises(InvalidInputError, match="held"):
        pool.reset()
    pool.release(a)
    pool.reset()
    s = pool.stats()
    assert s["never_used"] == 4096 and s["resets"] == 1
    b = pool.acquire(3)                       # the cache was dropped: fresh records again
    assert sorted(b.tolist()) == [0, 1, 2]
    pool.release(b)


def _stress(name, worker, rounds, seed, q):
    """Random acquire / hold / release; stamp each held record and check the stamp
    before giving it back: a record handed to two holders at once gets overwritten."""
    try:
        pool = ActivationRecordPool.attach(name, cache_size=32)
        rng = np.random.default_rng(seed)
        held = []
        errors = 0
        seq = 0
        for _ in range(rounds):
            if held and rng.random() < 0.5:
                idx, stamp = held.pop(int(rng.integers(0, len(held))))
                r = pool.records[idx]
                if not (np.all(r["source"] == worker) and np.all(r["node"] == stamp)):
                    errors += 1
                pool.release(idx)
            else:
                try:
                    idx = pool.acquire(int(rng.integers(1, 16)))
                except PoolExhaustedError:
                    continue
                seq += 1
                stamp = (seq * 100 + np.arange(idx.size)).astype(np.uint32)
                pool.records["source"][idx] = worker
                pool.records["node"][idx] = stamp
                held.append((idx, stamp))
        for idx, stamp in held:
            r = pool.records[idx]
            if not (np.all(r["source"] == worker) and np.all(r["node"] == stamp)):
                errors += 1
            pool.release(idx)
        pool.flush()
        q.put((worker, errors))
    except BaseException as e:                  # report, don't hang the parent
        q.put((worker, repr(e)))


@pytest.mark.parametrize("procs", [4, 6])
def test_no_record_is_ever_handed_out_twice_across_processes(procs):
    name = EngineName.new()
    pool = ActivationRecordPool.create(name, capacity=2048, cache_size=32)
    try:
        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        rounds = 4000 if os.environ.get("CI") else 8000
        ps = [ctx.Process(target=_stress, args=(name, w + 1, rounds, w, q)) for w in range(procs)]
        for p in ps:
            p.start()
        results = dict(q.get(timeout=300) for _ in ps)
        for p in ps:
            p.join(timeout=60)
        assert all(v == 0 for v in results.values()), results
        s = pool.stats()
        assert s["in_use"] == 0 and s["acquired"] == s["released"] > 0
        # every record ever handed out is back on the shared freelist exactly once
        seen, i = set(), int(pool.header["head"][0]) & 0xFFFFFFFF
        while i != 0xFFFFFFFF:
            assert i not in seen, f"record {i} is on the freelist twice"
            seen.add(i)
            i = int(pool.records["next"][i])
        assert len(seen) == 2048 - s["never_used"]
    finally:
        pool.close(unlink=True)


def test_release_without_a_local_cache_goes_straight_to_the_shared_freelist(pool):
    a = pool.acquire(50)
    pool.release(a, local=False)
    head = int(pool.header["head"][0]) & 0xFFFFFFFF
    assert head in set(a.tolist())
    with pytest.raises(InvalidInputError, match="not held"):
        pool.release(a[:1], local=False)
    other = ActivationRecordPool.attach(EngineName.parse(pool.seg.name.split(".pool")[0].lstrip("/")), cache_size=8)
    b = other.acquire(50)                          # another process-side cache refills from them
    assert len(set(b.tolist()) & set(a.tolist())) >= 4       # recycled, not fresh
    assert other.stats()["reused"] >= 4
    other.release(b)
