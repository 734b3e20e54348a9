"""csrc/include/engram.h is the one source of the kernel ABI: tools/gen_abi.py's
views of it are current; a prototype change changes ABI_HASH and is caught by
--check, by the Zig compiler (engram.zig checks each export against abi.zig)
and at load (a library built before the change is refused); the C compiler
checks the C definitions against the header itself."""
from __future__ import annotations

import importlib
import importlib.util
import shutil
import subprocess
import sys

import pytest

from engram.errors import KernelError
from engram.kernels import abi, native
from engram.kernels.native import NativeLibrary
from tests.generators import ROOT, assert_drift_detected_and_repaired, copy_tree, edit, run_gen

GEN = ROOT / "tools" / "gen_abi.py"
HEADER = ROOT / "csrc" / "include" / "engram.h"
GENERATED = ("engram/kernels/abi_generated.py", "engram/kernels/_cy/abi.pxd", "zig/src/abi.zig",
             "csrc/include/engram_abi.h")
CC = shutil.which("gcc") or shutil.which("cc")

# (old, new) in engram.h: each changes what a caller and a library must agree on
CHANGES = {
    "param type": ("float cycle_penalty, float ceiling, uint32_t epoch, \\", "double cycle_penalty, float ceiling, uint32_t epoch, \\"),
    "param added": ("int64_t eg_perf_read(int32_t fd);", "int64_t eg_perf_read(int32_t fd, uint32_t flags);"),
    "return type": ("EG_API_ZIG int64_t eg_arena_probe(", "EG_API_ZIG int32_t eg_arena_probe("),
    "constness": ("const uint32_t *seeds, const float *seed_act", "uint32_t *seeds, const float *seed_act"),
    "exporter": ("EG_API_C int64_t eg_perf_open(", "EG_API int64_t eg_perf_open("),
    "constant": ("#define EG_DECAY_TWO 2u", "#define EG_DECAY_TWO 3u"),
    "pool cache": ("uint32_t idx[EG_POOL_CACHE_MAX];", "uint64_t idx[EG_POOL_CACHE_MAX];"),
}


@pytest.fixture(scope="module")
def gen_abi():
    """tools/gen_abi.py as a module, for its parser (the tree tests below run it as a script)."""
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        yield importlib.import_module("gen_abi")
    finally:
        sys.path.remove(str(ROOT / "tools"))


def parse(gen_abi, text: str):
    return gen_abi.parse(text, set(gen_abi.load()[1]))


# ------------------------------------------------------------ the repository

def test_check_passes_on_the_repo():
    p = run_gen(GEN, "--check")
    assert p.returncode == 0, p.stderr
    assert f"abi ok: hash 0x{abi.ABI_HASH:016x}" in p.stdout and p.stderr == ""


def test_every_view_carries_the_header_hash(gen_abi):
    assert parse(gen_abi, HEADER.read_text()).hash() == abi.ABI_HASH
    assert f"#define EG_ABI_HASH 0x{abi.ABI_HASH:016x}ULL" in (ROOT / "csrc/include/engram_abi.h").read_text()
    assert f"pub const abi_hash: u64 = 0x{abi.ABI_HASH:016x};" in (ROOT / "zig/src/abi.zig").read_text()
    assert native.load_c().fns["eg_abi_hash"]() == abi.ABI_HASH
    for isa in native.cpu_isas():
        assert native.load_zig(isa).fns["eg_abi_hash"]() == abi.ABI_HASH, isa


def test_drivers_declare_no_kernel_types_of_their_own():
    """The Cython drivers cimport _cy/abi.pxd; a hand-written function-pointer type would be a second source."""
    for pyx in (ROOT / "engram/kernels/_cy").glob("*.pyx"):
        text = pyx.read_text()
        assert "(*" not in "".join(line for line in text.splitlines() if line.startswith("ctypedef")), pyx.name


@pytest.mark.parametrize("change", CHANGES, ids=list(CHANGES))
def test_a_prototype_change_changes_the_hash(gen_abi, change):
    old, new = CHANGES[change]
    text = HEADER.read_text()
    assert text.count(old) == 1, old
    assert parse(gen_abi, text.replace(old, new)).hash() != abi.ABI_HASH


