"""The engine's embedder: any object with ``encode(list[str]) -> (n, dim) array``, wrapped so
that every batch it returns is checked, and named so a space can record what made its vectors.

    Engine(embedder="default")     # engram/text/e5.py (the text extra)
    Engine(embedder=my_model)      # encode(texts) -> array; optional: encode_query(texts),
                                   # name, version, dim and recall_settings attributes
    Engine(embedder=None)          # vectors only (the default)

Texts are encoded in batches of ``batch`` so a long remember shows progress and no one call
holds a huge batch; a failure or a wrong shape raises EmbedderError naming the embedder.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from engram.config import RecallConfig
from engram.errors import EmbedderError, InvalidInputError, shown

#: texts per call to the model: large enough for its threads to share, small enough to show progress
DEFAULT_BATCH = 64
PROBE = ["engram"]          # what is encoded once to learn the dim of a model that does not say it


@dataclass(frozen=True)
class Identity:
    """What made a space's vectors: kept with the space (snapshots and log) and compared
    before any text goes in or out of it."""
    name: str
    version: str
    dim: int

    def settings(self) -> dict:
        return asdict(self)

    @classmethod
    def from_settings(cls, saved: dict) -> Identity:
        return cls(str(saved.get("name", "")), str(saved.get("version", "")), int(saved.get("dim", 0)))

    def __str__(self) -> str:
        return f"{self.name} {self.version} ({self.dim}-d)".replace("  ", " ")


class Embedder:
    """A checked, named text encoder (see the module docstring for what ``model`` may be)."""

    def __init__(self, model, batch: int = DEFAULT_BATCH):
        if not callable(getattr(model, "encode", None)):
            raise InvalidInputError(f"embedder must be 'default', None or an object with encode(list[str]) -> "
                                    f"array, got {shown(model)}")
        self.model, self.batch = model, batch
        kind = type(model)
        name = getattr(model, "name", None) or f"{kind.__module__}.{kind.__qualname__}"
        dim = getattr(model, "dim", None)
        self.identity = Identity(str(name), str(getattr(model, "version", "") or ""), 0)
        if dim is None:         # ask the model once
            dim = self._call(model.encode, PROBE).shape[1]
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
            raise EmbedderError(f"embedder {self.identity.name}: its dim must be a positive integer, got {shown(dim)}")
        self.identity = Identity(self.identity.name, self.identity.version, int(dim))
        self._query = getattr(model, "encode_query", None) or model.encode
        # the model's similarity calibration (engram.config.RecallConfig names), checked now;
        # a space takes it with its first texts (engram/text/inspace.py)
        self.recall_settings = dict(getattr(model, "recall_settings", None) or {})
        RecallConfig().with_changes(**self.recall_settings)

    @property
    def dim(self) -> int:
        return self.identity.dim

    def encode(self, texts: list, query: bool = False, progress=None) -> np.ndarray:
        """(len(texts), dim) float32 rows for checked ``texts``; ``query``: they are questions
        (the model's encode_query, if it has one). ``progress``: an object with update(n)."""
        fn = self._query if query else self.model.encode
        out = np.empty((len(texts), self.dim), np.float32)
        for start in range(0, len(texts), self.batch):
            part = texts[start:start + self.batch]
            out[start:start + len(part)] = self._call(fn, part)
            if progress is not None:
                progress.update(len(part))
        return out

    def _call(self, fn, texts: list) -> np.ndarray:
        """One batch through the model, checked: one finite, non-zero row of dim per text."""
        who = f"embedder {self.identity.name}"
        try:
            got = fn(texts)
        except Exception as e:
            raise EmbedderError(f"{who} failed on a batch of {len(texts)} texts: {type(e).__name__}: {e}") from e
        try:
            a = np.asarray(got, dtype=np.float32)
        except (TypeError, ValueError) as e:
            raise EmbedderError(f"{who} returned {type(got).__name__}, not an array of numbers ({e})") from None
        expected = (len(texts), self.identity.dim or (a.shape[1] if a.ndim == 2 else -1))
        if a.shape != expected:
            raise EmbedderError(f"{who} returned shape {a.shape} for {len(texts)} texts; expected {expected}")
        bad = ~np.isfinite(a).all(axis=1) | ~a.any(axis=1)
        if bad.any():
            raise EmbedderError(f"{who} returned NaN, infinite or all-zero vectors for texts "
                                f"{np.flatnonzero(bad)[:5].tolist()}: {texts[int(np.flatnonzero(bad)[0])][:80]!r}")
        return a


def resolve(embedder) -> Embedder | None:
    """Engine(embedder=...): "default" (the text extra's model), None, an Embedder, or a model."""
    if embedder is None or isinstance(embedder, Embedder):
        return embedder
    if isinstance(embedder, str):
        if embedder != "default":
            raise InvalidInputError(f"embedder must be 'default', None or an object with encode(list[str]), "
                                    f"got {shown(embedder)}")
        from engram.text.e5 import E5Small  # imported only when asked for: it loads the model
        return Embedder(E5Small())
    return Embedder(embedder)
