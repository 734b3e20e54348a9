"""Damaged and hostile segment headers. A running engine's segments (every kind: a
space's directory and tables, the metrics segment, a trace ring, the task and hop boards,
the record pool) are copied byte for byte under another engine name, so the copy is a
complete engine that attaches like the original (the negative control). Then one header
field at a time is given a value that looks valid or is garbage: each reader that opens
that segment, and `engram inspect`, refuses it with an AttachError naming the segment and
the field, never a ValueError, IndexError or a huge allocation; the CLI prints the message
and exits (3 for inspect's listing of refused segments, 1 otherwise), never a traceback."""
import os
import secrets
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

import engram
from engram import errors
from engram.layout import (
    CSR_HEADER_DTYPE,
    HOP_BOARD_HEADER_DTYPE,
    METRICS_HEADER_DTYPE,
    POOL_HEADER_DTYPE,
    SEGMENT_HEADER_DTYPE,
    SPACE_DIRECTORY_DTYPE,
    TABLE_REF_DTYPE,
    TASK_BOARD_HEADER_DTYPE,
    TRACE_RING_HEADER_DTYPE,
)
from engram.observe.attach import tools
from engram.observe.metrics.segment import MetricsSegment
from engram.observe.tracing.ring import Ring, config_of, ring_name
from engram.store.shm import names
from engram.store.shm.names import EngineName
from engram.store.shm.segment import HEADER_SIZE, Segment
from engram.store.tables import SpaceStore
from engram.workers.board import TaskBoard
from engram.workers.pool import ActivationRecordPool
from engram.workers.stealing import HopBoard

DIM = 16
SPACE = "orig"
RECORD = {"dir": SPACE_DIRECTORY_DTYPE, "csr": CSR_HEADER_DTYPE, "metrics": METRICS_HEADER_DTYPE,
          "trace": TRACE_RING_HEADER_DTYPE, "tasks": TASK_BOARD_HEADER_DTYPE, "hops": HOP_BOARD_HEADER_DTYPE,
          "pool": POOL_HEADER_DTYPE}
KINDS = ("dir", "nodes", "emb_hot", "content", "csr", "delta", "metrics", "trace", "tasks", "hops", "pool")


