"""The documentation runs as written: every fenced block of README.md and docs/*.md.

Each block names its language. ```python blocks run in a fresh interpreter, ```bash and
```sh blocks in bash (with `engram` and `python` meaning this checkout), each in an empty
directory with a timeout. ```text blocks are formulas and usage lines, not code.

Two HTML comments, invisible on the rendered page, may precede a block:
    <!-- setup: vectors = ...; query = ... -->     code run first, in the same interpreter
    <!-- not run: reason -->                       the block is not run, and says why
Nothing is skipped silently: a block that does not run says so where it stands.

The docs also name only paths and modules that exist (engram/recall/pipeline.py, not
the engram/recall.py of before the package moved into rooms), and docs/README.md
indexes every document with one line.
"""
from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
import textwrap
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
RUN = {"python": "python", "bash": "bash", "sh": "bash"}
NOT_CODE = {"text"}
TIMEOUT = 240
FENCE = re.compile(r"^(\s*)```(\S*)\s*$")


@dataclass
class Block:
    path: Path
    line: int
    lang: str
    code: str
    setup: str = ""
    not_run: str | None = None

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def _markers(before: str) -> tuple:
    """(setup code, not-run reason) from the HTML comments right above a fence."""
    setup, not_run = "", None
    text = before.rstrip()
    while text.endswith("-->") and (start := text.rfind("<!--")) >= 0:
        body = text[start + 4:-3].strip()
        if body.startswith("setup:"):
            setup = textwrap.dedent(body[len("setup:"):].strip("\n")).strip() + "\n" + setup
        elif body.startswith("not run:"):
            not_run = body[len("not run:"):].strip()
        text = text[:start].rstrip()
    return setup, not_run


def blocks(path: Path) -> list:
    lines = path.read_text().splitlines()
    out, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith("```"):
            j += 1
        assert j < len(lines), f"{path}:{i + 1}: a fence that never closes"
        code = textwrap.dedent("\n".join(lines[i + 1:j]))
        out.append(Block(path, i + 1, m.group(2), code, *_markers("\n".join(lines[:i]))))
        i = j + 1
    return out


ALL = [b for p in DOCS for b in blocks(p)]
RUNNABLE = [b for b in ALL if b.lang in RUN and b.not_run is None]


def test_every_block_says_what_it_is_and_why_it_does_not_run():
    untagged = [b.where for b in ALL if b.lang not in RUN and b.lang not in NOT_CODE]
    assert not untagged, f"blocks without a language (python, bash, sh, or text for formulas): {untagged}"
    unexplained = [b.where for b in ALL if b.not_run is not None and not b.not_run]
    assert not unexplained, f"<!-- not run: --> without a reason: {unexplained}"
    assert len(RUNNABLE) >= 10, [b.where for b in RUNNABLE]


@pytest.fixture(scope="session")
def shims(tmp_path_factory) -> Path:
    """`engram`, `python` and `python3` meaning this checkout's, for the shell blocks."""
    d = tmp_path_factory.mktemp("bin")
    for name, target in (("engram", f'"{sys.executable}" -m engram.cli'), ("python", f'"{sys.executable}"'),
                         ("python3", f'"{sys.executable}"')):
        (d / name).write_text(f'#!/bin/sh\nexec {target} "$@"\n')
        (d / name).chmod(0o755)
    return d


# a doc that still uses a deprecated name fails (the shims warn with these prefixes)
DEPRECATED = ["-W", "error:engram.metrics.:DeprecationWarning", "-W", "error:engram.tracing.:DeprecationWarning",
              "-W", "error:Engine.spaces is a property:DeprecationWarning"]


@pytest.mark.parametrize("block", RUNNABLE, ids=lambda b: b.where)
def test_block_runs_as_written(block, tmp_path, shims):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(":"),
           "PATH": f"{shims}{os.pathsep}{os.environ['PATH']}"}
    if RUN[block.lang] == "python":
        script = tmp_path / "block.py"
        script.write_text(block.setup + "\n" + block.code + "\n")
        cmd = [sys.executable, *DEPRECATED, str(script)]
    else:
        cmd = ["bash", "-e", "-o", "pipefail", "-c", block.setup + "\n" + block.code]
    p = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert p.returncode == 0, (f"{block.where} failed (exit {p.returncode}):\n{block.code}\n--- stdout\n"
                               f"{p.stdout[-3000:]}\n--- stderr\n{p.stderr[-5000:]}")


