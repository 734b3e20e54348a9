"""The fan effect (ACT-R): an association weakens with the fan of the memories
it joins, so that hubs linked to thousands of memories do not swamp a recall.

    discount(fan) = 1 / (1 + ln(fan))        fan >= 1 (1 -> 1.0, 10 -> 0.30, 1000 -> 0.13)

ACT-R's associative strength is S - ln(fan); this is its multiplicative form,
bounded in (0, 1]. The source's fan is its out-degree, the target's its
in-degree. The discounted weights are computed once per compaction, for each
mode, and stored beside the plain weights in the CSR segment, so spreading in
every kernel backend just reads another weights array: no log per hop.

    fan="none"     w
    fan="source"   w x discount(out-degree of the source)
    fan="target"   w x discount(in-degree of the target)
    fan="both"     w x both discounts
"""
from __future__ import annotations

import numpy as np


def discount(fan: np.ndarray) -> np.ndarray:
    f = np.maximum(np.asarray(fan, dtype=np.float64), 1.0)
    return 1.0 / (1.0 + np.log(f))


def fan_weights(offsets: np.ndarray, targets: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """float32 [3, m]: the weights discounted by source fan, target fan, and both."""
    n, m = offsets.shape[0] - 1, targets.shape[0]
    out_deg = np.diff(offsets.astype(np.int64))
    in_deg = np.bincount(targets.astype(np.int64), minlength=n) if m else np.zeros(n, np.int64)
    src = np.repeat(np.arange(n), out_deg)
    ds = discount(out_deg)[src] if m else np.zeros(0)
    dt = discount(in_deg)[targets.astype(np.int64)] if m else np.zeros(0)
    w = weights.astype(np.float64)
    return np.stack([w * ds, w * dt, w * ds * dt]).astype(np.float32)
