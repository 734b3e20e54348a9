"""The single source of every record that lives in shared memory.

Everything that two processes (or Python and a kernel) both read is declared
here once. ``tools/gen_layout.py`` turns these declarations into the C header
(``csrc/include/engram_layout.h``), the Zig module (``zig/src/layout.zig``)
and the numpy dtypes (``engram/layout/generated.py``); each has compile-time
or import-time checks of every size and offset, and the layout hash computed
here is compiled into the kernel libraries and written into every segment
header, so a mismatch is refused at load and at attach.

Rules: fields are listed in memory order with explicit padding, every record
is naturally aligned, and records that live in tables are a power-of-two size.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

#: Bumped when a segment's meaning changes without its records changing.
FORMAT_VERSION = 1
#: "ENGRAM01" little-endian: the first 8 bytes of every segment.
SEGMENT_MAGIC = int.from_bytes(b"ENGRAM01", "little")

# scalar type name -> (numpy code, C type, Zig type, size)
SCALARS = {
    "u8": ("u1", "uint8_t", "u8", 1),
    "u16": ("<u2", "uint16_t", "u16", 2),
    "u32": ("<u4", "uint32_t", "u32", 4),
    "u64": ("<u8", "uint64_t", "u64", 8),
    "i32": ("<i4", "int32_t", "i32", 4),
    "i64": ("<i8", "int64_t", "i64", 8),
    "f32": ("<f4", "float", "f32", 4),
    "f64": ("<f8", "double", "f64", 8),
}


@dataclass(frozen=True)
class Field:
    name: str
    type: str          # a key of SCALARS
    count: int = 1     # > 1 for fixed arrays (e.g. names, padding)
    doc: str = ""

    @property
    def size(self) -> int:
        return SCALARS[self.type][3] * self.count


@dataclass(frozen=True)
class Record:
    name: str          # CamelCase; C gets eg_<snake>_t, Zig gets the name
    fields: tuple
    size: int          # asserted: the sum of the fields
    align: int
    doc: str = ""

    def offsets(self) -> dict:
        out, off = {}, 0
        for f in self.fields:
            align = SCALARS[f.type][3]
            if off % align:
                raise ValueError(f"{self.name}.{f.name} at {off} is not {align}-aligned")
            out[f.name] = off
            off += f.size
        if off != self.size:
            raise ValueError(f"{self.name} fields add up to {off} bytes, declared {self.size}")
        return out


F = Field

#: Every segment starts with this header (128 bytes, so data starts 64-aligned).
SEGMENT_HEADER = Record("SegmentHeader", (
    F("magic", "u64", doc="SEGMENT_MAGIC"),
    F("format_version", "u32"),
    F("header_size", "u32", doc="bytes before the data region"),
    F("layout_hash", "u64", doc="LAYOUT_HASH of the writer"),
    F("generation", "u64", doc="bumped each time the table is re-created larger"),
    F("capacity", "u64", doc="rows (or bytes) the data region holds"),
    F("count", "u64", doc="rows (or bytes) in use; published after the data"),
    F("owner_pid", "u32"),
    F("owner_uid", "u32"),
    F("kind", "u32", doc="TABLE_* of this segment"),
    F("row_bytes", "u32", doc="stride of one row in the main region"),
    F("created_ns", "u64", doc="CLOCK_REALTIME at creation"),
    F("dim", "u32", doc="embedding dimension (0 where not applicable)"),
    F("flags", "u32"),
    F("_reserved", "u64", 6),
), size=128, align=64, doc="Prefix of every shared-memory segment.")

#: The hot record spreading touches: exactly one cache line.
NODE_HOT = Record("NodeHot", (
    F("id", "u64", doc="memory id (== slot index in this format)"),
    F("activation", "f32",
      doc="residual activation left by recent recalls (semantic priming, engram/cognition/priming.py)"),
    F("confidence", "f32", doc="[0, 1]"),
    F("tier", "u8", doc="TIER_HOT (f32 embedding), TIER_WARM (f16) or TIER_COLD (int8, a scale per row)"),
    F("flags", "u8", doc="NODE_* bits"),
    F("refractory", "u16", doc="hops a node rests after firing"),
    F("primed_s", "u32", doc="Unix time (s) the residual activation was left; it decays from then"),
    F("edge_begin", "u32", doc="first CSR edge"),
    F("edge_count", "u32", doc="CSR out-degree"),
    F("strength", "f32", doc="memory strength for forgetting curves"),
    F("access_count", "u32"),
    F("created_ns", "u64"),
    F("last_access_ns", "u64"),
    F("content_ref", "u64", doc="byte offset of its record in the content heap, 0 = none"),
), size=64, align=64, doc="Node hot record: hot fields first, then warm fields.")

#: One pending association in the delta log (merged into CSR by compaction).
EDGE_DELTA = Record("EdgeDelta", (
    F("src", "u32"),
    F("dst", "u32"),
    F("weight", "f32", doc="(0, 1]"),
    F("seq", "u32", doc="low 32 bits of the link sequence number"),
), size=16, align=16, doc="An append-only new link.")

#: Pooled record of the spreading engine (the freelist links by index).
ACTIVATION_RECORD = Record("ActivationRecord", (
    F("node", "u32"),
    F("next", "u32", doc="freelist / frontier link by index; EG_NIL = none"),
    F("activation", "f32", doc="the result's activation (after the recall or spread that wrote the record)"),
    F("confidence", "f32"),
    F("source", "u32", doc="node this activation came from"),
    F("hop", "u16"),
    F("flags", "u16"),
    F("score", "f32", doc="ranking score, when the record carries a recall result"),
    F("similarity", "f32", doc="cosine to the query (NaN: reached only by spreading)"),
), size=32, align=32, doc="Activation record in the shared pool.")

#: Head of the shared activation record pool. Each contended word has its own
#: cache line: the Treiber-stack head, the bump pointer, and the counters
#: (updated once per batch operation, never per record).
POOL_HEADER = Record("PoolHeader", (
    F("head", "u64", doc="freelist top: tag << 32 | index (EG_NIL: empty); the tag defeats ABA"),
    F("capacity", "u32", doc="records in the pool"),
    F("_pad0", "u32"),
    F("_pad1", "u64", 6),
    F("bump", "u64", doc="records ever handed out fresh (never-used ones start here)"),
    F("_pad2", "u64", 7),
    F("acquired", "u64", doc="records handed out"),
    F("released", "u64", doc="records given back"),
    F("reused", "u64", doc="acquisitions served by recycled records (local cache or freelist)"),
    F("fresh", "u64", doc="acquisitions that took a never-used record: the allocations"),
    F("failed", "u64", doc="acquisitions refused because the pool was exhausted"),
    F("in_use", "u64", doc="records held by callers now"),
    F("high_water", "u64", doc="most records ever held at once"),
    F("resets", "u64", doc="times the pool was reset while idle"),
), size=192, align=64, doc="Shared activation record pool header (PoolHeader then ActivationRecord[capacity]).")

#: One request on the task board (TaskBoardHeader, TaskSlot[slots], their queries). A slot
#: moves FREE -> FILLING (a client claimed it) -> READY -> TAKEN (a worker) -> DONE | FAILED
#: -> FREE, each step by compare-exchange on `state`; results travel in pool records.
TASK_SLOT = Record("TaskSlot", (
    F("state", "u32"),
    F("kind", "u32", doc="1 = recall"),
    F("worker", "u32", doc="worker id that took it"),
    F("attempt", "u32", doc="times taken (a dead worker's task is retried once)"),
    F("k", "u32"),
    F("flags", "u32", doc="bit 0 spread, bit 1 has a budget"),
    F("result_head", "u32", doc="first pool record of the result (EG_NIL: none)"),
    F("result_count", "u32"),
    F("budget_ns", "u64"),
    F("submit_ns", "u64", doc="CLOCK_MONOTONIC at submission: the budget runs from here"),
    F("done_ns", "u64"),
    F("seq", "u64", doc="request number, for tracing"),
    F("scan_ms", "f32"),
    F("spread_ms", "f32"),
    F("rank_ms", "f32"),
    F("total_ms", "f32"),
    F("hops_run", "u32"),
    F("touched", "u32"),
    F("status", "u32", doc="bit 0 partial, bit 1 fallback"),
    F("worker_pid", "u32"),
    F("space", "u8", 64, doc="memory space name, NUL padded"),
    F("taken_ns", "u64", doc="CLOCK_MONOTONIC when a worker took it"),
    F("trace_id", "u64", doc="the recall's trace id: the worker's events carry it (0: tracing off)"),
    F("primed_count", "u32", doc="pool records after the result: what the spread reached most (priming)"),
    F("message", "u8", 76, doc="what failed, UTF-8, NUL padded"),
), size=256, align=64, doc="A request on the task board and where its answer is.")

TASK_BOARD_HEADER = Record("TaskBoardHeader", (
    F("slots", "u32"),
    F("dim", "u32"),
    F("workers", "u32", doc="worker processes the owner keeps running"),
    F("stop", "u32", doc="set by the owner: workers exit"),
    F("submitted", "u64"),
    F("completed", "u64"),
    F("failed", "u64"),
    F("retried", "u64"),
    F("restarts", "u64", doc="workers replaced after dying"),
    F("ready", "u64", doc="workers that attached and wait for tasks (started minus exited)"),
    F("slots_at", "u64", doc="byte offset (in the data region) of TaskSlot[slots]"),
    F("queries_at", "u64", doc="byte offset of f32 queries[slots][dim]"),
    F("configs_at", "u64", doc="byte offset of f64 configs[slots][config_floats]: each request's recall settings"),
    F("config_floats", "u32", doc="settings per request (RecallConfig.to_vector, zero padded)"),
    F("_pad", "u32"),
), size=96, align=32, doc="Head of the task board segment: counters, then where each region is.")

#: One batch of a split hop on the hop board (HopBoardHeader, then HopSlot[slots],
#: then per slot its input (u32 nodes, f32 fire) and output (u32 targets, f32 sums)
#: areas). The state's low byte: FREE -> FILLING|owner<<8 -> READY -> TAKEN|taker<<8
#: (an idle worker) -> DONE | FAILED -> FREE (the owner, after merging); the owner
#: takes an untaken batch back READY -> FILLING|owner<<8, and revokes one whose taker
#: is too slow TAKEN|t -> REVOKED|t (the taker frees it). States change by
#: compare-exchange; see engram/workers/stealing.py.
HOP_SLOT = Record("HopSlot", (
    F("state", "u32"),
    F("hop", "u32"),
    F("n_in", "u32", doc="frontier nodes in this batch"),
    F("n_out", "u32", doc="distinct targets gathered"),
    F("owner_pid", "u32", doc="process whose spread this batch belongs to (0: abandoned)"),
    F("_pad", "u32"),
    F("fan", "u32", doc="index into engram.config.FAN_MODES: which weights to read"),
    F("prefetch_distance", "u32"),
    F("decay", "f32"),
    F("threshold", "f32"),
    F("csr_generation", "u64", doc="the CSR the batch must be gathered over"),
    F("seq", "u64", doc="CLOCK_MONOTONIC ns of the offer: takers serve the oldest first"),
    F("space", "u8", 64, doc="memory space name, NUL padded"),
    F("_reserved", "u64", 1),
), size=128, align=64, doc="A batch of a split hop and where its gathered sums are.")

HOP_BOARD_HEADER = Record("HopBoardHeader", (
    F("slots", "u32"),
    F("in_cap", "u32", doc="frontier nodes a batch may hold"),
    F("out_cap", "u32", doc="distinct targets a batch may gather"),
    F("min_batch", "u32", doc="fewest frontier nodes in a batch (0: the AdaptiveBatcher's size); set by the owner"),
    F("published", "u64", doc="batches offered to other workers"),
    F("stolen", "u64", doc="batches gathered by a worker other than the spread's owner"),
    F("reclaimed", "u64", doc="offered batches the owner gathered itself (nobody was free)"),
    F("failed", "u64", doc="batches a taker could not gather (the owner redid them)"),
    F("min_edges", "u64", doc="a hop firing fewer edges is not split (0: never split); set by the owner"),
    F("slots_at", "u64", doc="byte offset (in the data region) of HopSlot[slots]"),
    F("in_nodes_at", "u64", doc="byte offset of u32 in_nodes[slots][in_cap]: each batch's frontier nodes"),
    F("in_fire_at", "u64", doc="byte offset of f32 in_fire[slots][in_cap]: what each fires"),
    F("out_v_at", "u64", doc="byte offset of u32 out_v[slots][out_cap]: the targets gathered"),
    F("out_s_at", "u64", doc="byte offset of f32 out_s[slots][out_cap]: their summed contributions"),
    F("_reserved", "u64", 4),
), size=128, align=64, doc="Head of the hop board segment: counters, then where each region is.")

#: Head of the metrics segment (engram/observe/metrics): the label table of memory
#: spaces follows (MAX_SPACES x 64-byte names), then the per-process slots.
METRICS_HEADER = Record("MetricsHeader", (
    F("slots", "u32", doc="per-process slots"),
    F("slot_bytes", "u32", doc="bytes per slot, a multiple of 64"),
    F("labels", "u32", doc="label values per metric (memory spaces; the last is 'other')"),
    F("cells", "u32", doc="u64 cells per slot"),
    F("schema_hash", "u64", doc="hash of the metric definitions: readers refuse another"),
    F("spaces", "u32", doc="label values assigned so far"),
    F("_pad", "u32"),
    F("_reserved", "u64", 4),
), size=64, align=64, doc="Head of the metrics segment.")

#: One process's slot in the metrics segment: a claim word, then cells.
METRICS_SLOT_HEADER = Record("MetricsSlotHeader", (
    F("pid", "u64", doc="owning process (0: free); a dead process's counts stay"),
    F("claimed_ns", "u64", doc="wall time of the claim"),
    F("role", "u32", doc="0 owner, 1 worker, 2 other"),
    F("_pad", "u32"),
    F("_reserved", "u64", 5),
), size=64, align=64, doc="Starts every per-process slot of the metrics segment.")

#: One trace event, 64 bytes, in a process's trace ring (engram/observe/tracing).
TRACE_EVENT = Record("TraceEvent", (
    F("ts_ns", "u64", doc="CLOCK_MONOTONIC: a span's start, an instant's time; the collector converts to wall time"),
    F("seq", "u64", doc="ring index + 1, written last: a reader that copies a different seq lost the race"),
    F("trace_id", "u64", doc="request the event belongs to (0: none)"),
    F("node_a", "u64"),
    F("node_b", "u64"),
    F("value", "f64", doc="a duration in ns for spans, else a measurement"),
    F("strength", "f32"),
    F("kind", "u16"),
    F("worker", "u16", doc="0 the owner, w + 1 worker w"),
    F("space", "u16", doc="memory-space label index (engram/observe/metrics)"),
    F("flags", "u16"),
    F("tid", "u32", doc="OS thread id of the writer: a track per thread"),
), size=64, align=64, doc="A trace event in a per-process ring.")

#: Head of a per-process trace ring: one producer, any number of read-only readers.
TRACE_RING_HEADER = Record("TraceRingHeader", (
    F("capacity", "u64", doc="events, a power of two"),
    F("head", "u64", doc="events ever written; the next goes to head % capacity"),
    F("pid", "u32"),
    F("worker", "u32"),
    F("kinds", "u64", doc="bit mask of enabled event kinds"),
    F("min_strength", "f32"),
    F("sample", "f32", doc="fraction of events kept (1: all)"),
    F("dropped_sampling", "u64"),
    F("closed", "u32", doc="1 once the producer finished: drain and forget it"),
    F("_pad", "u32"),
    F("considered", "u64", doc="events that passed the kind and strength filters (sampling counts these)"),
), size=64, align=64, doc="Head of a trace ring segment (the events follow, 64-byte aligned).")

#: Head of an ingest ring (engram/ingest/ring.py): a connected process appends, the owner
#: consumes; head and tail sit on cache lines of their own, each written by one side only.
INGEST_RING_HEADER = Record("IngestRingHeader", (
    F("capacity", "u64", doc="bytes of the record area that follows this header"),
    F("dim", "u32", doc="the space's embedding dimension"),
    F("producer_pid", "u32"),
    F("closed", "u32", doc="1 once the owner stopped taking records: put fails"),
    F("_pad0", "u32", 11),
    F("head", "u64", doc="record bytes ever appended (the producer's)"),
    F("_pad1", "u64", 7),
    F("tail", "u64", doc="record bytes ever consumed (the owner's)"),
    F("_pad2", "u64", 7),
), size=192, align=64, doc="Head of an ingest ring segment (the records follow).")

#: Per-node scratch of one spread (per worker, not shared): see csrc/kernels/spread.c.
SPREAD_STATE = Record("SpreadState", (
    F("mark", "u32", doc="epoch << 8 | hop at which the node was first touched"),
    F("act", "f32", doc="activation in this spread, clamped to 1"),
), size=8, align=8, doc="Spreading scratch: a node is in the current spread only if mark's epoch matches.")

#: Region table of a CSR segment: three arrays in one segment so a reader
#: switches offsets, targets and weights together (never a torn edge).
CSR_HEADER = Record("CsrHeader", (
    F("n_nodes", "u64"),
    F("n_edges", "u64"),
    F("offsets_at", "u64", doc="byte offset of u64 offsets[n_nodes + 1]"),
    F("targets_at", "u64", doc="byte offset of u32 targets[n_edges]"),
    F("weights_at", "u64", doc="byte offset of f32 weights[n_edges]"),
    F("delta_applied", "u64", doc="delta-log entries folded into this CSR"),
    F("fan_at", "u64",
      doc="byte offset of f32 fan_weights[3][n_edges]: source, target, both (engram/cognition/fan.py)"),
    F("weights_version", "u64", doc="in-place weight changes since this CSR was built (associative priming)"),
), size=64, align=64, doc="Follows the segment header in a CSR segment.")

#: One table's current generation and the salt of its name, published in the space directory.
TABLE_REF = Record("TableRef", (
    F("generation", "u64"),
    F("capacity", "u64"),
    F("salt", "u64", doc="the random end of the table segment's name (engram/store/shm/names.py)"),
), size=24, align=8)

#: Tables of a memory space, in the order of SpaceDirectory.tables.
TABLES = ("nodes", "emb_hot", "emb_warm", "content", "csr", "delta", "emb_cold")
MAX_TABLES = 8

#: The directory segment of a space: where readers learn each table's generation and name.
SPACE_DIRECTORY = Record("SpaceDirectory", (
    F("name", "u8", 64, doc="space name, NUL padded"),
    F("dim", "u32"),
    F("n_tables", "u32"),
    F("next_id", "u64", doc="ids handed out so far"),
    F("n_live", "u64", doc="memories not forgotten"),
    F("n_links", "u64", doc="links accepted (CSR + delta)"),
    F("change_seq", "u64", doc="bumped after every published change"),
    F("tables", "u64", 3 * MAX_TABLES, doc="TableRef[MAX_TABLES]"),
    F("ann", "u64", 11, doc="the approximate index: 11 cells of recall/ann.py's AnnState (the last: sketch rows)"),
    F("cold_dir", "u8", 256, doc="directory of the cold tier's file-backed table, NUL padded (empty: in /dev/shm)"),
    F("recall_seq", "u64", 2, doc="recall's cells: a sequence lock (even when stable), how many values"),
    F("recall", "f64", 54, doc="the space's recall settings (RecallConfig.to_vector), for other processes' readers"),
), size=1088, align=64)

RECORDS = (SEGMENT_HEADER, NODE_HOT, EDGE_DELTA, ACTIVATION_RECORD, POOL_HEADER, TASK_SLOT, TASK_BOARD_HEADER,
           METRICS_HEADER, METRICS_SLOT_HEADER, TRACE_EVENT, TRACE_RING_HEADER, SPREAD_STATE, CSR_HEADER, TABLE_REF,
           SPACE_DIRECTORY, HOP_SLOT, HOP_BOARD_HEADER, INGEST_RING_HEADER)

CONSTANTS = {
    "FORMAT_VERSION": FORMAT_VERSION,
    "SEGMENT_MAGIC": SEGMENT_MAGIC,
    "TIER_HOT": 0,
    "TIER_WARM": 1,
    "TIER_COLD": 2,
    "NODE_LIVE": 1,
    "NODE_FORGOTTEN": 2,
    "TABLE_DIRECTORY": 1,
    "TABLE_NODES": 2,
    "TABLE_EMB_HOT": 3,
    "TABLE_EMB_WARM": 4,
    "TABLE_CONTENT": 5,
    "TABLE_CSR": 6,
    "TABLE_DELTA": 7,
    "TABLE_POOL": 8,
    "TABLE_TASKS": 9,
    "TABLE_HOPS": 13,
    "TABLE_METRICS": 11,
    "TABLE_TRACE": 12,
    "TABLE_INGEST_RING": 14,
    "TABLE_EMB_COLD": 15,
    "TASK_FREE": 0, "TASK_FILLING": 1, "TASK_READY": 2, "TASK_TAKEN": 3,
    "TASK_DONE": 4, "TASK_FAILED": 5, "TASK_REVOKED": 6,
    "ROW_ALIGN": 64,
    "NIL": 0xFFFFFFFF,
}


def _record_lines(records) -> list:
    lines = []
    for rec in records:
        offs = rec.offsets()
        lines.append(f"record {rec.name} {rec.size} {rec.align}")
        lines += [f"  {f.name} {f.type} {f.count} @{offs[f.name]}" for f in rec.fields]
    return lines


def _hash(lines: list) -> int:
    return int.from_bytes(hashlib.sha256("\n".join(lines).encode()).digest()[:8], "little")


def layout_hash() -> int:
    """64-bit hash of every record's fields, offsets and the constants."""
    return _hash([f"format {FORMAT_VERSION}", *_record_lines(RECORDS),
                  *(f"const {k} {CONSTANTS[k]}" for k in sorted(CONSTANTS))])


LAYOUT_HASH = layout_hash()

#: Records that snapshots keep (engram/store/snapfile.py). The others live only while an
#: engine runs (boards, rings, pools), so their changes need not refuse old snapshots.
PERSISTED = (NODE_HOT,)


def persisted_hash() -> int:
    """64-bit hash of the records snapshots keep, and the format version."""
    return _hash([f"format {FORMAT_VERSION}", *_record_lines(PERSISTED)])


PERSISTED_HASH = persisted_hash()
