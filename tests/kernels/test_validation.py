"""The kernel front end rejects bad input with engram.errors types and clear
messages; backend selection (names, ISAs, ENGRAM_KERNELS, fallback) fails loudly."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import engram.kernels
from engram.errors import DimensionError, EngramError, InvalidInputError, KernelError, NonFiniteError
from engram.kernels import abi

AVAILABLE = engram.kernels.available()
# Validation runs in the shared front end, but every table must route through it.
KEYS = sorted(k for k, v in AVAILABLE.items() if not isinstance(v, Exception))

DIM = 6
ROWS = np.random.default_rng(0).standard_normal((10, DIM)).astype(np.float32)
Q = np.ones(DIM, np.float32)


@pytest.fixture(params=KEYS)
def table(request):
    return AVAILABLE[request.param]


def bad_query(table, query, err, *words):
    for fn in (table.cosine_topk, table.dot_topk):
        with pytest.raises(err) as ei:
            fn(query, ROWS, 3)
        assert type(ei.value) is err
        for w in words:
            assert w in str(ei.value), (w, str(ei.value))


def test_nan_in_query(table):
    q = Q.copy()
    q[2] = np.nan
    bad_query(table, q, NonFiniteError, "query", "NaN")


@pytest.mark.parametrize("value", [np.inf, -np.inf])
def test_inf_in_query(table, value):
    q = Q.copy()
    q[-1] = value
    bad_query(table, q, NonFiniteError, "query", "infinity")


def test_query_that_overflows_float32_is_nonfinite(table):
    # finite as float64, infinite once converted to the kernels' float32
    bad_query(table, np.full(DIM, 1e300), NonFiniteError, "float32 range")


@pytest.mark.parametrize("length", [DIM - 1, DIM + 1, 1])
def test_wrong_query_length(table, length):
    bad_query(table, np.ones(length, np.float32), DimensionError, f"has {length} dimensions", f"expected {DIM}")


def test_3d_query(table):
    # 1-D is one query, 2-D a batch (tests/kernels/test_topk_batch.py); more is an error
    bad_query(table, np.ones((1, 1, DIM), np.float32), InvalidInputError, "1-D", "(1, 1, 6)")


def test_scalar_and_string_query(table):
    bad_query(table, np.float32(1.0), InvalidInputError, "1-D")
    bad_query(table, np.array(["a"] * DIM), InvalidInputError, "numeric")


def test_query_types_are_converted(table):
    """Lists and float64 / int queries are fine: they are converted, not rejected."""
    for q in (Q.tolist(), Q.astype(np.float64), np.ones(DIM, np.int64)):
        idx, sc = table.dot_topk(q, ROWS, 3)
        assert len(idx) == 3


def bad_rows(table, rows, *words):
    for fn in (table.cosine_topk, table.dot_topk):
        with pytest.raises(InvalidInputError) as ei:
            fn(Q, rows, 3)
        for w in words:
            assert w in str(ei.value), (w, str(ei.value))


@pytest.mark.parametrize("dtype", [np.int64, np.float64, np.uint8, np.int16, np.complex64])
def test_unsupported_row_dtypes(table, dtype):
    bad_rows(table, ROWS.astype(dtype), "float32, float16 or int8", np.dtype(dtype).name)


def test_fortran_order_rows(table):
    rows = np.asfortranarray(ROWS)
    assert rows.strides[1] != rows.itemsize
    bad_rows(table, rows, "contiguous along the last axis")


def test_column_strided_rows(table):
    bad_rows(table, np.ascontiguousarray(np.repeat(ROWS, 2, axis=1))[:, ::2], "contiguous along the last axis")


def test_reversed_rows(table):
    bad_rows(table, ROWS[::-1], "positive row stride")


def test_3d_rows(table):
    bad_rows(table, ROWS.reshape(2, 5, DIM), "2-D")


def test_1d_rows_and_lists(table):
    bad_rows(table, ROWS[0], "2-D")
    bad_rows(table, ROWS.tolist(), "2-D numpy array")


@pytest.mark.parametrize("k", [-1, -100, np.int64(-2)])
def test_negative_k(table, k):
    for fn in (table.cosine_topk, table.dot_topk):
        with pytest.raises(InvalidInputError, match="non-negative integer"):
            fn(Q, ROWS, k)


@pytest.mark.parametrize("k", [True, False, np.bool_(True), 2.0, "3", None])
def test_non_integer_k(table, k):
    for fn in (table.cosine_topk, table.dot_topk):
        with pytest.raises(InvalidInputError, match="k must be a non-negative integer"):
            fn(Q, ROWS, k)


def test_numpy_integer_k_is_fine(table):
    idx, _ = table.dot_topk(Q, ROWS, np.int32(4))
    assert len(idx) == 4


@pytest.mark.parametrize("shape", [(9,), (11,), (10, 1), (1, 10), ()])
def test_wrong_shaped_mask(table, shape):
    for fn in (table.cosine_topk, table.dot_topk):
        with pytest.raises(InvalidInputError) as ei:
            fn(Q, ROWS, 3, np.ones(shape, bool))
        assert "mask must have shape (10,)" in str(ei.value)
        assert str(shape) in str(ei.value)


@pytest.mark.parametrize("dtype", [np.int32, np.float32, np.int8])
def test_wrong_mask_dtype(table, dtype):
    with pytest.raises(InvalidInputError, match="bool or uint8"):
        table.dot_topk(Q, ROWS, 3, np.ones(10, dtype))


def test_errors_are_also_builtin_types(table):
    """Callers that only know ValueError still catch every input error."""
    with pytest.raises(ValueError):
        table.dot_topk(Q[:3], ROWS, 3)
    with pytest.raises(ValueError):
        table.dot_topk(np.full(DIM, np.nan), ROWS, 3)
    assert issubclass(KernelError, (EngramError, RuntimeError))


# ---------------------------------------------------------------- backend selection

def test_unknown_backend():
    with pytest.raises(KernelError) as ei:
        engram.kernels.backend("nope")
    assert "'nope'" in str(ei.value)
    for name in engram.kernels.BACKENDS:
        assert name in str(ei.value)


@pytest.mark.parametrize("name", ["c", "zig"])
def test_unknown_isa(name):
    with pytest.raises(KernelError) as ei:
        engram.kernels.backend(name, isa="bogus")
    assert "'bogus'" in str(ei.value)
    assert all(isa in str(ei.value) for isa in abi.ISAS)


def test_forcing_an_isa_the_cpu_lacks():
    missing = [isa for isa in abi.ISAS if isa not in engram.kernels.cpu_isas()]
    if not missing:
        pytest.skip(f"this CPU runs every ISA variant ({', '.join(abi.ISAS)}): none to refuse")
    for name in ("c", "zig"):
        for isa in missing:
            with pytest.raises(KernelError) as ei:
                engram.kernels.backend(name, isa=isa)
            assert f"'{isa}'" in str(ei.value) and "not supported by this CPU" in str(ei.value)


def test_forced_isa_is_used():
    for name in ("c", "zig"):
        for isa in engram.kernels.cpu_isas():
            t = engram.kernels.backend(name, isa=isa)
            assert (t.name, t.isa) == (name, isa)


def run_py(code: str, **env):
    """Run code in a fresh interpreter with ENGRAM_* cleared, then env applied."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
    full.update(env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=full,
                          capture_output=True, text=True, timeout=120)


