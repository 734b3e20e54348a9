"""A real association graph present on every machine: the Python standard library.

Memories are modules, classes and functions, each with its docstring's first
paragraph; associations are containment (package -> module -> class ->
method, and back) and imports (module -> module it imports). Built by
parsing source with ``ast`` (nothing is imported or executed), in a sorted,
deterministic order, so every machine with the same Python builds the same
graph.
"""
from __future__ import annotations

import ast
import os
import sysconfig
from dataclasses import dataclass, field

SKIP_DIRS = {"test", "tests", "idlelib", "site-packages", "lib2to3", "__pycache__", "ensurepip",
             "turtledemo", "dist-packages", "__phello__"}
SKIP_MODULES = {"__hello__", "antigravity", "this"}   # jokes and frozen-module fixtures

# association weights: containment is tight, imports are looser
W_CHILD, W_PARENT, W_IMPORT = 0.8, 0.5, 0.4


@dataclass
class Corpus:
    names: list = field(default_factory=list)     # qualified name per item
    kinds: list = field(default_factory=list)     # "module" | "class" | "function"
    texts: list = field(default_factory=list)     # stored as content: "name (kind): summary"
    embed_texts: list = field(default_factory=list)   # what is embedded: "name summary"
    links: list = field(default_factory=list)     # (src index, dst index, weight)
    root: str = ""
    files: int = 0

    def __len__(self):
        return len(self.names)


def stdlib_root() -> str:
    return sysconfig.get_paths()["stdlib"]


def module_files(root: str) -> list:
    """(module name, path) of every stdlib source file, sorted."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames
                             if d not in SKIP_DIRS and not d.startswith("config-") and d.isidentifier())
        rel = os.path.relpath(dirpath, root)
        pkg = [] if rel == "." else rel.split(os.sep)
        for fn in sorted(filenames):
            if not fn.endswith(".py") or fn.startswith("test_"):
                continue
            stem = fn[:-3]
            if not stem.isidentifier():
                continue
            parts = pkg if stem == "__init__" else pkg + [stem]
            if parts and parts[-1] not in SKIP_MODULES:
                out.append((".".join(parts), os.path.join(dirpath, fn)))
    return out


def first_paragraph(doc: str | None, limit: int = 400) -> str:
    if not doc:
        return ""
    para = doc.strip().split("\n\n", 1)[0]
    text = " ".join(para.split())
    return text[:limit]


def build(root: str | None = None, limit: int | None = None, progress=None) -> Corpus:
    """Parse the stdlib under ``root`` into a Corpus (at most ``limit`` items)."""
    root = root or stdlib_root()
    files = module_files(root)
    c = Corpus(root=root, files=len(files))
    index: dict = {}
    pending_imports = []

    def add(name, kind, doc, parent=None):
        if limit is not None and len(c.names) >= limit:
            return None
        i = len(c.names)
        index[name] = i
        c.names.append(name)
        c.kinds.append(kind)
        summary = first_paragraph(doc)
        c.texts.append(f"{name} ({kind}): {summary}" if summary else f"{name} ({kind})")
        c.embed_texts.append(f"{name} {summary}")
        if parent is not None:
            c.links.append((parent, i, W_CHILD))
            c.links.append((i, parent, W_PARENT))
        return i

    for mod, path in files:
        if progress is not None:
            progress.update(1)
        try:
            with open(path, "rb") as f:
                tree = ast.parse(f.read(), filename=path)
        except (SyntaxError, ValueError, OSError):
            continue
        parent_pkg = index.get(mod.rsplit(".", 1)[0]) if "." in mod else None
        mi = add(mod, "module", ast.get_docstring(tree), parent_pkg)
        if mi is None:
            break
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                targets = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                    [node.module] if node.module and not node.level else [])
                pending_imports.extend((mi, t) for t in targets)
            elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                ci = add(f"{mod}.{node.name}", "class", ast.get_docstring(node), mi)
                if ci is None:
                    break
                for sub in node.body:
                    if (isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef))
                            and not sub.name.startswith("_") and ast.get_docstring(sub)
                            and add(f"{mod}.{node.name}.{sub.name}", "function", ast.get_docstring(sub), ci) is None):
                        break
            elif (isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                  and not node.name.startswith("_") and ast.get_docstring(node)
                  and add(f"{mod}.{node.name}", "function", ast.get_docstring(node), mi) is None):
                break
    seen = set()
    for src, target in pending_imports:
        # "import a.b.c" links to the deepest module of the corpus it names
        parts = target.split(".")
        for cut in range(len(parts), 0, -1):
            dst = index.get(".".join(parts[:cut]))
            if dst is not None:
                if dst != src and (src, dst) not in seen:
                    seen.add((src, dst))
                    c.links.append((src, dst, W_IMPORT))
                break
    return c
