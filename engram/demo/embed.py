"""A deterministic text embedding that needs no model: hashed TF-IDF.

Words (identifiers split at '_' and camelCase, crudely stemmed) and word bigrams are
weighted by (1 + log tf) * idf, each feature is hashed with BLAKE2b into two
signed dimensions, and the vector is L2-normalised. The same text gives the
same vector on every machine and Python version (BLAKE2b, not hash()).
It captures shared vocabulary, not meaning: the quality harness uses it because
it is reproducible, and the demo falls back to it when the text extra's model
(engram/text/e5.py) is not installed.
"""
from __future__ import annotations

import hashlib
import math
import re
from collections import Counter

import numpy as np

_WORD = re.compile(r"[A-Za-z][a-z0-9]*|[A-Z]+(?![a-z])|[0-9]+")
STOPWORDS = frozenset([
    "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "has", "have", "if", "in", "into",
    "is", "it", "its", "of", "on", "or", "that", "the", "their", "this", "to", "was", "were", "will",
    "with", "which", "when", "where", "return", "returns", "self", "none", "true", "false", "not", "do",
    "does", "can", "may", "should", "would", "also", "any", "all", "use", "used", "using"])


SUFFIXES = ("ations", "ation", "ions", "ion", "ings", "ing", "ers", "er", "ed", "es", "s")


def stem(word: str) -> str:
    """Crude suffix stripping so 'compressed' and 'compression' meet 'compress'."""
    for suf in SUFFIXES:
        if word.endswith(suf) and len(word) - len(suf) >= 4:
            return word[:-len(suf)]
    return word


def tokens(text: str) -> list:
    words = [w.lower() for w in _WORD.findall(text)]
    return [stem(w) for w in words if len(w) > 1 and w not in STOPWORDS]


def features(text: str) -> Counter:
    ws = tokens(text)
    c = Counter(ws)
    c.update(f"{a} {b}" for a, b in zip(ws, ws[1:]))
    return c


class HashingEmbedder:
    """fit(texts) learns IDF; embed(texts) -> float32 (n, dim) unit vectors. encode(): the same,
    as engram.Engine(embedder=...) takes it (the demo's fallback when no model is installed)."""

    name, version = "engram.demo/hashed-tfidf", "1"

    def __init__(self, dim: int = 384, hashes: int = 2):
        self.dim, self.hashes = dim, hashes
        self.idf: dict = {}
        self.default_idf = 1.0
        self._slots: dict = {}

    def _slot(self, feat: str):
        s = self._slots.get(feat)
        if s is None:
            h = hashlib.blake2b(feat.encode(), digest_size=8 * self.hashes).digest()
            s = []
            for i in range(self.hashes):
                v = int.from_bytes(h[8 * i:8 * i + 8], "little")
                s.append((v % self.dim, 1.0 if (v >> 63) & 1 else -1.0))
            s = self._slots[feat] = tuple(s)
        return s

    def fit(self, texts) -> "HashingEmbedder":
        df = Counter()
        n = 0
        for t in texts:
            df.update(set(features(t)))
            n += 1
        self.idf = {f: math.log((1 + n) / (1 + d)) + 1.0 for f, d in df.items()}
        self.default_idf = math.log(1 + n) + 1.0
        return self

    def encode(self, texts) -> np.ndarray:
        return self.embed(texts)

    def embed(self, texts, progress=None) -> np.ndarray:
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), np.float32)
        scale = 1.0 / math.sqrt(self.hashes)
        for i, t in enumerate(texts):
            row = out[i]
            for f, tf in features(t).items():
                w = (1.0 + math.log(tf)) * self.idf.get(f, self.default_idf) * scale
                for j, sign in self._slot(f):
                    row[j] += sign * w
            if progress is not None and i % 256 == 255:
                progress.update(256)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        out /= np.where(norms > 0, norms, 1.0)
        return out
