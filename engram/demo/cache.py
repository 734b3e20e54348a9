"""The demo's embedding cache: a model's vectors of the stdlib texts, kept on disk so a second
`engram demo` does not wait minutes for the same encoding on a small machine.

Cached wraps the engine's model and has its name, version, dim and calibration, so the
space records the same embedder either way; a text not in the cache goes to the model.
One file per model and version under $XDG_CACHE_HOME/engram (~/.cache/engram); a file
that cannot be read is ignored and written again.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "engram"


def _key(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


class Cached:
    """``model``: what engram.text.resolve returned's model (encode, encode_query, ...)."""

    def __init__(self, model, where: Path | None = None):
        self.model = model
        self.name, self.version = model.name, getattr(model, "version", "")
        self.dim, self.recall_settings = model.dim, getattr(model, "recall_settings", None)
        slug = hashlib.blake2b(f"{self.name} {self.version}".encode(), digest_size=8).hexdigest()
        self.file = (where or cache_dir()) / f"demo-vectors-{slug}.npz"
        self.rows: dict = {}
        self.hits = 0
        try:
            with np.load(self.file) as z:
                self.rows = dict(zip(z["keys"].tolist(), z["vectors"]))
        except (OSError, ValueError, KeyError):
            pass

    def encode(self, texts) -> np.ndarray:
        keys = [_key(t) for t in texts]
        missing = [t for t, k in zip(texts, keys) if k not in self.rows]
        if missing:
            for k, v in zip((_key(t) for t in missing), self.model.encode(missing)):
                self.rows[k] = np.asarray(v, np.float32)
        self.hits += len(texts) - len(missing)
        return np.stack([self.rows[k] for k in keys])

    def encode_query(self, texts) -> np.ndarray:
        return self.model.encode_query(texts)

    def save(self) -> None:
        """Write the cache (atomically: a reader sees the old file or the new one)."""
        self.file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.file.with_suffix(".tmp.npz")
        np.savez(tmp, keys=np.array(list(self.rows)), vectors=np.stack(list(self.rows.values())))
        os.replace(tmp, self.file)
