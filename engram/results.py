"""What the public calls return: RecallResult, SpreadResult and Memories."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class RecallResult:
    """What recall found, best first. Iterating yields (id, score, content) triples."""
    ids: np.ndarray                 # int64 memory ids
    scores: np.ndarray              # float32 ranking scores
    confidence: np.ndarray          # float32 confidence of each memory
    origin: np.ndarray              # "seed" (similarity) or "spread"
    hops: np.ndarray                # int8: 0 for seeds, hop count for spread results
    content: list                   # the memories' content (None where absent)
    partial: bool = False           # a stage stopped early to meet the budget
    fallback: bool = False          # answered from similarity alone (the spread would not fit)
    activation: np.ndarray = None   # float32 activation after spreading (seeds: sigmoid of cosine)
    similarity: np.ndarray = None   # float32 cosine to the query; NaN if reached only by spreading
    timings: dict = field(default_factory=dict)   # milliseconds per stage
    spreading: dict = field(default_factory=dict)  # hops run, nodes touched, predicted vs taken ms

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def __iter__(self):
        return iter(zip(self.ids.tolist(), self.scores.tolist(), self.content))


@dataclass
class SpreadResult:
    """What spreading alone reached, most active first (ties by id). Unpacks as
    ``ids, activation = mem.spread(...)``; ``hops`` says at which hop each was reached."""
    ids: np.ndarray                 # int64 memory ids
    activation: np.ndarray          # float32, in (0, 1]
    hops: np.ndarray                # uint8: 0 for the seeds

    def __iter__(self):
        return iter((self.ids, self.activation))


@dataclass
class Memories:
    """Memories fetched by get(), in the order asked."""
    ids: np.ndarray                 # int64
    vectors: np.ndarray             # float32 (n, dim); warm-tier rows widened from f16
    content: list                   # str or None each
    confidence: np.ndarray          # float32 in [0, 1]
    strength: np.ndarray            # float32: memory strength for forgetting curves
    tier: list                      # "hot" | "warm"
    created_ns: np.ndarray          # int64 wall-clock ns (the space's clock) of remember
    last_access_ns: np.ndarray      # int64 ns of the last recall that returned it (created_ns before)
    access_count: np.ndarray        # uint32: recalls that returned it

    def __len__(self) -> int:
        return int(self.ids.shape[0])
