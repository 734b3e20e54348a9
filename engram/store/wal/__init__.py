"""The write-ahead log (docs/durability/wal-format.md): the format, the group-commit writer, recovery."""
from engram.store.wal.format import POLICIES, RecordType
from engram.store.wal.recovery import Recovered, recover, truncate_damage
from engram.store.wal.writer import Log

__all__ = ["POLICIES", "Log", "Recovered", "RecordType", "recover", "truncate_damage"]
