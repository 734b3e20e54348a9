"""Python (numpy dtypes), C and Zig agree on every record size and field offset
of engram/layout/schema.py, and tools/gen_layout.py detects and repairs drift."""
from __future__ import annotations

import importlib.util
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

import engram.layout as layout
from engram.kernels import native
from engram.layout import generated, schema
from tests.generators import ROOT, assert_drift_detected_and_repaired, copy_tree, edit, run_gen

GEN = ROOT / "tools" / "gen_layout.py"
GENERATED = ("csrc/include/engram_layout.h", "zig/src/layout.zig", "engram/layout/generated.py", "docs/layout.md")

FIELDS = [(rec, f) for rec in schema.RECORDS for f in rec.fields]


def dtype_name(rec) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in rec.name).lstrip("_").upper() + "_DTYPE"


def dtype_of(rec) -> np.dtype:
    return getattr(generated, dtype_name(rec))


def libraries():
    libs = [("c", native.load_c())]
    libs += [(f"zig/{isa}", native.load_zig(isa)) for isa in native.cpu_isas()]
    return libs


def test_every_record_has_a_dtype_export():
    assert len({rec.name for rec in schema.RECORDS}) == len(schema.RECORDS)
    missing = [dtype_name(rec) for rec in schema.RECORDS if not hasattr(layout, dtype_name(rec))]
    assert not missing, f"engram.layout does not re-export {missing} from engram.layout.generated"
    for rec in schema.RECORDS:
        assert getattr(layout, dtype_name(rec)) == dtype_of(rec)


@pytest.mark.parametrize("rec", schema.RECORDS, ids=lambda r: r.name)
def test_numpy_dtype_matches_schema(rec):
    dt = dtype_of(rec)
    offs = rec.offsets()
    assert dt.itemsize == rec.size
    assert list(dt.names) == [f.name for f in rec.fields]   # memory order, nothing extra
    for f in rec.fields:
        ft, off = dt.fields[f.name][:2]
        assert off == offs[f.name], f.name
        assert ft.itemsize == f.size, f.name
        assert ft.base == np.dtype(schema.SCALARS[f.type][0]), f.name
        assert ft.shape == ((f.count,) if f.count > 1 else ()), f.name
    assert sum(f.size for f in rec.fields) == rec.size   # explicit padding: no holes
    assert rec.size % rec.align == 0


def test_schema_offsets_are_packed_and_aligned():
    for rec in schema.RECORDS:
        off = 0
        for f in rec.fields:
            assert rec.offsets()[f.name] == off
            assert off % schema.SCALARS[f.type][3] == 0
            off += f.size


def test_node_hot_is_one_cache_line():
    assert layout.NODE_HOT_DTYPE.itemsize == 64
    assert schema.NODE_HOT.size == 64 and schema.NODE_HOT.align == 64


def test_table_records_are_power_of_two_sized():
    for rec in (schema.NODE_HOT, schema.EDGE_DELTA, schema.ACTIVATION_RECORD):
        assert rec.size & (rec.size - 1) == 0, rec.name


@pytest.mark.parametrize("rec,field", FIELDS, ids=[f"{r.name}.{f.name}" for r, f in FIELDS])
def test_native_libraries_report_the_same_offsets(rec, field):
    want = (rec.offsets()[field.name], field.size)
    for name, lib in libraries():
        assert lib.lookup(rec.name, field.name) == want, (name, rec.name, field.name)


@pytest.mark.parametrize("rec", schema.RECORDS, ids=lambda r: r.name)
def test_native_libraries_report_the_same_sizes(rec):
    for name, lib in libraries():
        assert lib.lookup(rec.name, "") == (0, rec.size), (name, rec.name)
        assert lib.lookup(rec.name, "no_such_field") is None, name
    assert dtype_of(rec).itemsize == rec.size


def test_native_lookup_of_unknown_record():
    for name, lib in libraries():
        assert lib.lookup("NoSuchRecord", "") is None, name
        assert lib.lookup("nodehot", "id") is None, name   # exact, case-sensitive names


