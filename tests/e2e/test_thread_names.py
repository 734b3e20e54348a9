"""The engine's threads and processes carry their names to the operating system, where
`top -H`, `ps -L`, perf and py-spy read them (engram/threads.py)."""
import os
import time

import numpy as np

import engram
from engram.threads import os_name


def comms(pid: int) -> set:
    names = set()
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                names.add(f.read().strip())
        except FileNotFoundError:       # the thread ended meanwhile
            pass
    return names


def children(pid: int) -> dict:
    """{child pid: its comm}"""
    out = {}
    for p in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{p}/stat") as f:
                stat = f.read()
        except (FileNotFoundError, ProcessLookupError):
            continue
        comm, rest = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
        if int(rest[1]) == pid:
            out[int(p)] = comm
    return out


def test_the_kernel_name_is_the_thread_s_name_shortened_to_15_bytes():
    assert os_name("engram-wal") == b"eg-wal"
    assert os_name("engram-ingest-0") == b"eg-ingest-0"
    assert os_name("engram-channel-12-ack") == b"eg-channel-12-a"       # Linux keeps 15 bytes
    assert os_name("engram-http-read_1") == b"eg-http-read_1"


def test_an_engine_s_threads_and_workers_are_named_for_the_os(tmp_path):
    eng = engram.Engine(path=str(tmp_path / "db"), dim=8, durability="group", workers=1, ingest_workers=1)
    try:
        mem = eng.space("names")
        mem.stream().put(np.random.default_rng(0).standard_normal((4, 8), dtype=np.float32))
        assert eng.start_workers()
        want = {"eg-wal", "eg-checkpoint", "eg-ingest-0", "eg-supervisor"}
        deadline = time.monotonic() + 30
        while not (want <= comms(os.getpid()) and "eg-worker-0" in children(os.getpid()).values()):
            assert time.monotonic() < deadline, (f"threads {sorted(comms(os.getpid()))}, "
                                                 f"children {children(os.getpid())}")
            time.sleep(0.05)
    finally:
        eng.close()
