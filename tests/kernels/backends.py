"""Every kernel backend and ISA variant this machine has, for the kernel tests.

The numpy backend is the float64 oracle (engram/kernels/reference.py) the others
are compared with; it is itself compared with tests/kernels/independent.py. How
far each may be off: TOLERANCE (tests/kernels/tolerance.py), re-exported here."""
import pytest

import engram.kernels
from engram.kernels import native

from .tolerance import TOLERANCE, family

__all__ = ["AVAILABLE", "BACKEND_KEYS", "KERNEL_KEYS", "LOADED", "TOLERANCE", "family", "get_table"]

AVAILABLE = engram.kernels.available()
BACKEND_KEYS = sorted(AVAILABLE)
# for tests that loop over backends themselves; each key's own tests report a missing one
LOADED = [k for k in BACKEND_KEYS if not isinstance(AVAILABLE[k], Exception)]
# every backend but the oracle itself (the numpy backend meets independent.py instead)
KERNEL_KEYS = [k for k in BACKEND_KEYS if k != "numpy"]


def get_table(key):
    """The backend's table; skip only when its library was genuinely not built."""
    t = AVAILABLE[key]
    if isinstance(t, Exception):
        name, _, isa = key.partition("/")
        if name in ("c", "zig"):
            path = native.lib_file(name, isa or None)
            if not path.exists():
                pytest.skip(f"{key}: {path.name} was not built (e.g. ENGRAM_BUILD_ZIG=0): {t}")
        pytest.fail(f"{key} should load but raised: {t!r}")
    return t