def test_layout_hash_agrees_everywhere():
    assert layout.LAYOUT_HASH == schema.layout_hash() == schema.LAYOUT_HASH
    from engram.layout import generated
    assert generated.LAYOUT_HASH == layout.LAYOUT_HASH
    for name, lib in libraries():
        assert lib.fns["eg_layout_hash"]() == layout.LAYOUT_HASH, name
    header = (ROOT / "csrc/include/engram_layout.h").read_text()
    assert f"#define EG_LAYOUT_HASH 0x{layout.LAYOUT_HASH:016x}ULL" in header
    zig = (ROOT / "zig/src/layout.zig").read_text()
    assert f"pub const layout_hash: u64 = 0x{layout.LAYOUT_HASH:016x};" in zig


# ---------------------------------------------------------------- gen_layout.py

def test_gen_layout_check_passes_on_the_repo():
    p = run_gen(GEN, "--check")
    assert p.returncode == 0, p.stderr
    assert f"layout ok: hash 0x{layout.LAYOUT_HASH:016x}" in p.stdout
    assert p.stderr == ""


@pytest.fixture
def tree(tmp_path):
    """A copy of everything gen_layout.py reads and writes, in the same relative layout."""
    return copy_tree(tmp_path, "gen_layout.py", ("tools", "engram/layout", "csrc/include", "zig/src", "docs"))


@pytest.mark.parametrize("rel", GENERATED)
def test_gen_layout_detects_and_repairs_drift(tree, rel):
    assert_drift_detected_and_repaired(tree / "tools" / "gen_layout.py", tree, rel, GENERATED, "layout drift")


def test_gen_layout_recreates_a_missing_file(tree):
    gen = tree / "tools" / "gen_layout.py"
    header = tree / "csrc/include/engram_layout.h"
    original = header.read_bytes()
    header.unlink()
    p = run_gen(gen, "--check")
    assert p.returncode == 1 and "csrc/include/engram_layout.h" in p.stderr
    assert run_gen(gen).returncode == 0
    assert header.read_bytes() == original


def load_schema(path: Path):
    name = f"_schema_copy_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod   # dataclasses resolve their module by name
    try:
        spec.loader.exec_module(mod)
    finally:
        del sys.modules[name]
    return mod


@pytest.mark.parametrize("old,new", [
    ('F("strength", "f32", doc=', 'F("strength", "u32", doc='),      # same size, other type
    ('F("strength", "f32", doc=', 'F("strengths", "f32", doc='),     # renamed
    ('F("hop", "u16"),\n    F("flags", "u16")', 'F("flags", "u16"),\n    F("hop", "u16")'),   # swapped
    ('F("_reserved", "u64", 6)', 'F("_reserved", "u32", 12)'),       # same bytes, other split
    ('"ROW_ALIGN": 64', '"ROW_ALIGN": 128'),                          # a constant
], ids=["type", "rename", "swap", "split", "constant"])
def test_schema_change_changes_the_hash(tree, old, new):
    path = tree / "engram/layout/schema.py"
    same = load_schema(path)
    assert same.LAYOUT_HASH == layout.LAYOUT_HASH
    edit(path, old, new)
    changed = load_schema(path)
    assert changed.LAYOUT_HASH != layout.LAYOUT_HASH
    # and the generator notices: every generated file carries the hash
    gen = tree / "tools" / "gen_layout.py"
    p = run_gen(gen, "--check")
    assert p.returncode == 1
    assert all(rel in p.stderr for rel in GENERATED), p.stderr
    assert run_gen(gen).returncode == 0
    header = (tree / "csrc/include/engram_layout.h").read_text()
    assert f"#define EG_LAYOUT_HASH 0x{changed.LAYOUT_HASH:016x}ULL" in header


def test_doc_change_keeps_the_hash(tree):
    path = tree / "engram/layout/schema.py"
    edit(path, 'doc="memory strength for forgetting curves"', 'doc="how strongly it is remembered"')
    assert load_schema(path).LAYOUT_HASH == layout.LAYOUT_HASH


def test_broken_schema_is_refused(tree):
    """A record whose fields do not add up to its declared size does not load."""
    path = tree / "engram/layout/schema.py"
    edit(path, 'F("seq", "u32", doc=', 'F("seq", "u32", 2, doc=')
    with pytest.raises(ValueError, match="EdgeDelta fields add up to 20 bytes, declared 16"):
        load_schema(path)
    p = run_gen(tree / "tools" / "gen_layout.py", "--check")
    assert p.returncode != 0 and "EdgeDelta" in p.stderr