@pytest.mark.parametrize("old,new", [
    ("const char *record, const char *field", "const char *rec, const char *fld"),   # parameter names
    ("/* CRC32C (Castagnoli) of n bytes", "/* The CRC32C checksum of n bytes"),     # a comment
    ("EG_API int64_t eg_spread_gather(EG_SPREAD_GATHER_ARGS);",
     "EG_API int64_t\n    eg_spread_gather( EG_SPREAD_GATHER_ARGS );"),               # layout of a declaration
    ("EG_API_C int32_t eg_perf_close(int32_t fd);\n", ""),                             # order of declarations
    ("#define EG_CPU_AVX512 2u", "#define EG_CPU_AVX512 0x2"),                         # how a value is spelled
], ids=["names", "comment", "spacing", "order", "literal"])
def test_what_is_not_the_abi_keeps_the_hash(gen_abi, old, new):
    text = HEADER.read_text()
    assert text.count(old) == 1, old
    text = text.replace(old, new)
    if not new:
        text = text.replace("#endif /* ENGRAM_H */", old + "#endif /* ENGRAM_H */")
    assert parse(gen_abi, text).hash() == abi.ABI_HASH


@pytest.mark.parametrize("old,new,why", [
    ("EG_API_C int32_t eg_perf_close(int32_t fd);", "int32_t eg_perf_close(int32_t fd);", "cannot read"),
    ("EG_API_C int32_t eg_perf_close(int32_t fd);", "EG_API_C int32_t eg_perf_close(int32_t **fd);", "parameter"),
    ("EG_API_C int32_t eg_perf_close(int32_t fd);", "EG_API_C int32_t eg_perf_close(size_t fd);", "unknown type"),
    ("EG_API_C int32_t eg_perf_close(int32_t fd);", "EG_API_C int32_t eg_perf_close(EG_PERF_ARGS);", "not defined"),
    ("EG_API_C int32_t eg_perf_close(int32_t fd);", "EG_API_C int32_t eg_perf_close(eg_spread_state_t s);",
     "only passed by pointer"),
    ("EG_API_C int64_t eg_pool_flush(", "EG_API int64_t eg_pool_flush(", "has no Zig type"),
    ("EG_API uint32_t eg_crc32c##isa_suffix(EG_CRC_ARGS);", "EG_API_C uint32_t eg_crc32c##isa_suffix(EG_CRC_ARGS);",
     "every library"),
    ("EG_API_C int32_t eg_perf_close(int32_t fd);", "EG_API_C int32_t eg_perf_read(int32_t fd);", "declared twice"),
    ("#define EG_DECAY_TWO 2u", "#define EG_DECAY_TWO (1u << 1)", "integer literal"),
], ids=["no mark", "pointer to pointer", "unknown type", "unknown macro", "struct by value", "zig struct",
        "variant mark", "twice", "constant expression"])
def test_what_the_parser_cannot_read_is_refused(gen_abi, old, new, why):
    """Nothing in the header is skipped silently: a declaration outside the shape is an error."""
    text = HEADER.read_text()
    assert text.count(old) == 1, old
    with pytest.raises(gen_abi.AbiError, match=why):
        abi_ = parse(gen_abi, text.replace(old, new))
        gen_abi.generated(abi_, gen_abi.load()[1])


# ------------------------------------------------ a copy of the tree: drift

@pytest.fixture
def tree(tmp_path):
    """A copy of everything gen_abi.py (and gen_layout.py, which it imports) reads and writes."""
    return copy_tree(tmp_path, "gen_abi.py", ("tools", "engram/layout", "csrc/include", "zig/src"), GENERATED[:2])


@pytest.mark.parametrize("rel", GENERATED)
def test_drift_is_detected_and_repaired(tree, rel):
    assert_drift_detected_and_repaired(tree / "tools" / "gen_abi.py", tree, rel, GENERATED, "ABI drift")


def test_a_prototype_change_makes_every_view_drift(tree):
    edit(tree / "csrc/include/engram.h", *CHANGES["param type"])
    gen = tree / "tools" / "gen_abi.py"
    p = run_gen(gen, "--check")
    assert p.returncode == 1 and all(rel in p.stderr for rel in GENERATED), p.stderr
    assert run_gen(gen).returncode == 0
    assert "double cycle_penalty" in (tree / "engram/kernels/_cy/abi.pxd").read_text()
    assert "cycle_penalty: f64" in (tree / "zig/src/abi.zig").read_text()
    assert f"0x{abi.ABI_HASH:016x}" not in (tree / "csrc/include/engram_abi.h").read_text()


