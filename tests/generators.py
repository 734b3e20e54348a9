"""The code generators in the tests (tools/gen_abi.py: tests/kernels/test_abi.py;
tools/gen_layout.py: tests/layout/test_layout.py): run as scripts, on the
repository or on a copy of what they read and write."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_gen(script: Path, *args):
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=60)


def edit(path: Path, old: str, new: str):
    text = path.read_text()
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new))


def copy_tree(dest: Path, gen: str, dirs, files=()) -> Path:
    """dest with a copy of the repository's dirs and files at the same relative paths,
    on which `tools/<gen> --check` passes (the copy starts clean)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for d in dirs:
        shutil.copytree(ROOT / d, dest / d, ignore=ignore)
    for rel in files:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, dest / rel)
    p = run_gen(dest / "tools" / gen, "--check")
    assert p.returncode == 0, p.stderr
    return dest


def assert_drift_detected_and_repaired(gen: Path, tree: Path, rel: str, generated, message: str):
    """One generated file of the copy drifts (a byte appended): `gen --check` names it, and
    no other, after message, and writes nothing; `gen` rewrites it; the repository's own
    file is untouched."""
    target = tree / rel
    original = target.read_bytes()
    target.write_bytes(original + b" ")
    p = run_gen(gen, "--check")
    assert p.returncode == 1 and message in p.stderr and rel in p.stderr, p.stderr
    assert not [other for other in generated if other != rel and other in p.stderr], p.stderr
    assert target.read_bytes() == original + b" "   # --check never writes
    p = run_gen(gen)
    assert p.returncode == 0 and f"wrote {rel}" in p.stdout, p.stderr
    assert target.read_bytes() == original
    p = run_gen(gen, "--check")
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert (ROOT / rel).read_bytes() == original    # the repository itself was never touched
