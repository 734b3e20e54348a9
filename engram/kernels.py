"""Public kernel API: ``engram.kernels.backend(name)`` returns a function table.

See engram/_kernels/__init__.py for how backends are chosen.
"""
from ._kernels import BACKENDS, available, backend  # noqa: F401
from ._kernels.native import cpu_isas  # noqa: F401
from ._kernels.table import CsrGraph  # noqa: F401
