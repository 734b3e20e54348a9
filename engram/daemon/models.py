"""The HTTP API's request and response bodies: one schema, from which FastAPI checks each
request and writes /api-docs/openapi.json (docs/operations/http.md).

Names follow orchard9/engram where it has them (../shared/http-api.md), with real
semantics where Engram's are stubs. Unknown fields are refused (400), never ignored.
"""
from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Path, Query
from pydantic import BaseModel, ConfigDict, Field

from engram.validate import SPACE_NAME

SpaceId = Field(default=None, pattern=SPACE_NAME.pattern, description="memory space (3-64 of [a-z0-9_-]); "
                "the X-Memory-Space header and ?space= come first")
MAX_ID = 2**63 - 1
#: query and path parameters, typed so the spec says what is valid
SpaceParam = Annotated[str | None, Query(pattern=SPACE_NAME.pattern, description="memory space (after the "
                                         "X-Memory-Space header)")]
MemoryIdPath = Annotated[int, Path(ge=0, le=MAX_ID)]
SpaceIdPath = Annotated[str, Path(pattern=SPACE_NAME.pattern)]
VectorParam = Annotated[str | None, Query(description="the query vector as a JSON array of numbers (the daemon's "
                                          "dim); or give query", pattern=r"^\[.*\]$")]
#: a question in a URL: at most 1,000 characters (percent-encoded, up to 12 KB: within the request line
#: uvicorn reads); longer ones go in a POST body
TextParam = Annotated[str | None, Query(min_length=1, max_length=1000,
                                        description="the question in words (the daemon's embedder encodes it)")]
MemoryId = Annotated[int, Field(ge=0, le=MAX_ID)]
Ids = Annotated[list[MemoryId], Field(min_length=1, max_length=10_000)]
Strength = Annotated[float, Field(gt=0.0, le=1.0)]
Confidence = Field(default=None, ge=0.0, le=1.0, description="0..1; the engine's default (1.0) when absent")
MAX_BATCH = 10_000


class Strict(BaseModel):
    # strict: JSON true is not an id or a number (lax pydantic took it as 1, and forgot memory 0 for false)
    model_config = ConfigDict(extra="forbid", strict=True)


class ErrorBody(Strict):
    code: str = Field(description="Engram's error code, e.g. INVALID_MEMORY_INPUT, MEMORY_NOT_FOUND")
    message: str = Field(description="what is wrong and what to do")
    type: str = Field(description="the engram.errors class (engram.Client raises the same)")


class ErrorResponse(Strict):
    error: ErrorBody


class LinkSpec(Strict):
    target_memory_id: MemoryId
    strength: float = Field(default=1.0, gt=0.0, le=1.0)


Embedding = Field(default=None, min_length=1, max_length=65536,
                  description="the vector (the space's dim); leave it out to have the daemon's embedder "
                              "(engram serve --embedder default) encode content")
Content = Field(default=None, max_length=1 << 20, description="the text kept with the memory (and encoded, "
                "when no embedding is given)")


class RememberRequest(Strict):
    embedding: list[float] | None = Embedding
    content: str | None = Content
    confidence: float | None = Confidence
    tier: Literal["hot", "warm"] = "hot"
    links: list[LinkSpec] = Field(default_factory=list, max_length=1000,
                                  description="associations from the new memory, made with it")
    memory_space_id: str | None = SpaceId


class StorageConfidence(Strict):
    value: float
    category: Literal["High", "Medium", "Low"]
    reasoning: str


class RememberResponse(Strict):
    memory_id: int
    storage_confidence: StorageConfidence
    observed_at: str
    stored_at: str
    links_created: int = 0
    auto_links: list = Field(default_factory=list)


class BatchItem(Strict):
    embedding: list[float] | None = Embedding
    content: str | None = Content
    confidence: float | None = Confidence


class BatchRequest(Strict):
    memories: list[BatchItem] = Field(min_length=1, max_length=MAX_BATCH)
    tier: Literal["hot", "warm"] = "hot"
    memory_space_id: str | None = SpaceId


class BatchResponse(Strict):
    memory_ids: list[int]
    count: int


class MemoryConfidence(Strict):
    value: float
    category: Literal["High", "Medium", "Low"]


