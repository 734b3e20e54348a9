"""Forgetting: a memory's retention falls with the time since it was last recalled.

    retention = strength x exp(-age / forget_tau_s)        age: seconds since last access

computed through the kernels' decay function (every backend has it; see
``engram.kernels.backend().decay`` for the power-law and two-component curves).
"""
from __future__ import annotations

import numpy as np

from engram.kernels.checks import decay_params

_EXPONENTIAL = decay_params("exponential", {"tau": 1.0})[0]


def retention(kern, strength: np.ndarray, last_access_ns: np.ndarray, now_ns: int, tau_s: float) -> np.ndarray:
    """strength x exp(-age / tau_s), age in seconds since last access (never negative).
    Inputs are the engine's own finite record fields: no re-check."""
    age = (np.maximum(now_ns - last_access_ns.astype(np.int64), 0) / 1e9).astype(np.float32)
    return kern._decay(np.ascontiguousarray(strength, np.float32), age, _EXPONENTIAL, (tau_s, 0.0, 0.0))
