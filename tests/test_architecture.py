"""The rooms stay visible: imports run one way (import-linter's layers contract in
pyproject.toml), ruff passes, no module imports itself in a circle, and each module
is short and says in its first line what it is for."""
import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "engram"
MAX_LINES = 420          # "about 400": a module past this is two concerns
GENERATED = {PACKAGE / "layout" / "generated.py"}


def _tool(name: str) -> str:
    exe = shutil.which(name) or str(Path(sys.executable).parent / name)
    if not Path(exe).exists():
        pytest.fail(f"{name} is not installed: pip install -e '.[dev]'")
    return exe


def test_imports_run_one_way():
    p = subprocess.run([_tool("lint-imports")], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
    assert "KEPT" in p.stdout and "BROKEN" not in p.stdout


def test_ruff_passes():
    p = subprocess.run([_tool("ruff"), "check", "engram", "tests", "benches", "tools"], cwd=ROOT,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]


def test_no_import_cycle():
    import grimp
    graph = grimp.build_graph("engram")
    modules = sorted(m for m in graph.modules if m != "engram")
    edges = {m: sorted(x for x in graph.find_modules_directly_imported_by(m) if x != "engram") for m in modules}
    cycles = _strongly_connected(modules, edges)
    assert not cycles, f"modules that import each other in a circle: {cycles}"


def _strongly_connected(nodes, edges) -> list:
    """Tarjan's components with more than one module."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    for v in nodes:
        if v not in index:
            visit(v)
    return out


def test_the_cycle_check_sees_a_cycle():
    """Negative control: the check above finds a planted circle."""
    assert _strongly_connected(["a", "b", "c"], {"a": ["b"], "b": ["c"], "c": ["a"]}) == [["a", "b", "c"]]
    assert _strongly_connected(["a", "b"], {"a": ["b"]}) == []


def _modules():
    return sorted(p for p in PACKAGE.rglob("*.py") if p not in GENERATED) + sorted(PACKAGE.rglob("*.pyx"))


def test_every_module_opens_with_a_line_saying_what_it_is_for():
    missing = []
    for p in _modules():
        text = p.read_text()
        first = text.lstrip().split("\n", 1)[0]
        if p.suffix == ".py":
            doc = ast.get_docstring(ast.parse(text))
            if not doc or not doc.strip():
                missing.append(str(p.relative_to(ROOT)))
        elif not first.startswith('"""'):
            missing.append(str(p.relative_to(ROOT)))
    assert not missing, f"modules without an opening docstring: {missing}"


def test_no_module_is_two_concerns_long():
    long = {str(p.relative_to(ROOT)): n for p in _modules() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"
