"""NativeLibrary refuses a library built for another layout or ABI (engram.h's
prototypes), or one that is missing or incomplete, before any kernel is bound."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from engram.errors import KernelError, LayoutMismatchError
from engram.kernels import abi, native
from engram.kernels.native import NativeLibrary
from engram.layout import LAYOUT_HASH

CC = shutil.which("gcc") or shutil.which("cc")
pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler (gcc/cc) on PATH to build the stub libraries")

WRONG_HASH = LAYOUT_HASH ^ 0x00F0_0000_0000_0F0F
WRONG_ABI = abi.ABI_HASH ^ 0x0000_0F00_0000_F000


def required_symbols(isas) -> set:
    """Every symbol abi.bind may look up: identity, required and optional symbols plus the per-ISA kernels of isas."""
    names = set(abi.IDENTITY) | set(abi.REQUIRED) | set(abi.OPTIONAL)
    return names | {abi.kernel_symbol(op, isa) for isa in isas for op in abi.VARIANT_OPS}


def build_stub(tmp_path, *, abi_hash=abi.ABI_HASH, layout_hash=LAYOUT_HASH, isas=("scalar",),
               skip=(), name="libstub.so"):
    """A shared library exporting the identity symbols and stub kernels (never called)."""
    bodies = {
        "eg_abi_hash": f"uint64_t eg_abi_hash(void) {{ return 0x{abi_hash:016x}ull; }}",
        "eg_layout_hash": f"uint64_t eg_layout_hash(void) {{ return 0x{layout_hash:016x}ull; }}",
        "eg_isa": 'const char *eg_isa(void) { return "scalar"; }',
        "eg_layout_lookup": "int32_t eg_layout_lookup(const char *r, const char *f, int64_t *o, int64_t *s)"
                            " { (void)r; (void)f; *o = 3; *s = 5; return 0; }",
    }
    src = ["#include <stdint.h>"]
    for sym in sorted(required_symbols(isas) - set(skip)):
        src.append(bodies.get(sym, f"int64_t {sym}(void) {{ return 0; }}"))
    c = tmp_path / (name + ".c")
    c.write_text("\n".join(src) + "\n")
    so = tmp_path / name
    subprocess.run([CC, "-shared", "-fPIC", "-o", str(so), str(c)], check=True, capture_output=True)
    return so


def test_stub_with_matching_identity_loads(tmp_path):
    """The control: the same stub with the right hash and ABI is accepted."""
    lib = NativeLibrary(build_stub(tmp_path), ("scalar",))
    assert lib.isas == ("scalar",)
    assert lib.fns["eg_layout_hash"]() == LAYOUT_HASH
    assert lib.lookup("Anything", "x") == (3, 5)
    assert lib.address("dot_topk_f32", "scalar") != 0


def test_wrong_layout_hash_is_refused(tmp_path):
    path = build_stub(tmp_path, layout_hash=WRONG_HASH)
    with pytest.raises(LayoutMismatchError) as ei:
        NativeLibrary(path, ("scalar",))
    msg = str(ei.value)
    assert f"0x{WRONG_HASH:016x}" in msg, msg
    assert f"0x{LAYOUT_HASH:016x}" in msg, msg
    assert str(path) in msg and "rebuild" in msg


def test_wrong_abi_hash_is_refused(tmp_path):
    path = build_stub(tmp_path, abi_hash=WRONG_ABI)
    with pytest.raises(KernelError) as ei:
        NativeLibrary(path, ("scalar",))
    assert not isinstance(ei.value, LayoutMismatchError)
    msg = str(ei.value)
    assert f"kernel ABI 0x{WRONG_ABI:016x}" in msg and f"engram.h is 0x{abi.ABI_HASH:016x}" in msg, msg
    assert str(path) in msg and "stale" in msg and "rebuild" in msg, msg


def test_abi_is_checked_before_layout(tmp_path):
    path = build_stub(tmp_path, abi_hash=WRONG_ABI, layout_hash=WRONG_HASH)
    with pytest.raises(KernelError, match=f"kernel ABI 0x{WRONG_ABI:016x}"):
        NativeLibrary(path, ("scalar",))


def test_a_library_from_before_abi_hashes_is_called_stale(tmp_path):
    """An old library reports eg_abi_version, not eg_abi_hash: named stale, with how to rebuild."""
    path = build_stub(tmp_path, skip=("eg_abi_hash",))
    with pytest.raises(KernelError) as ei:
        NativeLibrary(path, ("scalar",))
    msg = str(ei.value)
    assert "eg_abi_hash" in msg and "stale" in msg and "rebuild" in msg and str(path) in msg, msg


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere" / "libengram_c.so"
    with pytest.raises(KernelError) as ei:
        NativeLibrary(path, ("scalar",))
    assert str(path) in str(ei.value) and "missing" in str(ei.value)


def test_not_a_library(tmp_path):
    path = tmp_path / "libjunk.so"
    path.write_bytes(b"\x7fELF but not really")
    with pytest.raises(KernelError) as ei:
        NativeLibrary(path, ("scalar",))
    assert str(path) in str(ei.value) and "cannot load" in str(ei.value)


@pytest.mark.parametrize("missing", ["eg_layout_lookup", "eg_cosine_topk_f16_scalar"])
def test_missing_symbol(tmp_path, missing):
    path = build_stub(tmp_path, skip=(missing,))
    with pytest.raises(KernelError) as ei:
        NativeLibrary(path, ("scalar",))
    assert missing in str(ei.value) and str(path) in str(ei.value)


def test_isa_the_library_lacks(tmp_path):
    """A library built for scalar only cannot be bound as an avx2 library."""
    path = build_stub(tmp_path, isas=("scalar",))
    with pytest.raises(KernelError, match="eg_dot_topk_f32_avx2"):
        NativeLibrary(path, ("avx2",))


def test_installed_libraries_pass_the_same_checks():
    c = native.load_c()
    assert c.fns["eg_abi_hash"]() == abi.ABI_HASH and c.fns["eg_layout_hash"]() == LAYOUT_HASH
    assert c.fns["eg_isa"]().decode() == native.cpu_isas()[0]
    for isa in native.cpu_isas():
        z = native.load_zig(isa)
        assert z.fns["eg_abi_hash"]() == abi.ABI_HASH and z.fns["eg_layout_hash"]() == LAYOUT_HASH
        assert z.fns["eg_isa"]().decode() == isa
