"""A space's text side, the owner's: texts in (remember) and questions (recall) through the
engine's embedder, and the space's record of which embedder made its vectors.

The record (name, version, dim) is made by the first remember of texts into a space with
no live memories, logged as one of the space's settings (so it survives close, reopen and
kill -9, like configure_recall's), and compared before any text goes in or out: another
embedder, or a space holding vectors with no record of their origin, is refused
(EmbedderMismatchError) rather than compared across two embeddings. Vectors passed
directly are taken as they are, as before. The first texts also bring the model's
calibration of similarity (Embedder.recall_settings, e.g. where the seed sigmoid is centred),
set and logged with the record; configure_recall changes it afterwards like any setting.
"""
from __future__ import annotations

import time

import numpy as np

from engram import validate
from engram.errors import EmbedderMismatchError, InvalidInputError, NoEmbedderError
from engram.text.e5 import INSTALL
from engram.text.embedder import Embedder, Identity
from engram.text.progress import Progress


class SpaceText:
    """``checked(vectors, content, confidence, tier)`` and ``store_checked(...)``: the Space's
    own check and store of a batch (as a Stream gets them)."""

    def __init__(self, owned, name: str, checked, store_checked):
        self._owned, self._name = owned, name
        self._checked, self._store_checked = checked, store_checked

    def embedder(self) -> Embedder:
        """The engine's embedder, if this space may take its vectors."""
        emb = self._owned.embedder
        if emb is None:
            raise NoEmbedderError("this engine has no embedder: create it with engram.Engine(embedder='default') "
                                  f"({INSTALL}) or an object with encode(list[str]), or pass vectors")
        made = self.made_by()
        if made is None and self._owned.store.n_live:
            raise EmbedderMismatchError(
                f"memory space {self._name!r} holds {self._owned.store.n_live} memories remembered as vectors, "
                f"with no record of what made them: texts embedded by {emb.identity} would be compared with "
                "vectors of another embedding. Use a new space for texts, or pass vectors from the same model")
        if made is not None and made != emb.identity:
            raise EmbedderMismatchError(
                f"memory space {self._name!r} holds vectors made by {made}; this engine's embedder is "
                f"{emb.identity}. Open it with that embedder, or use another space")
        return emb

    def made_by(self) -> Identity | None:
        saved = self._owned.embedded_by
        return None if saved is None else Identity.from_settings(saved)

    def query(self, text) -> tuple:
        """(vector, ms spent encoding) for one question."""
        if not isinstance(text, str):
            raise InvalidInputError(f"text must be a string, got {type(text).__name__}")
        emb = self.embedder()
        t0 = time.perf_counter_ns()
        q = emb.encode(validate.texts(text, "text"), query=True)[0]
        return q, (time.perf_counter_ns() - t0) / 1e6

    def remember(self, vectors, texts, content, confidence, tier: str, progress, key=None) -> tuple:
        """(ids, lsn) of texts embedded and stored; their content is the texts unless given."""
        if vectors is not None:
            raise InvalidInputError("give vectors or texts, not both")
        texts = validate.texts(texts)
        content = texts if content is None else content
        # everything but the vectors is checked before the model runs (it may take minutes)
        self._checked(np.ones((len(texts), self._owned.store.dim), np.float32), content, confidence, tier)
        emb = self.embedder()
        if progress is True:
            with Progress("embedding texts", len(texts)) as bar:
                v = emb.encode(texts, progress=bar)
        else:
            v = emb.encode(texts, progress=progress or None)
        batch = self._checked(v, content, confidence, tier)
        owned = self._owned
        with owned.lock:
            owned.changes.admit()
            self.embedder()         # again, with the writers held: vectors may have come in meanwhile
            if owned.embedded_by is None:      # the record, and the model's calibration of similarity
                owned.embedded_by = emb.identity.settings()
                owned.context.config = owned.context.config.with_changes(**emb.recall_settings)
                owned.settings_changed()
                owned.changes.settings(owned.settings())
            return self._store_checked(*batch, key=key)
