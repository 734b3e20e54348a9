"""Streaming ingest: bounded priority lanes, ingest workers, streams (docs/durability/ingest.md)."""
from engram.ingest.pool import DEFAULT_CAPACITY, LANES, IngestPool
from engram.ingest.stream import Stream

__all__ = ["DEFAULT_CAPACITY", "LANES", "IngestPool", "Stream"]