def test_an_unreadable_header_fails_the_command(tree):
    edit(tree / "csrc/include/engram.h", "EG_API_C int32_t eg_perf_close(int32_t fd);", "int32_t eg_perf_close(int32_t fd);")
    p = run_gen(tree / "tools" / "gen_abi.py", "--check")
    assert p.returncode == 2 and "engram.h" in p.stderr and "eg_perf_close" in p.stderr, p.stderr


# ------------------------------------------------- the load-time hash check

def test_a_library_built_before_a_prototype_change_is_refused(tree, monkeypatch):
    """The installed C library was built from the repo's engram.h; the Python side of a changed
    header (its regenerated ABI_HASH) refuses it at load, saying how to rebuild."""
    edit(tree / "csrc/include/engram.h", *CHANGES["param type"])
    assert run_gen(tree / "tools" / "gen_abi.py").returncode == 0
    namespace = {}
    exec((tree / "engram/kernels/abi_generated.py").read_text(), namespace)
    monkeypatch.setattr(abi, "ABI_HASH", namespace["ABI_HASH"])
    path = native.lib_file("c")
    with pytest.raises(KernelError) as ei:
        NativeLibrary(path, ("scalar",))
    msg = str(ei.value)
    assert f"kernel ABI 0x{native.load_c().fns['eg_abi_hash']():016x}" in msg and str(path) in msg, msg
    assert "stale" in msg and "pip install -e ." in msg, msg


# -------------------------------------------- the compilers check the header

ZIG_CASES = {
    "unchanged": (None, None, None),
    "signature": (*CHANGES["param type"], "eg_spread_merge is fn"),
    "not exported": ("EG_API_C int64_t eg_perf_open(", "EG_API int64_t eg_perf_open(",
                     "engram.h declares eg_perf_open for the Zig libraries but engram.zig does not export it"),
    "not declared": ("EG_API_ZIG int64_t eg_arena_probe(", "EG_API_C int64_t eg_arena_probe(",
                     "eg_arena_probe is exported by engram.zig but engram.h does not declare it for Zig"),
}


@pytest.mark.skipif(importlib.util.find_spec("ziglang") is None, reason="ziglang is not installed")
@pytest.mark.parametrize("case", ZIG_CASES, ids=list(ZIG_CASES))
def test_zig_refuses_an_export_that_differs_from_the_header(tree, case):
    old, new, error = ZIG_CASES[case]
    if old:
        edit(tree / "csrc/include/engram.h", old, new)
    assert run_gen(tree / "tools" / "gen_abi.py").returncode == 0
    cache = tree / "zig-cache"
    p = subprocess.run([sys.executable, "-m", "ziglang", "build-lib", "-dynamic", "-fno-emit-bin",
                        "-target", "x86_64-linux-none", "-mcpu=baseline", "zig/src/engram.zig",
                        "--cache-dir", cache, "--global-cache-dir", cache],
                       cwd=tree, capture_output=True, text=True, timeout=300)
    if error is None:
        assert p.returncode == 0, p.stderr[-3000:]
    else:
        assert p.returncode != 0 and error in p.stderr, p.stderr[-3000:]


@pytest.mark.skipif(CC is None, reason="no C compiler")
@pytest.mark.parametrize("params,ok", [
    ("uint64_t n_nodes, uint32_t hop, float cycle_penalty, float ceiling, uint32_t epoch, eg_spread_state_t *state, "
     "const uint32_t *v, const float *s, uint64_t n, uint32_t *out_nodes, uint64_t count, uint64_t out_cap", True),
    ("uint64_t n_nodes, uint32_t hop, double cycle_penalty, float ceiling, uint32_t epoch, eg_spread_state_t *state, "
     "const uint32_t *v, const float *s, uint64_t n, uint32_t *out_nodes, uint64_t count, uint64_t out_cap", False),
], ids=["same", "differs"])
def test_c_definitions_are_checked_against_the_header(tmp_path, params, ok):
    """C needs nothing generated: a definition that differs from engram.h does not compile."""
    src = tmp_path / "k.c"
    src.write_text(f'#include "engram.h"\nEG_API int64_t eg_spread_merge({params}) {{ return 0; }}\n')
    p = subprocess.run([CC, "-std=gnu11", "-fsyntax-only", f"-I{ROOT / 'csrc/include'}", str(src)],
                       capture_output=True, text=True)
    assert (p.returncode == 0) == ok, p.stderr
    if not ok:
        assert "conflicting types" in p.stderr and "eg_spread_merge" in p.stderr, p.stderr
