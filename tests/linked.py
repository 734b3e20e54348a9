"""A memory space of random vectors with local random links, for tests of recall
over associations (each memory links to a few of the next ids)."""
import numpy as np


def linked_space(eng, name: str, rng, n: int, dim: int, links: int, span: int, weights=(0.2, 1.0)):
    """``links`` links from random memories to one 1..span-1 ids later, weights uniform in
    ``weights``; compacted. Returns (space, vectors)."""
    vecs = rng.standard_normal((n, dim)).astype(np.float32)
    mem = eng.space(name)
    mem.remember(vecs)
    src = rng.integers(0, n, links)
    dst = (src + rng.integers(1, span, links)) % n
    mem.link(src, dst, rng.uniform(*weights, links).astype(np.float32))
    mem.compact()
    return mem, vecs