class MemoryItem(Strict):
    id: int
    content: str | None
    confidence: float
    timestamp: str = Field(description="when it was remembered (RFC 3339, UTC)")
    last_access: str
    created_ns: int = Field(description="timestamp in ns since the epoch (the space's clock)")
    last_access_ns: int
    access_count: int
    strength: float
    tier: Literal["hot", "warm"]
    memory_type: Literal["episodic"] = "episodic"
    embedding: list[float] | None = None
    links_out: list[LinkSpec] | None = None


class MemoryList(Strict):
    memories: list[MemoryItem]
    count: int
    pagination: dict[str, int]


class GetRequest(Strict):
    memory_ids: Ids
    include_embeddings: bool = False
    memory_space_id: str | None = SpaceId


class RecallRequest(Strict):
    embedding: list[float] | None = Field(default=None, min_length=1, max_length=65536,
                                          description="the query vector; or seeds")
    query: str | None = Field(default=None, min_length=1, max_length=1 << 16,
                              description="the question in words, encoded by the daemon's embedder")
    seeds: Ids | None = Field(default=None, description="spread from these memories instead of a query")
    max_results: int = Field(default=10, ge=1, le=1000)
    threshold: float | None = Field(default=None, ge=0.0, le=1.0,
                                    description="drop results whose activation is below this")
    mode: Literal["similarity", "spreading", "hybrid"] = "hybrid"
    budget_ms: float | None = Field(default=10.0, gt=0.0, le=60_000.0,
                                    description="recall's latency budget; null: none")
    max_hops: int | None = Field(default=None, ge=1, le=32, description="with seeds: hops to spread")
    decay_rate: float | None = Field(default=None, ge=0.0, lt=1.0,
                                     description="with seeds: activation lost per hop (engine decay = 1 - rate)")
    activation_threshold: float | None = Field(default=None, gt=0.0, le=1.0)
    include_metadata: bool = True
    memory_space_id: str | None = SpaceId


class RecallItem(Strict):
    id: int
    rank: int
    content: str | None
    confidence: MemoryConfidence
    score: float
    activation_level: float
    similarity_score: float | None
    retrieval_path: Literal["similarity", "spreading"]
    hops: int


class RecallMemories(Strict):
    vivid: list[RecallItem]
    associated: list[RecallItem]
    reconstructed: list[RecallItem] = Field(default_factory=list)


class RecallResponse(Strict):
    memories: RecallMemories
    recall_confidence: float
    metadata: dict | None = None


class SearchResponse(Strict):
    memories: list[RecallItem]
    total: int


class AssociateRequest(Strict):
    source_memory: MemoryId | Ids
    target_memory: MemoryId | Ids
    strength: Strength | Annotated[list[Strength], Field(min_length=1, max_length=10_000)] = 1.0
    bidirectional: bool = False
    association_type: Literal["semantic", "temporal", "causal", "spatial", "emotional"] | None = None
    memory_space_id: str | None = SpaceId


class AssociateResponse(Strict):
    created: bool
    links_created: int
    final_strength: float
    affected_paths: list = Field(default_factory=list)


class LinksResponse(Strict):
    links: list[dict]


class ForgetRequest(Strict):
    memory_id: MemoryId | None = None
    memory_ids: Ids | None = None
    mode: Literal["delete", "FORGET_MODE_DELETE"] = "delete"
    memory_space_id: str | None = SpaceId


class ForgetResponse(Strict):
    memories_affected: int
    forget_confidence: float = 1.0
    reversible: bool = False


class DeleteResponse(Strict):
    memory_id: int
    deleted: bool


class SpaceCreate(Strict):
    id: str = Field(pattern=SPACE_NAME.pattern)


class SpaceInfo(Strict):
    id: str
    dim: int
    memories: int
    links: int


class SpaceList(Strict):
    spaces: list[SpaceInfo]


class Health(Strict):
    status: Literal["healthy", "degraded", "unhealthy"]
    service: str = "engram"
    version: str
    timestamp: str
    engine: str
    durability: str | None
    checks: list[dict] = Field(default_factory=list)
    recovery: dict | None = Field(None, description="what opening the data directory found: the snapshot's LSN, "
                                                     "log records replayed, a torn tail cut (bytes, file), seconds")
