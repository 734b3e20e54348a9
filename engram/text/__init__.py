"""Text in and out: the engine's embedder (engram/text/embedder.py), the default model
(engram/text/e5.py, from the ``text`` extra), and a space's record of which embedder made
its vectors (engram/text/inspace.py). docs/embedding.md says how the default was chosen."""
from engram.text.embedder import Embedder, Identity, resolve

__all__ = ["Embedder", "Identity", "resolve"]
