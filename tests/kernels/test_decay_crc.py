"""Decay curves and CRC32C: every backend and ISA against the numpy oracle."""
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engram.errors import InvalidInputError, NonFiniteError
from engram.kernels import reference
from engram.kernels.checks import decay_params

from . import independent
from .backends import BACKEND_KEYS, LOADED, TOLERANCE, get_table

KEYS = BACKEND_KEYS
CURVES = [("exponential", {"tau": 30.0}), ("exponential", {"tau": 0.5}), ("power", {"beta": 0.7}),
          ("power", {"beta": 0.0}), ("power", {"beta": 3.0}),
          ("two_component", {"tau_fast": 5.0, "tau_slow": 100.0, "weight": 0.3}),
          ("two_component", {"tau_fast": 1.0, "tau_slow": 2.0, "weight": 1.0})]


def exponent(curve, p, age):
    """x of the curve (its exp's argument): float32 evaluation of exp(x) carries the
    rounding of x itself, so the allowed error grows with |x| (TOLERANCE["decay"])."""
    a = age.astype(np.float64)
    if curve == "exponential":
        return a / p["tau"]
    if curve == "power":
        return p["beta"] * np.log1p(a)
    return a / p["tau_fast"]


def decay_oracle(s, age, curve, params):
    """The oracle's values (engram.kernels.reference.decay) and how far a backend may be
    from each: TOLERANCE["decay"], rel * (1 + |x|) * |oracle| + abs."""
    want = reference.decay(s, age, *decay_params(curve, params))
    rel, ab = TOLERANCE["decay"]
    return want, rel * (1 + np.abs(exponent(curve, params, age))) * np.abs(want) + ab


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("curve,params", CURVES, ids=[f"{c}-{i}" for i, (c, _) in enumerate(CURVES)])
def test_decay_matches_oracle(key, curve, params):
    rng = np.random.default_rng(zlib.crc32(f"{key} {curve} {sorted(params.items())}".encode()))   # the same every run
    table = get_table(key)
    worst = 0.0
    # 98 small sizes x 15 rounds + 2 large = ~1,470 cases per curve, ~10,000 per backend over the 7 curves
    for n in list(range(0, 98)) * 15 + [1000, 4097]:
        s = rng.uniform(0, 3, n).astype(np.float32)
        age = (rng.uniform(0, 1, n) ** 3 * rng.choice([1, 50, 5000], n)).astype(np.float32)
        if n > 3:
            age[:3] = [0.0, 1e-7, 1e6]     # no time, a tick, "forever" (underflows to 0)
        got = table.decay(s, age, curve, **params)
        want, tol = decay_oracle(s, age, curve, params)
        if key == "numpy":     # the oracle above is the numpy backend itself: meet an independent one
            independent.check_decay(got, s, age, curve, params, np.abs(exponent(curve, params, age)), f"n={n}")
        assert got.dtype == np.float32 and got.shape == s.shape
        err = np.abs(got - want)
        assert (err <= tol).all(), f"n={n}: worst {np.max(err / np.maximum(tol, 1e-300))}x tolerance"
        if n:
            worst = max(worst, float(np.max(err / np.maximum(np.abs(want), 1e-30))))
    assert worst < TOLERANCE["decay worst"]


@pytest.mark.parametrize("key", KEYS)
def test_decay_keeps_shape_and_strided_input(key):
    s = np.linspace(0, 1, 24, dtype=np.float64).reshape(4, 6)
    age = np.arange(48, dtype=np.float32).reshape(4, 12)[:, ::2]
    out = get_table(key).decay(s, age, "exponential", tau=10.0)
    assert out.shape == (4, 6)
    want, tol = decay_oracle(s, age, "exponential", {"tau": 10.0})
    assert want.shape == (4, 6) and (np.abs(out - want) <= tol).all(), (out, want)


@settings(deadline=None, max_examples=150)
@given(st.sampled_from(LOADED), st.floats(0, 1e4, width=32), st.floats(0, 1e4, width=32),
       st.sampled_from(CURVES))
def test_decay_is_monotone_in_age(key, a1, a2, cp):
    curve, params = cp
    lo, hi = sorted((a1, a2))
    out = get_table(key).decay(np.ones(2, np.float32), np.array([lo, hi], np.float32), curve, **params)
    slack = 1 + TOLERANCE["decay monotone"]
    assert 0 <= out[1] <= out[0] * slack <= slack


@pytest.mark.parametrize("bad,err", [
    (dict(curve="linear"), InvalidInputError), (dict(curve="exponential"), InvalidInputError),
    (dict(curve="exponential", tau=0.0), InvalidInputError), (dict(curve="exponential", tau=-1), InvalidInputError),
    (dict(curve="exponential", tau=float("nan")), InvalidInputError),
    (dict(curve="exponential", tau=1.0, beta=1.0), InvalidInputError),
    (dict(curve="power", beta=-0.5), InvalidInputError),
    (dict(curve="two_component", tau_fast=1.0, tau_slow=2.0, weight=1.5), InvalidInputError),
])
def test_decay_rejects_bad_parameters(bad, err):
    t = get_table(LOADED[0])
    kw = dict(bad)
    curve = kw.pop("curve")
    with pytest.raises(err):
        t.decay(np.ones(3), np.ones(3), curve, **kw)


