"""Small embedders for the text tests: real objects with encode(list[str]), as a user passes
them to engram.Engine(embedder=...), deterministic and instant (the default model is tested
too, in test_default_model.py). Importable by the subprocesses of the crash tests."""
from __future__ import annotations

import hashlib

import numpy as np


class Letters:
    """Counts of letter trigrams, hashed into ``dim`` signed slots: similar spellings, similar
    vectors. ``calls`` counts the batches it was asked to encode."""

    version = "1"

    def __init__(self, dim: int = 16, name: str = "tests/letters"):
        self.dim, self.name, self.calls = dim, name, 0

    def encode(self, texts):
        self.calls += 1
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            t = f"  {t.lower()}  "
            for j in range(len(t) - 2):
                h = int.from_bytes(hashlib.blake2b(t[j:j + 3].encode(), digest_size=4).digest(), "little")
                out[i, h % self.dim] += 1.0 if h & (1 << 31) else -1.0
        out[~out.any(axis=1), 0] = 1.0
        return out


class Silent:
    """Says no dim: the Embedder asks it once. Returns what ``make(texts)`` gives."""

    def __init__(self, make):
        self.make = make

    def encode(self, texts):
        return self.make(texts)
