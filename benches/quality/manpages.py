"""Two more kinds of graph from the manual pages installed on this machine.

manpages (heavy-tailed, strong hubs): each page linked to the pages its SEE ALSO names.
paragraphs (nearly hub-free): the paragraphs of each page's DESCRIPTION, each linked to
the one before and the one after it (a chain per page: episodes in the order they came).

One memory per English page that names or is named by another (/usr/share/man/man1..man8;
aliases, which are symlinks or `.so` redirects, are skipped): text = its NAME line (name and one-line description) and
the first sentences of its DESCRIPTION. A SEE ALSO reference `name(section)` links to
that page, or to the page of that name in another section if the section has none.
Families of pages that all name one page (git-* -> git(1), every OpenSSL page ->
openssl(1), perl*) make the hubs. Built deterministically (sorted walk), offline.

paragraphs: a DESCRIPTION is split at its paragraph macros (.PP .P .LP .TP .IP .HP .SS)
and blank lines; paragraphs of at least MIN_WORDS words are kept (at most MAX_WORDS of
each), pages with at least two of them give a chain: next 0.6, previous 0.6.
"""
from __future__ import annotations

import gzip
import re
from pathlib import Path

from benches.quality.graphs import Graph, _edges
from engram.demo.embed import tokens

ROOT = Path("/usr/share/man")
W_SEE_ALSO = 0.5
W_NEXT = W_PREVIOUS = 0.6
MIN_WORDS, MAX_WORDS = 8, 60
_PARAGRAPH = (".PP", ".P", ".LP", ".TP", ".IP", ".HP", ".SS", ".Pp", ".Ss")
DESCRIPTION_WORDS = 40
_FILE = re.compile(r"^(?P<name>.+)\.(?P<section>[1-8][A-Za-z0-9]*)(?:\.gz)?$")
_SH = re.compile(r'^\.S[Hh]\s+"?([^"]*)"?\s*$')
_ESCAPES = re.compile(r"\\f(?:\[[^\]]*\]|\(..|.)|\\\(..|\\\[[^\]]*\]|\\[&|^/,%]|\\s[-+]?\d")
_REFERENCE = re.compile(r"([A-Za-z0-9_][A-Za-z0-9_.:+@-]*)\s*\((\d[A-Za-z0-9]*)\)")


def _plain(line: str) -> str:
    """A roff line's words: font and character escapes gone, macros' arguments kept."""
    if line.startswith((".\\\"", "'\\\"")):
        return ""
    if line.startswith((".", "'")):
        parts = line.split(None, 1)
        line = parts[1] if len(parts) > 1 and parts[0][1:] in ("B", "I", "BR", "BI", "IR", "RB", "IB", "RI",
                                                                "SM", "SB", "TP", "IP", "Nm", "Nd", "Xr") else ""
        line = line.replace('"', "")
    return " ".join(_ESCAPES.sub("", line).replace("\\-", "-").replace("\\e", "\\").split())


def _sections(text: str) -> dict:
    """Section name (upper case) -> its lines, for .SH (man) and .Sh (mdoc) headings."""
    out, current = {}, None
    for line in text.splitlines():
        m = _SH.match(line)
        if m:
            current = m.group(1).strip().upper()
            out.setdefault(current, [])
        elif current is not None:
            out[current].append(line)
    return out


def _page(path: Path):
    """(NAME text, DESCRIPTION opening, [(name, section) referenced]) or None for an alias."""
    text = _read(path)
    if text.lstrip().startswith(".so "):
        return None
    sec = _sections(text)
    name = " ".join(filter(None, map(_plain, sec.get("NAME", []))))
    if not name:
        return None
    words = " ".join(filter(None, map(_plain, sec.get("DESCRIPTION", [])))).split()[:DESCRIPTION_WORDS]
    see = " ".join(filter(None, map(_plain, sec.get("SEE ALSO", []))))
    return name, " ".join(words), _REFERENCE.findall(see)


def _files(root: Path) -> list:
    """(name, section, path) of every page under root, sorted; aliases (symlinks) left out."""
    files = []
    for d in sorted(root.glob("man[1-8]")):
        for p in sorted(d.iterdir()):
            m = _FILE.match(p.name)
            if m and not p.is_symlink() and p.is_file():
                files.append((m.group("name"), m.group("section"), p))
    if not files:
        raise FileNotFoundError(f"no manual pages under {root} (Debian: apt-get install man-db manpages)")
    return files


def _read(path: Path) -> str:
    if path.suffix == ".gz":
        with gzip.open(path) as f:
            return f.read().decode("utf-8", errors="replace")
    return path.read_text(encoding="utf-8", errors="replace")


def _paragraphs(lines: list) -> list:
    out, current = [], []
    for line in lines + [".PP"]:
        if not line.strip() or line.split(None, 1)[0] in _PARAGRAPH:
            words = " ".join(filter(None, map(_plain, current))).split()
            if len(words) >= MIN_WORDS and len(tokens(" ".join(words))) >= MIN_WORDS // 2:   # words, not markup
                out.append(" ".join(words[:MAX_WORDS]))
            current = []
            continue
        current.append(line)
    return out


def paragraphs(limit: int | None = 20_000, root: Path = ROOT) -> Graph:
    """The chains of DESCRIPTION paragraphs, page by page, until ``limit`` paragraphs."""
    g = Graph("paragraphs", f"DESCRIPTION paragraphs of the manual pages under {root}")
    triples = []
    for name, section, path in _files(root):
        if limit is not None and len(g.names) >= limit:
            break
        text = _read(path)
        if text.lstrip().startswith(".so "):
            continue
        paras = _paragraphs(_sections(text).get("DESCRIPTION", []))
        if len(paras) < 2:
            continue
        paras = paras[:None if limit is None else limit - len(g.names)]
        first = len(g.names)
        for i, para in enumerate(paras):
            g.names.append(f"{name}({section})#{i}")
            g.kinds.append(section[0])
            g.texts.append(para)
            g.content.append(f"{name}({section}) paragraph {i}: {para}")
            if i:
                triples.append((first + i - 1, first + i, W_NEXT, "next"))
                triples.append((first + i, first + i - 1, W_PREVIOUS, "previous"))
    return _edges(g, triples)


def manpages(limit: int | None = None, root: Path = ROOT) -> Graph:
    """Every linked English page under ``root`` (the first ``limit`` of them, in sorted order)."""
    g = Graph("manpages", f"manual pages under {root}")
    index, by_name, refs = {}, {}, []
    for name, section, path in _files(root):
        got = _page(path)
        if got is None:
            continue
        head, description, see = got
        index[(name, section)] = len(g.names)
        by_name.setdefault(name, len(g.names))
        refs.append(see)
        g.names.append(f"{name}({section})")
        g.kinds.append(section[0])
        g.texts.append(f"{head} {description}".strip())
        g.content.append(f"{name}({section}): {head}")
    pairs = []
    for i, see in enumerate(refs):
        for name, section in see:
            j = index.get((name, section), by_name.get(name))
            if j is not None and j != i:
                pairs.append((i, j))
    # only pages in the web of references: most pages (thousands of cloud CLI subcommands)
    # name none and are named by none, and would be memories no association can reach
    linked = sorted({i for pair in pairs for i in pair})[:limit]
    renumber = {old: new for new, old in enumerate(linked)}
    for attr in ("names", "kinds", "texts", "content"):
        setattr(g, attr, [getattr(g, attr)[i] for i in linked])
    return _edges(g, [(renumber[i], renumber[j], W_SEE_ALSO, "see-also") for i, j in pairs
                      if i in renumber and j in renumber])