# ----------------------------------------------------------------- names and paths

PATH_RE = re.compile(r"(?<![\w/.-])((?:engram|tests|benches|tools|csrc|zig|docs)/[\w./{},*-]*[\w/}*])")
NAME_RE = re.compile(r"(?<![\w/.-])(engram(?:\.[A-Za-z_]\w*)+)")
# written by runs, not kept in the repository; and backend/ISA labels that look like paths
NOT_PATHS = re.compile(r"^(benches/results/|zig/(scalar|avx2|avx512)$)")
NOT_PYTHON = {"engram.h", "engram.zig",          # csrc/include/engram.h, zig/src/engram.zig
              # OpenTelemetry attribute names (engram.*, docs/observability.md)
              "engram.trace_id", "engram.node_a", "engram.node_b", "engram.value", "engram.strength",
              "engram.process"}


def _expand(path: str) -> list:
    """csrc/kernels/isa_{scalar,avx2}.c -> both names."""
    m = re.search(r"\{([^}]*)\}", path)
    if not m:
        return [path]
    return [x for alt in m.group(1).split(",") for x in _expand(path[:m.start()] + alt + path[m.end():])]


def _resolves(name: str) -> bool:
    parts = name.split(".")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        for i in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:i]))
            except ImportError:
                continue
            except DeprecationWarning:
                return False
            try:
                for attr in parts[i:]:
                    obj = getattr(obj, attr)
            except (AttributeError, DeprecationWarning):
                return False
            return True
    return False


def test_the_docs_name_only_paths_that_exist():
    missing = sorted({f"{p.relative_to(ROOT)}: {path}" for p in DOCS for path in PATH_RE.findall(p.read_text())
                      if not NOT_PATHS.match(path) and not all((ROOT / x).exists() for x in _expand(path))})
    assert not missing, "\n".join(missing)


def test_the_docs_name_only_modules_and_objects_that_exist_and_are_not_deprecated():
    wrong = sorted({f"{p.relative_to(ROOT)}: {name}" for p in DOCS for name in NAME_RE.findall(p.read_text())
                    if name not in NOT_PYTHON and not _resolves(name)})
    assert not wrong, "\n".join(wrong)


def test_the_checks_see_a_moved_path_and_a_deprecated_name():
    """Negative controls for the two checks above."""
    assert not (ROOT / "engram/recall.py").exists() and (ROOT / "engram/recall/pipeline.py").exists()
    assert not _resolves("engram.metrics.serve") and not _resolves("engram.embed.HashingEmbedder")
    assert _resolves("engram.serve_metrics") and _resolves("engram.demo.embed.HashingEmbedder")
    assert _expand("a/{b,c}.d") == ["a/b.d", "a/c.d"]
    assert _markers("x\n<!-- setup: a = 1 -->\n<!-- not run: slow -->\n\n") == ("a = 1\n", "slow")


def test_docs_readme_indexes_every_document_with_one_line():
    index = (ROOT / "docs" / "README.md").read_text()
    links = [x for x in re.findall(r"\]\(([^)#]+\.md)\)", index) if not x.startswith("../")]
    docs = sorted(str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md") if p.name != "README.md")
    assert sorted(links) == docs, f"indexed {sorted(links)}, present {docs}"
    for name in docs:
        lines = [line for line in index.splitlines() if f"]({name})" in line]
        assert len(lines) == 1 and len(lines[0]) > len(name) + 20, (name, lines)   # one line that says something
    readme = (ROOT / "README.md").read_text()
    assert "docs/README.md" in readme


def test_the_readme_names_the_fields_memories_has():
    """The README once promised Memories.times, which never existed: what it lists of get()'s
    result must be the dataclass's fields."""
    import dataclasses

    import engram
    text = (ROOT / "README.md").read_text()
    m = re.search(r"mem\.get\(ids\[:2\]\)\.vectors\s+# also (.*?)\(engram\.Memories\)", text, re.S)
    assert m, "the README's Use block lists get()'s fields on the mem.get line"
    listed = {"vectors"} | {w for w in re.findall(r"[a-z_]+", m.group(1)) if w != "also"}
    assert listed == {f.name for f in dataclasses.fields(engram.Memories)} - {"ids"}