def test_decay_rejects_bad_arrays():
    t = get_table(LOADED[0])
    with pytest.raises(InvalidInputError, match="same shape"):
        t.decay(np.ones(3), np.ones(4), "exponential", tau=1.0)
    with pytest.raises(InvalidInputError, match=">= 0"):
        t.decay(np.ones(3), np.array([1.0, -1.0, 2.0]), "exponential", tau=1.0)
    with pytest.raises(NonFiniteError):
        t.decay(np.array([1.0, np.nan]), np.ones(2), "exponential", tau=1.0)
    with pytest.raises(NonFiniteError):
        t.decay(np.ones(2), np.array([1.0, np.inf]), "exponential", tau=1.0)


# ---- CRC32C -------------------------------------------------------------------------

KNOWN = [(b"", 0), (b"123456789", 0xE3069283), (bytes(32), 0x8A9136AA), (b"\xff" * 32, 0x62A8AB43),
         (bytes(range(32)), 0x46DD794E)]    # RFC 3720 B.4 and the iSCSI test vectors


@pytest.mark.parametrize("key", KEYS)
def test_crc32c_known_vectors(key):
    for data, want in KNOWN:
        assert get_table(key).crc32c(data) == want, data


@pytest.mark.parametrize("key", KEYS)
def test_crc32c_matches_oracle_on_every_length_and_alignment(key):
    rng = np.random.default_rng(9)
    buf = rng.integers(0, 256, 4096 + 16, dtype=np.uint8)
    t = get_table(key)
    # 98 lengths x 4 alignments x 26 rounds of fresh bytes + 4 long = ~10,000 cases per backend
    for n in list(range(0, 98)) * 26 + [255, 256, 1000, 4096]:
        buf = rng.integers(0, 256, 4096 + 16, dtype=np.uint8) if n < 98 and rng.random() < 0.5 else buf
        for off in (0, 1, 3, 7):
            view = buf[off:off + n]
            want = reference.crc32c(view.tobytes())
            assert t.crc32c(view) == want, (n, off)
            # continuing from a partial crc equals one pass
            cut = n // 3
            assert t.crc32c(view[cut:], t.crc32c(view[:cut])) == want


def test_crc32c_of_the_numpy_backend_against_a_bitwise_crc():
    """The oracle above is the numpy backend's own table-driven CRC: here it meets a
    bit-by-bit one (tests/kernels/independent.py) on every length 0..300 and a long one."""
    assert all(independent.crc32c(data) == want for data, want in KNOWN)
    rng = np.random.default_rng(10)
    t = get_table("numpy")
    for n in list(range(0, 301)) + [4099]:
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        crc = int(rng.integers(0, 2**32))
        assert t.crc32c(data) == independent.crc32c(data), n
        assert t.crc32c(data, crc) == independent.crc32c(data, crc), n


@pytest.mark.parametrize("key", KEYS)
def test_crc32c_accepts_bytes_like(key):
    t = get_table(key)
    data = b"engram write-ahead log record"
    want = reference.crc32c(data)
    assert t.crc32c(bytearray(data)) == want
    assert t.crc32c(memoryview(data)) == want
    assert t.crc32c(np.frombuffer(data, np.uint8)) == want
    assert t.crc32c(np.frombuffer(data[:28], np.uint32)) == reference.crc32c(data[:28])
    assert t.crc32c(data) != zlib.crc32(data)      # CRC32C is not zlib's CRC-32


def test_crc32c_rejects_bad_input():
    t = get_table(LOADED[0])
    with pytest.raises(InvalidInputError, match="bytes-like"):
        t.crc32c("text")
    with pytest.raises(InvalidInputError, match="contiguous"):
        t.crc32c(np.arange(10, dtype=np.uint8)[::2])
    with pytest.raises(InvalidInputError, match="crc"):
        t.crc32c(b"x", crc=-1)
    with pytest.raises(InvalidInputError, match="crc"):
        t.crc32c(b"x", crc=2**32)


@pytest.mark.parametrize("key", KEYS)
def test_crc32c_across_the_interleaved_block_sizes(key):
    """Lengths at and around 3 x 256 and 3 x 8192 bytes, where the three-stream
    hardware path joins its blocks, at several alignments."""
    rng = np.random.default_rng(31)
    buf = rng.integers(0, 256, 3 * 8192 * 2 + 64, dtype=np.uint8)
    t = get_table(key)
    for n in (767, 768, 769, 1543, 3 * 8192 - 1, 3 * 8192, 3 * 8192 + 9, 2 * 3 * 8192 + 768 + 13):
        for off in (0, 5):
            view = buf[off:off + n]
            assert t.crc32c(view) == reference.crc32c(view.tobytes()), (n, off)
