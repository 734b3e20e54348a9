"""The fan effect in every kernel backend: spreading over each mode's discounted
weights (engram.cognition.fan.fan_weights, what compaction stores) against the float64
oracle over the same weights (the numpy backend, which is that oracle, against
tests/kernels/independent.py), on hub-heavy random graphs."""
import numpy as np
import pytest

from engram.cognition.fan import fan_weights
from engram.config import FAN_MODES as MODES
from engram.kernels.reference import spread as oracle_spread

from . import independent
from .backends import BACKEND_KEYS, TOLERANCE, family, get_table
from .test_spread_differential import compare, csr


def hub_graph(rng, n):
    """Random edges plus a few hubs linked to and from a third of the nodes."""
    src = list(rng.integers(0, n, 2 * n))
    dst = list(rng.integers(0, n, 2 * n))
    for hub in rng.choice(n, size=3, replace=False).tolist():
        others = rng.choice(n, size=n // 3, replace=False).tolist()
        src += [hub] * len(others) + others
        dst += others + [hub] * len(others)
    return csr(n, src, dst, rng.uniform(0.1, 1.0, len(src)))


@pytest.mark.parametrize("key", BACKEND_KEYS)
def test_fan_weights_spread_like_the_oracle_in_every_backend(key):
    t = get_table(key)
    rng = np.random.default_rng(21)
    for case in range(40):
        n = int(rng.integers(4, 80))
        offsets, targets, weights = hub_graph(rng, n)
        fans = fan_weights(offsets, targets, weights)
        seeds = rng.integers(0, n, int(rng.integers(1, 4)))
        act = rng.uniform(0.2, 1.0, seeds.size).astype(np.float32)
        for i, mode in enumerate(MODES):
            w = weights if mode == "none" else fans[i - 1]
            got = t.spread(offsets, targets, np.ascontiguousarray(w), seeds, act, max_depth=4, decay=0.7,
                           threshold=0.01, cycle_penalty=0.5)
            if key == "numpy":       # the oracle itself: against one that shares no code with it
                independent.check_spread(got, independent.spread(offsets, targets, w, seeds, act, 4, 0.7, 0.01, 0.5),
                                         f"{key} case {case} fan={mode}")
                continue
            want = oracle_spread(offsets, targets, w, seeds.astype(np.int64), act, 4, 0.7, 0.01, 0.5)
            compare(got, want, TOLERANCE["spread fan"][family(key)], f"{key} case {case} fan={mode}")
