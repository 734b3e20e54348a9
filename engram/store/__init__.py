"""Storage of memory spaces: shared-memory segments, tables, the association graph, snapshots."""