@pytest.fixture(scope="module")
def clone():
    """(the original engine's name, the copy's EngineName, {kind: copied segment name}, query)."""
    rng = np.random.default_rng(3)
    with engram.Engine(dim=DIM, workers=1, trace=True) as eng:
        m = eng.space(SPACE)
        v = rng.standard_normal((300, DIM)).astype(np.float32)
        ids = m.remember(v, content=[f"memory {i}" for i in range(300)])
        m.link(ids[:-1], ids[1:], 0.5)
        assert eng.start_workers()
        want = m.recall(v[5], k=5, spread=True).ids.tolist()   # compacts: the CSR has edges
        real = EngineName.parse(eng.name)
        copy = EngineName(real.uid, os.getpid(), secrets.token_hex(8))   # a live pid: no cleanup takes it
        made = []
        for name in names.segments_of(real):
            if ".trace." in name and f".trace.{os.getpid()}." not in name:
                continue                                        # a worker's ring: the owner's is enough
            with open(names.SHM_DIR + name, "rb") as f:
                data = f.read()
            new = name.replace(str(real), str(copy))
            fd = os.open(names.SHM_DIR + new, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            os.write(fd, data)
            os.close(fd)
            made.append(new)
    found = {}
    for name in made:
        said = names.parse_name(copy, name)
        key = said.get("table") or said["object"].split(".")[0]
        found[key] = name
    assert set(KINDS) <= set(found), found
    try:
        yield copy, found, v[5], want
    finally:
        for name in made:
            Segment.unlink(name)


def open_as_reader(copy: EngineName, kind: str):
    """Attach the copy's segment of this kind the way its readers do."""
    if kind in ("dir", "nodes", "emb_hot", "emb_warm", "content", "csr", "delta"):
        return SpaceStore(copy, SPACE, create=False)
    return {"metrics": lambda: MetricsSegment.attach(copy),
            "trace": lambda: Ring.attach(ring_name(copy, os.getpid())),
            "tasks": lambda: TaskBoard.attach(copy, writable=False),
            "hops": lambda: HopBoard.attach(copy),
            "pool": lambda: ActivationRecordPool.attach(copy)}[kind]()


def poke(name: str, offset: int, dtype, value) -> bytes:
    """Write ``value`` as ``dtype`` at byte ``offset`` of a segment; returns what was there."""
    dtype = np.dtype(dtype)
    raw = np.asarray(value, dtype=dtype.base if dtype.subdtype else dtype).tobytes()
    with open(names.SHM_DIR + name, "r+b") as f:
        f.seek(offset)
        old = f.read(len(raw))
        f.seek(offset)
        f.write(raw)
    return old


def restore(name: str, offset: int, old: bytes) -> None:
    with open(names.SHM_DIR + name, "r+b") as f:
        f.seek(offset)
        f.write(old)


def header_at(field: str) -> tuple:
    dt, off = SEGMENT_HEADER_DTYPE.fields[field][:2]
    return off, dt


def record_at(kind: str, field: str) -> tuple:
    dt, off = RECORD[kind].fields[field][:2]
    return HEADER_SIZE + off, dt


def read(name: str, offset: int, dtype) -> int:
    with open(names.SHM_DIR + name, "rb") as f:
        f.seek(offset)
        return np.frombuffer(f.read(np.dtype(dtype).itemsize), dtype)[0].item()


def refused(copy, found, kind, offset, dtype, value, field, *, also=()):
    """Poke one field, check every way in refuses it naming ``field``, and put it back."""
    name = found[kind]
    old = poke(name, offset, dtype, value)
    try:
        tracemalloc.start()
        try:
            with pytest.raises(errors.AttachError) as ei:
                open_as_reader(copy, kind)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        e = ei.value
        assert not isinstance(e, (ValueError, IndexError, KeyError))
        assert field in str(e), (kind, field, str(e))
        assert peak < 32 << 20, f"{kind}.{field}: {peak:,} bytes allocated to refuse it"
        for way in also:
            way()
        rows = {r["name"]: r for r in tools.segment_headers(copy)}
        assert not rows[name]["ok"] and field in rows[name]["error"], (kind, field, rows[name])
        return str(e)
    finally:
        restore(name, offset, old)


# ---------------------------------------------------------------- the negative control

def test_the_unharmed_copy_attaches_and_answers_as_the_original(clone):
    copy, found, q, want = clone
    with engram.attach(str(copy)) as a:
        s = a.space(SPACE)
        assert len(s) == 300 and s.get(7).content == ["memory 7"]
        assert s.recall(q, k=5, spread=True).ids.tolist() == want
    for kind in KINDS:
        open_as_reader(copy, kind)
    rows = tools.segment_headers(copy)
    assert rows and all(r["ok"] for r in rows), [r for r in rows if not r["ok"]]
    assert config_of(copy) is not None
    # and the check can fail: one poke is refused (the cases below are many more)
    refused(copy, found, "nodes", *header_at("magic"), 0x1234, "magic")


# ---------------------------------------------------------------- the segment header

def _generic_cases(kind: str, name: str) -> list:
    """(field, value) pairs: every checked SegmentHeader field of this segment, garbage and
    valid-looking. The message must name the field (a capacity too large for the segment
    is named as capacity by every kind, e.g. "slots is 64, the segment header's capacity is ...")."""
    cap = read(name, *header_at("capacity"))
    table = kind in ("nodes", "emb_hot", "content", "csr", "delta")
    cases = [("magic", 0x0123456789ABCDEF), ("format_version", 2), ("header_size", 64),
             ("layout_hash", read(name, *header_at("layout_hash")) ^ 1), ("owner_uid", os.getuid() + 1),
             ("owner_pid", 0), ("kind", 200), ("kind", 2 if kind == "content" else 5), ("flags", 1),
             ("count", cap + 1), ("capacity", 1 << 40), ("dim", 1 << 20),
             ("dim", DIM + 1 if table or kind in ("dir", "tasks") else 8),
             ("row_bytes", 0xFFFFFFF0), ("row_bytes", 128 if kind == "emb_hot" else 64),
             ("generation", read(name, *header_at("generation")) + 1 if table else 3)]
    if kind == "dir":
        cases.append(("count", 0))                   # a space still being made
    return cases


@pytest.mark.parametrize("kind", KINDS)
def test_every_header_field_is_checked(clone, kind):
    copy, found, _, _ = clone
    for field, value in _generic_cases(kind, found[kind]):
        refused(copy, found, kind, *header_at(field), value, field)


def test_a_damaged_time_is_shown_not_raised(clone):
    copy, found, _, _ = clone
    name = found["nodes"]
    old = poke(name, *header_at("created_ns"), (1 << 64) - 1)
    try:
        open_as_reader(copy, "nodes")           # the time is only shown
        text = tools.format_inspect(copy, None, [], False)
        assert "REFUSED" not in text and f"{name}: nodes g0" in text and "created 2554-" in text, text
    finally:
        restore(name, header_at("created_ns")[0], old)


# ---------------------------------------------------------------- what each kind holds

HELD = {
    "dir": [("dim", 0, "dim"), ("dim", 1 << 31, "dim"), ("dim", DIM + 1, "dim"), ("n_tables", 99, "n_tables"),
            ("name", np.frombuffer(b"other".ljust(64, b"\0"), np.uint8), "name")],
    "csr": [("n_nodes", 1 << 40, "n_nodes"), ("n_nodes", 0xFFFFFFFFFFFFFFFF, "n_nodes"), ("n_edges", 1 << 40, "n_edges"),
            ("offsets_at", 1 << 40, "offsets_at"), ("offsets_at", 4, "offsets_at"), ("targets_at", 1 << 62, "targets_at"),
            ("weights_at", 2, "weights_at"), ("fan_at", 1 << 33, "fan_at")],
    "metrics": [("slots", 0, "slots"), ("slots", 1 << 31, "slots"), ("slot_bytes", 63, "slot_bytes"),
                ("cells", 7, "cells"), ("labels", 3, "labels"), ("spaces", 99, "spaces"),
                ("schema_hash", 12345, "schema_hash")],
    "trace": [("capacity", 1000, "capacity"), ("capacity", 1 << 50, "capacity"), ("pid", 0, "pid"),
              ("worker", 1 << 20, "worker"), ("sample", 5.0, "sample"), ("sample", float("nan"), "sample"),
              ("min_strength", float("inf"), "min_strength"), ("head", 1 << 63, "head")],
    "tasks": [("slots", 1 << 20, "slots"), ("dim", 0, "dim"), ("dim", DIM + 1, "dim"), ("config_floats", 7, "config_floats"),
              ("workers", 10 ** 6, "workers"), ("slots_at", 1 << 40, "slots_at"), ("queries_at", 3, "queries_at"),
              ("configs_at", 1 << 60, "configs_at")],
    "hops": [("slots", 1 << 20, "slots"), ("in_cap", 0, "in_cap"), ("out_cap", 1 << 31, "out_cap"),
             ("slots_at", 1 << 40, "slots_at"), ("in_nodes_at", 1 << 40, "in_nodes_at"), ("in_fire_at", 6, "in_fire_at"),
             ("out_v_at", 1 << 40, "out_v_at"), ("out_s_at", 1 << 40, "out_s_at")],
    "pool": [("capacity", 5, "capacity"), ("capacity", 0, "capacity"), ("head", (7 << 32) | 0xFFFFFFF0, "head"),
             ("bump", 1 << 40, "bump")],
}


@pytest.mark.parametrize("kind", sorted(HELD))
def test_every_field_of_what_a_segment_holds_is_checked(clone, kind):
    copy, found, _, _ = clone
    for field, value, expect in HELD[kind]:
        # a worker asks config_of for the owner's trace settings: a ring it cannot read means none
        also = (lambda: config_of(copy) is None or pytest.fail("config_of read a damaged ring"),) \
            if kind == "trace" else ()
        refused(copy, found, kind, *record_at(kind, field), value, expect, also=also)


def test_csr_offsets_and_table_refs_are_checked(clone):
    """The CSR's offsets must run from 0 to its edge count; the directory's TableRefs name
    segments that must exist (a wrong generation or salt names none)."""
    copy, found, _, _ = clone
    name = found["csr"]
    at = read(name, *record_at("csr", "offsets_at"))
    n = read(name, *record_at("csr", "n_nodes"))
    m = read(name, *record_at("csr", "n_edges"))
    assert m > 0
    refused(copy, found, "csr", HEADER_SIZE + at + 8 * n, np.uint64, m + 5, "offsets")
    refused(copy, found, "csr", HEADER_SIZE + at, np.uint64, 1, "offsets")
    tables_at = HEADER_SIZE + SPACE_DIRECTORY_DTYPE.fields["tables"][1]
    for field in ("generation", "salt"):
        off = tables_at + TABLE_REF_DTYPE.fields[field][1]                 # the nodes table's ref
        old = poke(found["dir"], off, np.uint64, 0xDEAD)
        try:
            with pytest.raises(errors.AttachError, match="no shared-memory segment"):
                SpaceStore(copy, SPACE, create=False)
        finally:
            restore(found["dir"], off, old)


def test_damaged_content_is_an_error_not_an_index_error(clone):
    copy, found, _, _ = clone
    st = SpaceStore(copy, SPACE, create=False)
    ref = int(st.hot()[7]["content_ref"])
    off = HEADER_SIZE + ref        # the u32 length of node 7's content, in the heap
    old = poke(found["content"], off, np.uint32, 1 << 30)
    try:
        with pytest.raises(errors.SegmentError, match="content_ref"):
            SpaceStore(copy, SPACE, create=False).content_at(ref)
    finally:
        restore(found["content"], off, old)


# ---------------------------------------------------------------- the command line

def engram_cli(*args):
    return subprocess.run([sys.executable, "-m", "engram.cli", *args], capture_output=True, text=True, timeout=120)


def test_the_cli_prints_the_refusal_and_exits_without_a_traceback(clone):
    copy, found, _, _ = clone
    name = found["nodes"]
    old = poke(name, *header_at("capacity"), 1 << 40)
    try:
        out = engram_cli("inspect", str(copy))
        assert out.returncode == 3 and "Traceback" not in out.stderr, out.stderr
        assert f"{name}: REFUSED: {name}: capacity" in out.stdout, out.stdout
        out = engram_cli("inspect", str(copy), "--space", SPACE, "--node", "1")
        assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
        assert out.stderr.startswith("engram: error: ") and "capacity" in out.stderr
        out = engram_cli("list")
        assert out.returncode == 0 and "Traceback" not in out.stderr and f"{SPACE}: {name}: capacity" in out.stdout
    finally:
        restore(name, header_at("capacity")[0], old)
    for kind, field, value in (("metrics", "slots", 1 << 31), ("pool", "bump", 1 << 40),
                               ("tasks", "workers", 10 ** 9)):
        off, dt = record_at(kind, field)
        old = poke(found[kind], off, dt, value)
        try:
            out = engram_cli("top", str(copy), "--interval", "0.1", "--iterations", "1")
            assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
            assert out.stderr.startswith("engram: error: ") and field in out.stderr, out.stderr
        finally:
            restore(found[kind], off, old)
