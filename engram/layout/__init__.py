"""Shared-memory layout: the schema (single source) and its numpy dtypes."""
from engram.layout.generated import (  # noqa: F401
    ACTIVATION_RECORD_DTYPE,
    CSR_HEADER_DTYPE,
    EDGE_DELTA_DTYPE,
    HOP_BOARD_HEADER_DTYPE,
    HOP_SLOT_DTYPE,
    INGEST_RING_HEADER_DTYPE,
    METRICS_HEADER_DTYPE,
    METRICS_SLOT_HEADER_DTYPE,
    NODE_HOT_DTYPE,
    POOL_HEADER_DTYPE,
    SEGMENT_HEADER_DTYPE,
    SPACE_DIRECTORY_DTYPE,
    SPREAD_STATE_DTYPE,
    TABLE_REF_DTYPE,
    TASK_BOARD_HEADER_DTYPE,
    TASK_SLOT_DTYPE,
    TRACE_EVENT_DTYPE,
    TRACE_RING_HEADER_DTYPE,
)
from engram.layout.generated import LAYOUT_HASH as _GENERATED_HASH
from engram.layout.schema import (  # noqa: F401
    CONSTANTS,
    FORMAT_VERSION,
    LAYOUT_HASH,
    PERSISTED_HASH,
    RECORDS,
    SEGMENT_MAGIC,
)

if _GENERATED_HASH != LAYOUT_HASH:  # the generated file is stale
    raise ImportError("engram/layout/generated.py is out of date with schema.py: run `python tools/gen_layout.py`")