SHOW = """
import json, warnings
warnings.simplefilter("always")
import engram.kernels
try:
    t = engram.kernels.backend()
    print(json.dumps({"name": t.name, "isa": t.isa}))
except Exception as e:
    print(json.dumps({"error": type(e).__name__, "msg": str(e)}))
"""


def test_engram_kernels_env_selects_backend():
    for name in ("zig", "numba", "numpy", "c"):
        p = run_py(SHOW, ENGRAM_KERNELS=name)
        assert p.returncode == 0, p.stderr
        assert json.loads(p.stdout)["name"] == name, p.stdout
        assert "RuntimeWarning" not in p.stderr, p.stderr


def test_engram_isa_env_selects_variant():
    isa = engram.kernels.cpu_isas()[-1]   # scalar, which every CPU runs
    p = run_py(SHOW, ENGRAM_KERNELS="zig", ENGRAM_ISA=isa)
    assert json.loads(p.stdout) == {"name": "zig", "isa": isa}, (p.stdout, p.stderr)


def test_engram_kernels_env_bogus():
    p = run_py(SHOW, ENGRAM_KERNELS="bogus")
    out = json.loads(p.stdout)
    assert out["error"] == "KernelError", out
    assert "ENGRAM_KERNELS='bogus'" in out["msg"] and "numba" in out["msg"]


def test_default_backend_is_the_fastest():
    p = run_py(SHOW)
    assert json.loads(p.stdout) == {"name": "c", "isa": engram.kernels.cpu_isas()[0]}, (p.stdout, p.stderr)
    assert "RuntimeWarning" not in p.stderr


FALLBACK = """
import json, warnings
from pathlib import Path
from engram.kernels import native
real = native.lib_file
# the C library cannot be found; nothing installed is touched
native.lib_file = lambda backend, isa=None: Path("/nonexistent/libengram_c.so") if backend == "c" else real(backend, isa)
import engram.kernels
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")   # so only engram's own once-logic can suppress a repeat
    a = engram.kernels.backend()
    b = engram.kernels.backend()
    q = [1.0, 0.0, 0.0]
    import numpy as np
    idx, _ = b.dot_topk(q, np.eye(3, dtype=np.float32), 1)
try:
    engram.kernels.backend("c")
    named = None
except Exception as e:
    named = [type(e).__name__, str(e)]
print(json.dumps({
    "names": [a.name, b.name], "isa": a.isa, "top": int(idx[0]),
    "warnings": [[w.category.__name__, str(w.message)] for w in caught],
    "named": named,
}))
"""


def test_fallback_warns_once_naming_c():
    p = run_py(FALLBACK)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["names"] == ["zig", "zig"]
    assert out["isa"] == engram.kernels.cpu_isas()[0]   # the CPU probe still works without the C library
    assert out["top"] == 0
    assert len(out["warnings"]) == 1, out["warnings"]
    cat, msg = out["warnings"][0]
    assert cat == "RuntimeWarning"
    assert "'c'" in msg and "'zig'" in msg and "/nonexistent/libengram_c.so" in msg, msg
    # asked for by name, the missing library is an error, not a fallback
    assert out["named"][0] == "KernelError" and "/nonexistent/libengram_c.so" in out["named"][1]
